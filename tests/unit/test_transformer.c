/*
 * transformer: the float32 and double kernels against the naive double
 * reference, the reference's gradient against central differences, and
 * the Hessian-vector products (R-operator) against central differences of
 * the reference gradient, for one and two layers, causal and full
 * attention, alpha in {0, 0.3, 1}, with and without '=', ReLU and GELU;
 * layout and initialisation; the probes' logit gradients with respect to
 * the embedding vectors against central differences.
 *
 * With --ref IN OUT it is the C side of tests/ref/check_transformer.py
 * instead: it reads a configuration (metadata), weights by their
 * state_dict names, rows x, y and a direction v.<name> from IN, and writes
 * the loss, gradient and H v of every path (double, float32, reference).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "opts.h"
#include "rng.h"
#include "st.h"
#include "tap.h"
#include "transformer.h"
#include "util.h"

static double
max_abs(const double *a, size_t n)
{
	double m = 0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(a[i]));
	return m;
}

static double
max_diff(const double *a, const double *b, size_t n)
{
	double m = 0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(a[i] - b[i]));
	return isnan(m) ? INFINITY : m;
}

static double
max_diff_f(const float *a, const double *b, size_t n)
{
	double m = 0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs((double)a[i] - b[i]));
	return isnan(m) ? INFINITY : m;
}

struct fixture {
	struct tfm m;
	int B;
	int32_t *x, *y;
	float *theta;
	double *th;
	char what[128];
};

/* Initialised as Nanda's module, with biases made non-zero so their derivatives count. */
static void
fixture_make(struct fixture *f, const struct tfm_config *c, int B, uint64_t seed)
{
	struct rng r;

	tfm_layout(&f->m, c);
	f->B = B;
	f->x = calloc(2 * (size_t)B, sizeof *f->x);
	f->y = calloc((size_t)B, sizeof *f->y);
	f->theta = calloc(f->m.nparams, sizeof *f->theta);
	f->th = calloc(f->m.nparams, sizeof *f->th);
	rng_init(&r, seed, RNG_INIT);
	tfm_init_params(&f->m, f->theta, &r);
	for (int l = 0; l < c->layers; l++) {
		for (int j = 0; j < c->d_mlp; j++)
			f->theta[f->m.blk[l][TFM_BIN] + j] = (float)(0.3 * rng_normal(&r));
		for (int j = 0; j < c->d_model; j++)
			f->theta[f->m.blk[l][TFM_BOUT] + j] = (float)(0.3 * rng_normal(&r));
	}
	for (size_t k = 0; k < f->m.nparams; k++)
		f->th[k] = f->theta[k];
	for (int b = 0; b < B; b++) {
		f->x[2 * b] = (int32_t)rng_below(&r, (uint32_t)c->p);
		f->x[2 * b + 1] = (int32_t)rng_below(&r, (uint32_t)c->p);
		f->y[b] = (f->x[2 * b] + f->x[2 * b + 1]) % c->p;
	}
	snprintf(f->what, sizeof f->what, "L=%d %s alpha=%g %s %s", c->layers,
	    tfm_attention_names[c->attention], c->alpha, c->eq_token ? "'='" : "no '='", tfm_act_names[c->act]);
}

static void
fixture_free(struct fixture *f)
{
	free(f->x);
	free(f->y);
	free(f->theta);
	free(f->th);
}

/* Fast float32 and double paths against the reference; the reference against differences. */
static void
check_gradients(struct fixture *f)
{
	const struct tfm *m = &f->m;
	size_t P = m->nparams, nl = (size_t)f->B * m->c.p;
	int B = f->B;
	struct tfm_work *w = tfm_work_new(m, B, 0);
	struct tfm64_work *w64 = tfm64_work_new(m, B, 0);
	struct tfm_eval ev = {0}, ev64 = {0};
	float *grad = calloc(P, sizeof *grad);
	double *g64 = calloc(P, sizeof *g64), *gref = calloc(P, sizeof *gref);
	double *lref = calloc(nl, sizeof *lref), *l64 = calloc(nl, sizeof *l64), *th = f->th;
	double loss_ref, gscale, fderr = 0, ld = 0;

	loss_ref = tfm_ref_loss(m, th, f->x, f->y, B, gref, lref);
	gscale = max_abs(gref, P);
	tfm_forward(m, w, f->theta, f->x, B);
	tfm_loss(m, w, &ev, f->y, B, 1.0f / B);
	tfm_backward(m, w, grad, f->theta, B);
	for (size_t k = 0; k < nl; k++)
		ld = fmax(ld, fabs((double)tfm_logits(w)[k] - lref[k]));
	ok(ld < 1e-5 && fabs(ev.loss_sum / B - loss_ref) < 1e-6 * fmax(1, loss_ref),
	    "%s: float32 logits = reference (max diff %.2e), loss %.9f = %.9f", f->what, ld, ev.loss_sum / B, loss_ref);
	ok(max_diff_f(grad, gref, P) < 1e-5 * gscale && gscale > 0,
	    "%s: float32 gradient = reference, max diff %.2e (max |g| %.2e)", f->what, max_diff_f(grad, gref, P), gscale);
	tfm64_forward(m, w64, th, f->x, B);
	tfm64_loss(m, w64, &ev64, f->y, B, 1.0 / B);
	tfm64_backward(m, w64, g64, th, B);
	memcpy(l64, tfm64_logits(w64), nl * sizeof *l64);
	ok(max_diff(l64, lref, nl) < 1e-13 && fabs(ev64.loss_sum / B - loss_ref) < 1e-14 * fmax(1, loss_ref) &&
	    ev64.correct == ev.correct,
	    "%s: double logits = reference (max diff %.2e), loss diff %.2e", f->what, max_diff(l64, lref, nl),
	    fabs(ev64.loss_sum / B - loss_ref));
	ok(max_diff(g64, gref, P) < 1e-12 * gscale, "%s: double gradient = reference, max diff %.2e",
	    f->what, max_diff(g64, gref, P));
	for (size_t k = 0; k < P; k++) {
		double h = 1e-6, save = th[k], lp, lm;
		th[k] = save + h;
		lp = tfm_ref_loss(m, th, f->x, f->y, B, NULL, NULL);
		th[k] = save - h;
		lm = tfm_ref_loss(m, th, f->x, f->y, B, NULL, NULL);
		th[k] = save;
		fderr = fmax(fderr, fabs((lp - lm) / (2 * h) - gref[k]));
	}
	ok(fderr < 1e-7 * fmax(1, gscale), "%s: reference gradient = central differences, max diff %.2e over %zu parameters",
	    f->what, fderr, P);
	free(grad); free(g64); free(gref); free(lref); free(l64);
	tfm_work_free(w);
	tfm64_work_free(w64);
}

