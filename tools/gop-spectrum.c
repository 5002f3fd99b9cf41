/*
 * gop-spectrum: the spectrum of the gradient outer product of train-mlp
 * checkpoints.
 *
 * G = (1/n) sum_i g_i g_i^T over the per-example loss gradients g_i of a
 * set (the empirical Fisher for cross-entropy).  Its non-zero spectrum is
 * that of the n x n Gram matrix K = (1/n) J J^T, J = [g_1; ...; g_n], which
 * is built layer by layer from activations and deltas without forming J
 * or anything P x P.  Also the mean gradient's outer product (rank one,
 * eigenvalue |g|^2) and the centred covariance C = G - g g^T (gradient
 * noise), whose spectrum is that of the centred Gram H K H.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis.h"
#include "ckpt.h"
#include "dataset.h"
#include "jsonl.h"
#include "linalg.h"
#include "opts.h"
#include "st.h"
#include "util.h"

#define MAX_CKPTS 100000
#define MAX_ROWS 30000       /* K is n x n doubles: 7 GB at this bound */
/* Per-example gradients held at once by a family without a closed-form Gram (bytes). */
#define GRAM_BUDGET ((size_t)256 << 20)

struct config {
	const char *data, *spectrum, *eigvecs;
	enum dataset_set set;
	int top, per_layer, any_data, threads, neigvecs, no_centred;
	double rank_rtol;        /* < 0: n * 2^-23 (numpy's matrix_rank rule for float32) */
};

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: gop-spectrum --data FILE [--set train|test|all] [--top K] [--per-layer]\n"
	    "                    [--spectrum FILE] [--eigvecs K FILE] [options] [CKPT...]\n");
}

static void
help(void)
{
	usage(stdout);
	printf(
"\n"
"For each train-mlp checkpoint (the arguments, or paths one per line on\n"
"standard input), the spectrum of the gradient outer product\n"
"G = (1/n) sum_i g_i g_i^T over the per-example loss gradients of a set,\n"
"through the n x n Gram matrix K = (1/n) J J^T (same non-zero spectrum),\n"
"built layer by layer without forming J.  Also the mean gradient's outer\n"
"product |g|^2 and the centred covariance G - g g^T.  One JSON-lines record\n"
"per checkpoint after a header.  Deterministic: no seed.\n"
"\n"
"      --data FILE        the data set the checkpoints were trained on\n"
"      --set S            train (default), test or all\n"
"      --any-data         allow a data set other than the checkpoint's own\n"
"      --top K            eigenvalues listed, 1..100000 (default 10)\n"
"      --per-layer        each layer's own Gram matrix and statistics too\n"
"      --rank-tol R       numerical rank counts eigenvalues above R times the\n"
"                         largest (default n * 2^-23: gradients are float32)\n"
"      --spectrum FILE    write every eigenvalue (safetensors, F64); with\n"
"                         several checkpoints FILE must contain {step}\n"
"      --eigvecs K FILE   write the top K eigenvectors of G in parameter space\n"
"                         (J^T u / sqrt(n lambda)), named like the parameters\n"
"      --no-centred       skip the centred covariance (its spectrum costs a\n"
"                         second n x n eigendecomposition)\n"
"      --threads N        BLAS threads, 1..256 (default 1)\n"
"  -h, --help             show this help and exit\n"
"      --version          show the version and exit\n"
"\n"
"Memory is O(n^2) doubles (three n x n matrices), never O(P^2); at most\n"
"%d rows.\n"
CKPT_LIMITS_HELP
"\n"
"Exit status: 0 success, 1 runtime or data error, 2 usage error.\n",
	    MAX_ROWS);
}

