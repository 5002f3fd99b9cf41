/*
 * sgld: the ziggurat normals' moments and tails, and the sampler on
 * quadratic losses whose learning coefficient is known: d/2 for a
 * non-degenerate quadratic in d parameters, and, for the discretised
 * chain, exactly nbeta/2 sum_k h_k / (a_k (1 - eps a_k / 4)) with
 * a_k = nbeta h_k + gamma.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "sgld.h"
#include "tap.h"

static void
test_normals(void)
{
	enum { N = 2000000 };
	float *x = malloc(N * sizeof(float));
	double m1 = 0, m2 = 0, m4 = 0, below = 0;
	long over2 = 0, over35 = 0;
	struct rng r;

	rng_init(&r, 7, RNG_NOISE);
	rng_normals(&r, x, N);
	for (long i = 0; i < N; i++) {
		double v = x[i];
		m1 += v;
		m2 += v * v;
		m4 += v * v * v * v;
		over2 += fabs(v) > 2.0;
		over35 += fabs(v) > 3.5;
		below += v < -1.0;
	}
	m1 /= N;
	m2 /= N;
	m4 /= N;
	/* Standard errors: mean 1/sqrt(N) = 7e-4, variance sqrt(2/N) = 1e-3, m4 sqrt(96/N) = 7e-3. */
	ok(fabs(m1) < 4e-3, "normals: mean %.5f", m1);
	ok(fabs(m2 - 1) < 5e-3, "normals: variance %.5f", m2);
	ok(fabs(m4 - 3) < 4e-2, "normals: fourth moment %.4f (3)", m4);
	/* P(|x| > 2) = 0.0455003, P(|x| > 3.5) = 4.6528e-4 (the tail beyond R = 3.44), P(x < -1) = 0.158655. */
	ok(fabs((double)over2 / N - 0.0455003) < 6e-4, "normals: P(|x|>2) %.6f", (double)over2 / N);
	ok(fabs((double)over35 / N - 4.6528e-4) < 8e-5, "normals: P(|x|>3.5) %.6f", (double)over35 / N);
	ok(fabs(below / N - 0.158655) < 1.5e-3, "normals: P(x<-1) %.6f", below / N);
	free(x);
}

static void
test_parts(void)
{
	struct rng a, b, c;
	int same = 1, differ = 1;

	rng_init_part(&a, 3, RNG_NOISE, 2);
	rng_init_part(&b, 3, RNG_NOISE, 2);
	rng_init_part(&c, 3, RNG_NOISE, 3);
	for (int i = 0; i < 100; i++) {
		uint32_t x = rng_u32(&a), y = rng_u32(&b), z = rng_u32(&c);
		same &= x == y;
		differ &= x != z;
	}
	ok(same, "rng_init_part: the same part gives the same numbers");
	ok(differ, "rng_init_part: neighbouring parts differ");
}

/* L(w) = 1/2 sum_k h_k (w_k - c_k)^2, rows ignored: no minibatch noise. */
struct quad {
	int d;
	double h[16], c[16];
	int nan_after;   /* return NaN from this call on (0: never) */
	int calls;
};

static double
quad_loss_grad(void *ctx, float *grad, const float *w, const int32_t *idx, int B)
{
	struct quad *q = ctx;
	double l = 0;

	(void)idx;
	(void)B;
	if (q->nan_after && ++q->calls >= q->nan_after)
		return NAN;
	for (int k = 0; k < q->d; k++) {
		double e = w[k] - q->c[k];
		l += 0.5 * q->h[k] * e * e;
		grad[k] += (float)(q->h[k] * e);
	}
	return l;
}

