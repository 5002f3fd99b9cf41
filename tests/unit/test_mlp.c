/*
 * mlp: the fast float32 model against the naive double-precision reference
 * (dense one-hot first layer), the reference against central finite
 * differences, batching, layout and initialisation.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"
#include "optim.h"
#include "rng.h"
#include "tap.h"

static double
max_abs(const double *a, size_t n)
{
	double m = 0;

	for (size_t i = 0; i < n; i++)
		m = fabs(a[i]) > m ? fabs(a[i]) : m;
	return m;
}

static void
check_config(int p, int depth, int width, enum mlp_encoding enc, enum mlp_loss loss)
{
	enum { B = 12 };
	struct mlp_config c = {p, depth, width, enc, loss};
	struct mlp m;
	struct mlp_work *w;
	struct model_eval ev = {0};
	struct rng r;
	int32_t x[2 * B], y[B];
	float *theta, *grad;
	double *th, *gref, *gfd, *lref, maxdiff = 0, gscale, gerr = 0, fderr = 0, loss_ref;
	size_t P;
	char what[96];

	snprintf(what, sizeof what, "%s/%s depth %d", mlp_encoding_names[enc], mlp_loss_names[loss], depth);
	mlp_layout(&m, &c);
	P = m.nparams;
	theta = calloc(P, sizeof *theta);
	grad = calloc(P, sizeof *grad);
	th = calloc(P, sizeof *th);
	gref = calloc(P, sizeof *gref);
	gfd = calloc(P, sizeof *gfd);
	lref = calloc((size_t)B * p, sizeof *lref);
	rng_init(&r, 11 + depth, RNG_INIT);
	mlp_init_params(&m, theta, &r);
	for (size_t k = 0; k < P; k++)
		th[k] = theta[k];
	for (int b = 0; b < B; b++) {
		x[2 * b] = (int32_t)rng_below(&r, (uint32_t)p);
		x[2 * b + 1] = (int32_t)rng_below(&r, (uint32_t)p);
		y[b] = (x[2 * b] + x[2 * b + 1]) % p;
	}

	w = mlp_work_new(&m, B);
	mlp_forward(&m, w, theta, x, B);
	mlp_loss(&m, w, &ev, y, B, 1.0f / B);
	mlp_backward(&m, w, grad, theta, x, B);
	loss_ref = mlp_ref_loss(&m, th, x, y, B, gref, lref);
	for (int k = 0; k < B * p; k++)
		maxdiff = fmax(maxdiff, fabs((double)w->logits[k] - lref[k]));
	ok(maxdiff < 1e-5, "%s: fast logits (gather first layer) = dense one-hot reference, max diff %.2e",
	    what, maxdiff);
	ok(fabs(ev.loss_sum / B - loss_ref) < 1e-6 * fmax(1, loss_ref),
	    "%s: loss %.9f = reference %.9f", what, ev.loss_sum / B, loss_ref);
	gscale = max_abs(gref, P);
	for (size_t k = 0; k < P; k++)
		gerr = fmax(gerr, fabs((double)grad[k] - gref[k]));
	ok(gerr < 1e-5 * gscale + 1e-7, "%s: fast gradient = reference, max diff %.2e (max |g| %.2e)",
	    what, gerr, gscale);

	/* Central differences of the double reference, every parameter. */
	for (size_t k = 0; k < P; k++) {
		double h = 1e-6 * fmax(1, fabs(th[k])), save = th[k], lp, lm;
		th[k] = save + h;
		lp = mlp_ref_loss(&m, th, x, y, B, NULL, NULL);
		th[k] = save - h;
		lm = mlp_ref_loss(&m, th, x, y, B, NULL, NULL);
		th[k] = save;
		gfd[k] = (lp - lm) / (2 * h);
		fderr = fmax(fderr, fabs(gfd[k] - gref[k]));
	}
	ok(fderr < 1e-7 * fmax(1, gscale) , "%s: reference gradient = central differences, max diff %.2e over %zu parameters",
	    what, fderr, P);

	/* Batching: the same set in chunks of 5 gives the same mean loss and gradient. */
	{
		struct mlp_work *w5 = mlp_work_new(&m, 5);
		struct model_eval e5, e12;
		float *g5 = calloc(P, sizeof *g5), *g12 = calloc(P, sizeof *g12);
		double d = 0;
		mlp_eval_set(&m, w5, &e5, g5, theta, x, y, B, NULL);
		mlp_eval_set(&m, w, &e12, g12, theta, x, y, B, NULL);
		for (size_t k = 0; k < P; k++)
			d = fmax(d, fabs((double)g5[k] - g12[k]));
		ok(fabs(e5.loss_sum - e12.loss_sum) < 1e-5 && e5.correct == e12.correct && d < 1e-6 * gscale + 1e-8,
		    "%s: evaluation in chunks of 5 = one batch (gradient diff %.2e)", what, d);
		free(g5);
		free(g12);
		mlp_work_free(w5);
	}
	/* The loss and gradient a prepare leaves behind = the plain evaluation's (same kernels). */
	{
		struct mlp_hvp *hp = mlp_hvp_new(&m, B);
		struct mlp_point *pt;
		float *gp = calloc(P, sizeof *gp);
		double d = 0;
		pt = mlp_hvp_prepare(hp, theta, x, y, B, 1.0f / B);
		mlp_point_grad(pt, gp);
		for (size_t k = 0; k < P; k++)
			d = fmax(d, fabs((double)gp[k] - grad[k]));
		ok(pt->base.eval.loss_sum == ev.loss_sum && pt->base.eval.correct == ev.correct && d == 0 && gscale > 0,
		    "%s: prepare's loss and mlp_point_grad = forward and backward, exactly (max diff %.2e)", what, d);
		free(gp);
		mlp_hvp_free(hp);
	}
	/* Hessian-vector products against central differences of the double gradient. */
	{
		struct model *mm = mlp_model_new(&c);
		struct model_hvp *wh = model_hvp_new(mm, 5);
		float *tmp = calloc(2 * P, sizeof *tmp);
		float *v = calloc(P, sizeof *v), *u = calloc(P, sizeof *u);
		float *hv = calloc(P, sizeof *hv), *hu = calloc(P, sizeof *hu);
		double *gp = calloc(P, sizeof *gp), *gm = calloc(P, sizeof *gm);
		double h = 1e-5, err = 0, scale = 0, uhv = 0, vhu = 0;
		for (size_t k = 0; k < P; k++) {
			v[k] = (float)rng_normal(&r);
			u[k] = (float)rng_normal(&r);
		}
		model_hvp_set(wh, hv, theta, v, x, y, B, 1.0 / B, tmp);
		model_hvp_set(wh, hu, theta, u, x, y, B, 1.0 / B, tmp);
		for (size_t k = 0; k < P; k++)
			th[k] = theta[k] + h * v[k];
		mlp_ref_loss(&m, th, x, y, B, gp, NULL);
		for (size_t k = 0; k < P; k++)
			th[k] = theta[k] - h * v[k];
		mlp_ref_loss(&m, th, x, y, B, gm, NULL);
		for (size_t k = 0; k < P; k++) {
			double fd = (gp[k] - gm[k]) / (2 * h);
			err = fmax(err, fabs(fd - hv[k]));
			scale = fmax(scale, fabs(fd));
			uhv += (double)u[k] * hv[k];
			vhu += (double)v[k] * hu[k];
		}
		ok(err < 1e-4 * scale, "%s: Hessian-vector product (R-operator, batches of 5) = central differences "
		    "of the double gradient, max diff %.2e (max |Hv| %.2e)", what, err, scale);
		ok(fabs(uhv - vhu) < 1e-5 * fmax(fabs(uhv), 1e-3), "%s: u.Hv = v.Hu (%.8f, %.8f)", what, uhv, vhu);
		for (size_t k = 0; k < P; k++)
			th[k] = theta[k];
		free(v); free(u); free(hv); free(hu); free(gp); free(gm); free(tmp);
		model_hvp_free(wh);
		model_free(mm);
	}
	/*
	 * The per-example gradient Gram matrix against J J^T from one backward
	 * per row; the closed form (the MLP's fast path) against the generic
	 * route (per-example gradients in chunks of 3 parameters, dsyrk).
	 */
	{
		struct model *mm = mlp_model_new(&c);
		struct model_gram *G = model_gram_new(mm, theta, x, y, B, 0, NULL);
		struct mlp_work *w1 = mlp_work_new(&m, 1);
		double *J = calloc((size_t)B * P, sizeof *J), *K = calloc(B * B, sizeof *K);
		double *term = calloc(B * B, sizeof *term), *gen = calloc(B * B, sizeof *gen);
		double *u = calloc(B, sizeof *u), *jtu = calloc(P, sizeof *jtu), kerr = 0, kmax = 0, lerr = 0, cerr = 0;
		double generr = 0;
		float *g1 = calloc(P, sizeof *g1);
		struct model_eval e1;
		for (int b = 0; b < B; b++) {
			memset(g1, 0, P * sizeof *g1);
			mlp_eval_set(&m, w1, &e1, g1, theta, x + 2 * b, y + b, 1, NULL);
			for (size_t k = 0; k < P; k++)
				J[(size_t)b * P + k] = g1[k];
			u[b] = rng_normal(&r);
		}
		for (int i = 0; i < m.nlayers; i++) {
			size_t lo = m.woff[i], hi = m.boff[i] + (size_t)m.out[i];
			model_gram_group(G, i, term, GRAM_RAW);
			model_gram_generic(mm, theta, x, y, B, i, 3 * B * sizeof(double), gen);
			for (int b = 0; b < B; b++)
				for (int c = 0; c <= b; c++) {
					double e = 0;
					for (size_t k = lo; k < hi; k++)
						e += J[(size_t)b * P + k] * J[(size_t)c * P + k];
					lerr = fmax(lerr, fabs(e - term[b * B + c]));
					generr = fmax(generr, fabs(gen[b * B + c] - term[b * B + c]));
					K[b * B + c] += term[b * B + c];
				}
		}
		for (int b = 0; b < B; b++)
			for (int c = 0; c <= b; c++) {
				double e = 0;
				for (size_t k = 0; k < P; k++)
					e += J[(size_t)b * P + k] * J[(size_t)c * P + k];
				kerr = fmax(kerr, fabs(e - K[b * B + c]));
				kmax = fmax(kmax, fabs(e));
			}
		ok(kerr < 1e-5 * kmax, "%s: per-example gradient Gram = J J^T from %d backward passes, max diff %.2e (max %.2e)",
		    what, B, kerr, kmax);
		ok(lerr < 1e-5 * kmax, "%s: each layer's Gram term = its block of J J^T, max diff %.2e", what, lerr);
		ok(generr < 1e-5 * kmax && kmax > 0, "%s: closed-form Gram terms = the generic route's "
		    "(chunks of 3 parameters), max diff %.2e", what, generr);
		model_gram_combine(G, jtu, u);
		for (size_t k = 0; k < P; k++) {
			double e = 0;
			for (int b = 0; b < B; b++)
				e += u[b] * J[(size_t)b * P + k];
			cerr = fmax(cerr, fabs(e - jtu[k]));
		}
		ok(cerr < 1e-5 * sqrt(kmax), "%s: J^T u without J, max diff %.2e", what, cerr);
		free(J); free(K); free(term); free(gen); free(u); free(jtu); free(g1);
		model_gram_free(G);
		mlp_work_free(w1);
		model_free(mm);
	}
	mlp_work_free(w);
	free(theta);
	free(grad);
	free(th);
	free(gref);
	free(gfd);
	free(lref);
}