/* H v of the double and float32 R-operators against differences of the reference gradient. */
static void
check_hvp(struct fixture *f)
{
	const struct tfm *m = &f->m;
	size_t P = m->nparams;
	int B = f->B;
	struct tfm64_work *w64 = tfm64_work_new(m, B, 1), *wg = tfm64_work_new(m, B, 0);
	struct tfm_work *w = tfm_work_new(m, B, 1);
	struct tfm64_prepared *s64;
	struct tfm_prepared *s;
	struct tfm_eval ev = {0}, pe;
	struct rng r;
	double *v = calloc(P, sizeof *v), *u = calloc(P, sizeof *u), *hv = calloc(P, sizeof *hv);
	double *hu = calloc(P, sizeof *hu), *gp = calloc(P, sizeof *gp), *gm = calloc(P, sizeof *gm);
	double *fd = calloc(P, sizeof *fd), *g1 = calloc(P, sizeof *g1), *g2 = calloc(P, sizeof *g2);
	double *th = calloc(P, sizeof *th), h = 1e-5, uhv = 0, vhu = 0, scale;
	float *vf = calloc(P, sizeof *vf), *hvf = calloc(P, sizeof *hvf);
	int first;

	rng_init(&r, 99, RNG_SAMPLE);
	for (size_t k = 0; k < P; k++) {
		vf[k] = (float)rng_normal(&r);
		v[k] = vf[k];
		u[k] = rng_normal(&r);
	}
	s64 = tfm64_hvp_prepare(m, w64, f->th, f->x, f->y, B, 1.0 / B);
	tfm64_hvp_apply(s64, hv, v);
	tfm64_hvp_apply(s64, hu, u);
	for (size_t k = 0; k < P; k++)
		th[k] = f->th[k] + h * v[k];
	tfm_ref_loss(m, th, f->x, f->y, B, gp, NULL);
	for (size_t k = 0; k < P; k++)
		th[k] = f->th[k] - h * v[k];
	tfm_ref_loss(m, th, f->x, f->y, B, gm, NULL);
	for (size_t k = 0; k < P; k++) {
		fd[k] = (gp[k] - gm[k]) / (2 * h);
		uhv += u[k] * hv[k];
		vhu += v[k] * hu[k];
	}
	scale = max_abs(fd, P);
	ok(max_diff(hv, fd, P) < 1e-6 * scale && scale > 0, "%s: double H v (R-operator) = central differences of "
	    "the reference gradient, max diff %.2e (max |Hv| %.2e)", f->what, max_diff(hv, fd, P), scale);
	ok(fabs(uhv - vhu) < 1e-12 * fmax(fabs(uhv), 1), "%s: u.Hv = v.Hu (%.15f, %.15f)", f->what, uhv, vhu);
	s = tfm_hvp_prepare(m, w, f->theta, f->x, f->y, B, 1.0f / B);
	tfm_hvp_apply(s, hvf, vf);
	ok(max_diff_f(hvf, hv, P) < 1e-4 * scale, "%s: float32 H v = double, max diff %.2e",
	    f->what, max_diff_f(hvf, hv, P));
	/* The prepared pass's loss and gradient = a plain forward and backward, exactly. */
	tfm64_forward(m, wg, f->th, f->x, B);
	tfm64_loss(m, wg, &ev, f->y, B, 1.0 / B);
	tfm64_backward(m, wg, g1, f->th, B);
	tfm64_hvp_grad(s64, g2);
	pe = tfm64_hvp_eval(s64);
	/*
	 * Exactly, unless the plain work takes its own shortcuts (two or more
	 * blocks: the last block's keys and values folded into its queries,
	 * and with causal attention block 0's position 0 per token): the same
	 * sums in another order.
	 */
	first = m->c.layers > 1;
	ok(first ? max_diff(g1, g2, P) < 1e-14 * max_abs(g2, P) && fabs(pe.loss_sum - ev.loss_sum) < 1e-14 * ev.loss_sum
	    : max_diff(g1, g2, P) == 0 && pe.loss_sum == ev.loss_sum && pe.correct == ev.correct,
	    "%s: prepare's loss and gradient = forward and backward, %s (max diff %.2e)", f->what,
	    first ? "to 1e-14" : "exactly", max_diff(g1, g2, P));
	free(v); free(u); free(hv); free(hu); free(gp); free(gm); free(fd); free(g1); free(g2); free(th);
	free(vf); free(hvf);
	tfm64_work_free(w64);
	tfm64_work_free(wg);
	tfm_work_free(w);
}

/*
 * The shortcuts (last block at the last position only, block 0 through
 * tables) against the papers' computation of every position through every
 * layer: loss, gradient and H v, double and float32.
 */