static void
test_quadratic(void)
{
	enum { D = 10, CHAINS = 8 };
	struct quad q = {.d = D};
	struct sgld_params sp = {
		.epsilon = 1e-5, .gamma = 1, .nbeta = 1000, .batch = 1,
		.draws = 20000, .burnin = 2000, .thin = 1, .explode = 1e30,
	};
	struct sgld_target t = {D, 1, quad_loss_grad, &q};
	float wstar[D];
	double *loss = malloc(sp.draws * sizeof(double)), exact = 0, llc[CHAINS], mean = 0, var = 0, se;
	struct sgld_chain ch;

	for (int k = 0; k < D; k++) {
		q.h[k] = 1.0 + k;            /* eigenvalues 1..10 */
		q.c[k] = 0.25 * k - 1.0;
		wstar[k] = (float)q.c[k];    /* w* is the minimum: L(w*) = 0 */
		double a = sp.nbeta * q.h[k] + sp.gamma;
		exact += 0.5 * sp.nbeta * q.h[k] / (a * (1 - sp.epsilon * a / 4));
	}
	for (int k = 0; k < CHAINS; k++) {
		sgld_run(&t, &sp, wstar, 1, k, loss, &ch);
		llc[k] = sp.nbeta * ch.loss_mean;
		mean += llc[k] / CHAINS;
	}
	for (int k = 0; k < CHAINS; k++)
		var += (llc[k] - mean) * (llc[k] - mean) / (CHAINS - 1);
	se = sqrt(var / CHAINS);
	ok(fabs(mean - exact) < 4 * se,
	    "quadratic, d = 10: llc %.4f +- %.4f, the chain's exact %.4f", mean, se, exact);
	ok(fabs(exact - D / 2.0) < 0.02 * D / 2, "quadratic, d = 10: exact %.4f is d/2 = 5 within 2%%", exact);
	ok(fabs(mean - D / 2.0) < 0.05 * D / 2, "quadratic, d = 10: llc %.4f recovers d/2 = 5 within 5%%", mean);
	ok(ch.steps == sp.burnin + sp.draws && !ch.nonfinite && !ch.exploded, "quadratic: every step taken");

	/* A chain is a function of (seed, chain) alone. */
	{
		double *again = malloc(sp.draws * sizeof(double));
		struct sgld_chain ch2;
		sp.draws = 500;
		sgld_run(&t, &sp, wstar, 1, 3, loss, &ch);
		sgld_run(&t, &sp, wstar, 1, 3, again, &ch2);
		ok(memcmp(loss, again, sp.draws * sizeof(double)) == 0, "same seed and chain: identical draws");
		sgld_run(&t, &sp, wstar, 1, 4, again, &ch2);
		ok(memcmp(loss, again, sp.draws * sizeof(double)) != 0, "another chain: other draws");
		free(again);
	}

	/* Thinning keeps every thin-th step's loss; burn-in steps are not draws. */
	{
		struct sgld_params s2 = sp;
		double *a = malloc(12 * sizeof(double)), *b = malloc(12 * 3 * sizeof(double));
		s2.draws = 12;
		s2.burnin = 5;
		s2.thin = 3;
		sgld_run(&t, &s2, wstar, 9, 0, a, &ch);
		ok(ch.steps == 5 + 36, "thin 3, burn-in 5: %ld steps", ch.steps);
		s2.draws = 36;
		s2.thin = 1;
		sgld_run(&t, &s2, wstar, 9, 0, b, &ch);
		int same = 1;
		for (int i = 0; i < 12; i++)
			same &= a[i] == b[3 * i];
		ok(same, "thin 3 keeps steps burn-in, +3, +6, ... of the same chain");
		free(a);
		free(b);
	}

	/* A non-finite loss stops the chain and leaves NaN draws. */
	q.nan_after = 10;
	sp.burnin = 0;
	sp.draws = 50;
	sgld_run(&t, &sp, wstar, 1, 0, loss, &ch);
	ok(ch.nonfinite == 1 && ch.steps == 10 && isnan(ch.loss_mean) && isnan(loss[9]) && !isnan(loss[8]),
	    "NaN loss at step 10: chain stops (%ld steps), mean NaN", ch.steps);
	q.nan_after = 0;

	/* Exploded draws are counted against the threshold. */
	sp.explode = 0;
	sgld_run(&t, &sp, wstar, 1, 0, loss, &ch);
	ok(ch.exploded == sp.draws - 1, "explode 0: every draw but the first (at w*, loss 0) exploded: %ld",
	    ch.exploded);
	ok(fabs(sgld_default_nbeta(32) - 32 / log(32.0)) < 1e-12, "default nbeta is B / ln B");
	free(loss);
}

/*
 * The step's three terms, each checked on every step of a recorded chain:
 *
 *   w <- w - (eps/2) nbeta grad L(w) - (eps/2) gamma (w - w*) + sqrt(eps) z,
 *
 * with z the chain's own normals (RNG_NOISE part `chain`, P a step),
 * regenerated here.  At eps = 0.01, nbeta = 10, gamma = 50 and a
 * quadratic whose minimum is not w*, the drift (0.05 grad), the pull
 * (0.25 (w - w*)) and the noise (0.1 z) are all of order 0.01-0.1, so a
 * doubled pull, a noise sd x 1.02 or a drift without its 1/2 moves some
 * step by far more than float32 rounding (1e-6 here).  Each term is also
 * checked alone: noise only (flat loss, gamma 0), pull and noise (flat
 * loss), drift and noise (gamma 0).
 */
