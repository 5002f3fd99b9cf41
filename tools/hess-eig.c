/*
 * hess-eig: the Hessian spectrum of train-mlp checkpoints.
 *
 * For each checkpoint (of any model family), the extreme eigenvalues of the Hessian of the mean
 * training (or test, or all) loss, by Lanczos with full
 * reorthogonalisation over exact Hessian-vector products; optionally the
 * trace (Hutchinson) and the spectral density (stochastic Lanczos
 * quadrature).  One JSON-lines record per checkpoint, after a header.
 * The curvature views: the same of the Gauss-Newton matrix (--matrix
 * ggn), per tensor group (--blocks: each diagonal block's top eigenvalues
 * and trace), the gradient's share in the top eigenvectors' span
 * (--alignment) and the optimiser's stability threshold with the
 * preconditioned sharpness it bounds (--precond).
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
#include "model.h"
#include "optim.h"
#include "opts.h"
#include "rng.h"
#include "st.h"
#include "util.h"

#define MAX_CKPTS 100000

enum method { METHOD_LANCZOS, METHOD_POWER };
static const char *const method_names[] = {"lanczos", "power", NULL};
enum start { START_RANDOM, START_PREVIOUS };
static const char *const start_names[] = {"random", "previous", NULL};

/*
 * --start previous: the Gaussian's weight against the guides' (see
 * lanczos_eigs_start).  Small enough that good guides dominate the start
 * vector, large enough that an eigenvector the guides miss (one that
 * appeared since the previous checkpoint) is in the Krylov space at a
 * share that Lanczos amplifies in a few steps like any other.
 */
#define WARM_NOISE 0.1

struct config {
	const char *data, *eigvecs;
	enum dataset_set set;
	enum method method;
	enum start start;
	enum eig_which which;
	enum eig_converge converge;
	int top, max_iter, probes, slq_iter, slq_probes, grid, threads, trace, density, any_data;
	int blocks, block_top, alignment, precond;
	enum model_matrix matrix;
	long batch;
	double tol, sigma2;
	uint64_t seed;
};

/*
 * --start previous: one solve's top Ritz vectors at the last checkpoint,
 * in the layout they are kept in (N long: the full layout, or a block's),
 * to start the same solve's Lanczos at the next checkpoint when it has
 * the same parameters (a run's checkpoints in order: its curvature moves
 * little from one to the next).
 */
struct warm {
	const struct model_family *family;
	size_t P, N;                 /* the model's parameters; the vectors' length */
	int k;                       /* 0 before the first solve */
	long long step;
	char run_id[17];
	double *vecs;                /* (k, N) */
};

/* Every solve's warm start: the main one, --precond's, and each --blocks group's. */
struct walk {
	struct warm main, precond, *block;
	int nblock;
};

/*
 * The operator y = H x for one checkpoint.  Each part of the set (train,
 * test) has its own HVP session; a part that fits one batch is prepared
 * once (and restricted to the parameters that matter there, when the
 * model has such a view) and each product then only runs the R-passes on
 * what is left.
 */
struct hess {
	const struct model *m;
	struct model_hvp *h[2];
	struct model_point *pt[2];   /* the part prepared once, or NULL */
	struct model_view *view[2];  /* its restriction, or NULL */
	const int32_t *x[2], *y[2];
	long rows[2];
	long n;                      /* rows in the whole set */
	const float *theta;
	float *vf, *hf, *tmp;
	double *grad;                /* (P) the set's mean gradient */
	enum model_matrix mat;       /* the Hessian or the Gauss-Newton matrix */
	int live;                    /* the part whose view the eigensolver uses, or -1 */
};

static void
hess_apply(void *ctx, double *y, const double *x)
{
	struct hess *h = ctx;
	size_t P = h->m->nparams;

	for (size_t k = 0; k < P; k++) {
		h->vf[k] = (float)x[k];
		h->hf[k] = 0.0f;
	}
	for (int s = 0; s < 2; s++) {
		if (!h->h[s])
			continue;
		if (h->view[s])
			model_view_product_full(h->view[s], h->mat, h->hf, h->vf, h->tmp);
		else if (h->pt[s])
			model_point_product(h->pt[s], h->mat, h->hf, h->vf);
		else
			model_product_set(h->h[s], h->mat, h->hf, h->theta, h->vf, h->x[s], h->y[s],
			    h->rows[s], 1.0 / h->n, h->tmp);
	}
	for (size_t k = 0; k < P; k++)
		y[k] = h->hf[k];
}

/*
 * y = H x in the view's layout: one part, prepared once, restricted.  H
 * is exactly zero on every other parameter's row and column, so its
 * spectrum there is that of the full Hessian less P - n exact zeros; the
 * eigensolver's vectors are shorter, and its reorthogonalisation reads
 * less.
 */
static void
hess_apply_view(void *ctx, double *y, const double *x)
{
	struct hess *h = ctx;
	struct model_view *view = h->view[h->live];
	size_t n = view->nparams;

	for (size_t k = 0; k < n; k++) {
		h->vf[k] = (float)x[k];
		h->hf[k] = 0.0f;
	}
	model_view_product(view, h->mat, h->hf, h->vf);
	for (size_t k = 0; k < n; k++)
		y[k] = h->hf[k];
}

/*
 * After loss_and_grad_norm: the operator the eigensolver can use on the
 * view alone, if the set is one part prepared once that has a view with
 * at least k parameters; 0 if not.
 */
static int
hess_live(struct hess *h, int k, struct linop *A)
{
	int s = h->h[0] ? 0 : 1;

	h->live = -1;
	if ((h->h[0] && h->h[1]) || !h->view[s] || h->view[s]->nparams < (size_t)k)
		return 0;
	h->live = s;
	*A = (struct linop){h->view[s]->nparams, hess_apply_view, h, 0};
	return 1;
}