static void
parse_args(struct config *c, int argc, char **argv)
{
	enum { O_DATA = 256, O_SET, O_ANY, O_TOP, O_PERLAYER, O_RANKTOL, O_SPECTRUM, O_EIGVECS,
		O_THREADS, O_NOCENTRED, O_VERSION };
	static const struct option longopts[] = {
		{"data", required_argument, NULL, O_DATA},
		{"set", required_argument, NULL, O_SET},
		{"any-data", no_argument, NULL, O_ANY},
		{"top", required_argument, NULL, O_TOP},
		{"per-layer", no_argument, NULL, O_PERLAYER},
		{"rank-tol", required_argument, NULL, O_RANKTOL},
		{"spectrum", required_argument, NULL, O_SPECTRUM},
		{"eigvecs", required_argument, NULL, O_EIGVECS},
		{"threads", required_argument, NULL, O_THREADS},
		{"no-centred", no_argument, NULL, O_NOCENTRED},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION},
		{NULL, 0, NULL, 0},
	};
	int ch;

	memset(c, 0, sizeof *c);
	c->top = 10;
	c->threads = 1;
	c->rank_rtol = -1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case O_DATA: c->data = optarg; break;
		case O_SET: c->set = (enum dataset_set)opt_choice("--set", optarg, dataset_set_names); break;
		case O_ANY: c->any_data = 1; break;
		case O_TOP: c->top = (int)opt_int("--top", optarg, 1, 100000); break;
		case O_PERLAYER: c->per_layer = 1; break;
		case O_RANKTOL: c->rank_rtol = opt_real_open("--rank-tol", optarg, 0, 1); break;
		case O_SPECTRUM: c->spectrum = optarg; break;
		case O_EIGVECS:
			c->neigvecs = (int)opt_int("--eigvecs", optarg, 1, 1000);
			if (optind >= argc)
				usage_error("--eigvecs K FILE: missing FILE (example: --eigvecs 5 top.safetensors)");
			c->eigvecs = argv[optind++];
			break;
		case O_THREADS: c->threads = (int)opt_int("--threads", optarg, 1, 256); break;
		case O_NOCENTRED: c->no_centred = 1; break;
		case 'h': help(); finish_stdout(); exit(0);
		case O_VERSION: printf("gop-spectrum %s\n", GROK_VERSION); finish_stdout(); exit(0);
		default: fprintf(stderr, "Try 'gop-spectrum --help' for more information.\n"); exit(EXIT_USAGE);
		}
	}
	if (!c->data)
		usage_error("--data FILE is required (the data set the checkpoints were trained on)");
}

static json_t *
stats_json(const double *ev, int n, double rank_rtol, int top)
{
	struct spectrum_stats s;
	json_t *t = json_array();

	spectrum_stats(ev, n, rank_rtol, &s);
	for (int i = 0; i < top && i < n; i++)
		json_array_append_new(t, jnum(ev[i]));
	return json_pack("{s:o, s:o, s:o, s:o, s:i, s:o, s:o, s:o, s:o, s:o, s:o}",
	    "trace", jnum(s.trace), "frobenius", jnum(s.frobenius), "spectral", jnum(s.spectral),
	    "smallest", jnum(s.smallest), "rank", s.rank, "rank_tol", jnum(s.rank_tol),
	    "condition", jnum(s.condition), "logdet", jnum(s.logdet),
	    "effective_rank", jnum(s.effective_rank), "stable_rank", jnum(s.stable_rank), "top", t);
}

/* The top k eigenvectors of G in parameter space, J^T u / sqrt(n lambda). */
static void
write_eigvecs(const struct config *c, const struct analysis_ckpt *ck, struct model_gram *G,
    const double *ev, const double *vecs, int k, long n)
{
	size_t P = ck->m->nparams;
	char *path = ckpt_step_path(c->eigvecs, ck->step);
	double *u = xmalloc(xmul((size_t)n, sizeof(double)));
	double *pv = xcalloc(xmul(P, (size_t)k), sizeof(double));

	for (int e = 0; e < k; e++) {
		/* unit, since |J^T u|^2 = u^T J J^T u = n lambda */
		double scale = ev[e] > 0 ? 1.0 / sqrt((double)n * ev[e]) : 0.0;
		for (long b = 0; b < n; b++)
			u[b] = vecs[(size_t)b * k + e];
		model_gram_combine(G, pv + (size_t)e * P, u);
		for (size_t q = 0; q < P; q++)
			pv[(size_t)e * P + q] *= scale;
	}
	ckpt_write_eigvecs(path, ck->m, pv, ev, k, "gop-spectrum " GROK_VERSION, ck->step, ck->digest);
	free(u);
	free(pv);
	free(path);
}