static void
check_shortcuts(struct fixture *f)
{
	const struct tfm *m = &f->m;
	size_t P = m->nparams;
	int B = f->B;
	struct tfm64_work *wf = tfm64_work_new(m, B, TFM_WORK_HVP);
	struct tfm64_work *wn = tfm64_work_new(m, B, TFM_WORK_HVP | TFM_WORK_NAIVE);
	struct tfm_work *sf = tfm_work_new(m, B, TFM_WORK_HVP);
	struct tfm_work *sn = tfm_work_new(m, B, TFM_WORK_HVP | TFM_WORK_NAIVE);
	struct tfm64_prepared *pf, *pn;
	struct tfm_prepared *qf, *qn;
	struct rng r;
	double *v = calloc(P, sizeof *v), *g[2], *hv[2], dl, dg, dh, gs, hs, fg = 0, fh = 0;
	float *vf = calloc(P, sizeof *vf), *g32[2], *hv32[2];

	for (int i = 0; i < 2; i++) {
		g[i] = calloc(P, sizeof **g), hv[i] = calloc(P, sizeof **hv);
		g32[i] = calloc(P, sizeof **g32), hv32[i] = calloc(P, sizeof **hv32);
	}
	rng_init(&r, 7, RNG_SAMPLE);
	for (size_t k = 0; k < P; k++)
		v[k] = vf[k] = (float)rng_normal(&r);
	pf = tfm64_hvp_prepare(m, wf, f->th, f->x, f->y, B, 1.0 / B);
	pn = tfm64_hvp_prepare(m, wn, f->th, f->x, f->y, B, 1.0 / B);
	tfm64_hvp_grad(pf, g[0]), tfm64_hvp_grad(pn, g[1]);
	tfm64_hvp_apply(pf, hv[0], v), tfm64_hvp_apply(pn, hv[1], v);
	dl = fabs(tfm64_hvp_eval(pf).loss_sum - tfm64_hvp_eval(pn).loss_sum);
	dg = max_diff(g[0], g[1], P), dh = max_diff(hv[0], hv[1], P);
	gs = max_abs(g[1], P), hs = max_abs(hv[1], P);
	ok(dl < 1e-13 && dg < 1e-13 * gs && dh < 1e-12 * hs && hs > 0, "%s: double shortcuts = every position "
	    "through every layer: loss diff %.1e, gradient %.1e, H v %.1e (of %.1e)", f->what, dl, dg, dh, hs);
	qf = tfm_hvp_prepare(m, sf, f->theta, f->x, f->y, B, 1.0f / B);
	qn = tfm_hvp_prepare(m, sn, f->theta, f->x, f->y, B, 1.0f / B);
	tfm_hvp_grad(qf, g32[0]), tfm_hvp_grad(qn, g32[1]);
	tfm_hvp_apply(qf, hv32[0], vf), tfm_hvp_apply(qn, hv32[1], vf);
	for (size_t k = 0; k < P; k++) {
		fg = fmax(fg, fabs((double)g32[0][k] - g32[1][k]));
		fh = fmax(fh, fabs((double)hv32[0][k] - hv32[1][k]));
	}
	ok(fg < 1e-5 * gs && fh < 1e-5 * hs && fabs(tfm_hvp_eval(qf).loss_sum - tfm_hvp_eval(qn).loss_sum) < 1e-5 * B,
	    "%s: float32 shortcuts = every position: gradient diff %.1e, H v %.1e", f->what, fg, fh);
	for (int i = 0; i < 2; i++)
		free(g[i]), free(hv[i]), free(g32[i]), free(hv32[i]);
	free(v);
	free(vf);
	tfm64_work_free(wf), tfm64_work_free(wn);
	tfm_work_free(sf), tfm_work_free(sn);
}

/* A batch of B rows = its first rows alone (rows do not interact), in a work for more. */
static void
check_rows(struct fixture *f)
{
	const struct tfm *m = &f->m;
	struct tfm_work *w = tfm_work_new(m, f->B + 3, 0);
	float *all = calloc((size_t)f->B * m->c.p, sizeof *all);
	double d = 0;
	int k = f->B / 2;

	tfm_forward(m, w, f->theta, f->x, f->B);
	memcpy(all, tfm_logits(w), (size_t)f->B * m->c.p * sizeof *all);
	tfm_forward(m, w, f->theta, f->x, k);
	for (size_t i = 0; i < (size_t)k * m->c.p; i++)
		d = fmax(d, fabs((double)all[i] - tfm_logits(w)[i]));
	ok(d < 1e-5, "%s: the first %d rows alone give the same logits (max diff %.2e)", f->what, k, d);
	free(all);
	tfm_work_free(w);
}

/*
 * A plain work's backward (the MLP in chunks of rows, block 0's position 0
 * on its table when causal with two or more blocks, the last block's keys
 * and values folded into its queries with two or more) on more rows than
 * a chunk, with a remainder: its gradient against the naive reference's
 * and an HVP work's (every row's MLP deltas kept, no fold), in double.
 */
static void
check_chunks(void)
{
	for (int L = 1; L <= 3; L++)
		for (int att = 0; att < 2; att++)
			for (int act = 0; act < 2; act++) {
				struct tfm_config c = {.p = 11, .layers = L, .d_model = 8, .heads = 2, .d_head = 3,
				    .d_mlp = 12, .attention = att, .alpha = 0.3, .act = act, .eq_token = 1};
				struct fixture f;
				size_t P;
				int B = 301;
				struct tfm64_work *w, *wh;
				struct tfm_eval ev = {0};
				double *g, *gr, *gh, ref, scale;

				fixture_make(&f, &c, B, (uint64_t)(900 + L * 4 + att * 2 + act));
				P = f.m.nparams;
				w = tfm64_work_new(&f.m, B, 0), wh = tfm64_work_new(&f.m, B, TFM_WORK_HVP);
				g = calloc(P, sizeof *g), gr = calloc(P, sizeof *gr), gh = calloc(P, sizeof *gh);
				tfm64_forward(&f.m, w, f.th, f.x, B);
				tfm64_loss(&f.m, w, &ev, f.y, B, 1.0 / B);
				tfm64_backward(&f.m, w, g, f.th, B);
				tfm64_hvp_grad(tfm64_hvp_prepare(&f.m, wh, f.th, f.x, f.y, B, 1.0 / B), gh);
				ref = tfm_ref_loss(&f.m, f.th, f.x, f.y, B, gr, NULL);
				scale = max_abs(gr, P);
				ok(max_diff(g, gr, P) < 1e-13 * scale && max_diff(g, gh, P) < 1e-13 * scale &&
				    fabs(ev.loss_sum / B - ref) < 1e-13 * ref && scale > 0,
				    "%s, %d rows: plain backward (MLP in chunks of rows%s) = reference gradient (max diff %.1e) "
				    "= HVP work's (%.1e), of %.1e", f.what, B, L > 1 ? ", folded last block" : "",
				    max_diff(g, gr, P), max_diff(g, gh, P), scale);
				free(g), free(gr), free(gh);
				tfm64_work_free(w), tfm64_work_free(wh);
				fixture_free(&f);
			}
}