static void
layout_and_init(void)
{
	struct mlp_config c = {97, 2, 128, MLP_ONEHOT, MLP_CE};
	struct mlp m;
	struct rng r;
	float *theta;
	int inside = 1;
	double s2 = 0;
	size_t nw;
	char name[32];

	mlp_layout(&m, &c);
	ok(m.nparams == 194 * 128 + 128 + 128 * 128 + 128 + 128 * 97 + 97,
	    "parameter count of p=97 depth 2 width 128: %zu", m.nparams);
	ok(m.woff[1] == 194 * 128 + 128 && m.boff[2] == m.woff[2] + 128 * 97,
	    "weight then bias, layer by layer, as nn.Sequential");
	mlp_tensor_name(5, name, sizeof name);
	ok(strcmp(name, "layers.2.bias") == 0, "tensor 5 is %s", name);
	theta = calloc(m.nparams, sizeof *theta);
	rng_init(&r, 0, RNG_INIT);
	mlp_init_params(&m, theta, &r);
	for (int i = 0; i < m.nlayers; i++) {
		float bound = (float)(1.0 / sqrt((double)m.in[i]));
		for (size_t k = m.woff[i]; k < m.boff[i] + (size_t)m.out[i]; k++)
			inside &= fabsf(theta[k]) <= bound;
	}
	ok(inside, "every parameter within +-1/sqrt(fan_in)");
	nw = (size_t)m.in[1] * m.out[1];
	for (size_t k = 0; k < nw; k++)
		s2 += (double)theta[m.woff[1] + k] * theta[m.woff[1] + k];
	ok(fabs(sqrt(s2 / nw) - 1.0 / sqrt(3.0 * 128)) < 0.002,
	    "layer 1 weights have the uniform's standard deviation %.4f (want %.4f)",
	    sqrt(s2 / nw), 1.0 / sqrt(3.0 * 128));
	c.depth = MLP_MAX_DEPTH + 1;
	ok(mlp_layout(&m, &c) == -1, "depth above the limit is refused");
	free(theta);
}