static void
hess_init(struct hess *h, const struct model *m, const struct dataset *d, enum dataset_set set,
    const float *theta, long batch, enum model_matrix mat)
{
	memset(h, 0, sizeof *h);
	h->m = m;
	h->mat = mat;
	h->theta = theta;
	h->x[0] = d->train_x;
	h->y[0] = d->train_y;
	h->rows[0] = set != SET_TEST ? d->n_train : 0;
	h->x[1] = d->test_x;
	h->y[1] = d->test_y;
	h->rows[1] = set != SET_TRAIN ? d->n_test : 0;
	h->n = h->rows[0] + h->rows[1];
	for (int s = 0; s < 2; s++)
		if (h->rows[s] > 0)
			h->h[s] = model_hvp_new(m, (int)(h->rows[s] < batch ? h->rows[s] : batch));
	h->vf = xmalloc(xmul(m->nparams, sizeof(float)));
	h->hf = xmalloc(xmul(m->nparams, sizeof(float)));
	h->tmp = xmalloc(xmul(2 * m->nparams, sizeof(float)));
	h->grad = xcalloc(m->nparams, sizeof(double));
}

static void
hess_free(struct hess *h)
{
	model_hvp_free(h->h[0]);
	model_hvp_free(h->h[1]);
	free(h->vf);
	free(h->hf);
	free(h->tmp);
	free(h->grad);
}

/*
 * The mean loss over the set and the norm of its gradient, at the
 * checkpoint, and the family's diagnostics over the set.  It runs before
 * any product.  A part that fits one batch is prepared here, and its loss
 * and gradient come from that same forward pass; a larger part is
 * evaluated batch by batch with a work of its own.
 */
static void
loss_and_grad_norm(struct hess *h, long batch, double *loss, double *gnorm, struct model_diag *diag)
{
	size_t P = h->m->nparams;
	float *part = xmalloc(xmul(P, sizeof(float)));
	double *grad = h->grad, g2 = 0, share;
	struct model_eval ev;

	*loss = 0;
	for (int s = 0; s < 2; s++) {
		if (!h->h[s])
			continue;
		memset(part, 0, P * sizeof(float));
		if (h->rows[s] <= batch) {
			/* scaled by 1/n of the whole set: this part's share already */
			h->pt[s] = model_hvp_prepare(h->h[s], h->theta, h->x[s], h->y[s], (int)h->rows[s],
			    (float)(1.0 / h->n), diag);
			model_point_grad(h->pt[s], part);
			h->view[s] = model_point_restrict(h->pt[s]);
			/* a family with a GGN but no view GGN: the whole point */
			if (h->mat == MODEL_GGN && !h->m->family->view_ggn_apply)
				h->view[s] = NULL;
			ev = h->pt[s]->eval;
			share = 1;
		} else {
			/* this part's mean, weighted by its share of the set */
			struct model_work *w = model_work_new(h->m, (int)batch);
			model_eval_set(w, &ev, part, h->theta, h->x[s], h->y[s], h->rows[s], diag);
			model_work_free(w);
			share = (double)h->rows[s] / h->n;
		}
		*loss += ev.loss_sum / h->n;
		for (size_t k = 0; k < P; k++)
			grad[k] += part[k] * share;
	}
	for (size_t k = 0; k < P; k++)
		g2 += grad[k] * grad[k];
	*gnorm = sqrt(g2);
	free(part);
}

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: hess-eig --data FILE [--set train|test|all] [--top K] [--which top|bottom|both]\n"
	    "                [--matrix hessian|ggn] [--blocks] [--alignment] [--precond]\n"
	    "                [--trace] [--density] [--eigvecs FILE] [options] [CKPT...]\n");
}