static void
check_layout(void)
{
	struct tfm_config c = {.p = 113, .layers = 2, .d_model = 128, .heads = 4, .d_head = 32, .d_mlp = 512,
	    .attention = TFM_CAUSAL, .alpha = 1, .act = TFM_RELU, .eq_token = 1};
	struct tfm m;
	struct rng r;
	char name[64];
	int ndim, okname = 1;
	int64_t shape[3];
	size_t off = 0, per = 3 * 128 * 128 + 128 * 128 + 512 * 128 + 512 + 128 * 512 + 128;
	float *theta;
	double s2 = 0, su = 0, bias = 0;
	const char *want[] = {"embed.W_E", "pos_embed.W_pos", "blocks.0.attn.W_K", "blocks.0.attn.W_Q",
	    "blocks.0.attn.W_V", "blocks.0.attn.W_O", "blocks.0.mlp.W_in", "blocks.0.mlp.b_in",
	    "blocks.0.mlp.W_out", "blocks.0.mlp.b_out", "blocks.1.attn.W_K"};

	int rc = tfm_layout(&m, &c);

	ok(rc == 0 && m.nparams == 128 * 114 + 3 * 128 + 2 * per + 128 * 113,
	    "layout: Nanda's model at L=2 has %zu parameters", m.nparams);
	for (int k = 0; k < m.ntensors; k++) {
		size_t o = tfm_tensor_info(&m, k, name, sizeof name, &ndim, shape), n = 1;
		for (int i = 0; i < ndim; i++)
			n *= (size_t)shape[i];
		okname &= o == off && (k >= 11 || strcmp(name, want[k]) == 0);
		off += n;
	}
	tfm_tensor_info(&m, m.ntensors - 1, name, sizeof name, &ndim, shape);
	ok(okname && off == m.nparams && strcmp(name, "unembed.W_U") == 0 && shape[0] == 128 && shape[1] == 113,
	    "layout: tensors contiguous in state_dict order and names, W_U last (128, 113)");
	c.layers = 9;
	ok(tfm_layout(&m, &c) == -1, "layout: 9 layers refused");
	c.layers = 1, c.alpha = 1.5;
	ok(tfm_layout(&m, &c) == -1, "layout: alpha 1.5 refused");
	c.alpha = 1;
	tfm_layout(&m, &c);
	theta = calloc(m.nparams, sizeof *theta);
	rng_init(&r, 1, RNG_INIT);
	tfm_init_params(&m, theta, &r);
	for (size_t k = 0; k < m.blk[0][TFM_WK]; k++)
		s2 += (double)theta[k] * theta[k];
	for (size_t k = m.W_U; k < m.nparams; k++)
		su += (double)theta[k] * theta[k];
	for (int j = 0; j < 512; j++)
		bias += fabs(theta[m.blk[0][TFM_BIN] + j]);
	s2 /= (double)m.blk[0][TFM_WK];
	su /= (double)(m.nparams - m.W_U);
	ok(fabs(s2 * 128 - 1) < 0.05 && fabs(su * 114 - 1) < 0.05 && bias == 0,
	    "init: var(W_E, W_pos) * d_model = %.3f, var(W_U) * d_vocab = %.3f, b_in zero", s2 * 128, su * 114);
	free(theta);
}