/* Optimisers against their update rules written out in double. */
static void
optimisers(void)
{
	enum { N = 4, T = 5 };
	float th[N] = {0.5f, -1.0f, 2.0f, 0.0f}, g[N];
	double dth[N], m[N] = {0}, v[N] = {0}, buf[N] = {0}, err = 0;
	struct optim o;
	struct optim_config cw = {OPT_ADAMW, 0.01, 0.9, 0.98, 1e-8, 0.5, 0, 0};
	struct optim_config cs = {OPT_SGD, 0.1, 0, 0, 0, 0.01, 0.9, 1};

	for (int k = 0; k < N; k++)
		dth[k] = th[k];
	optim_init(&o, &cw, N);
	for (int t = 1; t <= T; t++) {
		for (int k = 0; k < N; k++)
			g[k] = (float)(0.3 * (k + 1) - 0.1 * t);
		optim_step(&o, th, g, cw.lr);
		for (int k = 0; k < N; k++) {
			double gd = g[k];
			dth[k] *= 1 - cw.lr * cw.wd;
			m[k] = 0.9 * m[k] + 0.1 * gd;
			v[k] = 0.98 * v[k] + 0.02 * gd * gd;
			dth[k] -= cw.lr / (1 - pow(0.9, t)) * m[k] / (sqrt(v[k]) / sqrt(1 - pow(0.98, t)) + 1e-8);
		}
	}
	for (int k = 0; k < N; k++)
		err = fmax(err, fabs(th[k] - dth[k]));
	ok(err < 1e-6, "AdamW: five steps as the update rule in double, max diff %.2e", err);
	optim_free(&o);

	for (int k = 0; k < N; k++)
		dth[k] = th[k] = (float)(k - 1.5);
	optim_init(&o, &cs, N);
	for (int t = 1; t <= T; t++) {
		for (int k = 0; k < N; k++)
			g[k] = (float)(0.2 * k + 0.05 * t);
		optim_step(&o, th, g, cs.lr);
		for (int k = 0; k < N; k++) {
			double gd = g[k] + 0.01 * dth[k];
			buf[k] = t == 1 ? gd : 0.9 * buf[k] + gd;
			dth[k] -= 0.1 * (gd + 0.9 * buf[k]);
		}
	}
	err = 0;
	for (int k = 0; k < N; k++)
		err = fmax(err, fabs(th[k] - dth[k]));
	ok(err < 1e-6, "SGD with Nesterov momentum and decay: five steps, max diff %.2e", err);
	optim_free(&o);
}