/* Every spectrum the record summarises, for --spectrum: G's, the centred one, each group's. */
static void
write_spectrum(const struct config *c, const struct analysis_ckpt *ck, long n, const double *ev,
    const double *evc, double *const *gspec)
{
	struct st_writer sw;
	int64_t shape[1] = {n};

	st_writer_init(&sw);
	st_writer_add(&sw, "gop", ST_F64, 1, shape, ev);
	if (!c->no_centred)
		st_writer_add(&sw, "centred", ST_F64, 1, shape, evc);
	for (int g = 0; c->per_layer && g < ck->m->ngroups; g++)
		st_writer_add(&sw, ck->m->group_names[g], ST_F64, 1, shape, gspec[g]);
	analysis_side_file(c->spectrum, ck, "grokkit-spectrum-v1", "gop-spectrum " GROK_VERSION, &sw);
}

/*
 * K = (1/n) sum over the model's groups of each group's Gram term (T is
 * scratch).  With --per-layer, each group's own spectrum (gspec[g],
 * malloc'd) and statistics (into layers).
 */
static void
gram_sum(const struct config *c, const struct analysis_ckpt *ck, struct model_gram *G, long n,
    double rtol, double *K, double *T, double **gspec, json_t *layers)
{
	for (int g = 0; g < ck->m->ngroups; g++) {
		model_gram_group(G, g, T);
		for (long b = 0; b < n; b++)
			for (long q = 0; q <= b; q++) {
				T[b * n + q] /= (double)n;
				K[b * n + q] += T[b * n + q];
			}
		if (!c->per_layer)
			continue;
		gspec[g] = xmalloc(xmul((size_t)n, sizeof(double)));
		if (sym_eigvals(T, (int)n, 0, gspec[g], NULL) < 0)
			die("%s: LAPACK dsyevd failed on group %s", ck->path, ck->m->group_names[g]);
		json_array_append_new(layers, stats_json(gspec[g], (int)n, rtol, c->top));
	}
}

/*
 * |mean gradient|^2 = 1^T K 1 / n, returned, and the centred Gram H K H
 * into T (unless no_centred), from K's lower triangle.
 */
static double
centre(const double *K, double *T, long n, int no_centred)
{
	double *rowmean = xcalloc((size_t)n, sizeof(double)), all = 0, gbar2;

	for (long b = 0; b < n; b++)
		for (long q = 0; q <= b; q++) {
			rowmean[b] += K[b * n + q];
			if (q < b)
				rowmean[q] += K[b * n + q];
		}
	for (long b = 0; b < n; b++) {
		all += rowmean[b];
		rowmean[b] /= (double)n;
	}
	gbar2 = all / (double)n;
	all /= (double)n * (double)n;
	for (long b = 0; b < n && !no_centred; b++)
		for (long q = 0; q <= b; q++)
			T[b * n + q] = K[b * n + q] - rowmean[b] - rowmean[q] + all;
	free(rowmean);
	return gbar2;
}

/* The spectra of one checkpoint's Gram matrices. */
struct spectra {
	double *ev, *evc;       /* (n) G's and the centred covariance's, descending */
	double **gspec;         /* (ngroups) each group's, with --per-layer */
	double gbar2;           /* |mean gradient|^2 */
	json_t *layers;         /* each group's statistics, with --per-layer */
};

/* Everything but the record: the Gram matrices, their spectra, the eigenvectors. */
static void
spectra_of(const struct config *c, const struct analysis_ckpt *ck, struct model_gram *G, long n,
    double rtol, struct spectra *sp)
{
	size_t nn = xmul(xmul((size_t)n, (size_t)n), sizeof(double));
	double *K = xmalloc_big(nn), *T = xmalloc_big(nn);

	memset(K, 0, nn);
	sp->ev = xmalloc(xmul((size_t)n, sizeof(double)));
	sp->evc = xmalloc(xmul((size_t)n, sizeof(double)));
	sp->gspec = xcalloc((size_t)ck->m->ngroups, sizeof *sp->gspec);
	sp->layers = c->per_layer ? json_array() : NULL;
	gram_sum(c, ck, G, n, rtol, K, T, sp->gspec, sp->layers);
	sp->gbar2 = centre(K, T, n, c->no_centred);
	if (!c->no_centred && sym_eigvals(T, (int)n, 0, sp->evc, NULL) < 0)
		die("%s: LAPACK dsyevd failed on the centred Gram matrix", ck->path);
	/* The full spectrum for the statistics; dsyevd keeps the vectors when asked. */
	if (c->eigvecs) {
		int k = c->neigvecs < n ? c->neigvecs : (int)n;
		double *vecs = xmalloc(xmul(xmul((size_t)n, (size_t)k), sizeof(double)));
		memcpy(T, K, nn);
		if (sym_eigvals(T, (int)n, k, sp->ev, vecs) < 0)
			die("%s: LAPACK failed on the Gram matrix", ck->path);
		write_eigvecs(c, ck, G, sp->ev, vecs, k, n);
		free(vecs);
	}
	if (sym_eigvals(K, (int)n, 0, sp->ev, NULL) < 0)
		die("%s: LAPACK dsyevd failed on the Gram matrix", ck->path);
	free(K);
	free(T);
}