/* Hyper-parameters through JSON and checkpoint metadata, the layout the interface shows. */
static void
check_family_layout(void)
{
	char err[256], buf[256];
	json_t *hp = json_pack("{s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:s, s:b}", "layers", 2, "d_model", 8,
	    "heads", 2, "d_head", 3, "d_mlp", 12, "attention", "full", "attn_coeff", 0.3, "act", "gelu",
	    "eq_token", 0);
	json_t *empty = json_object(), *bad = json_pack("{s:s}", "attention", "sideways");
	json_t *bad2 = json_pack("{s:f}", "attn_coeff", 1.5), *back, *j2, *j3 = NULL;
	struct model *m = model_new_json("transformer", hp, 7, err, sizeof err), *m2, *nanda, *m3;
	const struct tfm *t = tfm_of(m);
	struct st_writer wr;
	struct st_frame f;
	FILE *fp = tmpfile();
	int tiles = 1, groups_ok = 1, r;

	for (int k = 0; k < m->ntensors; k++) {
		const struct model_tensor *mt = &m->tensors[k];
		tiles &= mt->offset == (k ? m->tensors[k - 1].offset + m->tensors[k - 1].numel : 0);
		groups_ok &= strncmp(mt->name, m->group_names[mt->group], strlen(m->group_names[mt->group])) == 0 ||
		    (mt->group == 0 && strcmp(mt->name, "pos_embed.W_pos") == 0);
	}
	ok(m && t->c.layers == 2 && t->c.attention == TFM_FULL && t->c.alpha == 0.3 && t->c.act == TFM_GELU &&
	    !t->c.eq_token && m->ngroups == 6 && tiles && groups_ok &&
	    m->tensors[m->ntensors - 1].offset + m->tensors[m->ntensors - 1].numel == m->nparams,
	    "family: from JSON, tensors tile theta, groups embed, blocks.l.attn/mlp, unembed (%s ... %s)",
	    m->group_names[0], m->group_names[5]);
	back = m->family->hparams_json(m);
	m2 = model_new_json("transformer", back, 7, err, sizeof err);
	j2 = m2->family->hparams_json(m2);
	ok(m2 && json_equal(back, j2) && m2->nparams == m->nparams,
	    "family: hyper-parameters JSON round trip");
	nanda = model_new_json("transformer", empty, 113, err, sizeof err);
	model_summary(nanda, buf, sizeof buf);
	ok(nanda && nanda->nparams == 128 * 114 + 3 * 128 + 3 * 128 * 128 + 128 * 128 + 2 * 512 * 128 + 512 + 128 +
	    128 * 113, "family: Nanda's defaults from {} (%s), %zu parameters", buf, nanda ? nanda->nparams : 0);
	ok(!model_new_json("transformer", bad, 7, err, sizeof err) && strstr(err, "causal|full"),
	    "family: attention 'sideways' refused: %s", err);
	ok(!model_new_json("transformer", bad2, 7, err, sizeof err) && strstr(err, "attn_coeff 0..1"),
	    "family: attn_coeff 1.5 refused: %s", err);
	st_writer_init(&wr);
	m->family->to_meta(m, &wr);
	st_writer_add(&wr, "blocks.2.attn.W_K", ST_F32, 1, (int64_t[]){1}, "\0\0\0\0");
	r = st_write(&wr, fp);
	rewind(fp);
	r |= st_read(&f, fp, "tmp", err, sizeof err);
	m3 = r ? NULL : m->family->from_meta(&f, "tmp", err, sizeof err);
	if (m3)
		j3 = m3->family->hparams_json(m3);
	ok(m3 && json_equal(back, j3),
	    "family: hyper-parameters through checkpoint metadata and back");
	ok(m3 && m3->family->check_frame(m3, &f, "tmp", err, sizeof err) == -1 && strstr(err, "blocks.2.attn.W_K"),
	    "family: a frame with a third block refused for layers 2: %s", err);
	st_free(&f);
	st_writer_free(&wr);
	fclose(fp);
	json_decref(hp); json_decref(empty); json_decref(bad); json_decref(bad2); json_decref(back);
	json_decref(j2); json_decref(j3);
	model_free(m); model_free(m2); model_free(nanda); model_free(m3);
}

/* Loss, gradient, products and the generic Gram through model.h, against the kernels and the reference. */
static void
check_family_passes(struct fixture *f)
{
	struct model *m = tfm_model_new(&f->m.c);
	size_t P = m->nparams;
	int B = f->B;
	struct model_work *w4 = model_work_new(m, 4);
	struct model_hvp *h = model_hvp_new(m, B), *h4 = model_hvp_new(m, 4);
	struct model_point *pt;
	struct model_eval ev;
	float *g = calloc(P, sizeof *g), *gp = calloc(P, sizeof *gp), *v = calloc(P, sizeof *v);
	float *hv = calloc(P, sizeof *hv), *hv4 = calloc(P, sizeof *hv4);
	double *gref = calloc(P, sizeof *gref), *gb = calloc(P, sizeof *gb), *K = calloc((size_t)B * B, sizeof *K);
	double loss = tfm_ref_loss(&f->m, f->th, f->x, f->y, B, gref, NULL), gs = max_abs(gref, P);
	double trerr = 0, trmax = 0, hs = 0, d = 0;
	struct rng r;

	model_eval_set(w4, &ev, g, f->theta, f->x, f->y, B, NULL);
	ok(fabs(ev.loss_sum / B - loss) < 1e-6 && max_diff_f(g, gref, P) < 1e-5 * gs,
	    "%s: model_eval_set in batches of 4 = reference (loss %.9f, gradient diff %.2e)",
	    f->what, ev.loss_sum / B, max_diff_f(g, gref, P));
	rng_init(&r, 5, RNG_SAMPLE);
	for (size_t k = 0; k < P; k++)
		v[k] = (float)rng_normal(&r);
	pt = model_hvp_prepare(h, f->theta, f->x, f->y, B, 1.0f / B, NULL);
	model_point_apply(pt, hv, v);
	model_point_grad(pt, gp);
	model_hvp_set(h4, hv4, f->theta, v, f->x, f->y, B, 1.0 / B, NULL);
	for (size_t k = 0; k < P; k++) {
		hs = fmax(hs, fabs(hv[k]));
		d = fmax(d, fabs((double)hv[k] - hv4[k]));
	}
	ok(pt->rows == B && fabs(pt->eval.loss_sum / B - loss) < 1e-6 && max_diff_f(gp, gref, P) < 1e-5 * gs &&
	    d < 1e-5 * hs && hs > 0, "%s: HVP point's loss and gradient = reference; model_hvp_set in batches "
	    "of 4 = one point (max diff %.2e of %.2e)", f->what, d, hs);
	/* The generic Gram's trace per group = sum over rows of |row gradient in the group|^2 (reference). */
	for (int gi = 0; gi < m->ngroups; gi++) {
		size_t lo, hi;
		double tr = 0, want = 0;
		model_group_range(m, gi, &lo, &hi);
		model_gram_generic(m, f->theta, f->x, f->y, B, gi, 64 * 8 * (size_t)B, K);
		for (int b = 0; b < B; b++) {
			memset(gb, 0, P * sizeof *gb);
			tfm_ref_loss(&f->m, f->th, f->x + 2 * b, f->y + b, 1, gb, NULL);
			for (size_t k = lo; k < hi; k++)
				want += gb[k] * gb[k];
			tr += K[(size_t)b * B + b];
		}
		trerr = fmax(trerr, fabs(tr - want));
		trmax = fmax(trmax, want);
	}
	ok(trerr < 1e-5 * trmax && trmax > 0, "%s: generic per-example Gram, every group's trace = reference "
	    "(max diff %.2e of %.2e)", f->what, trerr, trmax);
	free(g); free(gp); free(v); free(hv); free(hv4); free(gref); free(gb); free(K);
	model_work_free(w4);
	model_hvp_free(h);
	model_hvp_free(h4);
	model_free(m);
}

