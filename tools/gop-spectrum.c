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
#include "mlp.h"
#include "opts.h"
#include "st.h"
#include "util.h"

#define MAX_CKPTS 100000
#define MAX_ROWS 30000       /* K is n x n doubles: 7 GB at this bound */

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
write_eigvecs(const struct config *c, const struct mlp *m, struct mlp_work *w,
    const double *ev, const double *vecs, int k, long n, const int32_t *x,
    long long step, const char *digest)
{
	size_t P = m->nparams;
	char *path = ckpt_step_path(c->eigvecs, step);
	double *u = xmalloc(xmul((size_t)n, sizeof(double)));
	double *pv = xcalloc(xmul(P, (size_t)k), sizeof(double));

	for (int e = 0; e < k; e++) {
		/* unit, since |J^T u|^2 = u^T J J^T u = n lambda */
		double scale = ev[e] > 0 ? 1.0 / sqrt((double)n * ev[e]) : 0.0;
		for (long b = 0; b < n; b++)
			u[b] = vecs[(size_t)b * k + e];
		mlp_gram_combine(m, w, pv + (size_t)e * P, u, x, (int)n);
		for (size_t q = 0; q < P; q++)
			pv[(size_t)e * P + q] *= scale;
	}
	ckpt_write_eigvecs(path, m, pv, ev, k, "gop-spectrum " GROK_VERSION, step, digest);
	free(u);
	free(pv);
	free(path);
}

static void
write_spectrum(const struct config *c, long long step, const char *digest, long n,
    double *const *spectra, const char *const *names, int count)
{
	char *path = ckpt_step_path(c->spectrum, step), buf[32];
	struct st_writer sw;
	int64_t shape[1] = {n};

	st_writer_init(&sw);
	for (int i = 0; i < count; i++)
		st_writer_add(&sw, names[i], ST_F64, 1, shape, spectra[i]);
	st_writer_meta(&sw, "format", "grokkit-spectrum-v1");
	st_writer_meta(&sw, "tool", "gop-spectrum " GROK_VERSION);
	snprintf(buf, sizeof buf, "%lld", step);
	st_writer_meta(&sw, "step", buf);
	st_writer_meta(&sw, "checkpoint_sha256", digest);
	if (ckpt_write_file(&sw, path) < 0)
		die("error writing %s:", path);
	st_writer_free(&sw);
	free(path);
}