static void
help(void)
{
	usage(stdout);
	printf(
"\n"
"For each train-mlp or train-transformer checkpoint (the arguments, or\n"
"paths one per line on standard input), the extreme eigenvalues of the\n"
"Hessian of the mean loss over the chosen set, written as one JSON-lines\n"
"record per checkpoint after a header.  Hessian-vector products are exact\n"
"(Pearlmutter's R-operator).\n"
"\n"
"      --data FILE        the data set the checkpoints were trained on\n"
"      --set S            train (default), test or all: whose mean loss\n"
"      --any-data         allow a data set other than the checkpoint's own\n"
"Eigenvalues\n"
"      --top K            how many eigenvalues at each wanted end, 1..500 (default 5)\n"
"      --which W          top (largest algebraic, default), bottom (most\n"
"                         negative) or both\n"
"      --method M         lanczos (default; full reorthogonalisation) or\n"
"                         power (power iteration with deflation, as the seed\n"
"                         study; it finds the largest |eigenvalue|)\n"
"      --tol T            relative tolerance to stop at (default 1e-4)\n"
"      --converge C       what --tol bounds: residual (default), each pair's\n"
"                         |Hv - lambda v| / |lambda|; or value, each\n"
"                         eigenvalue's relative error bound min(r, r^2/gap),\n"
"                         which needs fewer products for the same eigenvalues\n"
"      --max-iter N       Lanczos steps or power iterations, 1..10000 (default 100)\n"
"      --start S          Lanczos's start: random (default; Gaussian from\n"
"                         --seed) or previous: each solve's from its top\n"
"                         Ritz vectors at the previous checkpoint (same\n"
"                         model): the same answer in fewer products when\n"
"                         the checkpoints are a run's in order\n"
"      --eigvecs FILE     write the top-K eigenvectors (safetensors, named like\n"
"                         the parameters, leading dimension K); with several\n"
"                         checkpoints FILE must contain {step}\n"
"Curvature views\n"
"      --matrix M         hessian (default) or ggn: the Gauss-Newton matrix\n"
"                         J^T H_out J (positive semi-definite; the families\n"
"                         that have it); every spectrum below is of M\n"
"      --blocks           per tensor group (a layer, a block's component): the\n"
"                         top eigenvalue(s) of M's diagonal block and its trace\n"
"                         (Hutchinson, on the whole trace's probes; implies --trace)\n"
"      --block-top K      eigenvalues per block, 1..100 (default 1)\n"
"      --alignment        the fraction of |gradient|^2 in the span of the top\n"
"                         1..K eigenvectors (needs --which top or both)\n"
"      --precond          the stability threshold: for Adam(W) the largest\n"
"                         eigenvalue of P^-1 M, P = (1 - b1^t) diag(sqrt(v^) + eps)\n"
"                         from the checkpoint's optimiser state (train with\n"
"                         --ckpt-optim), against (2 + 2 b1) / ((1 - b1) lr)\n"
"                         (38/lr at b1 = 0.9); for SGD the top eigenvalue\n"
"                         against (2 + 2 momentum) / lr\n"
"Trace and density\n"
"      --trace            Hutchinson estimate of the trace, with standard error\n"
"      --probes N         its Rademacher probes, 1..100000 (default 100)\n"
"      --density          spectral density by stochastic Lanczos quadrature\n"
"      --slq-iter N       Lanczos steps per probe, 2..1000 (default 80)\n"
"      --slq-probes N     probes, 1..10000 (default 10)\n"
"      --grid N           density grid points, 2..1000000 (default 1000)\n"
"      --sigma2 S         kernel variance relative to max(1, spectral span)\n"
"                         (default 1e-5, as PyHessian)\n"
"Other\n"
"      --batch N          rows per batch in each product, bounding memory (default 4096)\n"
"      --seed S           seed of start vectors and probes (default 0)\n"
"      --threads N        BLAS threads, 1..256 (default 1)\n"
"  -h, --help             show this help and exit\n"
"      --version          show the version and exit\n"
"\n");
	printf(   /* in two: one literal would pass C's 4095 characters */
CKPT_LIMITS_HELP
"\n"
"Exit status: 0 success, 1 runtime or data error, 2 usage error.\n"
"\n"
"Examples:\n"
"  hess-eig --data data.safetensors ckpt/step-*.safetensors > hessian.jsonl\n"
"  ls ckpt/*.safetensors | hess-eig --data data.safetensors --which both --trace --blocks > hessian.jsonl\n");
}

static void check_args(struct config *c);

/* The defaults, before any option. */
static void
config_defaults(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->top = 5;
	c->which = EIG_TOP;
	c->tol = 1e-4;
	c->max_iter = 100;
	c->probes = 100;
	c->slq_iter = 80;
	c->slq_probes = 10;
	c->grid = 1000;
	c->sigma2 = 1e-5;
	c->batch = 4096;
	c->threads = 1;
	c->block_top = -1;
}

static void
parse_args(struct config *c, int argc, char **argv)
{
	enum {
		O_DATA = 256, O_SET, O_ANY, O_TOP, O_WHICH, O_METHOD, O_TOL, O_MAXIT, O_EIGVECS,
		O_CONVERGE, O_TRACE, O_PROBES, O_DENSITY, O_SLQIT, O_SLQPR, O_GRID, O_SIGMA2, O_BATCH, O_SEED,
		O_THREADS, O_VERSION, O_MATRIX, O_BLOCKS, O_BLOCKTOP, O_ALIGN, O_PRECOND, O_START,
	};
	static const struct option longopts[] = {
		{"data", required_argument, NULL, O_DATA},
		{"set", required_argument, NULL, O_SET},
		{"any-data", no_argument, NULL, O_ANY},
		{"top", required_argument, NULL, O_TOP},
		{"which", required_argument, NULL, O_WHICH},
		{"method", required_argument, NULL, O_METHOD},
		{"tol", required_argument, NULL, O_TOL},
		{"max-iter", required_argument, NULL, O_MAXIT},
		{"eigvecs", required_argument, NULL, O_EIGVECS},
		{"start", required_argument, NULL, O_START},
		{"converge", required_argument, NULL, O_CONVERGE},
		{"trace", no_argument, NULL, O_TRACE},
		{"matrix", required_argument, NULL, O_MATRIX},
		{"blocks", no_argument, NULL, O_BLOCKS},
		{"block-top", required_argument, NULL, O_BLOCKTOP},
		{"alignment", no_argument, NULL, O_ALIGN},
		{"precond", no_argument, NULL, O_PRECOND},
		{"probes", required_argument, NULL, O_PROBES},
		{"density", no_argument, NULL, O_DENSITY},
		{"slq-iter", required_argument, NULL, O_SLQIT},
		{"slq-probes", required_argument, NULL, O_SLQPR},
		{"grid", required_argument, NULL, O_GRID},
		{"sigma2", required_argument, NULL, O_SIGMA2},
		{"batch", required_argument, NULL, O_BATCH},
		{"seed", required_argument, NULL, O_SEED},
		{"threads", required_argument, NULL, O_THREADS},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION},
		{NULL, 0, NULL, 0},
	};
	int ch;

	config_defaults(c);
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case O_DATA: c->data = optarg; break;
		case O_SET: c->set = (enum dataset_set)opt_choice("--set", optarg, dataset_set_names); break;
		case O_ANY: c->any_data = 1; break;
		case O_TOP: c->top = (int)opt_int("--top", optarg, 1, 500); break;
		case O_WHICH: c->which = (enum eig_which)opt_choice("--which", optarg, eig_which_names); break;
		case O_METHOD: c->method = (enum method)opt_choice("--method", optarg, method_names); break;
		case O_TOL: c->tol = opt_real_open("--tol", optarg, 0, 1); break;
		case O_MAXIT: c->max_iter = (int)opt_int("--max-iter", optarg, 1, 10000); break;
		case O_EIGVECS: c->eigvecs = optarg; break;
		case O_START: c->start = (enum start)opt_choice("--start", optarg, start_names); break;
		case O_CONVERGE: c->converge = (enum eig_converge)opt_choice("--converge", optarg, eig_converge_names); break;
		case O_TRACE: c->trace = 1; break;
		case O_MATRIX: c->matrix = (enum model_matrix)opt_choice("--matrix", optarg, model_matrix_names); break;
		case O_BLOCKS: c->blocks = 1; break;
		case O_BLOCKTOP: c->block_top = (int)opt_int("--block-top", optarg, 1, 100); break;
		case O_ALIGN: c->alignment = 1; break;
		case O_PRECOND: c->precond = 1; break;
		case O_PROBES: c->probes = (int)opt_int("--probes", optarg, 1, 100000); break;
		case O_DENSITY: c->density = 1; break;
		case O_SLQIT: c->slq_iter = (int)opt_int("--slq-iter", optarg, 2, 1000); break;
		case O_SLQPR: c->slq_probes = (int)opt_int("--slq-probes", optarg, 1, 10000); break;
		case O_GRID: c->grid = (int)opt_int("--grid", optarg, 2, 1000000); break;
		case O_SIGMA2: c->sigma2 = opt_real_open("--sigma2", optarg, 0, 1e6); break;
		case O_BATCH: c->batch = (long)opt_int("--batch", optarg, 1, 1L << 24); break;
		case O_SEED: c->seed = opt_seed("--seed", optarg); break;
		case O_THREADS: c->threads = (int)opt_int("--threads", optarg, 1, 256); break;
		case 'h': help(); finish_stdout(); exit(0);
		case O_VERSION: printf("hess-eig %s\n", GROK_VERSION); finish_stdout(); exit(0);
		default: fprintf(stderr, "Try 'hess-eig --help' for more information.\n"); exit(EXIT_USAGE);
		}
	}
	check_args(c);
}

