/*
 * test_mlp_embed: the embedding MLP (mlp_embed.c).  The double reference
 * against central finite differences of its loss, the float fast path
 * against the reference, the exact Hessian product against finite
 * differences of the reference gradient, the Gauss-Newton product's
 * symmetry and positivity, and the layout and initialisation the source
 * (enerrio/grokking-mlp, net.py) has.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"
#include "mlp_embed.h"
#include "model.h"
#include "rng.h"
#include "tap.h"

static double
rel(const double *a, const double *b, size_t n)
{
	double d = 0, s = 0;

	for (size_t k = 0; k < n; k++) {
		d += (a[k] - b[k]) * (a[k] - b[k]);
		s += b[k] * b[k];
	}
	return sqrt(d) / (sqrt(s) + 1e-300);
}

/* Every pair (x, y) of Z_p, labelled x + y mod p. */
static int
all_pairs(int p, int32_t **x, int32_t **y)
{
	int n = p * p;

	*x = malloc((size_t)n * 2 * sizeof **x);
	*y = malloc((size_t)n * sizeof **y);
	for (int k = 0; k < n; k++) {
		(*x)[2 * k] = k / p;
		(*x)[2 * k + 1] = k % p;
		(*y)[k] = (k / p + k % p) % p;
	}
	return n;
}

static void
check_config(int p, int E, int depth, int width)
{
	struct mlp_embed_config c = {p, E, depth, width};
	struct model *m = mlp_embed_model_new(&c);
	size_t P = m->nparams;
	int32_t *x, *y;
	int B = all_pairs(p, &x, &y);
	float *th = malloc(P * sizeof *th), *g = calloc(P, sizeof *g), *v = malloc(P * sizeof *v);
	float *hv = calloc(P, sizeof *hv), *gv = calloc(P, sizeof *gv), *gu = calloc(P, sizeof *gu);
	double *td = malloc(P * sizeof *td), *gref = calloc(P, sizeof *gref), *gfd = calloc(P, sizeof *gfd);
	double *a = calloc(P, sizeof *a), *b = calloc(P, sizeof *b), *hfd = calloc(P, sizeof *hfd);
	double *gp = calloc(P, sizeof *gp), *gm = calloc(P, sizeof *gm), l, h = 1e-6, vgu = 0, ugv = 0, vgv = 0;
	struct model_eval ev = {0};
	struct model_work *w = model_work_new(m, B);
	struct model_hvp *hh = model_hvp_new(m, B);
	struct model_point *pt;
	struct rng r;

	rng_init(&r, 7, RNG_INIT);
	m->family->init(m, th, &r);
	/* biases start at zero; give them values so that their derivatives are tested too */
	for (size_t k = 0; k < P; k++) {
		th[k] += 0.05f * (float)rng_normal(&r);
		td[k] = th[k];
		v[k] = (float)rng_normal(&r);
	}
	l = mlp_embed_ref_loss(m, td, x, y, B, gref);
	for (size_t k = 0; k < P; k++) {
		double t = td[k], lp, lm;
		td[k] = t + h;
		lp = mlp_embed_ref_loss(m, td, x, y, B, NULL);
		td[k] = t - h;
		lm = mlp_embed_ref_loss(m, td, x, y, B, NULL);
		td[k] = t;
		gfd[k] = (lp - lm) / (2 * h);
	}
	ok(rel(gref, gfd, P) < 1e-7, "p=%d E=%d depth %d width %d: reference gradient vs "
	    "finite differences, relative %.2e", p, E, depth, width, rel(gref, gfd, P));
	model_loss_grad(w, &ev, g, th, x, y, B, 1.0f / B, NULL);
	for (size_t k = 0; k < P; k++)
		a[k] = g[k];
	ok(fabs(ev.loss_sum / B - l) < 1e-5 * fabs(l) && rel(a, gref, P) < 1e-5,
	    "fast loss %.8f vs reference %.8f, gradient relative %.2e", ev.loss_sum / B, l,
	    rel(a, gref, P));
	/* H v against (g(theta + h v) - g(theta - h v)) / 2h of the reference gradient */
	for (size_t k = 0; k < P; k++)
		td[k] = th[k] + 1e-5 * v[k];
	mlp_embed_ref_loss(m, td, x, y, B, gp);
	for (size_t k = 0; k < P; k++)
		td[k] = th[k] - 1e-5 * v[k];
	mlp_embed_ref_loss(m, td, x, y, B, gm);
	for (size_t k = 0; k < P; k++)
		hfd[k] = (gp[k] - gm[k]) / 2e-5;
	pt = model_hvp_prepare(hh, th, x, y, B, 1.0f / B, NULL);
	model_point_apply(pt, hv, v);
	for (size_t k = 0; k < P; k++)
		a[k] = hv[k];
	ok(rel(a, hfd, P) < 1e-4, "H v vs finite differences of the gradient, relative %.2e",
	    rel(a, hfd, P));
	memset(g, 0, P * sizeof *g);
	model_point_grad(pt, g);
	for (size_t k = 0; k < P; k++)
		a[k] = g[k];
	ok(rel(a, gref, P) < 1e-5, "the prepared point's gradient, relative %.2e", rel(a, gref, P));
	/* G (u: the gradient direction): symmetric, positive semi-definite, not H; against torch in check_embed.py */
	model_point_product(pt, MODEL_GGN, gv, v);
	model_point_product(pt, MODEL_GGN, gu, g);
	for (size_t k = 0; k < P; k++) {
		vgu += (double)v[k] * gu[k];
		ugv += (double)g[k] * gv[k];
		vgv += (double)v[k] * gv[k];
		b[k] = gv[k];
	}
	ok(fabs(vgu - ugv) < 1e-4 * (fabs(vgu) + 1e-12) && vgv >= 0,
	    "G symmetric (%.6e vs %.6e) and v^T G v = %.4e >= 0", vgu, ugv, vgv);
	ok(rel(b, hfd, P) > 1e-3, "G v differs from H v (relative %.2e)", rel(b, hfd, P));
	model_hvp_free(hh);
	model_work_free(w);
	model_free(m);
	free(x); free(y); free(th); free(g); free(v); free(hv); free(gv); free(gu);
	free(td); free(gref); free(gfd); free(a); free(b); free(hfd); free(gp); free(gm);
}

