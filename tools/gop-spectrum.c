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
#include "chol.h"
#include "ckpt.h"
#include "dataset.h"
#include "gram.h"
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
	int full;                /* every statistic from the whole spectrum (--full, --spectrum) */
	double rank_rtol;        /* < 0: n * 2^-23 (numpy's matrix_rank rule for float32) */
};

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: gop-spectrum --data FILE [--set train|test|all] [--top K] [--per-layer]\n"
	    "                    [--full] [--spectrum FILE] [--eigvecs K FILE] [options] [CKPT...]\n");
}

static void
help(void)
{
	usage(stdout);
	printf(
"\n"
"For each train-mlp or train-transformer checkpoint (the arguments, or\n"
"paths one per line on standard input), the spectrum of the gradient\n"
"outer product G = (1/n) sum_i g_i g_i^T over the per-example loss\n"
"gradients of a set, through the n x n Gram matrix K = (1/n) J J^T (same\n"
"non-zero spectrum), built layer by layer without forming J.  Also the\n"
"mean gradient's outer product |g|^2 and the centred covariance\n"
"G - g g^T.  One JSON-lines record per checkpoint after a header.\n"
"Deterministic: no seed.\n"
"\n"
"      --data FILE        the data set the checkpoints were trained on\n"
"      --set S            train (default), test or all\n"
"      --any-data         allow a data set other than the checkpoint's own\n"
"      --top K            eigenvalues listed, 1..100000 (default 10)\n"
"      --per-layer        each layer's own Gram matrix and statistics too\n"
"      --rank-tol R       numerical rank counts eigenvalues above R times the\n"
"                         largest (default n * 2^-23: gradients are float32)\n"
"      --full             every statistic from the whole spectrum (LAPACK's\n"
"                         dsyevd): adds the entropy effective rank and, for\n"
"                         a G short of full rank, the smallest eigenvalue,\n"
"                         condition number and log-determinant, which are\n"
"                         null without it\n"
"      --spectrum FILE    write every eigenvalue (safetensors, F64); with\n"
"                         several checkpoints FILE must contain {step};\n"
"                         implies --full\n"
"      --eigvecs K FILE   write the top K eigenvectors of G in parameter space\n"
"                         (J^T u / sqrt(n lambda)), named like the parameters\n"
"      --no-centred       skip the centred covariance (its statistics cost a\n"
"                         second pass of every route)\n"
"      --threads N        BLAS threads, 1..256 (default 1)\n"
"  -h, --help             show this help and exit\n"
"      --version          show the version and exit\n"
"\n"
"Without --full each statistic takes its cheapest exact route: trace and\n"
"Frobenius norm from K's entries, the top K by Lanczos, the smallest by\n"
"Lanczos on K^-1 (Cholesky), the rank as the inertia of K - tol I (LDL^T)\n"
"unless every eigenvalue is above tol, the log-determinant by Cholesky when\n"
"K has full rank; the centred covariance's from K's own factor when it\n"
"has (\"centring\": \"projection\"), else from the deflated matrix\n"
"(\"householder\"); each statistics object's \"routes\" names them.\n"
"\n"
"Memory is O(n^2) doubles (two n x n matrices), never O(P^2); at most\n"
"%d rows.\n"
CKPT_LIMITS_HELP
"\n"
"Exit status: 0 success, 1 runtime or data error, 2 usage error.\n"
"\n"
"Examples:\n"
"  gop-spectrum --data data.safetensors ckpt/step-*.safetensors > gop.jsonl\n"
"  gop-spectrum --data data.safetensors --spectrum 'spectrum-{step}.st' --per-layer ckpt/*.safetensors\n",
	    MAX_ROWS);
}

static void
parse_args(struct config *c, int argc, char **argv)
{
	enum { O_DATA = 256, O_SET, O_ANY, O_TOP, O_PERLAYER, O_RANKTOL, O_SPECTRUM, O_EIGVECS,
		O_THREADS, O_NOCENTRED, O_FULL, O_VERSION };
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
		{"full", no_argument, NULL, O_FULL},
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
		case O_FULL: c->full = 1; break;
		case 'h': help(); finish_stdout(); exit(0);
		case O_VERSION: printf("gop-spectrum %s\n", GROK_VERSION); finish_stdout(); exit(0);
		default: fprintf(stderr, "Try 'gop-spectrum --help' for more information.\n"); exit(EXIT_USAGE);
		}
	}
	if (!c->data)
		usage_error("--data FILE is required (the data set the checkpoints were trained on)");
	if (c->spectrum)
		c->full = 1;
}