struct recorder {
	int d, steps, max;
	double h[4], c[4];   /* L = 1/2 sum h (w - c)^2; h = 0: flat */
	float *w;            /* (max, d) w at each call */
};

static double
record_loss_grad(void *ctx, float *grad, const float *w, const int32_t *idx, int B)
{
	struct recorder *r = ctx;
	double l = 0;

	(void)idx;
	(void)B;
	if (r->steps < r->max)
		memcpy(r->w + (size_t)r->steps * r->d, w, r->d * sizeof(float));
	r->steps++;
	for (int k = 0; k < r->d; k++) {
		double e = w[k] - r->c[k];
		l += 0.5 * r->h[k] * e * e;
		grad[k] += (float)(r->h[k] * e);
	}
	return l;
}

/* The largest difference between the recorded steps and the rule, over every step. */
static double
step_error(const struct recorder *r, const struct sgld_params *sp, const float *wstar, uint64_t seed, int chain)
{
	float z[4];
	double worst = 0;
	struct rng noise;

	rng_init_part(&noise, seed, RNG_NOISE, (uint64_t)chain);
	for (int s = 0; s + 1 < r->steps && s + 1 < r->max; s++) {
		const float *w = r->w + (size_t)s * r->d, *next = w + r->d;
		rng_normals(&noise, z, (size_t)r->d);
		for (int k = 0; k < r->d; k++) {
			double g = r->h[k] * ((double)w[k] - r->c[k]);
			double want = w[k] - 0.5 * sp->epsilon * sp->nbeta * g - 0.5 * sp->epsilon * sp->gamma * (w[k] - wstar[k]) +
			    sqrt(sp->epsilon) * z[k];
			worst = fmax(worst, isnan(next[k]) ? INFINITY : fabs(next[k] - want));
		}
	}
	return worst;
}

static void
test_step_terms(void)
{
	enum { D = 4, STEPS = 200 };
	const float wstar[D] = {0.5f, -0.25f, 1.0f, 0.0f};
	struct recorder r = {.d = D, .max = STEPS, .h = {2, 1, 0.5, 3}, .c = {-0.5, 0.75, 0.25, 1.0}};
	struct sgld_params sp = {
		.epsilon = 0.01, .gamma = 50, .nbeta = 10, .batch = 1,
		.draws = STEPS, .burnin = 0, .thin = 1, .explode = 1e30,
	};
	struct sgld_target t = {D, 1, record_loss_grad, &r};
	double *loss = malloc(STEPS * sizeof(double)), err, pull = 0, drift = 0;
	struct sgld_chain ch;
	struct recorder flat = r;

	r.w = malloc(STEPS * D * sizeof(float));
	sgld_run(&t, &sp, wstar, 11, 2, loss, &ch);
	err = step_error(&r, &sp, wstar, 11, 2);
	for (int s = 0; s < STEPS; s++)
		for (int k = 0; k < D; k++) {
			const float *w = r.w + s * D;
			pull = fmax(pull, 0.5 * sp.epsilon * sp.gamma * fabs(w[k] - wstar[k]));
			drift = fmax(drift, 0.5 * sp.epsilon * sp.nbeta * fabs(r.h[k] * (w[k] - r.c[k])));
		}
	ok(err < 1e-6 && r.steps == STEPS, "sgld step, all three terms: %d steps match the rule within %.1e", r.steps, err);
	ok(pull > 0.05 && drift > 0.05, "sgld step: the pull (up to %.3f) and drift (up to %.3f) both matter", pull, drift);

	flat.w = r.w;
	flat.steps = 0;
	memset(flat.h, 0, sizeof flat.h);
	t.ctx = &flat;
	sp.gamma = 0;
	sgld_run(&t, &sp, wstar, 12, 0, loss, &ch);
	err = step_error(&flat, &sp, wstar, 12, 0);
	ok(err < 1e-6, "sgld step, noise alone (flat loss, gamma 0): each step is sqrt(eps) z, within %.1e", err);

	flat.steps = 0;
	sp.gamma = 50;
	sgld_run(&t, &sp, wstar, 13, 1, loss, &ch);
	err = step_error(&flat, &sp, wstar, 13, 1);
	ok(err < 1e-6, "sgld step, pull and noise (flat loss): -(eps/2) gamma (w - w*) + sqrt(eps) z, within %.1e", err);

	r.steps = 0;
	t.ctx = &r;
	sp.gamma = 0;
	sgld_run(&t, &sp, wstar, 14, 3, loss, &ch);
	err = step_error(&r, &sp, wstar, 14, 3);
	ok(err < 1e-6, "sgld step, drift and noise (gamma 0): -(eps/2) nbeta grad + sqrt(eps) z, within %.1e", err);
	free(r.w);
	free(loss);
}