/* The combinations of options that make no sense, and what follows from the others. */
static void
check_args(struct config *c)
{
	if (!c->data)
		usage_error("--data FILE is required (the data set the checkpoints were trained on)");
	if (c->method == METHOD_POWER && c->converge != CONVERGE_RESIDUAL)
		usage_error("--converge applies to --method lanczos");
	if (c->method == METHOD_POWER && c->start != START_RANDOM)
		usage_error("--start applies to --method lanczos");
	if (c->method == METHOD_POWER && c->which != EIG_TOP)
		usage_error("--method power finds the largest eigenvalues only; use --method lanczos for --which %s",
		    eig_which_names[c->which]);
	if (c->eigvecs && c->which == EIG_BOTTOM)
		usage_error("--eigvecs writes the top eigenvectors; it needs --which top or both");
	if (c->alignment && c->which == EIG_BOTTOM)
		usage_error("--alignment uses the top eigenvectors; it needs --which top or both");
	if (c->precond && c->which == EIG_BOTTOM)
		usage_error("--precond compares the top eigenvalue; it needs --which top or both");
	if (c->block_top > 0 && !c->blocks)
		usage_error("--block-top applies to --blocks");
	if (c->block_top < 0)
		c->block_top = 1;
	if (c->blocks)
		c->trace = 1;
}

static json_t *
density_json(const struct config *c, struct linop *A, size_t P, struct rng *r)
{
	int m = c->slq_iter < (int)P ? c->slq_iter : (int)P, count = 0;
	double *nodes = xmalloc(xmul((size_t)c->slq_probes * (size_t)m, sizeof(double)));
	double *weights = xmalloc(xmul((size_t)c->slq_probes * (size_t)m, sizeof(double)));
	double *v = xmalloc(xmul(P, sizeof(double))), lo, hi, sigma2;
	double *grid = xmalloc(xmul((size_t)c->grid, sizeof(double)));
	double *dens = xmalloc(xmul((size_t)c->grid, sizeof(double)));
	json_t *jn = json_array(), *jw = json_array(), *out;

	for (int p = 0; p < c->slq_probes; p++) {
		int got;
		for (size_t k = 0; k < P; k++)
			v[k] = rng_sign(r);
		got = slq_probe(A, v, m, nodes + count, weights + count);
		json_array_append_new(jn, jarray(nodes + count, got));
		json_array_append_new(jw, jarray(weights + count, got));
		count += got;
	}
	lo = hi = nodes[0];
	for (int i = 1; i < count; i++) {
		lo = fmin(lo, nodes[i]);
		hi = fmax(hi, nodes[i]);
	}
	sigma2 = c->sigma2 * fmax(1.0, hi - lo);
	slq_density(nodes, weights, count, c->slq_probes, sigma2, c->grid, grid, dens);
	out = json_pack("{s:i, s:i, s:o, s:o, s:o, s:o, s:o}", "probes", c->slq_probes, "iterations", m,
	    "sigma2", jnum(sigma2), "nodes", jn, "weights", jw,
	    "grid", jarray(grid, c->grid), "values", jarray(dens, c->grid));
	free(nodes);
	free(weights);
	free(v);
	free(grid);
	free(dens);
	return out;
}


/*
 * The warm start for this checkpoint's model from w, for an operator of
 * n parameters (map: their indices in w's layout, or NULL for the same
 * layout): the previous solve's vectors restricted to them (whatever
 * they had on parameters a view dropped is lost: H is zero there).  NULL
 * when w has nothing for this model; else free *buf after the solve.
 */
static const struct eig_start *
warm_start(const struct warm *w, const struct model *m, const size_t *map, size_t n,
    struct eig_start *st, double **buf)
{
	double *g;