/*
 * Lanczos stops when each of the top k eigenvalues' error bound is under
 * LANCZOS_TOL relative (Kato-Temple, CONVERGE_VALUE): well inside the
 * 1e-10 to which they must agree with the dense solver.  Past
 * LANCZOS_MAXIT products, or for k above n / LANCZOS_KFRAC, the dense
 * route is the cheaper one.
 */
#define LANCZOS_TOL 1e-12
#define LANCZOS_MAXIT 300
#define LANCZOS_KFRAC 4

/* Every statistic from the whole spectrum ev (descending): the full route. */
static json_t *
stats_full(const double *ev, int n, double rank_rtol, int top)
{
	struct spectrum_stats s;
	json_t *t = json_array(), *routes = json_object();
	const char *const names[] = {"trace", "frobenius", "spectral", "smallest", "rank", "condition",
	    "logdet", "effective_rank", "participation_ratio", "stable_rank", "top", NULL};

	spectrum_stats(ev, n, rank_rtol, &s);
	for (int i = 0; i < top && i < n; i++)
		json_array_append_new(t, jnum(ev[i]));
	for (int i = 0; names[i]; i++)
		json_object_set_new(routes, names[i], json_string("spectrum"));
	return json_pack("{s:o, s:o, s:o, s:o, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
	    "trace", jnum(s.trace), "frobenius", jnum(s.frobenius), "spectral", jnum(s.spectral),
	    "smallest", jnum(s.smallest), "rank", s.rank, "rank_tol", jnum(s.rank_tol),
	    "condition", jnum(s.condition), "logdet", jnum(s.logdet),
	    "effective_rank", jnum(s.effective_rank),
	    "participation_ratio", jnum(s.frobenius > 0 ? s.trace * s.trace / (s.frobenius * s.frobenius) : 0),
	    "stable_rank", jnum(s.stable_rank), "top", t, "routes", routes);
}

/*
 * What G's cheap route leaves for the centred covariance's: the top
 * Ritz vectors (a start that holds the centred matrix's top eigenvectors
 * but for a rank-one change) and, when the Cholesky factor certified
 * every eigenvalue above the tolerance, that factor (its strict upper
 * triangle in K's, its diagonal in ud), w = K^-1 1 and log det K.
 */
struct kfactor {
	int k;                  /* Ritz vectors in vecs (0: the top took dsyevr) */
	double *vecs;           /* (k, n) */
	int chol;
	double *ud, *w;         /* (n) */
	double logdet;
};

static void
kfactor_init(struct kfactor *kf, long n, int k)
{
	kf->k = 0;
	kf->vecs = xmalloc(xmul(xmul((size_t)n, (size_t)k), sizeof(double)));
	kf->chol = 0;
	kf->ud = xmalloc(xmul((size_t)n, sizeof(double)));
	kf->w = xmalloc(xmul((size_t)n, sizeof(double)));
	kf->logdet = NAN;
}

static void
kfactor_free(struct kfactor *kf)
{
	free(kf->vecs);
	free(kf->ud);
	free(kf->w);
}

/*
 * The top k eigenvalues into ev: Lanczos on M (its Ritz vectors into kf
 * unless NULL, its smallest Ritz value into *lowest, else HUGE_VAL), or
 * where it does not pay or does not converge, dsyevr on a copy.  Returns
 * the route's name.
 */