/*
 * The live view (mlp_point_restrict) on a net with units made dead on every
 * row (bias -1e3): unit 1 of each hidden layer, and with whole_layer all
 * of hidden layer 2.  Its products must equal the full model's, be zero
 * on the dead units' parameters, and match central differences of the
 * double reference gradient; and the view must survive many products.
 */
static void
compact_view(enum mlp_encoding enc, enum mlp_loss loss, int whole_layer)
{
	enum { B = 12, D = 4, WIDTH = 8, P7 = 7 };
	struct mlp_config c = {P7, D, WIDTH, enc, loss};
	struct mlp m;
	struct model *mm = mlp_model_new(&c);
	struct model_hvp *wf, *wl;
	struct model_point *pf, *pl;
	struct model_view *view;
	struct rng r;
	int32_t x[2 * B], y[B];
	float *theta, *v, *u, *hf, *hl, *hl2, *tmp;
	double *th, *gp, *gm, h = 1e-5, eq = 0, fd = 0, scale = 0, dead = 0, again = 0;
	int killed = 0, dropped;
	size_t P;
	char what[64];

	snprintf(what, sizeof what, "%s/%s live view%s", mlp_encoding_names[enc], mlp_loss_names[loss],
	    whole_layer ? ", a whole layer dead" : "");
	mlp_layout(&m, &c);
	P = m.nparams;
	theta = calloc(P, sizeof *theta);
	v = calloc(P, sizeof *v);
	u = calloc(P, sizeof *u);
	hf = calloc(P, sizeof *hf);
	hl = calloc(P, sizeof *hl);
	hl2 = calloc(P, sizeof *hl2);
	th = calloc(P, sizeof *th);
	gp = calloc(P, sizeof *gp);
	gm = calloc(P, sizeof *gm);
	rng_init(&r, 5, RNG_INIT);
	mlp_init_params(&m, theta, &r);
	for (int i = 0; i < D; i++)
		for (int j = 0; j < WIDTH; j++)
			if (j == 1 || (whole_layer && i == 2)) {
				theta[m.boff[i] + j] = -1e3f;
				killed++;
			}
	for (int b = 0; b < B; b++) {
		x[2 * b] = (int32_t)rng_below(&r, P7);
		x[2 * b + 1] = (int32_t)rng_below(&r, P7);
		y[b] = (x[2 * b] + x[2 * b + 1]) % P7;
	}
	for (size_t k = 0; k < P; k++) {
		v[k] = (float)rng_normal(&r);
		u[k] = (float)rng_normal(&r);
	}
	tmp = calloc(2 * P, sizeof *tmp);
	wf = model_hvp_new(mm, B);
	wl = model_hvp_new(mm, B);
	pf = model_hvp_prepare(wf, theta, x, y, B, 1.0f / B, NULL);
	model_point_apply(pf, hf, v);
	pl = model_hvp_prepare(wl, theta, x, y, B, 1.0f / B, NULL);
	view = model_point_restrict(pl);
	dropped = view ? mlp_view_dropped((struct mlp_view *)view) : 0;
	ok(view != NULL, "%s: the point has a view (units were made dead)", what);
	if (!view) {
		printf("Bail out! no view to test\n");
		exit(1);
	}
	model_view_apply_full(view, hl, v, tmp);
	model_view_apply_full(view, hl2, u, tmp);
	memset(hl2, 0, P * sizeof *hl2);
	model_view_apply_full(view, hl2, v, tmp);
	for (size_t k = 0; k < P; k++)
		th[k] = theta[k] + h * v[k];
	mlp_ref_loss(&m, th, x, y, B, gp, NULL);
	for (size_t k = 0; k < P; k++)
		th[k] = theta[k] - h * v[k];
	mlp_ref_loss(&m, th, x, y, B, gm, NULL);
	for (size_t k = 0; k < P; k++) {
		scale = fmax(scale, fabs((gp[k] - gm[k]) / (2 * h)));
		fd = fmax(fd, fabs((gp[k] - gm[k]) / (2 * h) - hl[k]));
		eq = fmax(eq, fabs((double)hl[k] - hf[k]));
		again = fmax(again, fabs((double)hl2[k] - hl[k]));
	}
	/* The dead units' incoming weights and biases, and their outgoing weights. */
	for (int i = 0; i < D; i++)
		for (int j = 0; j < WIDTH; j++)
			if (theta[m.boff[i] + j] == -1e3f) {
				dead = fmax(dead, fabs(hl[m.boff[i] + j]));
				for (int k = 0; k < m.in[i]; k++)
					dead = fmax(dead, fabs(hl[m.woff[i] + (size_t)j * m.in[i] + k]));
				for (int k = 0; k < m.out[i + 1]; k++)
					dead = fmax(dead, fabs(hl[m.woff[i + 1] + (size_t)k * m.in[i + 1] + j]));
			}
	{
		/*
		 * Each layer's Gram term from the view's packed rows = from the
		 * point's full rows (a scale-1 prepare), the point still whole
		 * beside its view; and its gradient = an unrestricted point's.
		 */
		struct mlp_hvp *gh = mlp_hvp_new(&m, B);
		struct mlp_point *gp1 = mlp_hvp_prepare(gh, theta, x, y, B, 1.0f);
		struct mlp_view *gv = mlp_point_restrict(gp1);
		double *tf = calloc(B * B, sizeof *tf), *tl = calloc(B * B, sizeof *tl);
		double *s = calloc(mlp_gram_scratch(&m, B), sizeof *s);
		double gd = 0, gmax = 0, lv = 0, gg = 0;
		float *vl = calloc(P, sizeof *vl), *hvl = calloc(P, sizeof *hvl);
		float *g1 = calloc(P, sizeof *g1), *g2 = calloc(P, sizeof *g2);
		for (int i = 0; i < m.nlayers; i++) {
			mlp_gram_layer(gp1, NULL, i, tf, GRAM_RAW, s);
			mlp_gram_layer(gp1, gv, i, tl, GRAM_RAW, s);
			for (int b = 0; b < B; b++)
				for (int q = 0; q <= b; q++) {
					gd = fmax(gd, fabs(tl[b * B + q] - tf[b * B + q]));
					gmax = fmax(gmax, fabs(tf[b * B + q]));
				}
		}
		ok(gd <= 1e-12 * gmax && gmax > 0, "%s: Gram terms from the view = from its point, "
		    "max diff %.2e (max %.2e)", what, gd, gmax);
		model_point_grad(pl, g1);
		model_point_grad(pf, g2);
		for (size_t k = 0; k < P; k++)
			gg = fmax(gg, fabs((double)g1[k] - g2[k]));
		ok(gg == 0, "%s: a restricted point's gradient = an unrestricted one's, max diff %.2e", what, gg);
		/* The product in the live layout itself, scattered, = the full-layout call's. */
		for (size_t k = 0; k < view->nparams; k++)
			vl[k] = v[view->map[k]];
		model_view_apply(view, hvl, vl);
		for (size_t k = 0; k < view->nparams; k++)
			lv = fmax(lv, fabs((double)hvl[k] - hl[view->map[k]]));
		ok(lv == 0, "%s: the product in the view's layout = through the full layout, max diff %.2e", what, lv);
		free(tf); free(tl); free(s); free(vl); free(hvl); free(g1); free(g2);
		mlp_hvp_free(gh);
	}
	ok(dropped >= killed - (whole_layer ? 1 : 0) && view->nparams < P,
	    "%s: %d units dropped (%d made dead)", what, dropped, killed);
	ok(eq <= 1e-6 * scale, "%s: product = the full model's, max diff %.2e (max |Hv| %.2e)", what, eq, scale);
	ok(dead == 0, "%s: zero on every dead unit's parameters", what);
	ok(fd < 1e-4 * scale, "%s: product = central differences of the double gradient, max diff %.2e", what, fd);
	ok(again == 0, "%s: a later product of the same v is the same", what);
	model_hvp_free(wf);
	model_hvp_free(wl);
	model_free(mm);
	free(theta); free(v); free(u); free(hf); free(hl); free(hl2); free(th); free(gp); free(gm); free(tmp);
}