static void
analyse(const struct config *c, const struct analysis *a, const char *path)
{
	struct analysis_ckpt ck;
	struct model_gram *G;
	struct model_diag *diag;
	struct model_eval e;
	struct spectra sp;
	const int32_t *x, *y;
	long n;
	int owned;
	double rtol;
	json_t *rec;

	analysis_open(a, path, c->data, c->any_data, &ck);
	dataset_rows(&a->d, c->set, &x, &y, &n, &owned);
	if (n == 0)
		die("%s: the %s set is empty", c->data, dataset_set_names[c->set]);
	if (n > MAX_ROWS)
		die("%s: %ld rows in the %s set; at most %d fit (K is n x n doubles)",
		    c->data, n, dataset_set_names[c->set], MAX_ROWS);
	rtol = c->rank_rtol >= 0 ? c->rank_rtol : (double)n * 0x1p-23;
	diag = model_diag_new(ck.m);
	G = model_gram_new(ck.m, ck.theta, x, y, n, GRAM_BUDGET, diag);
	e = model_gram_eval(G);
	spectra_of(c, &ck, G, n, rtol, &sp);

	rec = analysis_record("gop", &ck);
	json_object_set_new(rec, "set", json_string(dataset_set_names[c->set]));
	json_object_set_new(rec, "n", json_integer((json_int_t)n));
	json_object_set_new(rec, "loss", jnum(e.loss_sum / n));
	json_object_set_new(rec, "gop", stats_json(sp.ev, (int)n, rtol, c->top));
	json_object_set_new(rec, "mean_grad_sq", jnum(sp.gbar2));
	json_object_set_new(rec, "centred", c->no_centred ? json_null() : stats_json(sp.evc, (int)n, rtol, c->top));
	model_diag_json(diag, rec);
	if (sp.layers)
		json_object_set_new(rec, "layers", sp.layers);
	analysis_record_emit(rec, &ck);
	if (c->spectrum)
		write_spectrum(c, &ck, n, sp.ev, sp.evc, sp.gspec);
	for (int g = 0; g < ck.m->ngroups; g++)
		free(sp.gspec[g]);
	free(sp.gspec);
	free(sp.ev);
	free(sp.evc);
	model_diag_free(diag);
	model_gram_free(G);
	analysis_close(&ck);
	if (owned) {
		free((void *)x);
		free((void *)y);
	}
}

int
main(int argc, char **argv)
{
	struct config c;
	struct analysis a;
	char opt[32];

	setprogname(argv[0]);
	parse_args(&c, argc, argv);
	analysis_start(&a, argc, argv, optind, MAX_CKPTS, c.threads);
	analysis_need_step(&a, "--spectrum", c.spectrum);
	snprintf(opt, sizeof opt, "--eigvecs %d", c.neigvecs);
	analysis_need_step(&a, opt, c.eigvecs);
	analysis_load(&a, c.data);
	analysis_header(&a, "gop-spectrum", argc, argv, 0,
	    json_pack("{s:s, s:i, s:b, s:b, s:o, s:o, s:o}", "set", dataset_set_names[c.set],
	    "top", c.top, "per_layer", c.per_layer, "centred", !c.no_centred,
	    "rank_tol", c.rank_rtol >= 0 ? jnum(c.rank_rtol) : json_string("n * 2^-23"),
	    "spectrum", c.spectrum ? json_string(c.spectrum) : json_null(),
	    "eigvecs", c.eigvecs ? json_pack("{s:i, s:s}", "k", c.neigvecs, "file", c.eigvecs) : json_null()));
	for (size_t i = 0; i < a.n; i++)
		analyse(&c, &a, a.paths[i]);
	analysis_end(&a);
	return 0;
}