static const char *
top_eigs(const double *M, long n, int k, double *ev, int *iters, struct kfactor *kf, double *lowest,
    const char *what)
{
	size_t nn = xmul(xmul((size_t)n, (size_t)n), sizeof(double));
	double *W;

	*iters = 0;
	*lowest = HUGE_VAL;
	if ((long)k * LANCZOS_KFRAC <= n && sym_top_ritz(M, (int)n, k, 0, LANCZOS_TOL, LANCZOS_MAXIT, NULL, ev,
	    kf ? kf->vecs : NULL, lowest, iters) == 0) {
		if (kf)
			kf->k = k;
		return "lanczos";
	}
	W = xmalloc_big(nn);
	memcpy(W, M, nn);
	if (sym_eigvals(W, (int)n, k, ev, NULL) != k)
		die("%s: LAPACK dsyevr failed", what);
	free(W);
	return "dsyevr";
}

/* What the cheap route found beyond the entries and the top k. */
struct low_end {
	int rank;
	double smallest, logdet;           /* NAN when no exact cheap route gives them */
	const char *rank_route, *small_route, *logdet_route;
	int products;                      /* Lanczos products on M^-1 */
};

/* The smallest squared diagonal entry of the Cholesky factor in M's diagonal. */
static double
min_pivot(const double *M, long n)
{
	double m = HUGE_VAL;

	for (long i = 0; i < n; i++)
		m = fmin(m, M[i * n + i] * M[i * n + i]);
	return m;
}

/* M's Cholesky factor (in place) for the centred route: its diagonal, K^-1 1, log det. */
static void
keep_factor(const double *M, long n, double logdet, struct kfactor *kf)
{
	for (long i = 0; i < n; i++) {
		kf->ud[i] = M[i * n + i];
		kf->w[i] = 1;
	}
	sym_chol_solve(M, (int)n, kf->w);
	kf->logdet = logdet;
	kf->chol = 1;
}

/*
 * Rank, smallest eigenvalue and log-determinant of M for the rank
 * tolerance tol.  M = L L^T by Cholesky and the smallest eigenvalue by
 * Lanczos on M^-1 through L: if it is above tol, every eigenvalue counts,
 * and the log-determinant is L's.  Otherwise (or if M is not definite)
 * the rank is the inertia of M - tol I, and the smallest eigenvalue,
 * the smallest counted one and the log-determinant over them need the
 * spectrum.  With deficient (a guess: the answer does not depend on it)
 * the inertia comes first.
 */
static void
low_end(double *M, double *d, long n, double tol, int deficient, struct low_end *le, struct kfactor *kf,
    const char *what)
{
	double logdet = 0, lmin = 0, *scratch;
	int full;

	*le = (struct low_end){0, NAN, NAN, NULL, NULL, NULL, 0};
	/* Expected short of full rank: the inertia first, which settles it with one factorisation. */
	if (deficient) {
		if ((le->rank = sym_count_above(M, (int)n, tol, d)) < 0)
			die("%s: LAPACK dsytrf failed", what);
		le->rank_route = "inertia";
		if (le->rank < n) {
			le->logdet = le->rank == 0 ? 0 : NAN;
			le->logdet_route = le->rank == 0 ? "inertia" : NULL;
			return;
		}
	}
	/*
	 * Above tol the inverse is conditioned to 1 / rank_rtol at worst: its
	 * Ritz value is exact.  Each pivot L_ii^2 is a Schur complement's,
	 * at least the smallest eigenvalue: one at or below tol proves the
	 * rank short of n without the products on the inverse.
	 */
	scratch = xmalloc(xmul(chol_scratch((int)n), sizeof(double)));
	full = n > 0 && tol > 0 && chol_upper(M, (int)n, d, &logdet, scratch) == 0 && min_pivot(M, n) > tol
	    && sym_bottom_chol(M, (int)n, LANCZOS_TOL, LANCZOS_MAXIT, &lmin, &le->products) == 0
	    && lmin > tol;
	free(scratch);
	if (full && kf)
		keep_factor(M, n, logdet, kf);
	if (n > 0 && tol > 0)
		sym_restore_diag(M, (int)n, d);
	if (full) {
		*le = (struct low_end){(int)n, lmin, logdet, "lanczos-inverse", "lanczos-inverse",
		    "cholesky", le->products};
		return;
	}
	if (deficient)
		return;                 /* rank n by inertia, yet the smallest not certified above tol */
	if ((le->rank = sym_count_above(M, (int)n, tol, d)) < 0)
		die("%s: LAPACK dsytrf failed", what);
	le->rank_route = "inertia";
	if (le->rank == 0) {
		le->logdet = 0;         /* the empty sum */
		le->logdet_route = "inertia";
	}
}