/*
 * The attention entropy at the last position: for one layer against the
 * pattern computed here from theta, written out; the shortcuts against
 * the naive path; through the family's diagnostic; and ln T when W_Q = 0.
 */
static void
check_entropy(struct fixture *f)
{
	const struct tfm *m = &f->m;
	int T = m->n_ctx, H = m->c.heads, E = m->c.d_head, D = m->c.d_model, V = m->d_vocab, B = f->B, L = m->c.layers;
	struct tfm_work *w = tfm_work_new(m, B, 0), *wn = tfm_work_new(m, B, TFM_WORK_NAIVE);
	struct model *mm = tfm_model_new(&m->c);
	struct model_work *mw = model_work_new(mm, B);
	struct model_diag *dg = model_diag_new(mm);
	struct model_eval ev;
	double fast[TFM_MAX_LAYERS] = {0}, naive[TFM_MAX_LAYERS] = {0}, want = 0, d = 0;
	json_t *rec = json_object();
	float *th0 = malloc(m->nparams * sizeof *th0);

	tfm_forward(m, w, f->theta, f->x, B);
	tfm_attn_entropy(m, w, B, fast);
	tfm_forward(m, wn, f->theta, f->x, B);
	tfm_attn_entropy(m, wn, B, naive);
	for (int l = 0; l < L; l++)
		d = fmax(d, fabs(fast[l] - naive[l]));
	if (L == 1)   /* q, k of block 0 from the embeddings, the softmax at the last position */
		for (int b = 0; b < B; b++)
			for (int h = 0; h < H; h++) {
				int32_t tok[3] = {f->x[2 * b], f->x[2 * b + 1], m->c.p};
				double q[8] = {0}, s[3], mx = -INFINITY, z = 0;
				for (int j = 0; j < T; j++) {
					double k[8] = {0};
					for (int e = 0; e < E; e++)
						for (int c = 0; c < D; c++) {
							double xt = f->th[m->W_E + (size_t)c * V + tok[T - 1]] + f->th[m->W_pos + (size_t)(T - 1) * D + c];
							double xj = f->th[m->W_E + (size_t)c * V + tok[j]] + f->th[m->W_pos + (size_t)j * D + c];
							if (j == 0)
								q[e] += f->th[m->blk[0][TFM_WQ] + ((size_t)h * E + e) * D + c] * xt;
							k[e] += f->th[m->blk[0][TFM_WK] + ((size_t)h * E + e) * D + c] * xj;
						}
					s[j] = 0;
					for (int e = 0; e < E; e++)
						s[j] += q[e] * k[e] / sqrt((double)E);
					mx = fmax(mx, s[j]);
				}
				for (int j = 0; j < T; j++)
					z += exp(s[j] - mx);
				for (int j = 0; j < T; j++)
					want -= exp(s[j] - mx) / z * (s[j] - mx - log(z));
			}
	ok(d < 1e-5 * B * H && (L > 1 || fabs(fast[0] - want) < 1e-5 * B * H),
	    "%s: attention entropy (%.6f per row and head) = naive path's (diff %.1e)%s", f->what,
	    fast[0] / (B * H), d, L == 1 ? " = written-out softmax" : "");
	memcpy(th0, f->theta, m->nparams * sizeof *th0);
	for (int l = 0; l < L; l++)
		memset(th0 + m->blk[l][TFM_WQ], 0, (size_t)H * E * D * sizeof *th0);
	model_eval_set(mw, &ev, NULL, th0, f->x, f->y, B, dg);
	model_diag_json(dg, rec);
	d = 0;
	for (int l = 0; l < L; l++)
		d = fmax(d, fabs(json_real_value(json_array_get(json_object_get(rec, "attn_entropy"), (size_t)l)) -
		    log((double)T)));
	ok(json_array_size(json_object_get(rec, "attn_entropy")) == (size_t)L && d < 1e-6,
	    "%s: with W_Q = 0 every block's attn_entropy diagnostic is ln %d (diff %.1e)", f->what, T, d);
	json_decref(rec);
	free(th0);
	model_diag_free(dg);
	model_work_free(mw);
	model_free(mm);
	tfm_work_free(w);
	tfm_work_free(wn);
}

/*
 * The probes' gradients of a logit with respect to the x and y embedding
 * vectors: the double kernel against central differences of the
 * reference's logit in W_pos[0] and W_pos[1] for one row at a time (they
 * are added to exactly those vectors, and only that row sees them), and
 * the float32 probes through the interface against the double kernel.
 */