/*
 * L_B(w) = 1/2 sum_k h_k (w_k - b s_k)^2 over many parameters, b the
 * batch's mean row index over n: a loss whose minibatches differ, wide
 * enough for several of the step's blocks and an odd tail.
 */
struct wide {
	size_t P;
	long n;
	float *h, *s;
};

static double
wide_loss_grad(void *ctx, float *grad, const float *w, const int32_t *idx, int B)
{
	const struct wide *q = ctx;
	double l = 0, b = 0;

	for (int i = 0; i < B; i++)
		b += idx[i];
	b /= (double)B * q->n;
	for (size_t k = 0; k < q->P; k++) {
		double e = w[k] - b * q->s[k];
		l += 0.5 * q->h[k] * e * e;
		grad[k] += (float)(q->h[k] * e);
	}
	return l / q->P;
}

/*
 * The unrestricted chain runs index-free, blocked loops (vectorised,
 * MALA sums four at a time); a chain restricted to every parameter in
 * order runs the generic loops through the index map, one parameter at a
 * time.  Both must give the same draws, the same MALA acceptances (both
 * kinds) and the same preconditioner, bit for bit, for every sampler.
 */
static void
test_paths_agree(void)
{
	enum { P = 5003, DRAWS = 60 };
	struct wide q = {P, 64, malloc(P * sizeof(float)), malloc(P * sizeof(float))};
	struct sgld_target t = {P, 64, wide_loss_grad, &q};
	struct sgld_params sp = {.epsilon = 1e-3, .gamma = 10, .nbeta = 50, .batch = 8, .draws = DRAWS,
	    .burnin = 20, .thin = 1, .explode = 1e30};
	size_t *all = malloc(P * sizeof(size_t));
	float *wstar = malloc(P * sizeof(float)), *g1 = malloc(P * sizeof(float)), *g2 = malloc(P * sizeof(float));
	double a[DRAWS], b[DRAWS];
	int agree = 1, moved = 1;

	for (size_t k = 0; k < P; k++) {
		q.h[k] = (float)(0.5 + (double)(k % 97) / 10);
		q.s[k] = (float)((double)(k % 13) - 6);
		wstar[k] = (float)(0.01 * (double)(k % 7));
		all[k] = k;
	}
	for (int v = 0; v < 4; v++) {
		struct sgld_method m;
		struct sgld_chain c1, c2;
		struct sgld_health h1 = {.precond = g1}, h2 = {.precond = g2};

		sgld_method_default(&m);
		m.precond = v & 1 ? SGLD_PRECOND_RMSPROP : SGLD_PRECOND_NONE;
		m.freeze = v == 3;
		m.mala = 1;
		m.mala_every = v >= 2 ? 3 : 0;
		sgld_run_method(&t, &sp, &m, wstar, 5, 1, a, &c1, &h1);
		m.moving = all;
		m.nmoving = P;
		sgld_run_method(&t, &sp, &m, wstar, 5, 1, b, &c2, &h2);
		agree &= memcmp(a, b, sizeof a) == 0 && memcmp(g1, g2, P * sizeof(float)) == 0;
		agree &= h1.mala_mean == h2.mala_mean && h1.mala_min == h2.mala_min && h1.mala_n == h2.mala_n;
		agree &= v < 2 || (h1.mala_batch_mean == h2.mala_batch_mean && h1.mala_batch_n == h2.mala_batch_n);
		moved &= isfinite(h1.mala_mean) && h1.mala_mean < 1 && a[0] != a[DRAWS - 1];
	}
	ok(agree && moved, "index-free blocked loops = the generic indexed loops, bit for bit (P = %d: draws, "
	    "MALA both kinds, G; plain, RMSprop, frozen)", P);
	free(q.h);
	free(q.s);
	free(all);
	free(wstar);
	free(g1);
	free(g2);
}

int
main(void)
{
	test_normals();
	test_parts();
	test_quadratic();
	test_step_terms();
	test_paths_agree();
	return tap_done();
}
