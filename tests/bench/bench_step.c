/*
 * bench_step: time one full-batch training step of train-mlp's model
 * (forward, loss, backward, AdamW) and, on the same shapes, the bare sgemm
 * calls it makes, so the step's FLOP rate can be set against OpenBLAS's;
 * and one Hessian-vector product over the training set (hess-eig's unit
 * of work).  "gemm" says what ran the step's products (gemm.h);
 * sgemm_gflops is OpenBLAS's rate on the step's products alone,
 * gemm_gflops the rate of gemm's route on the same calls.
 *
 *   bench_step DATA DEPTH WIDTH REPS [THREADS]    prints one JSON line
 *
 * THREADS (default 1) is OpenBLAS's thread count, set up as the tools set
 * theirs (blas_setup: with one thread, no worker pool at all).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "blas.h"
#include "dataset.h"
#include "gemm.h"
#include "mlp.h"
#include "optim.h"
#include "rng.h"
#include "util.h"

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The FLOPs of one step we actually perform: products, gathers, scatters. */
static double
step_flops(const struct mlp *m, int B)
{
	double f = 2.0 * B * m->out[0] * 2;   /* gather: two adds a unit; scatter: two */

	if (m->c.encoding == MLP_INT)
		f = 2.0 * B * m->out[0] * 2 * 2;
	for (int i = 1; i < m->nlayers; i++)
		f += 3 * 2.0 * B * m->in[i] * m->out[i];   /* forward, dW, dX */
	return f;
}

/* The same products on the same shapes, alone: OpenBLAS's sgemm, or with own, gemm's route. */
static double
sgemm_seconds(const struct mlp *m, int B, float *a, float *b, float *c, int own)
{
	double t = now_seconds();

	for (int i = 1; i < m->nlayers; i++) {
		int O = m->out[i], In = m->in[i];
		if (own) {
			gemm(0, 1, B, O, In, a, In, b, In, 1.0f, c, O, NULL);
			gemm(1, 0, O, In, B, c, O, a, In, 1.0f, b, In, NULL);
			gemm(0, 0, B, In, O, c, O, b, In, 0.0f, a, In, NULL);
			continue;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, O, In, 1.0f, a, In, b, In, 1.0f, c, O);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, In, B, 1.0f, c, O, a, In, 1.0f, b, In);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, In, O, 1.0f, c, O, b, In, 0.0f, a, In);
	}
	return now_seconds() - t;
}