static void
check_probes(struct fixture *f)
{
	const struct tfm *m = &f->m;
	int B = f->B, D = m->c.d_model, C = m->c.p, M = m->c.d_mlp, cls[2] = {0, C - 1};
	struct tfm64_work *w = tfm64_work_new(m, B, TFM_WORK_NAIVE);
	struct model *mm = tfm_model_new(&m->c);
	struct model_work *mw = model_work_new(mm, B);
	const struct model_probes *pr = model_probes(mm);
	double *g = calloc(2 * (size_t)B * D, sizeof *g), *lg = calloc((size_t)C, sizeof *lg);
	double *acts = calloc((size_t)B * M, sizeof *acts), *th = malloc(m->nparams * sizeof *th);
	float *gf = calloc(4 * (size_t)B * D, sizeof *gf), *lf = calloc((size_t)B * C, sizeof *lf);
	float *af = calloc((size_t)B * M, sizeof *af);
	double fd = 0, scale = 0, df = 0, dl = 0, da = 0, h = 1e-5;
	const float *E;
	int d, ld, col0;

	memcpy(th, f->th, m->nparams * sizeof *th);
	tfm64_forward(m, w, th, f->x, B);
	tfm64_mlp_acts(m, w, B, acts);
	pr->forward(mw, f->theta, f->x, B, lf, af);
	dl = max_diff_f(lf, tfm64_logits(w), (size_t)B * C);
	da = max_diff_f(af, acts, (size_t)B * M);
	pr->embed_grad(mw, f->theta, f->x, B, cls, 2, gf, gf + 2 * (size_t)B * D);
	for (int k = 0; k < 2; k++) {
		tfm64_logit_input_grad(m, w, th, B, cls[k], g, g + (size_t)B * D);
		scale = fmax(scale, max_abs(g, 2 * (size_t)B * D));
		df = fmax(df, max_diff_f(gf + (size_t)k * B * D, g, (size_t)B * D));
		df = fmax(df, max_diff_f(gf + (size_t)(2 + k) * B * D, g + (size_t)B * D, (size_t)B * D));
		for (int b = 0; b < B; b++)
			for (int t = 0; t < 2; t++)
				for (int e = 0; e < D; e++) {
					double *q = th + m->W_pos + (size_t)t * D + e, q0 = *q, up, dn;
					*q = q0 + h;
					tfm_ref_loss(m, th, f->x + 2 * b, f->y + b, 1, NULL, lg);
					up = lg[cls[k]];
					*q = q0 - h;
					tfm_ref_loss(m, th, f->x + 2 * b, f->y + b, 1, NULL, lg);
					dn = lg[cls[k]];
					*q = q0;
					fd = fmax(fd, fabs((up - dn) / (2 * h) - g[((size_t)t * B + b) * D + e]));
				}
	}
	ok(fd < 1e-7 * fmax(1, scale) && scale > 0, "%s: d logit / d (x, y embedding vectors) = central differences "
	    "of the reference's logits, max diff %.2e (scale %.2f)", f->what, fd, scale);
	ok(df < 1e-5 * fmax(1, scale) && dl < 1e-5 && da < 1e-5 && pr->neurons(mm, &(const char *){0}) == M,
	    "%s: float32 probes = double kernels: embedding gradients %.1e, logits %.1e, %d neurons %.1e", f->what,
	    df, dl, M, da);
	ok(pr->embedding(mm, f->theta, 1, &E, &d, &ld, &col0) == 0 && E == f->theta + m->W_E && d == D &&
	    ld == m->d_vocab && col0 == 0, "%s: both operands' embedding is W_E (%d x %d), residue r in column r",
	    f->what, D, m->d_vocab);
	free(g); free(lg); free(acts); free(th); free(gf); free(lf); free(af);
	model_work_free(mw);
	model_free(mm);
	tfm64_work_free(w);
}

static void
tests(void)
{
	static const double alphas[] = {0, 0.3, 1};

	check_layout();
	check_family_layout();
	check_chunks();
	for (int L = 1; L <= 2; L++)
		for (int att = 0; att < 2; att++)
			for (int a = 0; a < 3; a++)
				for (int eq = 1; eq >= 0; eq--)
					for (int act = 0; act < 2; act++) {
						struct tfm_config c = {.p = 7, .layers = L, .d_model = 8, .heads = 2,
						    .d_head = 3, .d_mlp = 12, .attention = att, .alpha = alphas[a],
						    .act = act, .eq_token = eq};
						struct fixture f;
						fixture_make(&f, &c, 9, (uint64_t)(L * 100 + att * 20 + a * 4 + eq * 2 + act));
						check_gradients(&f);
						check_hvp(&f);
						check_rows(&f);
						check_shortcuts(&f);
						check_entropy(&f);
						check_probes(&f);
						if (a == 1 && act == 1)
							check_family_passes(&f);
						fixture_free(&f);
					}
}

static const char *
need_meta(const struct st_frame *f, const char *key)
{
	const char *s = st_meta(f, key);

	if (!s)
		die("input has no metadata '%s'", key);
	return s;
}

static void
ref_config(const struct st_frame *f, struct tfm_config *c)
{
	c->p = (int)opt_int("p", need_meta(f, "p"), 2, 100000);
	c->layers = (int)opt_int("layers", need_meta(f, "layers"), 1, TFM_MAX_LAYERS);
	c->d_model = (int)opt_int("d_model", need_meta(f, "d_model"), 1, TFM_MAX_DIM);
	c->heads = (int)opt_int("heads", need_meta(f, "heads"), 1, TFM_MAX_DIM);
	c->d_head = (int)opt_int("d_head", need_meta(f, "d_head"), 1, TFM_MAX_DIM);
	c->d_mlp = (int)opt_int("d_mlp", need_meta(f, "d_mlp"), 1, 4 * TFM_MAX_DIM);
	c->attention = opt_choice("attention", need_meta(f, "attention"), tfm_attention_names);
	c->alpha = opt_real("alpha", need_meta(f, "alpha"), 0, 1);
	c->act = opt_choice("act", need_meta(f, "act"), tfm_act_names);
	c->eq_token = (int)opt_int("eq_token", need_meta(f, "eq_token"), 0, 1);
}

/* The tensors prefix+name of every parameter, into the flat layout. */
static void
ref_read_params(const struct st_frame *f, const struct tfm *m, const char *prefix, double *out)
{
	char name[64], full[96], err[ST_ERRLEN];
	int ndim;
	int64_t shape[3];

	for (int k = 0; k < m->ntensors; k++) {
		size_t off = tfm_tensor_info(m, k, name, sizeof name, &ndim, shape);
		const struct st_tensor *t;
		snprintf(full, sizeof full, "%s%s", prefix, name);
		if (!(t = st_expect(f, full, ST_F64, ndim, shape, err, sizeof err)))
			die("%s", err);
		memcpy(out + off, t->data, t->nbytes);
	}
}