static void
layout_and_init(void)
{
	struct mlp_embed_config c = {97, 128, 1, 128};
	struct model *m = mlp_embed_model_new(&c);
	float *th = malloc(m->nparams * sizeof *th);
	const struct model_tensor *t0 = model_tensor_find(m, "net.0.weight");
	const struct model_tensor *t2 = model_tensor_find(m, "net.2.weight");
	const struct model_tensor *b4 = model_tensor_find(m, "net.4.bias");
	double s0 = 0, s2 = 0, sb = 0;
	struct rng r;

	ok(m->nparams == 99 * 128 + 512 * 128 + 128 + 128 * 99 + 99,
	    "parameter count of p=97 E=128 depth 1 width 128: %zu", m->nparams);
	ok(t0 && t2 && b4 && t0->shape[0] == 99 && t0->shape[1] == 128 && t2->shape[1] == 512 &&
	    b4->shape[0] == 99, "state_dict names and shapes: net.0.weight (99, 128), "
	    "net.2.weight (128, 512), net.4.bias (99)");
	rng_init(&r, 0, RNG_INIT);
	m->family->init(m, th, &r);
	for (size_t k = 0; k < t0->numel; k++)
		s0 += (double)th[t0->offset + k] * th[t0->offset + k];
	for (size_t k = 0; k < t2->numel; k++)
		s2 += (double)th[t2->offset + k] * th[t2->offset + k];
	for (size_t k = 0; k < b4->numel; k++)
		sb += fabs(th[b4->offset + k]);
	ok(fabs(sqrt(s0 / t0->numel) - 1.0) < 0.02, "embedding N(0, 1): sd %.4f", sqrt(s0 / t0->numel));
	ok(fabs(sqrt(s2 / t2->numel) - sqrt(2.0 / 512)) < 0.002,
	    "net.2.weight Kaiming normal: sd %.5f (want %.5f)", sqrt(s2 / t2->numel), sqrt(2.0 / 512));
	ok(sb == 0.0, "biases zero");
	c.embed = 0;
	ok(mlp_embed_model_new(&c) == NULL, "embed 0 is refused");
	c.embed = MLP_EMBED_MAX + 1;
	ok(mlp_embed_model_new(&c) == NULL, "embed above the limit is refused");
	free(th);
	model_free(m);
}

int
main(void)
{
	check_config(5, 3, 1, 6);
	check_config(5, 2, 2, 4);
	check_config(7, 3, 0, 1);
	layout_and_init();
	return tap_done();
}