int
main(int argc, char **argv)
{
	struct dataset d;
	struct mlp_config c = {0, 0, 0, MLP_ONEHOT, MLP_CE};
	struct optim_config oc = {OPT_ADAMW, 1e-3, 0.9, 0.999, 1e-8, 1.0, 0, 0};
	struct mlp m;
	struct mlp_work *w;
	struct model *mm;
	struct optim o;
	struct rng r;
	char err[ST_ERRLEN];
	float *theta, *grad, *a, *b, *cc, *v, *hv, *tmp;
	double *t_step, *t_gemm, *t_own, *t_hvp, flops, gemm_flops = 0;
	struct model_hvp *wh;
	struct model_point *pt;
	struct model_view *view;
	int reps, B, dropped, threads = 1;

	setprogname(argv[0]);
	if (argc != 5 && argc != 6)
		die_code(2, "usage: bench_step DATA DEPTH WIDTH REPS [THREADS]");
	if (argc == 6 && (threads = (int)strtol(argv[5], NULL, 10)) < 1)
		die_code(2, "THREADS must be at least 1");
	blas_setup(threads, argv);
	flush_denormals();
	if (dataset_load(&d, argv[1], err, sizeof err) < 0)
		die("%s", err);
	c.p = d.p;
	c.depth = atoi(argv[2]);
	c.width = atoi(argv[3]);
	reps = atoi(argv[4]);
	if (mlp_layout(&m, &c) < 0 || reps < 1)
		die_code(2, "bad depth, width or reps");
	B = d.n_train;
	theta = xcalloc(m.nparams, sizeof *theta);
	grad = xcalloc(m.nparams, sizeof *grad);
	rng_init(&r, 0, RNG_INIT);
	mlp_init_params(&m, theta, &r);
	w = mlp_work_new(&m, B);
	mm = mlp_model_new(&c);
	optim_init(&o, &oc, m.nparams);
	t_step = xcalloc((size_t)reps, sizeof *t_step);
	t_gemm = xcalloc((size_t)reps, sizeof *t_gemm);
	t_own = xcalloc((size_t)reps, sizeof *t_own);
	a = xcalloc((size_t)B * 4096, sizeof *a);
	b = xcalloc(4096 * 4096, sizeof *b);
	cc = xcalloc((size_t)B * 4096, sizeof *cc);
	for (int k = 0; k < reps + 3; k++) {
		struct model_eval ev = {0};
		double t = now_seconds();
		memset(grad, 0, m.nparams * sizeof *grad);
		/* train-mlp's step: the family's loss_grad, then AdamW */
		mlp_loss_grad(&m, w, &ev, grad, NULL, theta, d.train_x, d.train_y, B, 1.0f / B, NULL);
		optim_step(&o, theta, grad, oc.lr);
		t = now_seconds() - t;
		if (k >= 3) {   /* the first steps warm caches and page in */
			t_step[k - 3] = t;
			t_gemm[k - 3] = sgemm_seconds(&m, B, a, b, cc, 0);
			t_own[k - 3] = sgemm_seconds(&m, B, a, b, cc, 1);
		}
	}
	wh = model_hvp_new(mm, B);
	v = xcalloc(m.nparams, sizeof *v);
	hv = xcalloc(m.nparams, sizeof *hv);
	tmp = xcalloc(2 * m.nparams, sizeof *tmp);
	t_hvp = xcalloc((size_t)reps, sizeof *t_hvp);
	for (size_t k = 0; k < m.nparams; k++)
		v[k] = (float)rng_normal(&r);
	/*
	 * As hess-eig takes them: prepared once at the point (and compacted:
	 * a few steps from the initialisation, next to no unit is dead yet, so
	 * this is the product's cost without that help), then applied per vector.
	 */
	pt = model_hvp_prepare(wh, theta, d.train_x, d.train_y, B, 1.0f / B, NULL);
	view = model_point_restrict(pt);
	dropped = view ? mlp_view_dropped((struct mlp_view *)view) : 0;
	for (int k = 0; k < reps + 2; k++) {
		double t = now_seconds();
		memset(hv, 0, m.nparams * sizeof *hv);
		if (view)
			model_view_apply_full(view, hv, v, tmp);
		else
			model_point_apply(pt, hv, v);
		if (k >= 2)
			t_hvp[k - 2] = now_seconds() - t;
	}
	for (int i = 1; i < m.nlayers; i++)
		gemm_flops += 3 * 2.0 * B * m.in[i] * m.out[i];
	flops = step_flops(&m, B);
	{
		double ms = median(t_step, reps), gs = median(t_gemm, reps), os = median(t_own, reps);
		printf("{\"depth\":%d,\"width\":%d,\"batch\":%d,\"params\":%zu,\"step_ms\":%.4f,"
		    "\"step_gflops\":%.3f,\"sgemm_gflops\":%.3f,\"gemm_gflops\":%.3f,\"hvp_ms\":%.4f,\"hvp_dead_units\":%d,\"blas_core\":\"%s\","
		    "\"gemm\":\"%s\",\"threads\":%d}\n",
		    c.depth, c.width, B, m.nparams, 1e3 * ms, flops / ms * 1e-9,
		    gemm_flops / gs * 1e-9, gemm_flops / os * 1e-9, 1e3 * median(t_hvp, reps), dropped, blas_core(), gemm_kernel(), threads);
	}
	finish_stdout();
	free(a); free(b); free(cc); free(t_step); free(t_gemm); free(t_own); free(theta); free(grad);
	free(v); free(hv); free(t_hvp); free(tmp);
	model_hvp_free(wh);
	model_free(mm);
	optim_free(&o);
	mlp_work_free(w);
	dataset_free(&d);
	return 0;
}