	*buf = NULL;
	if (w->k == 0 || w->family != m->family || w->P != m->nparams || (!map && w->N != n))
		return NULL;
	g = xmalloc(xmul(xmul((size_t)w->k, n), sizeof *g));
	for (int i = 0; i < w->k; i++)
		for (size_t j = 0; j < n; j++)
			g[(size_t)i * n + j] = w->vecs[(size_t)i * w->N + (map ? map[j] : j)];
	*st = (struct eig_start){g, w->k, WARM_NOISE};
	*buf = g;
	return st;
}

/* How a solve's start vector was made, as its "start" (w: its warm start, or NULL). */
static json_t *
warm_json(const struct warm *w, const struct eig_result *res)
{
	if (!w || res->guides == 0)
		return json_pack("{s:s}", "kind", "random");
	return json_pack("{s:s, s:I, s:s, s:i}", "kind", "previous", "step", (json_int_t)w->step,
	    "run_id", w->run_id, "guides", res->guides);
}

/* Keep res's top vectors (N long) as the next checkpoint's warm start. */
static void
warm_keep(struct warm *w, const struct analysis_ckpt *ck, size_t N, const struct eig_result *res)
{
	if (!res->top_vecs || res->ntop == 0)
		return;
	w->vecs = xrealloc(w->vecs, xmul(xmul((size_t)res->ntop, N), sizeof *w->vecs));
	memcpy(w->vecs, res->top_vecs, (size_t)res->ntop * N * sizeof *w->vecs);
	w->family = ck->m->family;
	w->P = ck->m->nparams;
	w->N = N;
	w->k = res->ntop;
	w->step = ck->step;
	snprintf(w->run_id, sizeof w->run_id, "%s", ck->run_id);
}

/*
 * The main solve on E (the view's operator when live, else the whole
 * one), from w's warm start under --start previous, into res in the
 * full layout.
 */
static void
eigs(const struct config *c, struct hess *h, struct linop *E, int live, const struct analysis_ckpt *ck,
    const struct warm *w, struct rng *r, struct eig_result *res)
{
	const size_t *map = live ? h->view[h->live]->map : NULL;
	struct eig_start st;
	double *guides = NULL;
	const struct eig_start *start = c->start == START_PREVIOUS ?
	    warm_start(w, ck->m, map, E->n, &st, &guides) : NULL;
	int want = c->eigvecs || c->alignment || c->start == START_PREVIOUS, rc;

	if (c->method == METHOD_LANCZOS)
		rc = lanczos_eigs_start(E, c->top, c->which, c->converge, c->tol, c->max_iter, r, start, want, res);
	else
		rc = power_eigs(E, c->top, c->tol, c->max_iter, r, want, res);
	free(guides);
	if (rc < 0)
		die("%s: --top %d is more than the %zu parameters", ck->path, c->top, ck->m->nparams);
	/* back to the full layout; Lanczos orders algebraically, so the zeros can rank */
	if (map)
		eig_result_embed(res, map, E->n, ck->m->nparams, c->method == METHOD_LANCZOS);
	if (!res->converged)
		warn("%s: not converged to --tol %g within --max-iter %d", ck->path, c->tol, c->max_iter);
}

static void
eig_json(json_t *rec, const struct eig_result *res)
{
	if (res->ntop) {
		json_object_set_new(rec, "eigenvalues", jarray(res->top, res->ntop));
		json_object_set_new(rec, "residuals", jarray(res->top_res, res->ntop));
	}
	if (res->nbottom) {
		json_object_set_new(rec, "bottom_eigenvalues", jarray(res->bottom, res->nbottom));
		json_object_set_new(rec, "bottom_residuals", jarray(res->bottom_res, res->nbottom));
	}
	json_object_set_new(rec, "converged", json_boolean(res->converged));
	json_object_set_new(rec, "iterations", json_integer(res->iterations));
}

/* Streams of start vectors apart from the main solve's, so that its trace's probes stay the same. */
#define STREAM_BLOCK 1          /* + the group */
#define STREAM_PRECOND 1000000

/*
 * One diagonal block of the operator: the group's parameters [lo, lo + n)
 * alone, x zero elsewhere and the product read there only.  Every product
 * shares the point (or view) prepared once for the whole set: no forward
 * pass of its own; the family's block product when it has one (the MLP's
 * passes start and stop at the block's layer), else the whole one.
 */
struct block {
	struct hess *h;
	int g;
	size_t lo, n;
	double *x, *y;   /* (P) */
};

/* Whether every part's point stays prepared (one batch each): block products can share it. */
static int
block_prepared(const struct hess *h)
{
	int prepared = 1;

	for (int s = 0; s < 2; s++)
		prepared &= !h->h[s] || h->pt[s] != NULL;
	return prepared;
}

static void
block_apply(void *ctx, double *y, const double *x)
{
	struct block *b = ctx;
	struct hess *h = b->h;
	size_t P = h->m->nparams;

	if (!block_prepared(h)) {   /* batches prepared one by one: the whole product, read on the block */
		memset(b->x, 0, P * sizeof *b->x);
		memcpy(b->x + b->lo, x, b->n * sizeof *x);
		hess_apply(h, b->y, b->x);
		memcpy(y, b->y + b->lo, b->n * sizeof *y);
		return;
	}
	memset(h->vf, 0, P * sizeof *h->vf);
	memset(h->hf + b->lo, 0, b->n * sizeof *h->hf);
	for (size_t k = 0; k < b->n; k++)
		h->vf[b->lo + k] = (float)x[k];
	for (int s = 0; s < 2; s++)
		if (h->h[s])
			model_block_product(h->pt[s], h->view[s], h->mat, b->g, h->hf, h->vf, h->tmp);
	for (size_t k = 0; k < b->n; k++)
		y[k] = h->hf[b->lo + k];
}

/*
 * x . B x for the block, by the family's quadratic form at the prepared
 * point (the MLP's: its R-forward alone, half a block product): the
 * traces' probes need no more.  Set only where the family has one and
 * the point is prepared.
 */