static void
ref_add_params(struct st_writer *wr, const struct tfm *m, const char *prefix, const double *vec)
{
	char name[64], full[96];
	int ndim;
	int64_t shape[3];

	for (int k = 0; k < m->ntensors; k++) {
		size_t off = tfm_tensor_info(m, k, name, sizeof name, &ndim, shape);
		snprintf(full, sizeof full, "%s%s", prefix, name);
		st_writer_add(wr, full, ST_F64, ndim, shape, vec + off);
	}
}

/* out[0] = mean loss, out[1..P] = gradient, out[P+1..2P] = H v, by the double kernels. */
static void
ref_run64(const struct tfm *m, const double *th, const double *v, const int32_t *x, const int32_t *y,
    int B, double *out)
{
	struct tfm64_work *w = tfm64_work_new(m, B, 1);
	struct tfm64_prepared *s = tfm64_hvp_prepare(m, w, th, x, y, B, 1.0 / B);

	out[0] = tfm64_hvp_eval(s).loss_sum / B;
	tfm64_hvp_grad(s, out + 1);
	tfm64_hvp_apply(s, out + 1 + m->nparams, v);
	tfm64_work_free(w);
}

/* The same by the float32 kernels, widened to double. */
static void
ref_run32(const struct tfm *m, const double *th, const double *v, const int32_t *x, const int32_t *y,
    int B, double *out)
{
	size_t P = m->nparams;
	struct tfm_work *w = tfm_work_new(m, B, 1);
	float *buf = calloc(4 * P, sizeof *buf);
	struct tfm_prepared *s;

	for (size_t k = 0; k < P; k++)
		buf[k] = (float)th[k], buf[P + k] = (float)v[k];
	s = tfm_hvp_prepare(m, w, buf, x, y, B, 1.0f / B);
	out[0] = tfm_hvp_eval(s).loss_sum / B;
	tfm_hvp_grad(s, buf + 2 * P);
	tfm_hvp_apply(s, buf + 3 * P, buf + P);
	for (size_t k = 0; k < 2 * P; k++)
		out[1 + k] = buf[2 * P + k];
	free(buf);
	tfm_work_free(w);
}

static int
ref_main(const char *in, const char *outpath)
{
	struct st_frame f;
	struct st_writer wr;
	struct tfm_config c;
	struct tfm m;
	char err[ST_ERRLEN];
	const struct st_tensor *tx, *ty;
	int64_t one = 1;
	double *th, *v, *o64, *o32, *oref;
	int32_t *x, *y;
	int B;
	size_t P;
	FILE *fp;

	if (st_load(&f, in, err, sizeof err) != 0)
		die("%s", err);
	ref_config(&f, &c);
	if (tfm_layout(&m, &c) != 0)
		die("%s: configuration out of range", in);
	P = m.nparams;
	if (!(tx = st_expect(&f, "x", ST_I32, 2, (int64_t[]){-1, 2}, err, sizeof err)) ||
	    !(ty = st_expect(&f, "y", ST_I32, 1, (int64_t[]){tx->shape[0]}, err, sizeof err)))
		die("%s", err);
	B = (int)tx->shape[0];
	x = calloc(2 * (size_t)B, sizeof *x), y = calloc((size_t)B, sizeof *y);
	memcpy(x, tx->data, tx->nbytes);
	memcpy(y, ty->data, ty->nbytes);
	for (int b = 0; b < B; b++)
		if (x[2 * b] < 0 || x[2 * b] >= c.p || x[2 * b + 1] < 0 || x[2 * b + 1] >= c.p || y[b] < 0 || y[b] >= c.p)
			die("%s: row %d out of range", in, b);
	th = calloc(P, sizeof *th), v = calloc(P, sizeof *v);
	o64 = calloc(2 * P + 1, sizeof *o64), o32 = calloc(2 * P + 1, sizeof *o32), oref = calloc(P + 1, sizeof *oref);
	ref_read_params(&f, &m, "", th);
	ref_read_params(&f, &m, "v.", v);
	ref_run64(&m, th, v, x, y, B, o64);
	ref_run32(&m, th, v, x, y, B, o32);
	oref[0] = tfm_ref_loss(&m, th, x, y, B, oref + 1, NULL);
	st_writer_init(&wr);
	st_writer_add(&wr, "loss", ST_F64, 1, &one, o64);
	ref_add_params(&wr, &m, "grad.", o64 + 1);
	ref_add_params(&wr, &m, "hv.", o64 + 1 + P);
	st_writer_add(&wr, "loss32", ST_F64, 1, &one, o32);
	ref_add_params(&wr, &m, "grad32.", o32 + 1);
	ref_add_params(&wr, &m, "hv32.", o32 + 1 + P);
	st_writer_add(&wr, "ref.loss", ST_F64, 1, &one, oref);
	ref_add_params(&wr, &m, "ref.grad.", oref + 1);
	if (!(fp = fopen(outpath, "wb")) || st_write(&wr, fp) != 0 || fclose(fp) != 0)
		die("%s:", outpath);
	st_writer_free(&wr);
	st_free(&f);
	free(x); free(y); free(th); free(v); free(o64); free(o32); free(oref);
	return 0;
}

int
main(int argc, char **argv)
{
	setprogname(argv[0]);
	if (argc == 4 && strcmp(argv[1], "--ref") == 0)
		return ref_main(argv[2], argv[3]);
	if (argc != 1)
		usage_error("usage: test_transformer [--ref IN.safetensors OUT.safetensors]");
	tests();
	return tap_done();
}