/*
 * The record's statistics object of a cheap route: trace and Frobenius
 * norm from the entries, the top k (ev, by troute after iters products),
 * the low end le for the rank tolerance tol.  What no cheap route gave is
 * null, with route null.
 */
static json_t *
stats_json(double tr, double fro, const double *ev, int k, const char *troute, int iters, double tol, long n,
    const struct low_end *le)
{
	const char *croute = le->rank == n && le->logdet_route ? "lanczos/lanczos-inverse" : NULL;
	json_t *t = json_array(), *r;

	for (int i = 0; i < k; i++)
		json_array_append_new(t, jnum(ev[i]));
	r = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s?, s:s?, s:n, s:s, s:s, s:s, s:i, s:i}",
	    "trace", "matrix", "frobenius", "matrix", "spectral", troute, "smallest", le->small_route,
	    "rank", le->rank_route, "condition", croute, "logdet", le->logdet_route, "effective_rank",
	    "participation_ratio", "matrix", "stable_rank", troute, "top", troute,
	    "lanczos_products", iters, "inverse_products", le->products);
	return json_pack("{s:o, s:o, s:o, s:o, s:i, s:o, s:o, s:o, s:n, s:o, s:o, s:o, s:o}",
	    "trace", jnum(tr), "frobenius", jnum(fro), "spectral", jnum(ev[0]),
	    "smallest", le->small_route ? jnum(le->smallest) : json_null(), "rank", le->rank,
	    "rank_tol", jnum(tol), "condition", croute ? jnum(ev[0] / le->smallest) : json_null(),
	    "logdet", le->logdet_route ? jnum(le->logdet) : json_null(), "effective_rank",
	    "participation_ratio", jnum(fro > 0 ? tr * tr / (fro * fro) : 0),
	    "stable_rank", jnum(ev[0] > 0 ? fro * fro / (ev[0] * ev[0]) : 0), "top", t, "routes", r);
}

/*
 * The statistics of M (lower triangle) without its spectrum, each
 * by its cheapest exact route (docs/design.md): trace and Frobenius norm
 * from the entries, the top k by Lanczos, the low end by low_end.  What
 * no cheap route gives exactly (the entropy effective rank always; the
 * condition number and log-determinant of a rank-deficient M) is null,
 * with route null: --full computes it.  The factorisations overwrite M's
 * upper triangle (its lower triangle and diagonal are kept); d is n
 * doubles of scratch; deficient as low_end's.  tf: M's trace and
 * Frobenius norm when the caller has them (gram_sums), else NULL.
 */
static json_t *
stats_cheap(double *M, double *d, long n, double rank_rtol, int top, int deficient, struct kfactor *kf,
    const double *tf, const char *what)
{
	int k = top < n ? top : (int)n, iters;
	double *ev = xmalloc(xmul((size_t)k, sizeof(double))), tr, fro, tol, lowest;
	const char *troute;
	struct low_end le;
	json_t *s;

	/* A non-finite entry makes one of these non-finite (as dsyevd's check on the full route). */
	if (tf) {
		tr = tf[0];
		fro = tf[1];
	} else {
		gram_sums(M, (int)n, NULL, &tr, &fro);
	}
	if (!isfinite(tr) || !isfinite(fro))
		die("%s: an entry is not finite", what);
	troute = top_eigs(M, n, k, ev, &iters, kf, &lowest, what);
	tol = rank_rtol * fmax(ev[0], 0.0);
	/*
	 * A Ritz value is at least the smallest eigenvalue: one at or below
	 * tol proves the rank short of n, and the Cholesky factorisation
	 * would be in vain (a large null space shows within a few steps).
	 */
	low_end(M, d, n, tol, deficient || lowest <= tol, &le, kf, what);
	s = stats_json(tr, fro, ev, k, troute, iters, tol, n, &le);
	free(ev);
	return s;
}

/*
 * M's statistics (lower triangle; destroyed on the full route): from its
 * whole spectrum, kept in *spec (malloc'd), when c->full, else cheap.
 */