static double
block_quad(void *ctx, const double *x)
{
	struct block *b = ctx;
	struct hess *h = b->h;
	double q = 0.0;

	memset(h->vf, 0, h->m->nparams * sizeof *h->vf);
	for (size_t k = 0; k < b->n; k++)
		h->vf[b->lo + k] = (float)x[k];
	for (int s = 0; s < 2; s++)
		if (h->h[s])
			q += model_block_quad(h->pt[s], h->view[s], h->mat, b->g, h->vf, h->tmp);
	return q;
}

/*
 * The top eigenvalue(s) of one block, as its record; its products into
 * *count.  w: the block's warm start (--start previous), or NULL.
 */
static json_t *
block_eigs(const struct config *c, struct linop *B, int g, const struct analysis_ckpt *ck,
    struct warm *w, long *count)
{
	struct eig_result res;
	struct eig_start st;
	struct rng r;
	int k = (size_t)c->block_top < B->n ? c->block_top : (int)B->n;
	double *guides = NULL;
	const struct eig_start *start = w ? warm_start(w, ck->m, NULL, B->n, &st, &guides) : NULL;
	json_t *o;

	rng_init_part(&r, c->seed, RNG_SAMPLE, STREAM_BLOCK + (uint64_t)g);
	if (lanczos_eigs_start(B, k, EIG_TOP, c->converge, c->tol, c->max_iter, &r, start, w != NULL, &res) < 0)
		die("%s: block %d: Lanczos failed", ck->path, g);
	free(guides);
	if (!res.converged)
		warn("%s: block %d not converged to --tol %g within --max-iter %d", ck->path, g, c->tol,
		    c->max_iter);
	o = json_pack("{s:o, s:o, s:o, s:o, s:b, s:i, s:o}", "lambda_max", jnum(res.top[0]),
	    "residual", jnum(res.top_res[0]), "eigenvalues", jarray(res.top, res.ntop),
	    "residuals", jarray(res.top_res, res.ntop), "converged", res.converged,
	    "iterations", res.iterations, "start", warm_json(w, &res));
	if (w)
		warm_keep(w, ck, B->n, &res);
	*count += B->count;
	eig_result_free(&res);
	return o;
}

/*
 * --blocks: for each tensor group, its diagonal block's top eigenvalue(s)
 * by Lanczos and its trace by Hutchinson on the whole trace's probes (r,
 * as --trace alone would draw them), into rec ("blocks", "blocks_trace",
 * "trace").  walk: the blocks' warm starts (--start previous), or NULL.
 * Returns the products taken.
 */
static long
blocks_json(const struct config *c, struct hess *h, struct linop *A, struct rng *r,
    const struct analysis_ckpt *ck, struct walk *walk, json_t *rec)
{
	const struct model *m = h->m;
	int ng = m->ngroups;
	struct block *blk = xcalloc((size_t)ng, sizeof *blk);
	struct linop *ops = xcalloc((size_t)ng, sizeof *ops), **pops = xcalloc((size_t)ng, sizeof *pops);
	linop_quad *quads = xcalloc((size_t)ng, sizeof *quads);
	size_t *off = xcalloc((size_t)ng, sizeof *off), P = m->nparams;
	double *tm = xcalloc(2 * (size_t)ng, sizeof *tm), *ts = tm + ng, mean, se, smean, sse;
	double *x = xmalloc(xmul(P, sizeof *x)), *y = xmalloc(xmul(P, sizeof *y));
	json_t *arr = json_array();
	long count = 0;

	if (walk && walk->nblock < ng) {
		walk->block = xrealloc(walk->block, xmul((size_t)ng, sizeof *walk->block));
		memset(walk->block + walk->nblock, 0, (size_t)(ng - walk->nblock) * sizeof *walk->block);
		walk->nblock = ng;
	}
	for (int g = 0; g < ng; g++) {
		size_t lo, hi;
		model_group_range(m, g, &lo, &hi);
		blk[g] = (struct block){h, g, lo, hi - lo, x, y};
		ops[g] = (struct linop){hi - lo, block_apply, &blk[g], 0};
		pops[g] = &ops[g];
		off[g] = lo;
		json_array_append_new(arr, block_eigs(c, &ops[g], g, ck, walk ? &walk->block[g] : NULL, &count));
		ops[g].count = 0;
		quads[g] = m->family->block_quad && block_prepared(h) ? block_quad : NULL;
	}
	hutchinson_blocks(A, pops, quads, off, ng, c->probes, r, &mean, &se, tm, ts, &smean, &sse);
	for (int g = 0; g < ng; g++) {
		json_t *o = json_array_get(arr, (size_t)g);
		json_object_set_new(o, "trace", jnum(tm[g]));
		json_object_set_new(o, "stderr", jnum(ts[g]));
		json_object_set_new(o, "group", json_string(m->group_names[g]));
		json_object_set_new(o, "params", json_integer((json_int_t)ops[g].n));
		count += ops[g].count;
	}
	json_object_set_new(rec, "blocks", arr);
	json_object_set_new(rec, "blocks_trace", json_pack("{s:o, s:o}", "mean", jnum(smean),
	    "stderr", jnum(sse)));
	json_object_set_new(rec, "trace", json_pack("{s:o, s:o, s:i}", "mean", jnum(mean),
	    "stderr", jnum(se), "probes", c->probes));
	free(blk);
	free(ops);
	free(pops);
	free(quads);
	free(off);
	free(tm);
	free(x);
	free(y);
	return count;
}

/* y = S A S x, S = diag(s): the symmetric form of diag(s^2) A. */
struct scaled {
	struct linop *A;
	const double *s;
	double *t;
};