/*
 * The loss row on logits the small models never reach: spreads of 0.01 to
 * 200 (exponentials down to 0), ties for the largest, widths that end a
 * vector early or late.  Each d loss / d logit against the softmax in
 * double: within 4 float32 ulp of the probability plus 2^-24 of the scale
 * (the label's subtraction); the loss, argmax and collapse count exactly.
 */
static void
softmax_extremes(void)
{
	static const int widths[] = {2, 15, 16, 17, 97, 113};
	static const double spreads[] = {0.01, 3.0, 40.0, 200.0};
	double worst = 0.0;
	int bad_arg = 0, bad_loss = 0, bad_collapse = 0, sure = 0, rows = 0;
	struct rng r;

	rng_init(&r, 11, 0);
	for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++)
		for (size_t si = 0; si < sizeof spreads / sizeof *spreads; si++) {
			struct mlp_config c = {widths[wi], 0, 1, MLP_ONEHOT, MLP_CE};
			struct mlp m;
			struct mlp_work *w;
			struct model_eval ev = {0};
			int B = 9, V = widths[wi], y[9], correct = 0, surely = 0, maybe = 0;
			double loss = 0.0;
			mlp_layout(&m, &c);
			w = mlp_work_new(&m, B);
			for (int b = 0; b < B; b++) {
				float *z = w->logits + (size_t)b * V;
				for (int j = 0; j < V; j++)
					z[j] = (float)(spreads[si] * (2.0 * rng_uniform(&r) - 1.0));
				if (b % 3 == 1)   /* a tie for the largest: the first index counts */
					z[V - 1] = z[V / 2] = 1e3f;
				y[b] = (int)(rng_uniform(&r) * V) % V;
			}
			mlp_loss(&m, w, &ev, y, B, 0.5f);
			for (int b = 0; b < B; b++) {
				const float *z = w->logits + (size_t)b * V;
				double mx = z[0], s = 0.0;
				int arg = 0;
				for (int j = 1; j < V; j++)
					if (z[j] > mx)
						mx = z[j], arg = j;
				for (int j = 0; j < V; j++)
					s += exp(z[j] - mx);
				correct += arg == y[b];
				/* the float sum rounds to 1 surely, or depending on its order */
				surely += s - 1.0 < 0x1p-26;
				maybe += s - 1.0 < 0x1p-22;
				loss += mx + log(s) - z[y[b]];
				for (int j = 0; j < V; j++) {
					double pj = exp(z[j] - mx) / s, want = 0.5 * (pj - (j == y[b]));
					double err = fabs(w->dlogits[(size_t)b * V + j] - want) /
					    (4 * 0x1p-24 * 0.5 * pj + 0x1p-24 * 0.5 + 1e-300);
					worst = err > worst || err != err ? err : worst;
				}
			}
			bad_arg += ev.correct != correct;
			bad_collapse += ev.collapsed < surely || ev.collapsed > maybe;
			sure += surely;
			rows += B;
			bad_loss += !(fabs(ev.loss_sum - loss) <= 1e-12 * fmax(1.0, loss) * B * 1e4);
			mlp_work_free(w);
		}
	ok(worst <= 1.0, "softmax rows at spreads to 200 and ties: d loss / d z within bound (worst %.2f of it)", worst);
	ok(bad_arg == 0, "softmax rows: the argmax is the first largest logit (%d cases differ)", bad_arg);
	ok(bad_collapse == 0 && sure > 0 && sure < rows,
	    "softmax rows: collapse counted as 1/sum == 1 in float (%d cases outside; %d of %d rows surely)",
	    bad_collapse, sure, rows);
	ok(bad_loss == 0, "softmax rows: loss to 1e-8 of the double reference (%d cases differ)", bad_loss);
}