static json_t *
stats_of(const struct config *c, double *M, double *d, long n, double rtol, double **spec, const char *what)
{
	if (!c->full)
		return stats_cheap(M, d, n, rtol, c->top, 0, NULL, NULL, what);
	*spec = xmalloc(xmul((size_t)n, sizeof(double)));
	if (sym_eigvals(M, (int)n, 0, *spec, NULL) < 0)
		die("%s: LAPACK dsyevd failed", what);
	return stats_full(*spec, (int)n, rtol, c->top);
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
 * K = (1/n) sum over the model's groups of each group's Gram term, each
 * added into K as the kernel forms it, and K's row sums (rowsum, n),
 * trace and Frobenius norm (tf) in one pass after.  With --per-layer,
 * each group's term divided by n in T (scratch, d n doubles of it), its
 * statistics (into layers) and with --full its spectrum (gspec[g]).
 */
static void
gram_sum(const struct config *c, const struct analysis_ckpt *ck, struct model_gram *G, long n,
    double rtol, double *K, double *T, double *d, double **gspec, json_t *layers, double *rowsum, double *tf)
{
	int groups = ck->m->ngroups;

	for (int g = 0; g < groups; g++) {
		char what[512];
		if (!c->per_layer) {
			/* the first term undivided, then divided in the second's pass: the same bits as one by one */
			model_gram_group(G, g, K, g == 0 ? (groups > 1 ? GRAM_RAW : GRAM_SET) :
			    g == 1 ? GRAM_RESCALE_ADD : GRAM_ADD);
			continue;
		}
		model_gram_group(G, g, T, GRAM_SET);
		for (long b = 0; b < n; b++)
			for (long q = 0; q <= b; q++)
				K[b * n + q] = g == 0 ? T[b * n + q] : K[b * n + q] + T[b * n + q];
		snprintf(what, sizeof what, "%s: group %s", ck->path, ck->m->group_names[g]);
		json_array_append_new(layers, stats_of(c, T, d, n, rtol, &gspec[g], what));
	}
	gram_sums(K, (int)n, rowsum, &tf[0], &tf[1]);
}

/*
 * |mean gradient|^2 = 1^T K 1 / n, returned, from K's row sums (rowsum,
 * made row means in place) and their mean into *all; and the centred
 * Gram H K H into T (unless no_centred), from K's lower triangle.
 */
static double
centre(const double *K, double *T, long n, int no_centred, double *rowmean, double *all)
{
	double sum = 0;

	for (long b = 0; b < n; b++) {
		sum += rowmean[b];
		rowmean[b] /= (double)n;
	}
	*all = sum / ((double)n * (double)n);
	for (long b = 0; b < n && !no_centred; b++)
		for (long q = 0; q <= b; q++)
			T[b * n + q] = K[b * n + q] - rowmean[b] - rowmean[q] + *all;
	return sum / (double)n;
}

/* The statistics of one checkpoint's Gram matrices, and with --full their spectra. */
struct spectra {
	double *ev, *evc;       /* (n) G's and the centred covariance's, descending (--full) */
	double **gspec;         /* (ngroups) each group's, with --per-layer and --full */
	double gbar2;           /* |mean gradient|^2 */
	json_t *gop, *centred;  /* the statistics of G and of the centred covariance */
	json_t *layers;         /* each group's statistics, with --per-layer */
};

/*
 * The centred covariance's statistics.  Its Gram H K H has the ones
 * vector as an exact null vector, which would make every cheap route of
 * the low end see a rank-deficient matrix; the cheap route works instead
 * on K on the complement of the ones vector (sym_deflate_ones, (n-1)^2
 * into T), whose spectrum is H K H's less that zero.  So its smallest
 * eigenvalue (that zero, at rounding level on the full route) is null;
 * with --top n or more the zero ends the list.  By interlacing its
 * eigenvalues are at most K's, so when K's rank was short of n
 * (deficient) this one's likely is too; only likely, since its tolerance
 * is lower when the mean gradient dominates K, and the answer does not
 * depend on the guess.  The full route (--full) takes H K H's spectrum,
 * built into T by centre().
 */
static json_t *
centred_stats(const struct config *c, double *K, double *T, double *d, long n, double rtol,
    double **spec, int deficient, const char *what)
{
	json_t *s, *routes;

	if (c->full || n < 2) {
		double *rowmean = xmalloc(xmul((size_t)n, sizeof(double))), all, tf[2];
		gram_sums(K, (int)n, rowmean, &tf[0], &tf[1]);
		centre(K, T, n, 0, rowmean, &all);
		free(rowmean);
		return stats_of(c, T, d, n, rtol, spec, what);
	}
	sym_deflate_ones(K, (int)n, T, d);
	s = stats_cheap(T, d, n - 1, rtol, c->top, deficient, NULL, NULL, what);
	if (c->top >= n)
		json_array_append_new(json_object_get(s, "top"), json_real(0.0));
	routes = json_object_get(s, "routes");
	json_object_set_new(s, "smallest", json_null());
	json_object_set_new(routes, "smallest", json_null());
	json_object_set_new(routes, "centring", json_string("householder"));
	return s;
}

/*
 * The centred covariance's statistics by projection, when K's Cholesky
 * certified every eigenvalue of K above its tolerance (kf->chol): the top
 * k by Lanczos on H K H itself, started from K's top Ritz vectors
 * projected (the two matrices differ by the mean gradient's rank-one
 * part); the smallest eigenvalue on the ones vector's complement by
 * Lanczos on its inverse through K's factor (sym_bottom_centred_chol);
 * the log-determinant there as K's plus log(1^T K^-1 1 / n).  No n x n
 * matrix is built and nothing is factorised again.  By interlacing that
 * smallest is at least K's, so every one of the n - 1 eigenvalues counts;
 * it is checked all the same, and when it fails (or Lanczos does not
 * converge, or the top is too large a part of the spectrum for Lanczos)
 * NULL: the deflation route.  K's diagonal is swapped with the factor's
 * for the inverse products (d: n doubles) and restored.
 */
static json_t *
centred_projected(const struct config *c, double *K, double *d, long n, double rtol, const double *rowmean,
    double all, const struct kfactor *kf)
{
	int k = c->top < n - 1 ? c->top : (int)n - 1, iters, inv;
	double *ev, *v0, tr, fro, tol, lmin = NAN, s1 = 0;
	struct low_end le = {0};
	json_t *s = NULL;

	if (!kf->chol || n < 2 || (long)k * LANCZOS_KFRAC > n - 1)
		return NULL;
	/* each entry as centre() makes it */
	gram_centred_sums(K, (int)n, rowmean, all, &tr, &fro);
	ev = xmalloc(xmul((size_t)k, sizeof(double)));
	v0 = xcalloc((size_t)n, sizeof(double));
	for (int e = 0; e < kf->k; e++)
		for (long i = 0; i < n; i++)
			v0[i] += kf->vecs[(size_t)e * n + i];
	for (long i = 0; i < n; i++)
		s1 += v0[i];
	for (long i = 0; i < n; i++)
		v0[i] -= s1 / (double)n;
	if (sym_top_ritz(K, (int)n, k, 1, LANCZOS_TOL, LANCZOS_MAXIT, kf->k ? v0 : NULL, ev, NULL, NULL, &iters) != 0)
		goto out;
	tol = rtol * fmax(ev[0], 0.0);
	for (long i = 0; i < n; i++) {
		d[i] = K[i * n + i];
		K[i * n + i] = kf->ud[i];
	}
	inv = sym_bottom_centred_chol(K, (int)n, kf->w, LANCZOS_TOL, LANCZOS_MAXIT, &lmin, &le.products);
	sym_restore_diag(K, (int)n, d);
	if (inv != 0 || !(lmin > tol))
		goto out;
	s1 = 0;
	for (long i = 0; i < n; i++)
		s1 += kf->w[i];
	le = (struct low_end){(int)n - 1, lmin, kf->logdet + log(s1 / (double)n), "lanczos-inverse", NULL,
	    "cholesky", le.products};
	s = stats_json(tr, fro, ev, k, "lanczos", iters, tol, n - 1, &le);
	json_object_set_new(json_object_get(s, "routes"), "centring", json_string("projection"));
out:
	free(ev);
	free(v0);
	return s;
}

/* The top k eigenpairs of K (destroyed) for --eigvecs, by dsyevr. */
static void
eigvecs_of(const struct config *c, const struct analysis_ckpt *ck, struct model_gram *G, double *K, long n)
{
	int k = c->neigvecs < n ? c->neigvecs : (int)n;
	double *vecs = xmalloc(xmul(xmul((size_t)n, (size_t)k), sizeof(double)));
	double *ev = xmalloc(xmul((size_t)n, sizeof(double)));

	if (sym_eigvals(K, (int)n, k, ev, vecs) < 0)
		die("%s: LAPACK failed on the Gram matrix", ck->path);
	write_eigvecs(c, ck, G, ev, vecs, k, n);
	free(vecs);
	free(ev);
}

/* Everything but the record: the Gram matrices, their statistics, the eigenvectors. */
static void
spectra_of(const struct config *c, const struct analysis_ckpt *ck, struct model_gram *G, long n,
    double rtol, struct spectra *sp)
{
	size_t nn = xmul(xmul((size_t)n, (size_t)n), sizeof(double));
	double *K = xmalloc_big(nn), *T = xmalloc_big(nn), *d = xmalloc(xmul((size_t)n, sizeof(double)));
	double *rowmean = xmalloc(xmul((size_t)n, sizeof(double))), all, tf[2];
	struct kfactor kf;
	char what[512];
	int deficient;

	memset(sp, 0, sizeof *sp);
	sp->gspec = xcalloc((size_t)ck->m->ngroups, sizeof *sp->gspec);
	sp->layers = c->per_layer ? json_array() : NULL;
	gram_sum(c, ck, G, n, rtol, K, T, d, sp->gspec, sp->layers, rowmean, tf);
	sp->gbar2 = centre(K, T, n, 1, rowmean, &all);
	snprintf(what, sizeof what, "%s: the Gram matrix", ck->path);
	kfactor_init(&kf, n, c->top < n ? c->top : (int)n);
	/* The cheap route keeps K (its upper triangle aside); the full one destroys it, so comes last. */
	if (!c->full)
		sp->gop = stats_cheap(K, d, n, rtol, c->top, 0, c->no_centred ? NULL : &kf, tf, what);
	deficient = sp->gop && json_integer_value(json_object_get(sp->gop, "rank")) < n;
	snprintf(what, sizeof what, "%s: the centred Gram matrix", ck->path);
	if (c->no_centred)
		sp->centred = json_null();
	else if (c->full || !(sp->centred = centred_projected(c, K, d, n, rtol, rowmean, all, &kf)))
		sp->centred = centred_stats(c, K, T, d, n, rtol, &sp->evc, deficient, what);
	if (c->eigvecs) {
		memcpy(T, K, nn);
		eigvecs_of(c, ck, G, T, n);
	}
	snprintf(what, sizeof what, "%s: the Gram matrix", ck->path);
	if (c->full)
		sp->gop = stats_of(c, K, d, n, rtol, &sp->ev, what);
	kfactor_free(&kf);
	free(rowmean);
	free(K);
	free(T);
	free(d);
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
	json_object_set_new(rec, "gop", sp.gop);
	json_object_set_new(rec, "mean_grad_sq", jnum(sp.gbar2));
	json_object_set_new(rec, "centred", sp.centred);
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
	    json_pack("{s:s, s:i, s:b, s:b, s:b, s:o, s:o, s:o}", "set", dataset_set_names[c.set],
	    "top", c.top, "per_layer", c.per_layer, "centred", !c.no_centred, "full", c.full,
	    "rank_tol", c.rank_rtol >= 0 ? jnum(c.rank_rtol) : json_string("n * 2^-23"),
	    "spectrum", c.spectrum ? json_string(c.spectrum) : json_null(),
	    "eigvecs", c.eigvecs ? json_pack("{s:i, s:s}", "k", c.neigvecs, "file", c.eigvecs) : json_null()));
	for (size_t i = 0; i < a.n; i++)
		analyse(&c, &a, a.paths[i]);
	analysis_end(&a);
	return 0;
}