static void
scaled_apply(void *ctx, double *y, const double *x)
{
	struct scaled *sc = ctx;
	size_t n = sc->A->n;

	for (size_t k = 0; k < n; k++)
		sc->t[k] = sc->s[k] * x[k];
	sc->A->apply(sc->A->ctx, y, sc->t);
	for (size_t k = 0; k < n; k++)
		y[k] *= sc->s[k];
}

/*
 * Adam's P^-1 = diag(1 / ((1 - b1^t) (sqrt(v / (1 - b2^t)) + eps))), the
 * step torch takes being theta -= lr P^-1 m_t, m_t the first moment
 * without its bias correction (Cohen et al. 2022's P_t): s = its square
 * root, in E's layout (map: the view's indices in the full layout, or
 * NULL).
 */
static void
precond_scale(const struct ckpt_optim *o, const size_t *map, size_t n, double *s)
{
	double c1 = 1 - pow(o->beta1, (double)o->t), c2 = 1 - pow(o->beta2, (double)o->t);

	for (size_t k = 0; k < n; k++) {
		double v = o->v[map ? map[k] : k];
		s[k] = 1 / sqrt(c1 * (sqrt(v / c2) + o->eps));
	}
}

/*
 * --precond's Lanczos: lambda_max of S E S, S = diag(s), into res in the
 * full layout (map: E's view in it, or NULL), from w's warm start
 * (--start previous) or at random (w NULL).  Returns the products taken.
 */
static long
precond_solve(const struct config *c, struct linop *E, const size_t *map, const double *s,
    const struct analysis_ckpt *ck, struct warm *w, struct eig_result *res)
{
	struct scaled sc = {E, s, xmalloc(xmul(E->n, sizeof(double)))};
	struct linop S = {E->n, scaled_apply, &sc, 0};
	struct eig_start st;
	struct rng r;
	double *guides = NULL;
	const struct eig_start *start = w ? warm_start(w, ck->m, map, E->n, &st, &guides) : NULL;

	rng_init_part(&r, c->seed, RNG_SAMPLE, STREAM_PRECOND);
	if (lanczos_eigs_start(&S, 1, EIG_TOP, c->converge, c->tol, c->max_iter, &r, start, w != NULL, res) < 0)
		die("%s: --precond: Lanczos failed", ck->path);
	free(guides);
	/* a view dropped parameters whose rows of H, so of P^-1 H, are zero */
	if (map)
		eig_result_embed(res, map, E->n, ck->m->nparams, 1);
	free(sc.t);
	return S.count;
}

/*
 * --precond: the record's "precond": the sharpness the optimiser's
 * stability depends on and its threshold.  SGD (heavy-ball momentum mu)
 * is stable on a quadratic while lr lambda < 2 + 2 mu; Adam, as momentum
 * over a fixed preconditioner P with an EMA (1 - b1) of the gradients,
 * while lr lambda(P^-1 H) < (2 + 2 b1) / (1 - b1) (Cohen et al. 2022;
 * 38 at b1 = 0.9): both thresholds are bounds on the sharpness of the
 * record, so over lr (infinite, so null, at lr = 0: a warm-up's first
 * step moves nothing).  top: the main solve's top eigenvalue
 * (SGD's sharpness).  Returns the products taken.
 */
static long
precond_json(const struct config *c, struct hess *h, struct linop *E, const struct analysis_ckpt *ck,
    struct warm *w, double top, json_t *rec)
{
	const char *path = ck->path;
	const struct model *m = h->m;
	struct ckpt_optim o = {0};
	char err[512];
	json_t *out;
	long count = 0;

	o.v = xmalloc(xmul(m->nparams, sizeof(float)));
	if (ckpt_optim_read(path, m, &o, err, sizeof err) < 0)
		die("%s", err);
	if (o.kind == OPT_SGD) {
		double thr = (2 + 2 * o.momentum) / o.lr;
		out = json_pack("{s:s, s:o, s:o, s:I, s:o, s:o, s:o}", "optim", optim_names[o.kind],
		    "lr", jnum(o.lr), "momentum", jnum(o.momentum), "t", (json_int_t)o.t,
		    "lambda_max", jnum(top), "threshold", jnum(thr), "ratio", jnum(top / thr));
	} else if (o.t == 0) {
		/* before the first step there is no preconditioner: the threshold alone */
		double thr = (2 + 2 * o.beta1) / ((1 - o.beta1) * o.lr);
		out = json_pack("{s:s, s:o, s:I, s:o, s:o, s:o, s:n, s:o, s:n}", "optim", optim_names[o.kind],
		    "lr", jnum(o.lr), "t", (json_int_t)0, "beta1", jnum(o.beta1), "beta2", jnum(o.beta2),
		    "eps", jnum(o.eps), "lambda_max", "threshold", jnum(thr), "ratio");
	} else {
		const size_t *map = h->live >= 0 ? h->view[h->live]->map : NULL;
		double *s = xmalloc(xmul(E->n, sizeof *s)), thr = (2 + 2 * o.beta1) / ((1 - o.beta1) * o.lr);
		struct eig_result res;
		precond_scale(&o, map, E->n, s);
		count = precond_solve(c, E, map, s, ck, w, &res);
		if (!res.converged)
			warn("%s: --precond not converged to --tol %g within --max-iter %d", path, c->tol,
			    c->max_iter);
		out = json_pack("{s:s, s:o, s:I, s:o, s:o, s:o, s:o, s:o, s:b, s:i, s:o, s:o, s:o}",
		    "optim", optim_names[o.kind], "lr", jnum(o.lr), "t", (json_int_t)o.t,
		    "beta1", jnum(o.beta1), "beta2", jnum(o.beta2), "eps", jnum(o.eps),
		    "lambda_max", jnum(res.top[0]), "residual", jnum(res.top_res[0]),
		    "converged", res.converged, "iterations", res.iterations,
		    "threshold", jnum(thr), "ratio", jnum(res.top[0] / thr), "start", warm_json(w, &res));
		if (w)
			warm_keep(w, ck, m->nparams, &res);
		eig_result_free(&res);
		free(s);
	}
	json_object_set_new(rec, "precond", out);
	free(o.v);
	return count;
}