/* max |a - b| over n floats against doubles, and max |b|. */
static double
max_diff(const float *a, const double *b, size_t n, double *scale)
{
	double d = 0;

	*scale = 0;
	for (size_t k = 0; k < n; k++) {
		d = fmax(d, fabs((double)a[k] - b[k]));
		*scale = fmax(*scale, fabs(b[k]));
	}
	return d;
}

/*
 * A batch of 2 MLP_ROWS + 5 rows, which the passes run in three row
 * blocks, the last ragged, when the AVX-512 kernel runs them: the loss,
 * gradient and Hessian-vector products (whole, per layer block, and the
 * block's quadratic form) against the double reference and its central
 * differences, so that a block's rows at the wrong offset cannot pass.
 */
static void
row_blocks(enum mlp_encoding enc, int depth)
{
	enum { B = 2 * MLP_ROWS + 5, P = 13, WIDTH = 20 };
	struct mlp_config c = {P, depth, WIDTH, enc, MLP_CE};
	struct mlp m;
	struct mlp_work *w;
	struct mlp_hvp *h;
	struct mlp_point *pt;
	struct model_eval ev = {0};
	struct rng r;
	int32_t x[2 * B], y[B];
	float *theta, *grad, *v, *hv, *vb, *hb;
	double *th, *gref, *gp, *gm, *fd, lref, err, scale, eps = 1e-7;
	char what[64];
	size_t n;

	snprintf(what, sizeof what, "%s depth %d, %d rows", mlp_encoding_names[enc], depth, B);
	mlp_layout(&m, &c);
	n = m.nparams;
	theta = calloc(n, sizeof *theta); grad = calloc(n, sizeof *grad);
	v = calloc(n, sizeof *v); hv = calloc(n, sizeof *hv); vb = calloc(n, sizeof *vb);
	hb = calloc(n, sizeof *hb); th = calloc(n, sizeof *th); gref = calloc(n, sizeof *gref);
	gp = calloc(n, sizeof *gp); gm = calloc(n, sizeof *gm); fd = calloc(n, sizeof *fd);
	rng_init(&r, 29 + depth, RNG_INIT);
	mlp_init_params(&m, theta, &r);
	for (int b = 0; b < B; b++) {
		x[2 * b] = (int32_t)rng_below(&r, P);
		x[2 * b + 1] = (int32_t)rng_below(&r, P);
		y[b] = (x[2 * b] + x[2 * b + 1]) % P;
	}
	for (size_t k = 0; k < n; k++) {
		th[k] = theta[k];
		v[k] = (float)rng_normal(&r);
	}
	w = mlp_work_new(&m, B);
	mlp_forward(&m, w, theta, x, B);
	mlp_loss(&m, w, &ev, y, B, 1.0f / B);
	mlp_backward(&m, w, grad, theta, x, B);
	lref = mlp_ref_loss(&m, th, x, y, B, gref, NULL);
	err = max_diff(grad, gref, n, &scale);
	ok(fabs(ev.loss_sum / B - lref) < 1e-6 * fmax(1, lref) && err < 1e-5 * scale && scale > 0,
	    "%s: loss %.9f = reference %.9f, gradient max diff %.2e (max |g| %.2e)", what,
	    ev.loss_sum / B, lref, err, scale);

	/* the fused pass: the same loss, gradient, norms and live marks, bit for bit */
	{
		struct model_eval ef = {0};
		float *gf = calloc(n, sizeof *gf), *g2 = calloc(n, sizeof *g2);
		double sq[B], sqf[B];
		int live[3 * WIDTH] = {0}, livef[3 * WIDTH] = {0};
		memset(&ev, 0, sizeof ev);
		mlp_forward(&m, w, theta, x, B);
		mlp_mark_live(&m, w, B, live);
		mlp_loss(&m, w, &ev, y, B, 1.0f / B);
		mlp_backward_norms(&m, w, g2, sq, theta, x, B, 1.0f / B);
		mlp_loss_grad(&m, w, &ef, gf, sqf, theta, x, y, B, 1.0f / B, livef);
		ok(memcmp(gf, g2, n * sizeof *gf) == 0 && memcmp(sq, sqf, sizeof sq) == 0 &&
		    memcmp(live, livef, sizeof live) == 0 && ef.loss_sum == ev.loss_sum &&
		    ef.correct == ev.correct && sq[B - 1] > 0,
		    "%s: mlp_loss_grad = forward, marks, loss, backward with norms, bit for bit", what);
		free(gf);
		free(g2);
	}

	/* H v by central differences of the double gradient */
	for (size_t k = 0; k < n; k++)
		th[k] = theta[k] + eps * v[k];
	mlp_ref_loss(&m, th, x, y, B, gp, NULL);
	for (size_t k = 0; k < n; k++)
		th[k] = theta[k] - eps * v[k];
	mlp_ref_loss(&m, th, x, y, B, gm, NULL);
	for (size_t k = 0; k < n; k++)
		fd[k] = (gp[k] - gm[k]) / (2 * eps);
	h = mlp_hvp_new(&m, B);
	pt = mlp_hvp_prepare(h, theta, x, y, B, 1.0f / B);
	mlp_point_apply(pt, hv, v);
	err = max_diff(hv, fd, n, &scale);
	ok(err < 1e-4 * scale && scale > 0, "%s: H v = central differences, max diff %.2e (max |Hv| %.2e)",
	    what, err, scale);

	/* each layer's diagonal block: H v restricted to it, v zero outside it */
	for (int i = 0; i < m.nlayers; i++) {
		size_t lo = m.woff[i], hi = m.boff[i] + (size_t)m.out[i];
		double q, qref = 0, berr = 0, bscale = 0;
		memset(vb, 0, n * sizeof *vb);
		memcpy(vb + lo, v + lo, (hi - lo) * sizeof *vb);
		memset(hv, 0, n * sizeof *hv);
		memset(hb, 0, n * sizeof *hb);
		mlp_point_apply(pt, hv, vb);
		mlp_point_block(pt, 0, i, hb, vb);
		for (size_t k = lo; k < hi; k++) {
			berr = fmax(berr, fabs((double)hb[k] - hv[k]));
			bscale = fmax(bscale, fabs(hv[k]));
			qref += (double)vb[k] * hv[k];
		}
		q = mlp_point_block_quad(pt, i, vb);
		ok(berr <= 1e-5 * bscale && bscale > 0 && fabs(q - qref) < 1e-4 * fabs(qref),
		    "%s: layer %d's block = H v on it (max diff %.2e of %.2e), v.Bv %.8g = %.8g", what, i,
		    berr, bscale, q, qref);
	}
	mlp_hvp_free(h);
	mlp_work_free(w);
	free(theta); free(grad); free(v); free(hv); free(vb); free(hb); free(th); free(gref);
	free(gp); free(gm); free(fd);
}

int
main(void)
{
	for (int enc = 0; enc < 2; enc++)
		for (int loss = 0; loss < 2; loss++) {
			check_config(5, 1, 6, (enum mlp_encoding)enc, (enum mlp_loss)loss);
			check_config(5, 3, 6, (enum mlp_encoding)enc, (enum mlp_loss)loss);
		}
	check_config(7, 0, 1, MLP_ONEHOT, MLP_CE);
	for (int enc = 0; enc < 2; enc++)
		for (int loss = 0; loss < 2; loss++)
			compact_view((enum mlp_encoding)enc, (enum mlp_loss)loss, enc == loss);
	for (int enc = 0; enc < 2; enc++) {
		row_blocks((enum mlp_encoding)enc, 1);
		row_blocks((enum mlp_encoding)enc, 3);
	}
	layout_and_init();
	optimisers();
	softmax_extremes();
	return tap_done();
}