static void
analyse(const struct config *c, const struct dataset *d, const char *path)
{
	struct mlp m;
	struct mlp_work *w;
	char err[ST_ERRLEN], hex[65], run_id[17];
	const int32_t *x, *y;
	long long step;
	long n;
	int owned, nspec = 0;
	float *theta;
	double t0 = now_seconds(), rtol, *K, *T, *scratch, *ev, *evc, *vecs = NULL, gbar2 = 0;
	double *spectra[2 + MLP_MAX_DEPTH + 1], *lspec[MLP_MAX_DEPTH + 1];
	const char *snames[2 + MLP_MAX_DEPTH + 1];
	char lnames[MLP_MAX_DEPTH + 1][32];
	json_t *rec, *layers = NULL;
	struct mlp_eval e;
	int *units;

	if (ckpt_open(path, d, c->data, c->any_data, &m, &theta, &step, hex, run_id, err, sizeof err) < 0)
		die("%s", err);
	dataset_rows(d, c->set, &x, &y, &n, &owned);
	if (n == 0)
		die("%s: the %s set is empty", c->data, dataset_set_names[c->set]);
	if (n > MAX_ROWS)
		die("%s: %ld rows in the %s set; at most %d fit (K is n x n doubles)",
		    c->data, n, dataset_set_names[c->set], MAX_ROWS);
	rtol = c->rank_rtol >= 0 ? c->rank_rtol : (double)n * 0x1p-23;
	w = mlp_work_new(&m, (int)n, 1);
	K = xmalloc_big(xmul(xmul((size_t)n, (size_t)n), sizeof(double)));
	T = xmalloc_big(xmul(xmul((size_t)n, (size_t)n), sizeof(double)));
	scratch = xmalloc_big(xmul(xmul((size_t)n, (size_t)n), sizeof(double)));
	memset(K, 0, xmul(xmul((size_t)n, (size_t)n), sizeof(double)));
	ev = xmalloc(xmul((size_t)n, sizeof(double)));
	evc = xmalloc(xmul((size_t)n, sizeof(double)));

	/*
	 * K = (1/n) sum over layers of each layer's Gram term, from one
	 * forward and backward pass (which gives the loss too), with the units
	 * dead on every row dropped: their columns add nothing to any dot
	 * product, and the Gram products shrink.
	 */
	mlp_hvp_prepare(&m, w, theta, x, y, (int)n, 1.0f);
	e = w->prepared;
	units = xcalloc(xmul((size_t)m.c.depth + 1, (size_t)m.c.width), sizeof *units);
	mlp_mark_live(&m, w, (int)n, units);
	mlp_hvp_compact(&m, w, theta);
	if (c->per_layer)
		layers = json_array();
	for (int i = 0; i < m.nlayers; i++) {
		mlp_gram_layer(&m, w, i, T, x, (int)n, scratch);
		for (long b = 0; b < n; b++)
			for (long q = 0; q <= b; q++) {
				T[b * n + q] /= (double)n;
				K[b * n + q] += T[b * n + q];
			}
		if (c->per_layer) {
			double *lev = xmalloc(xmul((size_t)n, sizeof(double)));
			if (sym_eigvals(T, (int)n, 0, lev, NULL) < 0)
				die("%s: LAPACK dsyevd failed on layer %d", path, i);
			json_array_append_new(layers, stats_json(lev, (int)n, rtol, c->top));
			snprintf(lnames[i], sizeof lnames[i], "layers.%d", i);
			lspec[i] = lev;
		}
	}
	/* |mean gradient|^2 = 1^T K 1 / n, and the centred Gram H K H, from K's lower triangle */
	{
		double *rowmean = xcalloc((size_t)n, sizeof(double)), all = 0;
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
		for (long b = 0; b < n && !c->no_centred; b++)
			for (long q = 0; q <= b; q++)
				T[b * n + q] = K[b * n + q] - rowmean[b] - rowmean[q] + all;
		free(rowmean);
	}
	if (c->eigvecs)
		vecs = xmalloc(xmul(xmul((size_t)n, (size_t)(c->neigvecs < n ? c->neigvecs : n)), sizeof(double)));
	if (!c->no_centred && sym_eigvals(T, (int)n, 0, evc, NULL) < 0)
		die("%s: LAPACK dsyevd failed on the centred Gram matrix", path);
	/* The full spectrum for the statistics; dsyevd keeps the vectors when asked. */
	if (c->eigvecs) {
		int k = c->neigvecs < n ? c->neigvecs : (int)n;
		memcpy(T, K, xmul(xmul((size_t)n, (size_t)n), sizeof(double)));
		if (sym_eigvals(T, (int)n, k, ev, vecs) < 0)
			die("%s: LAPACK failed on the Gram matrix", path);
		/* J^T u needs the full layout: prepare again, without compacting */
		mlp_hvp_prepare(&m, w, theta, x, y, (int)n, 1.0f);
		write_eigvecs(c, &m, w, ev, vecs, k, n, x, step, hex);
	}
	if (sym_eigvals(K, (int)n, 0, ev, NULL) < 0)
		die("%s: LAPACK dsyevd failed on the Gram matrix", path);

	rec = json_pack("{s:s, s:s, s:s, s:I, s:i, s:i, s:I, s:s, s:I, s:o, s:o, s:o, s:o}",
	    "record", "gop", "checkpoint", path, "checkpoint_sha256", hex, "step", (json_int_t)step,
	    "depth", m.c.depth, "width", m.c.width, "params", (json_int_t)m.nparams,
	    "set", dataset_set_names[c->set], "n", (json_int_t)n, "loss", jnum(e.loss_sum / n),
	    "gop", stats_json(ev, (int)n, rtol, c->top),
	    "mean_grad_sq", jnum(gbar2),
	    "centred", c->no_centred ? json_null() : stats_json(evc, (int)n, rtol, c->top));
	json_object_set_new(rec, "dead_units", analysis_dead_units(&m, units));
	free(units);
	if (layers)
		json_object_set_new(rec, "layers", layers);
	json_object_set_new(rec, "run_id", run_id[0] ? json_string(run_id) : json_null());
	json_object_set_new(rec, "seconds", jnum(now_seconds() - t0));
	json_object_set_new(rec, "peak_rss_mib", peak_rss_mib() < 0 ? json_null() : jnum(peak_rss_mib()));
	jsonl_emit(stdout, rec);
	if (c->spectrum) {
		spectra[0] = ev;
		snames[0] = "gop";
		nspec = 1;
		if (!c->no_centred) {
			spectra[nspec] = evc;
			snames[nspec++] = "centred";
		}
		if (c->per_layer) {
			for (int i = 0; i < m.nlayers; i++) {
				spectra[nspec] = lspec[i];
				snames[nspec++] = lnames[i];
			}
		}
		write_spectrum(c, step, hex, n, spectra, snames, nspec);
	}
	if (c->per_layer)
		for (int i = 0; i < m.nlayers; i++)
			free(lspec[i]);
	free(K);
	free(T);
	free(scratch);
	free(ev);
	free(evc);
	free(vecs);
	free(theta);
	mlp_work_free(w);
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
		analyse(&c, &a.d, a.paths[i]);
	analysis_end(&a);
	return 0;
}