/* Everything about one checkpoint, as one record. */
static void
analyse(const struct config *c, const struct analysis *a, const char *path, struct walk *walk)
{
	struct analysis_ckpt ck;
	struct hess h;
	struct linop A, L, *E;
	struct eig_result res;
	struct model_diag *diag;
	struct rng r;
	double loss, gnorm;
	int live, warm = c->start == START_PREVIOUS;
	json_t *rec;
	long extra = 0;

	analysis_open(a, path, c->data, c->any_data, &ck);
	if (!model_has_matrix(ck.m, c->matrix))
		die("%s: the %s family has no --matrix %s products", path, ck.m->family->name,
		    model_matrix_names[c->matrix]);
	hess_init(&h, ck.m, &a->d, c->set, ck.theta, c->batch, c->matrix);
	if (h.n == 0)
		die("%s: the %s set is empty", c->data, dataset_set_names[c->set]);
	A = (struct linop){ck.m->nparams, hess_apply, &h, 0};
	diag = model_diag_new(ck.m);
	loss_and_grad_norm(&h, c->batch, &loss, &gnorm, diag);
	live = hess_live(&h, c->top, &L);
	E = live ? &L : &A;

	rng_init(&r, c->seed, RNG_SAMPLE);
	eigs(c, &h, E, live, &ck, &walk->main, &r, &res);
	rec = analysis_record("hessian", &ck);
	json_object_set_new(rec, "set", json_string(dataset_set_names[c->set]));
	json_object_set_new(rec, "matrix", json_string(model_matrix_names[c->matrix]));
	json_object_set_new(rec, "n", json_integer((json_int_t)h.n));
	json_object_set_new(rec, "loss", jnum(loss));
	json_object_set_new(rec, "grad_norm", jnum(gnorm));
	json_object_set_new(rec, "method", json_string(method_names[c->method]));
	model_diag_json(diag, rec);
	model_diag_free(diag);
	eig_json(rec, &res);
	if (c->method == METHOD_LANCZOS)
		json_object_set_new(rec, "start", warm_json(&walk->main, &res));
	if (warm)
		warm_keep(&walk->main, &ck, ck.m->nparams, &res);
	if (c->eigvecs && res.ntop) {
		char *vpath = ckpt_step_path(c->eigvecs, ck.step);
		ckpt_write_eigvecs(vpath, ck.m, res.top_vecs, res.top, res.ntop, "hess-eig " GROK_VERSION,
		    ck.step, ck.digest);
		free(vpath);
	}
	if (c->alignment && res.ntop) {
		double *frac = xmalloc(xmul((size_t)res.ntop, sizeof *frac));
		subspace_fraction(res.top_vecs, res.ntop, ck.m->nparams, h.grad, frac);
		json_object_set_new(rec, "alignment", jarray(frac, res.ntop));
		free(frac);
	}
	if (c->precond)
		extra += precond_json(c, &h, E, &ck, warm ? &walk->precond : NULL, res.ntop ? res.top[0] : NAN, rec);
	eig_result_free(&res);
	if (c->blocks) {
		extra += blocks_json(c, &h, &A, &r, &ck, warm ? walk : NULL, rec);
	} else if (c->trace) {
		double mean, se;
		hutchinson(&A, c->probes, &r, &mean, &se);
		json_object_set_new(rec, "trace", json_pack("{s:o, s:o, s:i}", "mean", jnum(mean),
		    "stderr", jnum(se), "probes", c->probes));
	}
	if (c->density)
		json_object_set_new(rec, "density", density_json(c, &A, ck.m->nparams, &r));
	json_object_set_new(rec, "hvps", json_integer(A.count + (live ? L.count : 0) + extra));
	analysis_record_emit(rec, &ck);
	hess_free(&h);
	analysis_close(&ck);
}

int
main(int argc, char **argv)
{
	struct config c;
	struct analysis a;
	struct walk walk = {0};

	setprogname(argv[0]);
	parse_args(&c, argc, argv);
	analysis_start(&a, argc, argv, optind, MAX_CKPTS, c.threads);
	analysis_need_step(&a, "--eigvecs", c.eigvecs);
	analysis_load(&a, c.data);
	analysis_header(&a, "hess-eig", argc, argv, c.seed,
	    json_pack("{s:s, s:s, s:i, s:s, s:s, s:o, s:i, s:b, s:i, s:b, s:i, s:i, s:i, s:o, s:I, s:s, s:b, s:i, s:b, s:b, s:s}",
	    "set", dataset_set_names[c.set], "method", method_names[c.method], "top", c.top,
	    "which", eig_which_names[c.which], "converge", eig_converge_names[c.converge], "tol", jnum(c.tol), "max_iter", c.max_iter,
	    "trace", c.trace, "probes", c.probes, "density", c.density, "slq_iter", c.slq_iter,
	    "slq_probes", c.slq_probes, "grid", c.grid, "sigma2", jnum(c.sigma2), "batch", (json_int_t)c.batch,
	    "matrix", model_matrix_names[c.matrix], "blocks", c.blocks, "block_top", c.block_top,
	    "alignment", c.alignment, "precond", c.precond, "start", start_names[c.start]));
	for (size_t i = 0; i < a.n; i++)
		analyse(&c, &a, a.paths[i], &walk);
	free(walk.main.vecs);
	free(walk.precond.vecs);
	for (int g = 0; g < walk.nblock; g++)
		free(walk.block[g].vecs);
	free(walk.block);
	analysis_end(&a);
	return 0;
}
