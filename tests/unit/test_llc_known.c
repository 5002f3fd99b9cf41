/*
 * test_llc_known: the LLC sampler on losses whose learning coefficient is
 * known, and the chain diagnostics on draws whose answer is known.
 *
 * What SGLD estimates.  The chains sample the tempered, localised
 * posterior p(w) ~ exp(-t L(w) - gamma/2 |w - w*|^2), t = nbeta, and
 * lambda-hat = t E_p[L - L(w*)].  That is -t d/dt log Z(t), Z the
 * localised partition function, so it is a finite-(t, gamma) quantity;
 * the learning coefficient lambda is its limit as t / gamma^q -> infinity
 * (q = 2 for losses homogeneous of degree 4: rescaling w shows lambda-hat
 * depends on t and gamma only through that ratio).  With
 * Z(t) ~ C t^-lambda (log t)^(m-1) (Watanabe 2009, "Algebraic Geometry and
 * Statistical Learning Theory", Cambridge University Press: the largest
 * pole -lambda of the zeta function int L^z phi dw and its order m give
 * the asymptotics of Z; m the multiplicity),
 *
 *   lambda-hat(t) = lambda - (m - 1) / log t + o(1 / log t),
 *
 * so where m > 1 no affordable t makes the bias small.  Every test below
 * therefore compares the sampler with the exact finite-(t, gamma) value,
 * computed independently (closed form for quadratics, one-dimensional
 * quadrature for the singular losses), and checks separately that this
 * exact value tends to the learning coefficient the theory gives; where
 * m = 1 the settings are chosen so that the finite-t bias is below the
 * test's tolerance, and the estimate is also checked against lambda.
 *
 * Uncertainty: the spread of the per-chain estimates (standard error over
 * C independent chains, as llc-estimate reports), capped in absolute
 * size, so that a sampler too noisy to say anything cannot pass.
 */
#define _XOPEN_SOURCE 700   /* M_PI */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chains.h"
#include "rng.h"
#include "sgld.h"
#include "tap.h"

#define MAXD 32
#ifndef RRR_T
#define RRR_T 100
#define RRR_EPS 1e-4
#define RRR_BURN 100000
#define RRR_DRAWS 16000
#endif
/* Every chain's seed is offset by this: build with -DLLC_TEST_SEED=k to check that no test passes by luck. */
#ifndef LLC_TEST_SEED
#define LLC_TEST_SEED 0
#endif

/* ---- losses -------------------------------------------------------------- */

/* L(w) = 1/2 sum_k h_k w_k^2 (w* = 0, rows ignored: no minibatch noise). */
struct quad {
	int d;
	double h[MAXD];
};

static double
quad_loss(void *ctx, float *grad, const float *w, const int32_t *idx, int B)
{
	const struct quad *q = ctx;
	double l = 0;

	(void)idx;
	(void)B;
	for (int k = 0; k < q->d; k++) {
		l += 0.5 * q->h[k] * w[k] * w[k];
		grad[k] += (float)(q->h[k] * w[k]);
	}
	return l;
}

/*
 * L(w) = w1^2 w2^(2k), a normal crossing.  For L = prod_i w_i^(2 k_i)
 * near 0 with a prior phi positive there, the zeta function factorises:
 *   zeta(z) = int L^z phi dw ~ phi(0) prod_i int_-e^e |w_i|^(2 k_i z) dw_i
 *           = phi(0) prod_i 2 e^(2 k_i z + 1) / (2 k_i z + 1),
 * whose poles are at z = -1 / (2 k_i) (and, from phi's Taylor terms, at
 * -(1 + 2j) / (2 k_i), further left).  The largest pole gives the RLCT
 * and its order the multiplicity: lambda = min_i 1 / (2 k_i), m = the
 * number of i attaining it (Watanabe 2009, op. cit., the normal-crossing
 * case that resolution of singularities reduces every loss to; Lin 2011,
 * "Algebraic methods for evaluating integrals in Bayesian statistics",
 * PhD thesis, UC Berkeley, for monomial losses in general).  Here k = (1, k): lambda = 1/2, m = 2 for k = 1; lambda = 1/(2k),
 * m = 1 for k > 1.
 */
struct mono {
	int k;
};

static double
mono_loss(void *ctx, float *grad, const float *w, const int32_t *idx, int B)
{
	const struct mono *m = ctx;
	double a = w[0], b = w[1], b2k = pow(b * b, m->k);

	(void)idx;
	(void)B;
	grad[0] += (float)(2 * a * b2k);
	grad[1] += (float)(2 * m->k * a * a * b2k / b);
	if (b == 0)
		grad[1] = 0;   /* 2k a^2 b^(2k-1) at b = 0, k >= 1 */
	return a * a * b2k;
}

/*
 * Reduced-rank regression y = B A x with white inputs (E x x^T = I) and
 * true map C0 = 0: L(A, B) = 1/2 |B A|_F^2, A (H, M), B (N, H), w = [A; B]
 * row-major.  The origin is its most singular point.
 */
struct rrr {
	int M, N, H;
};

static double
rrr_loss(void *ctx, float *grad, const float *w, const int32_t *idx, int B)
{
	const struct rrr *r = ctx;
	const float *A = w, *Bm = w + r->H * r->M;
	float *gA = grad, *gB = grad + r->H * r->M;
	double l = 0, C[MAXD * MAXD];

	(void)idx;
	(void)B;
	for (int i = 0; i < r->N; i++)
		for (int j = 0; j < r->M; j++) {
			double s = 0;
			for (int h = 0; h < r->H; h++)
				s += (double)Bm[i * r->H + h] * A[h * r->M + j];
			C[i * r->M + j] = s;
			l += 0.5 * s * s;
		}
	/* dL/dA = B^T C, dL/dB = C A^T. */
	for (int h = 0; h < r->H; h++) {
		for (int j = 0; j < r->M; j++) {
			double s = 0;
			for (int i = 0; i < r->N; i++)
				s += (double)Bm[i * r->H + h] * C[i * r->M + j];
			gA[h * r->M + j] += (float)s;
		}
		for (int i = 0; i < r->N; i++) {
			double s = 0;
			for (int j = 0; j < r->M; j++)
				s += C[i * r->M + j] * A[h * r->M + j];
			gB[i * r->H + h] += (float)s;
		}
	}
	return l;
}

/* ---- running chains ------------------------------------------------------ */

enum { MAXC = 16 };

/* C chains from w* = 0 and what they say. */
struct estimate {
	double llc[MAXC], mean, se;     /* per chain, mean, standard error over chains */
	double rhat, ess, mala;         /* over the draws; mean acceptance over chains */
	long nonfinite, exploded;       /* summed over chains */
	float G[MAXC][MAXD];            /* each chain's preconditioner at its end */
};

static void
run_chains(const struct sgld_target *t, const struct sgld_params *sp, const struct sgld_method *m,
    int C, uint64_t seed, struct estimate *e)
{
	float wstar[MAXD * MAXD] = {0};
	double *loss = malloc((size_t)C * (size_t)sp->draws * sizeof(double)), var = 0;
	struct sgld_chain ch;

	memset(e, 0, sizeof *e);
	for (int c = 0; c < C; c++) {
		struct sgld_health h = {.precond = t->P <= MAXD ? e->G[c] : NULL};
		sgld_run_method(t, sp, m, wstar, seed + LLC_TEST_SEED, c, loss + (size_t)c * (size_t)sp->draws, &ch, &h);
		e->llc[c] = sp->nbeta * ch.loss_mean;
		e->mean += e->llc[c] / C;
		e->mala += h.mala_mean / C;
		e->nonfinite += ch.nonfinite;
		e->exploded += ch.exploded;
	}
	for (int c = 0; c < C; c++)
		var += (e->llc[c] - e->mean) * (e->llc[c] - e->mean) / (C - 1);
	e->se = sqrt(var / C);
	e->rhat = chains_rhat(loss, C, sp->draws);
	e->ess = chains_ess_mean(loss, C, sp->draws);
	free(loss);
}

/*
 * The discretised chain's exact lambda-hat on the quadratic with each
 * chain's G held fixed: (1/2) sum_k t h_k / (a_k (1 - eps G_k a_k / 4)),
 * a_k = t h_k + gamma, averaged over the chains (G = 1: plain SGLD).
 */
static double
quad_exact_discrete(const struct quad *q, const struct sgld_params *sp, const struct estimate *e, int C)
{
	double sum = 0;

	for (int c = 0; c < C; c++)
		for (int k = 0; k < q->d; k++) {
			double a = sp->nbeta * q->h[k] + sp->gamma, x = sp->epsilon * e->G[c][k] * a / 4;
			sum += 0.5 * sp->nbeta * q->h[k] / (a * (1 - x)) / C;
		}
	return sum;
}

/* The continuous-time value (1/2) sum_k t h_k / (t h_k + gamma): d/2 as gamma / t -> 0. */
static double
quad_exact(const struct quad *q, double nbeta, double gamma)
{
	double sum = 0;

	for (int k = 0; k < q->d; k++)
		sum += 0.5 * nbeta * q->h[k] / (nbeta * q->h[k] + gamma);
	return sum;
}

static void
quad_spectrum(struct quad *q, int d, double cond)
{
	q->d = d;
	for (int k = 0; k < d; k++)
		q->h[k] = pow(cond, (double)k / (d - 1));   /* log-spaced 1..cond */
}

/* ---- the step-size rule -------------------------------------------------- */

static void
test_eps_auto(void)
{
	struct quad q = {4, {8, 16, 32, 64}};
	struct sgld_params sp = {.gamma = 1, .nbeta = 10, .batch = 1, .draws = 10000, .burnin = 500,
	    .thin = 4, .explode = 1e30};
	struct sgld_target t = {4, 1, quad_loss, &q};
	struct sgld_method m;
	struct estimate e;
	double hs[] = {1e-3, 1, 64, 1e6}, worst = 0, exact, disc, bound;

	for (int i = 0; i < 4; i++)
		for (double margin = 1; margin <= 40; margin *= 2) {
			double eps = sgld_eps_auto(hs[i], 10, 1, margin), a = 10 * hs[i] + 1;
			worst = fmax(worst, fabs(eps * a / 2 - 2 / margin) / (2 / margin));
		}
	ok(worst < 1e-15, "eps_auto: eps (nbeta h + gamma) / 2 = 2 / margin (worst relative error %.2g)", worst);
	ok(isnan(sgld_eps_auto(-1, 10, 1, 20)) && isnan(sgld_eps_auto(1, 0, 1, 20)) &&
	    isnan(sgld_eps_auto(1, 10, -1, 20)) && isnan(sgld_eps_auto(0, 10, 0, 20)) &&
	    isnan(sgld_eps_auto(1, 10, 1, 0)) && isnan(sgld_eps_auto(NAN, 10, 1, 20)) &&
	    isnan(sgld_eps_auto(INFINITY, 10, 1, 20)),
	    "eps_auto: NaN for a negative curvature, nbeta 0, negative gamma, no curvature at all, margin 0, NaN, inf");

	/* At the default margin the plain chain is stable and its bias is what the rule says. */
	sgld_method_default(&m);
	sp.epsilon = sgld_eps_auto(64, sp.nbeta, sp.gamma, SGLD_EPS_MARGIN);
	run_chains(&t, &sp, &m, 16, 11, &e);
	for (int c = 0; c < 16; c++)
		for (int k = 0; k < 4; k++)
			e.G[c][k] = 1;
	exact = quad_exact(&q, sp.nbeta, sp.gamma);
	disc = quad_exact_discrete(&q, &sp, &e, 16);
	bound = 1 / (2 * (SGLD_EPS_MARGIN - 1));
	ok(fabs(e.mean - disc) < 4 * e.se && e.se < 0.01 * exact,
	    "eps_auto, margin 20: llc %.4f +- %.4f is the discretised chain's exact %.4f", e.mean, e.se, disc);
	ok(fabs(e.mean - exact) > 2 * e.se,
	    "eps_auto, margin 20: and the chains resolve its bias (continuous-time value %.4f)", exact);
	ok(disc - exact > 0 && disc - exact < q.d * bound,
	    "eps_auto, margin 20: discretisation bias %.4f is below d / (2 (margin - 1)) = %.4f",
	    disc - exact, q.d * bound);

	/* The stability edge is where the rule puts it: margin 1. */
	sp.draws = 2000;
	sp.burnin = 0;
	sp.thin = 1;
	sp.epsilon = sgld_eps_auto(64, sp.nbeta, sp.gamma, 1.05);
	run_chains(&t, &sp, &m, 2, 11, &e);
	ok(e.nonfinite == 0 && isfinite(e.mean) && e.mean < 40,
	    "eps_auto, margin 1.05: just inside the edge, the chain stays finite (llc %.2f)", e.mean);
	sp.epsilon = sgld_eps_auto(64, sp.nbeta, sp.gamma, 0.95);
	run_chains(&t, &sp, &m, 2, 11, &e);
	ok(e.nonfinite == 2, "eps_auto, margin 0.95: just past the edge, both chains diverge (%ld non-finite)",
	    e.nonfinite);
}


/* A flat loss: the chain samples the localisation's Gaussian alone. */
static double
flat_loss(void *ctx, float *grad, const float *w, const int32_t *idx, int B)
{
	(void)ctx;
	(void)grad;
	(void)w;
	(void)idx;
	(void)B;
	return 0;
}

/* The mean MALA acceptance of one chain of the flat loss in d dimensions at step eps. */
static double
flat_mala(size_t d, double eps)
{
	struct sgld_params sp = {.epsilon = eps, .gamma = 1, .nbeta = 10, .batch = 1, .draws = 1500,
	    .burnin = 500, .thin = 1, .explode = 1e30};
	struct sgld_target t = {d, 1, flat_loss, NULL};
	float *wstar = calloc(d, sizeof(float));
	double *loss = malloc((size_t)sp.draws * sizeof(double));
	struct sgld_method m;
	struct sgld_chain ch;
	struct sgld_health h = {0};

	sgld_method_default(&m);
	m.mala = 1;
	sgld_run_method(&t, &sp, &m, wstar, 17 + LLC_TEST_SEED, 0, loss, &ch, &h);
	free(wstar);
	free(loss);
	return h.mala_mean;
}

/*
 * The dimension rule: on the localisation's Gaussian in d = 20000
 * dimensions (no minibatch noise, so the MALA acceptance is the exact
 * one), sgld_eps_mala's step is accepted at the rate it was asked for
 * (0.913 for 0.9: the law's next order in eps gamma = 0.04 raises it a
 * little), and twice that step (0.72 to leading order, 0.81 measured)
 * is not.
 */
static void
test_eps_mala(void)
{
	double eps = sgld_eps_mala(50, 10, 1, 20000, 0.9), s3 = 19999 + 501.0 * 501.0 * 501.0, a;

	ok(fabs(erfc(sqrt(eps * eps * eps * s3 / 16) / 2 / sqrt(2)) - 0.9) < 1e-9,
	    "eps_mala: 2 Phi(-sqrt(eps^3 S / 16) / 2) = 0.9 at its eps %.4g", eps);
	ok(fabs(sgld_eps_mala(0, 10, 1, 8000, 0.9) * 2 / sgld_eps_mala(0, 10, 1, 1000, 0.9) - 1) < 1e-12,
	    "eps_mala: eps gamma falls as d^(-1/3) on a flat loss (8000 directions: half the step of 1000)");
	ok(isnan(sgld_eps_mala(-1, 10, 1, 10, 0.9)) && isnan(sgld_eps_mala(1, 0, 1, 10, 0.9)) &&
	    isnan(sgld_eps_mala(1, 10, 1, 0, 0.9)) && isnan(sgld_eps_mala(1, 10, 1, 10, 1)) &&
	    isnan(sgld_eps_mala(1, 10, 1, 10, 0)) && isnan(sgld_eps_mala(0, 10, 0, 10, 0.9)),
	    "eps_mala: NaN for a negative curvature, nbeta 0, no directions, accept 1 or 0, no precision");
	eps = sgld_eps_mala(0, 10, 1, 20000, 0.9);
	a = flat_mala(20000, eps);
	ok(fabs(a - 0.9) < 0.02, "eps_mala, asked 0.9 in 20000 directions (eps %.4g): accepted at %.4f", eps, a);
	a = flat_mala(20000, 2 * eps);
	ok(a < 0.85, "eps_mala: twice its step is accepted at %.4f (0.72 to leading order in eps)", a);
}

/* ---- quadratics at any conditioning ---------------------------------------- */

/*
 * The preconditioned chain's predicted curvatures G a, with G ~ 1 /
 * (sqrt(E g^2) + delta) and E g^2 = h / nbeta at stationarity: eps from
 * eps_auto on the sharpest (at the given margin), and the slowest
 * direction's relaxation time 2 / (eps G a_min) in steps.
 */
static double
precond_eps(const struct quad *q, const struct sgld_params *sp, const struct sgld_method *m, double margin,
    double *relax)
{
	double hi = 0, lo = INFINITY, eps;

	for (int k = 0; k < q->d; k++) {
		double Ga = (sp->nbeta * q->h[k] + sp->gamma) / (sqrt(q->h[k] / sp->nbeta) + m->delta);
		hi = fmax(hi, Ga);
		lo = fmin(lo, Ga);
	}
	eps = sgld_eps_auto(hi, 1, 0, margin);
	*relax = 2 / (eps * lo);
	return eps;
}

/*
 * d = 7, Hessian eigenvalues log-spaced over the condition number, nbeta 1
 * and gamma 0.01 (so gamma / (nbeta h_min) = 1%: the continuous-time
 * value is d/2 - 0.005).  RMSprop-SGLD with G frozen after the burn-in,
 * eps at the given margin in its own metric: its estimate must match the
 * discretised chain's exact value for its G, and the margin is chosen so
 * that this is within 3% of d/2 (the bias along a direction is
 * 1 / (1 - eps G a / 4) - 1 <= 1 / (margin - 1); with a spread spectrum only
 * the sharpest directions reach it, so a larger condition number affords
 * a smaller margin).
 */
static void
check_precond(double cond, double margin, struct estimate *e, double *disc)
{
	struct quad q;
	struct sgld_params sp = {.gamma = 0.01, .nbeta = 1, .batch = 1, .thin = 4, .explode = 1e30};
	struct sgld_target t = {7, 1, quad_loss, &q};
	struct sgld_method m;
	double exact, relax;

	quad_spectrum(&q, 7, cond);
	sgld_method_default(&m);
	m.precond = SGLD_PRECOND_RMSPROP;
	m.freeze = 1;
	m.mala = 1;
	/*
	 * Burn-in: 4 relaxation times of the slowest direction (and the
	 * startup of v); draws: 16 of them a chain, at least 8000 steps.
	 */
	sp.epsilon = precond_eps(&q, &sp, &m, margin, &relax);
	sp.burnin = (long)(4 * relax) + 1000;
	sp.draws = (long)(fmax(16 * relax, 8000) / sp.thin);
	run_chains(&t, &sp, &m, 16, 5, e);
	exact = quad_exact(&q, sp.nbeta, sp.gamma);
	*disc = quad_exact_discrete(&q, &sp, e, 16);
	ok(fabs(e->mean - *disc) < 4 * e->se && e->se < 0.03 * exact,
	    "condition %.0e, RMSprop-SGLD at margin %.0f, %ld steps a chain: llc %.4f +- %.4f is its chain's exact %.4f",
	    cond, margin, sp.burnin + sp.draws * sp.thin, e->mean, e->se, *disc);
	ok(fabs(*disc - exact) < 0.03 * exact && fabs(e->mean - exact) < 4 * e->se + 0.03 * exact,
	    "condition %.0e: within 3%% of the continuous-time %.4f = d/2 - %.4f (R-hat %.4f, ESS %.0f, MALA %.3f)",
	    cond, exact, 3.5 - exact, e->rhat, e->ess, e->mala);
}

static void
test_conditioning(void)
{
	struct quad q;
	struct sgld_params sp = {.gamma = 0.01, .nbeta = 1, .batch = 1, .draws = 10000, .burnin = 10000,
	    .thin = 4, .explode = 1e30};
	struct sgld_target t = {7, 1, quad_loss, &q};
	struct sgld_method m;
	struct estimate e, pre;
	double disc, relax;

	check_precond(1, 50, &e, &disc);
	check_precond(1e3, 20, &e, &disc);
	check_precond(1e6, 10, &pre, &disc);

	/* Plain SGLD with the same number of steps: stable eps only explores the sharp directions. */
	quad_spectrum(&q, 7, 1e6);
	sgld_method_default(&m);
	sp.epsilon = sgld_eps_auto(1e6, sp.nbeta, sp.gamma, SGLD_EPS_MARGIN);
	run_chains(&t, &sp, &m, 8, 5, &e);
	ok(e.mean < disc - 10 * pre.se && e.mean < 0.8 * 3.5,
	    "condition 1e6, plain SGLD at eps_auto %.2g: llc %.3f +- %.3f is far below d/2", sp.epsilon, e.mean, e.se);
	ok(e.rhat > 1.01, "... and its chains say so: R-hat %.3f > 1.01 (ESS %.0f)", e.rhat, e.ess);
	/* ... and an eps that would explore the flat directions diverges in the sharp one. */
	sp.epsilon = sgld_eps_auto(1, sp.nbeta, sp.gamma, SGLD_EPS_MARGIN);
	sp.draws = 2000;
	sp.burnin = 0;
	run_chains(&t, &sp, &m, 8, 5, &e);
	ok(e.nonfinite == 8, "condition 1e6, plain SGLD at eps %.2g (the flat direction's): every chain diverges",
	    sp.epsilon);

	/* devinterp's RMSprop-SGLD, G adapting through the draws: biased upwards. */
	m.precond = SGLD_PRECOND_RMSPROP;
	sp.draws = 10000;
	sp.burnin = 10000;
	sp.epsilon = precond_eps(&q, &sp, &m, 10, &relax);
	run_chains(&t, &sp, &m, 8, 5, &e);
	ok(e.mean > disc + 4 * hypot(e.se, pre.se),
	    "condition 1e6, RMSprop-SGLD adapting G through the draws (devinterp's): llc %.3f +- %.3f, "
	    "%.0f%% above the frozen chain's", e.mean, e.se, 100 * (e.mean / pre.mean - 1));
}


/* ---- singular losses: exact values by quadrature ---------------------------- */

/*
 * integral over u in (0, inf) of f(u) du as a sum over s = ln u on a
 * uniform grid (the trapezoid rule, exponentially accurate for these
 * integrands, which decay double-exponentially at both ends in s).  The
 * grid spans u = e^-60 to 60 / sqrt(gamma), beyond which exp(-gamma u^2 / 2)
 * < 1e-780.
 */
#define QUAD_STEP 0.004

/*
 * lambda-hat(t, gamma) of L = w1^2 w2^(2k) under exp(-t L - gamma/2 |w|^2):
 * integrating w1 out (a Gaussian of precision 2 t w2^(2k) + gamma) leaves
 *   Z  ~ int e^(-gamma u^2/2) (2 t u^2k + gamma)^(-1/2) du,
 *   lambda-hat = -t d ln Z / dt = t int e^(-gamma u^2/2) u^2k (2 t u^2k + gamma)^(-3/2) du / Z.
 */
static double
mono_exact(double t, double gamma, int k)
{
	double num = 0, den = 0, top = log(60 / sqrt(gamma));

	for (double s = -60; s < top; s += QUAD_STEP) {
		double u = exp(s), u2k = pow(u, 2 * k), e = exp(-gamma * u * u / 2) * u, q = 2 * t * u2k + gamma;
		num += e * u2k / (q * sqrt(q));
		den += e / sqrt(q);
	}
	return t * num / den;
}

/*
 * The same for rank-one reduced-rank regression, L(a, b) = 1/2 |a|^2 |b|^2
 * (a in R^M, b in R^N): integrating b out gives (t |a|^2 + gamma)^(-N/2),
 * and |a| = r has density ~ r^(M-1) e^(-gamma r^2 / 2):
 *   lambda-hat = t int r^(M+1) e^(-gamma r^2/2) (N/2) (t r^2 + gamma)^(-N/2-1) dr
 *                / int r^(M-1) e^(-gamma r^2/2) (t r^2 + gamma)^(-N/2) dr.
 */
static double
rrr1_exact(double t, double gamma, int M, int N)
{
	double num = 0, den = 0, top = log(60 / sqrt(gamma));

	for (double s = -60; s < top; s += QUAD_STEP) {
		double r = exp(s), base = pow(r, M) * exp(-gamma * r * r / 2), q = t * r * r + gamma;
		num += base * r * r * (N / 2.0) * pow(q, -N / 2.0 - 1);
		den += base * pow(q, -N / 2.0);
	}
	return t * num / den;
}

/*
 * The learning coefficient (RLCT) lambda and multiplicity m of
 * reduced-rank regression with M inputs, N outputs, H hidden units and a
 * true map of rank r (0 <= r <= min(M, N, H)): Aoyagi and Watanabe 2005,
 * "Stochastic complexities of reduced rank regression in Bayesian
 * estimation", Neural Networks 18(7), 924-933, Main Theorem:
 *   if N + r <= M + H, M + r <= N + H and H + r <= M + N:
 *     lambda = (2 (H + r)(M + N) - (M - N)^2 - (H + r)^2) / 8, m = 1,
 *       when M + N + H + r is even;
 *     lambda = (2 (H + r)(M + N) - (M - N)^2 - (H + r)^2 + 1) / 8, m = 2,
 *       when it is odd;
 *   if M + H < N + r: lambda = (H M - H r + N r) / 2, m = 1;
 *   if N + H < M + r: lambda = (H N - H r + M r) / 2, m = 1;
 *   if M + N < H + r: lambda = M N / 2, m = 1.
 */
static double
aw_rlct(int M, int N, int H, int r, int *mult)
{
	*mult = 1;
	if (N + r <= M + H && M + r <= N + H && H + r <= M + N) {
		int base = 2 * (H + r) * (M + N) - (M - N) * (M - N) - (H + r) * (H + r);
		if ((M + N + H + r) % 2 == 0)
			return base / 8.0;
		*mult = 2;
		return (base + 1) / 8.0;
	}
	if (M + H < N + r)
		return (H * M - H * r + N * r) / 2.0;
	if (N + H < M + r)
		return (H * N - H * r + M * r) / 2.0;
	return M * N / 2.0;   /* M + N < H + r: the cases above are exhaustive */
}

static void
test_rlct_formulas(void)
{
	/* Drton and Plummer 2017 (JRSS B 79(2), "A Bayesian information criterion for singular models"), Table 1: N = 5, M = 3. */
	static const struct { int H, r; double lambda; } dp[] = {
		{1, 0, 1.5}, {1, 1, 3.5}, {2, 0, 3}, {2, 1, 4.5}, {2, 2, 6},
		{3, 0, 4.5}, {3, 1, 5.5}, {3, 2, 6.5}, {3, 3, 7.5},
	};
	int bad = 0, m, m2;

	for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++)
		bad += aw_rlct(3, 5, dp[i].H, dp[i].r, &m) != dp[i].lambda;
	ok(bad == 0, "Aoyagi-Watanabe: Drton and Plummer's table for M = 3, N = 5 (%d wrong)", bad);

	/*
	 * Structure: symmetric in M and N; at most d/2 = H (M + N) / 2; the
	 * true rank splits off as a regular part of dimension r (M + N - r),
	 * lambda(M, N, H, r) = r (M + N - r) / 2 + lambda(M - r, N - r, H - r, 0)
	 * with the same multiplicity; the full-rank truth r = H is regular.
	 */
	for (int M = 1; M <= 7; M++)
		for (int N = 1; N <= 7; N++)
			for (int H = 1; H <= 7; H++)
				for (int r = 0; r <= H && r <= M && r <= N; r++) {
					double l = aw_rlct(M, N, H, r, &m), l2 = aw_rlct(N, M, H, r, &m2);
					bad += l != l2 || m != m2 || l > H * (M + N) / 2.0 || l <= 0;
					if (r > 0 && r < M && r < N && r < H) {
						l2 = aw_rlct(M - r, N - r, H - r, 0, &m2);
						bad += l != r * (M + N - r) / 2.0 + l2 || m != m2;
					}
					if (r == H)
						bad += l != H * (M + N - H) / 2.0 || m != 1;
				}
	ok(bad == 0, "Aoyagi-Watanabe: symmetric, <= d/2, rank splits off, full rank regular (%d violations)", bad);

	/* H = 1, r = 0 is L = 1/2 |a|^2 |b|^2: lambda = min(M, N) / 2, m = 2 iff M = N (the quadrature's case). */
	for (int M = 1; M <= 7; M++)
		for (int N = 1; N <= 7; N++) {
			double l = aw_rlct(M, N, 1, 0, &m);
			bad += l != (M < N ? M : N) / 2.0 || m != (M == N ? 2 : 1);
		}
	ok(bad == 0, "Aoyagi-Watanabe: H = 1, r = 0 gives min(M, N) / 2, multiplicity 2 iff M = N");

	/* The quadratures tend to lambda, with the multiplicity's -(m - 1) / ln t where m = 2. */
	{
		double k2 = mono_exact(1e20, 1, 2), k1 = mono_exact(1e40, 1, 1);
		double r32 = rrr1_exact(1e20, 1, 3, 2), r22 = rrr1_exact(1e40, 1, 2, 2);
		ok(fabs(k2 - 0.25) < 1e-4, "w1^2 w2^4: lambda-hat(t = 1e20) = %.6f -> lambda = 1/4 (m = 1)", k2);
		ok(fabs((k1 - 0.5) * log(1e40) + 1) < 0.05,
		    "w1^2 w2^2: lambda-hat(t = 1e40) = %.6f = 1/2 - %.3f / ln t (lambda 1/2, m = 2)", k1,
		    (0.5 - k1) * log(1e40));
		ok(fabs(r32 - 1) < 1e-4, "rank-one RRR M = 3, N = 2: lambda-hat(t = 1e20) = %.6f -> 1 (Aoyagi-Watanabe, m = 1)",
		    r32);
		ok(fabs((r22 - 1) * log(1e40) + 1) < 0.05,
		    "rank-one RRR M = N = 2: lambda-hat(t = 1e40) = %.6f = 1 - %.3f / ln t (m = 2)", r22,
		    (1 - r22) * log(1e40));
		ok(fabs(mono_exact(1e3, 1, 1) - mono_exact(1e5, 10, 1)) < 1e-9,
		    "w1^2 w2^2: lambda-hat depends on t / gamma^2 only (%.9f at t = 1e3, gamma 1 and t = 1e5, gamma 10)",
		    mono_exact(1e3, 1, 1));
	}
}


/*
 * One singular case: plain SGLD (a frozen preconditioner is wrong here:
 * the posterior's curvature changes by orders of magnitude between the
 * arms of the singular set, and a G frozen on one arm diverges on the
 * other) from w* = 0, the most singular point, against the exact value.
 * eps is set by hand, small enough that the chains' own MALA acceptance
 * is above 0.98 (asserted: the diagnostic vouches for the discretisation),
 * and the burn-in covers several relaxations along the arms (2 / (eps
 * gamma) steps).
 */
static void
check_singular(const char *name, const struct sgld_target *t, double nbeta, double eps, long burnin, long draws,
    double exact, struct estimate *e)
{
	struct sgld_params sp = {.epsilon = eps, .gamma = 1, .nbeta = nbeta, .batch = 1, .draws = draws,
	    .burnin = burnin, .thin = 4, .explode = 1e30};
	struct sgld_method m;

	sgld_method_default(&m);
	m.mala = 1;
	run_chains(t, &sp, &m, 16, 7, e);
	ok(fabs(e->mean - exact) < 4 * e->se && e->se < 0.04 * exact && e->nonfinite == 0,
	    "%s, t = %g, gamma 1: llc %.4f +- %.4f is the exact %.4f", name, nbeta, e->mean, e->se, exact);
	ok(e->rhat < 1.01 && e->mala > 0.98,
	    "%s: the chains call themselves healthy (R-hat %.4f, ESS %.0f, MALA %.4f)", name, e->rhat, e->ess, e->mala);
}

static void
test_singular(void)
{
	struct mono k1 = {1};
	struct rrr rr = {5, 2, 1};
	struct sgld_target t1 = {2, 1, mono_loss, &k1}, tr = {7, 1, rrr_loss, &rr};
	struct estimate e;
	int m;
	double lambda = aw_rlct(5, 2, 1, 0, &m), exact = rrr1_exact(RRR_T, 1, 5, 2);

	/*
	 * w1^2 w2^2: lambda 1/2 with m = 2, so -1/ln t keeps every affordable t
	 * far from it (0.354 at t / gamma^2 = 100, 0.41 at 1e4): the test is
	 * against the exact finite-t value, whose limit test_rlct_formulas
	 * checks.  (w1^2 w2^4 is checked there too but not sampled here: its
	 * arms' tips have curvature 2 t w2^4, which plain SGLD crosses only with
	 * eps ~ 1e-4 and millions of steps a chain, beyond a unit test.)
	 */
	check_singular("w1^2 w2^2", &t1, 100, 3e-4, 30000, 16000, mono_exact(100, 1, 1), &e);
	/*
	 * Reduced-rank regression M = 5, N = 2, H = 1 at the origin: lambda = 1
	 * (m = 1) against d/2 = 3.5.  With m = 1 the finite-t bias falls as a
	 * power of t (here ~ (gamma / t)^((M - N)/2)): at t / gamma^2 = 100 the
	 * exact value is within 0.01 of lambda, below the 4 standard errors of
	 * the test, so the estimate is checked against lambda itself too.
	 */
	check_singular("RRR M=5 N=2 H=1", &tr, RRR_T, RRR_EPS, RRR_BURN, RRR_DRAWS, exact, &e);
	ok(fabs(exact - lambda) < 0.01 && fabs(e.mean - lambda) < 4 * e.se,
	    "RRR M=5 N=2 H=1: llc %.4f +- %.4f is Aoyagi-Watanabe's lambda = %.1f (finite-t bias %.4f, d/2 = 3.5)",
	    e.mean, e.se, lambda, lambda - exact);
}


/* ---- the diagnostics on draws with known answers ---------------------------- */

/* C chains of an AR(1) process x' = rho x + sqrt(1 - rho^2) z, stationary N(mu_c, 1), from its stationary law. */
static void
ar1(double *x, int C, long n, double rho, const double *mu, uint64_t seed)
{
	struct rng r;

	rng_init(&r, seed, RNG_SAMPLE);
	for (int c = 0; c < C; c++) {
		double v = rng_normal(&r);
		for (long i = 0; i < n; i++) {
			x[(size_t)c * n + i] = v + (mu ? mu[c] : 0);
			v = rho * v + sqrt(1 - rho * rho) * rng_normal(&r);
		}
	}
}

/*
 * The multi-chain ESS of M chains of N by the definition: autocovariances
 * as direct sums (not by FFT), Geyer's initial monotone sequence.
 */
static double
ess_direct(const double *y, int M, long N)
{
	double mean_var = 0, mm = 0, bvar = 0, var_plus, sum = 0, prev = INFINITY, *rho = calloc((size_t)N, sizeof(double));
	double *means = calloc((size_t)M, sizeof(double));

	for (int m = 0; m < M; m++) {
		for (long i = 0; i < N; i++)
			means[m] += y[m * N + i] / N;
		mm += means[m] / M;
	}
	for (int m = 0; m < M; m++) {
		for (long t = 0; t < N; t++) {
			double a = 0;
			for (long i = 0; i + t < N; i++)
				a += (y[m * N + i] - means[m]) * (y[m * N + i + t] - means[m]);
			rho[t] += a / N / M;   /* the chains' mean autocovariance for now */
		}
		bvar += M > 1 ? (means[m] - mm) * (means[m] - mm) / (M - 1) : 0;
	}
	mean_var = rho[0] * N / (N - 1);
	var_plus = mean_var * (N - 1) / N + bvar;
	for (long t = N - 1; t >= 0; t--)
		rho[t] = t ? 1 - (mean_var - rho[t]) / var_plus : 1;
	for (long k = 0; 2 * k + 1 < N; k++) {
		double pair = rho[2 * k] + rho[2 * k + 1];
		if (k > 0 && pair < 0)
			break;
		prev = fmin(prev, pair);
		sum += prev;
	}
	free(rho);
	free(means);
	return M * N / fmax(-1 + 2 * sum, 1 / log10((double)M * N));
}

static void
test_diagnostics(void)
{
	enum { C = 8, N = 4000 };
	double *x = malloc(C * N * sizeof(double)), mu[C] = {0}, worst = 0, ess, rhat;
	double ps[] = {1e-300, 1e-10, 0.001, 0.02425, 0.3, 0.5, 0.7, 0.97575, 0.999, 1 - 1e-12};

	/* The probit against erfc: Phi(normal_quantile(p)) = p. */
	for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
		double z = normal_quantile(ps[i]);
		worst = fmax(worst, fabs(0.5 * erfc(-z / sqrt(2.0)) - ps[i]) / fmin(ps[i], 1 - ps[i]));
	}
	ok(worst < 1e-12 && fabs(normal_quantile(0.975) - 1.959963984540054) < 1e-14 && isnan(normal_quantile(0)) &&
	    isnan(normal_quantile(1)), "normal_quantile: Phi(q(p)) = p to %.1g relative, q(0.975) = 1.95996398454", worst);

	/*
	 * AR(1) with coefficient rho: tau = (1 + rho) / (1 - rho), so the ESS
	 * of C N draws is C N (1 - rho) / (1 + rho); iid draws have ESS ~ C N.
	 * The estimate's relative standard error is about sqrt(2 tau / (C N))
	 * ~ 8% at rho = 0.9.
	 */
	ar1(x, C, N, 0.9, NULL, 1 + LLC_TEST_SEED);
	ess = chains_ess_mean(x, C, N);
	ok(fabs(ess / (C * N * 0.1 / 1.9) - 1) < 0.2, "ESS of AR(1), rho 0.9: %.0f, theory C N (1 - rho) / (1 + rho) = %.0f",
	    ess, C * N * 0.1 / 1.9);
	ok(fabs(chains_ess_bulk(x, C, N) / ess - 1) < 0.15, "bulk ESS of Gaussian draws %.0f is their ESS", chains_ess_bulk(x, C, N));
	{
		/* The FFT's autocovariances against direct sums, on the split halves of 3 chains of 601 (odd: middle dropped). */
		double *y = malloc(6 * 300 * sizeof(double)), direct;
		for (int c = 0; c < 3; c++) {
			memcpy(y + 2 * c * 300, x + (size_t)c * N, 300 * sizeof(double));
			memcpy(y + (2 * c + 1) * 300, x + (size_t)c * N + 301, 300 * sizeof(double));
		}
		for (int c = 0; c < 3; c++)
			memmove(x + (size_t)c * 601, x + (size_t)c * N, 601 * sizeof(double));
		direct = ess_direct(y, 6, 300);
		ok(fabs(chains_ess_mean(x, 3, 601) / direct - 1) < 1e-9 &&
		    fabs(chain_ess(x, 601) / ess_direct(x, 1, 601) - 1) < 1e-9,
		    "ESS by FFT %.6f = by direct autocovariance sums %.6f (6 split chains; and one chain alone)",
		    chains_ess_mean(x, 3, 601), direct);
		free(y);
		ar1(x, C, N, 0.9, NULL, 1 + LLC_TEST_SEED);
	}
	ok(fabs(chain_ess(x, N) / (N * 0.1 / 1.9) - 1) < 0.5, "one chain's ESS %.0f, theory %.0f", chain_ess(x, N),
	    N * 0.1 / 1.9);
	ok(fabs(chains_mcse_mean(x, C, N) - sqrt(1.9 / 0.1 / (C * N))) < 0.2 * sqrt(19.0 / (C * N)),
	    "MCSE of the mean %.4f, theory sqrt(tau / (C N)) = %.4f", chains_mcse_mean(x, C, N), sqrt(19.0 / (C * N)));
	ar1(x, C, N, 0, NULL, 2);
	ok(fabs(chains_ess_mean(x, C, N) / (C * N) - 1) < 0.1, "ESS of iid draws %.0f of %d", chains_ess_mean(x, C, N), C * N);
	rhat = chains_rhat(x, C, N);
	ok(rhat < 1.005 && chains_rhat_basic(x, C, N) < 1.005, "R-hat of agreeing iid chains %.4f (basic %.4f) < 1.005",
	    rhat, chains_rhat_basic(x, C, N));

	/* One chain off by a standard deviation: R-hat says so; so does a scale difference (folded). */
	mu[3] = 1;
	ar1(x, C, N, 0.9, mu, 3);
	ok(chains_rhat(x, C, N) > 1.01 && chains_rhat_basic(x, C, N) > 1.01,
	    "R-hat with one chain shifted by 1 sd: %.4f (basic %.4f)", chains_rhat(x, C, N), chains_rhat_basic(x, C, N));
	ar1(x, C, N, 0.5, NULL, 4);
	for (long i = 0; i < N; i++)
		x[2 * N + i] *= 2;
	ok(chains_rhat(x, C, N) > 1.01 && chains_rhat_basic(x, C, N) < chains_rhat(x, C, N),
	    "R-hat with one chain twice as wide: rank-normalised %.4f sees it (basic %.4f less)", chains_rhat(x, C, N),
	    chains_rhat_basic(x, C, N));

	free(x);
}


/* ---- MALA acceptance and restriction ---------------------------------------- */

/* The diagonal quadratic, logging every point it is evaluated at. */
struct logged {
	struct quad q;
	int calls;
	float w[64][MAXD];
};

static double
logged_loss(void *ctx, float *grad, const float *w, const int32_t *idx, int B)
{
	struct logged *lg = ctx;

	if (lg->calls < 64)
		memcpy(lg->w[lg->calls], w, (size_t)lg->q.d * sizeof(float));
	lg->calls++;
	return quad_loss(&lg->q, grad, w, idx, B);
}

/*
 * min(1, exp(U(w) - U(w') + log q(w | w') - log q(w' | w))) from the
 * logged points, in double with the exact gradient (the sampler's float
 * gradient differs by rounding: agreement to 1e-6, where a wrong term
 * would be off by 1e-2 or more).
 */
static double
mala_reference(const struct logged *lg, const struct sgld_params *sp, const float *G, int from)
{
	const float *w = lg->w[from], *w1 = lg->w[from + 1];
	double U = 0, U1 = 0, fwd = 0, rev = 0, la;

	for (int k = 0; k < lg->q.d; k++) {
		double h = lg->q.h[k], a = sp->nbeta * h + sp->gamma, e = 0.5 * sp->epsilon * G[k];
		double f = (double)w1[k] - ((double)w[k] - e * a * w[k]), r = (double)w[k] - ((double)w1[k] - e * a * w1[k]);
		U += 0.5 * a * (double)w[k] * w[k];
		U1 += 0.5 * a * (double)w1[k] * w1[k];
		fwd += f * f / G[k];
		rev += r * r / G[k];
	}
	la = U - U1 + (fwd - rev) / (2 * sp->epsilon);
	return la >= 0 ? 1 : exp(la);
}

static void
test_mala(void)
{
	static struct logged lg = {.q = {3, {1, 10, 100}}};
	struct sgld_params sp = {.epsilon = 1e-3, .gamma = 1, .nbeta = 10, .batch = 1, .draws = 6, .burnin = 2,
	    .thin = 1, .explode = 1e30};
	struct sgld_target t = {3, 1, logged_loss, &lg};
	struct sgld_method m;
	struct sgld_chain ch;
	float G[MAXD], one[MAXD] = {1, 1, 1};
	struct sgld_health h = {.precond = G};
	double loss[6], ref = 0;

	for (int pre = 0; pre < 2; pre++) {
		sgld_method_default(&m);
		m.mala = 1;
		m.precond = pre ? SGLD_PRECOND_RMSPROP : SGLD_PRECOND_NONE;
		m.freeze = 1;   /* the G the counted proposals used is the one health returns */
		lg.calls = 0;
		sgld_run_method(&t, &sp, &m, (float[3]){0}, 3, 0, loss, &ch, &h);
		ref = 0;
		for (int s = 2; s < 7; s++)
			ref += mala_reference(&lg, &sp, pre ? G : one, s) / 5;
		ok(h.mala_n == 5 && fabs(h.mala_mean - ref) < 1e-6 && ref < 0.999,
		    "MALA, %s: acceptance %.6f over %ld proposals (burn-in 2, 8 steps) = direct computation %.6f (%.1g)",
		    pre ? "RMSprop (frozen)" : "plain", h.mala_mean, h.mala_n, ref, h.mala_mean - ref);
	}
	/* Counted: proposals from steps burn-in .. total - 2 (the last one's end is never evaluated). */
	sp.burnin = 3;
	sp.draws = 4;
	sp.thin = 2;
	sgld_run_method(&t, &sp, &m, (float[3]){0}, 3, 0, loss, &ch, &h);
	ok(ch.steps == 11 && h.mala_n == 7 && h.mala_min <= h.mala_mean && h.mala_mean <= 1,
	    "MALA with burn-in 3, 4 draws thinned by 2: %ld proposals of %ld steps, min %.4f <= mean %.4f",
	    h.mala_n, ch.steps, h.mala_min, h.mala_mean);
	sp.burnin = 2;
	sp.thin = 1;

	/* As eps -> 0 the Langevin step is exact: acceptance -> 1. */
	sgld_method_default(&m);
	m.mala = 1;
	sp.draws = 500;
	{
		double *l = malloc(500 * sizeof(double)), acc[3];
		for (int i = 0; i < 3; i++) {
			sp.epsilon = 1e-3 * pow(0.1, i);
			sgld_run_method(&t, &sp, &m, (float[3]){0}, 3, 0, l, &ch, &h);
			acc[i] = h.mala_mean;
		}
		ok(acc[0] < acc[1] && acc[1] < acc[2] && acc[2] > 0.999,
		    "MALA acceptance rises to 1 as eps falls: %.4f, %.4f, %.5f at eps 1e-3, 1e-4, 1e-5", acc[0], acc[1], acc[2]);
		free(l);
	}
}

/*
 * L_i(w) = 1/2 sum_k h_k (w_k - c_ik)^2: a quadratic whose rows disagree,
 * so two minibatches' losses at one w differ (minibatch noise), and w* = 0
 * is the minimum of the full loss (the c_ik sum to 0 over rows).  Logs
 * every evaluation's point and rows.
 */
#define NOISY_N 8
struct noisy {
	struct quad q;
	double c[NOISY_N][MAXD];
	int calls;
	float w[64][MAXD];
	int32_t row[64];
};

static double
noisy_loss(void *ctx, float *grad, const float *w, const int32_t *idx, int B)
{
	struct noisy *nz = ctx;
	double l = 0;

	if (nz->calls < 64) {
		memcpy(nz->w[nz->calls], w, (size_t)nz->q.d * sizeof(float));
		nz->row[nz->calls] = idx[0];
	}
	nz->calls++;
	for (int b = 0; b < B; b++)
		for (int k = 0; k < nz->q.d; k++) {
			double e = w[k] - nz->c[idx[b]][k];
			l += 0.5 * nz->q.h[k] * e * e / B;
			grad[k] += (float)(nz->q.h[k] * e / B);
		}
	return l;
}

/* The same-minibatch acceptance of the proposal from call 2s to call 2s + 1 (one row a batch), directly. */
static double
mala_batch_reference(const struct noisy *nz, const struct sgld_params *sp, int s)
{
	const float *w = nz->w[2 * s], *w1 = nz->w[2 * s + 1];
	const double *c = nz->c[nz->row[2 * s]];
	double U = 0, U1 = 0, fwd = 0, rev = 0, la, e = 0.5 * sp->epsilon;

	for (int k = 0; k < nz->q.d; k++) {
		double h = nz->q.h[k], g = sp->nbeta * h * (w[k] - c[k]) + sp->gamma * w[k];
		double g1 = sp->nbeta * h * (w1[k] - c[k]) + sp->gamma * w1[k];
		double f = (double)w1[k] - ((double)w[k] - e * g), r = (double)w[k] - ((double)w1[k] - e * g1);
		U += sp->nbeta * 0.5 * h * (w[k] - c[k]) * (w[k] - c[k]) + 0.5 * sp->gamma * (double)w[k] * w[k];
		U1 += sp->nbeta * 0.5 * h * (w1[k] - c[k]) * (w1[k] - c[k]) + 0.5 * sp->gamma * (double)w1[k] * w1[k];
		fwd += f * f;
		rev += r * r;
	}
	la = U - U1 + (fwd - rev) / (2 * sp->epsilon);
	return la >= 0 ? 1 : exp(la);
}

static void
test_mala_same_batch(void)
{
	static struct noisy nz = {.q = {3, {1, 10, 100}}};
	/* eps a_max / 2 = 1.85: stable, far from exact, so the acceptance is well below 1. */
	struct sgld_params sp = {.epsilon = 3.7e-3, .gamma = 1, .nbeta = 10, .batch = 1, .draws = 20, .burnin = 0,
	    .thin = 1, .explode = 1e30};
	struct sgld_target t = {3, NOISY_N, noisy_loss, &nz};
	struct sgld_method m;
	struct sgld_chain ch;
	struct sgld_health h = {0};
	double loss[20], loss1[20], ref = 0, *l = malloc(2000 * sizeof(double)), acc[2][2];

	for (int i = 0; i < NOISY_N; i++)
		for (int k = 0; k < 3; k++)
			nz.c[i][k] = ((i >> k) & 1 ? 0.3 : -0.3) * (k + 1);
	sgld_method_default(&m);
	m.mala = 1;
	sgld_run_method(&t, &sp, &m, (float[3]){0}, 5, 0, loss, &ch, &h);
	ok(h.mala_batch_n == 0 && isnan(h.mala_batch_mean), "same-minibatch MALA: not measured unless asked");
	m.mala_every = 1;
	nz.calls = 0;
	sgld_run_method(&t, &sp, &m, (float[3]){0}, 5, 0, loss1, &ch, &h);
	for (int s = 0; s < 20; s++)
		ref += mala_batch_reference(&nz, &sp, s) / 20;
	ok(nz.calls == 40 && h.mala_batch_n == 20 && fabs(h.mala_batch_mean - ref) < 1e-6 && ref < 0.999,
	    "same-minibatch MALA every step: %.9f over %ld proposals (%d evaluations) = direct computation %.9f",
	    h.mala_batch_mean, h.mala_batch_n, nz.calls, ref);
	ok(memcmp(loss, loss1, sizeof loss) == 0, "measuring it changes no draw");
	m.mala_every = 4;
	nz.calls = 0;
	sgld_run_method(&t, &sp, &m, (float[3]){0}, 5, 0, loss1, &ch, &h);
	ok(nz.calls == 25 && h.mala_batch_n == 5, "every 4th step: 5 proposals measured, 25 evaluations (%d)", nz.calls);

	/* As eps -> 0 the same-minibatch acceptance -> 1; devinterp's stays held down by the rows' disagreement. */
	sp.draws = 2000;
	m.mala_every = 1;
	for (int i = 0; i < 2; i++) {
		sp.epsilon = i ? 1e-7 : 3e-3;
		sgld_run_method(&t, &sp, &m, (float[3]){0}, 5, 0, l, &ch, &h);
		acc[i][0] = h.mala_mean;
		acc[i][1] = h.mala_batch_mean;
	}
	ok(acc[1][1] > 0.999 && acc[1][0] < 0.9 && acc[0][1] < acc[1][1],
	    "at eps 1e-7 the same-minibatch acceptance is %.5f (3e-3: %.4f), devinterp's %.4f (minibatch noise)",
	    acc[1][1], acc[0][1], acc[1][0]);
	m.mala = 0;
	ok(sgld_method_check(&m, 3) != NULL, "mala_every without mala is refused");
	free(l);
}

static void
test_restrict(void)
{
	struct quad q = {6, {1, 2, 4, 1e12, 1e12, 1e12}};
	struct rrr rr = {3, 2, 1};
	struct sgld_params sp = {.epsilon = 5e-3, .gamma = 1, .nbeta = 10, .batch = 1, .draws = 3000, .burnin = 500,
	    .thin = 2, .explode = 1e30};
	struct sgld_target t = {6, 1, quad_loss, &q}, tr = {5, 1, rrr_loss, &rr};
	struct sgld_method m;
	struct sgld_chain ch;
	struct estimate e;
	size_t all[6] = {0, 1, 2, 3, 4, 5}, low[3] = {0, 1, 2}, A[3] = {0, 1, 2}, Bm[2] = {3, 4};
	double *a = malloc(3000 * sizeof(double)), *b = malloc(3000 * sizeof(double)), disc = 0;
	float wz[6] = {0};
	int same = 1;

	/* Restricting to every parameter in order is the unrestricted chain, bit for bit. */
	q.h[3] = q.h[4] = q.h[5] = 8;
	for (int pre = 0; pre < 2; pre++) {
		sgld_method_default(&m);
		m.precond = pre ? SGLD_PRECOND_RMSPROP : SGLD_PRECOND_NONE;
		sgld_run_method(&t, &sp, &m, wz, 4, 1, a, &ch, NULL);
		m.moving = all;
		m.nmoving = 6;
		sgld_run_method(&t, &sp, &m, wz, 4, 1, b, &ch, NULL);
		same &= memcmp(a, b, 3000 * sizeof(double)) == 0;
	}
	sgld_method_default(&m);
	sgld_run(&t, &sp, wz, 4, 1, b, &ch);
	ok(same && memcmp(a, b, 3000 * sizeof(double)) != 0 && (sgld_run_method(&t, &sp, &m, wz, 4, 1, a, &ch, NULL),
	    memcmp(a, b, 3000 * sizeof(double)) == 0),
	    "restricted to all parameters: the unrestricted chain's draws exactly (plain and RMSprop); default method = sgld_run");

	/* Determinism: RMSprop with MALA, restricted, is a function of (seed, chain) alone. */
	{
		struct sgld_health h1 = {0}, h2 = {0};
		sgld_method_default(&m);
		m.precond = SGLD_PRECOND_RMSPROP;
		m.mala = 1;
		m.moving = all + 1;
		m.nmoving = 4;
		sgld_run_method(&t, &sp, &m, wz, 4, 2, a, &ch, &h1);
		sgld_run_method(&t, &sp, &m, wz, 4, 2, b, &ch, &h2);
		same = memcmp(a, b, 3000 * sizeof(double)) == 0 && h1.mala_mean == h2.mala_mean;
		sgld_run_method(&t, &sp, &m, wz, 4, 3, b, &ch, &h2);
		ok(same && memcmp(a, b, 3000 * sizeof(double)) != 0,
		    "RMSprop, MALA, restricted: the same seed and chain give the same draws and acceptance; another chain others");
		sgld_method_default(&m);
	}

	/* Parameters held at w* do not move: curvature 1e12 there would show the slightest step. */
	q.h[3] = q.h[4] = q.h[5] = 1e12;
	m.moving = low;
	m.nmoving = 3;
	run_chains(&t, &sp, &m, 8, 4, &e);
	for (int k = 0; k < 3; k++) {
		double x = sp.nbeta * q.h[k] + sp.gamma;
		disc += 0.5 * sp.nbeta * q.h[k] / (x * (1 - sp.epsilon * x / 4));
	}
	ok(fabs(e.mean - disc) < 4 * e.se && e.se < 0.03 * disc,
	    "restricted to 3 of 6 (the other 3 of curvature 1e12 held): llc %.4f +- %.4f is the 3 free ones' exact %.4f",
	    e.mean, e.se, disc);

	/* Reduced-rank regression with B held at 0 (or A): the loss is 0 whatever the other does, lambda = 0. */
	m.moving = A;
	run_chains(&tr, &sp, &m, 2, 4, &e);
	ok(e.mean == 0, "RRR, only A moving (B = 0 held): llc exactly %g", e.mean);
	m.moving = Bm;
	m.nmoving = 2;
	run_chains(&tr, &sp, &m, 2, 4, &e);
	ok(e.mean == 0, "RRR, only B's first two moving (A = 0 held): llc exactly %g", e.mean);

	free(a);
	free(b);
}


/* Building and checking a method: ranges to a moving list, the refusals. */
static void
test_method_checks(void)
{
	struct sgld_method m;
	size_t low[3] = {0, 1, 2}, bad[3] = {0, 2, 2};

	sgld_method_default(&m);
	{
		size_t lo[] = {7, 2, 3, 9}, hi[] = {9, 4, 5, 9}, want[] = {2, 3, 4, 7, 8}, n, *mv;
		mv = sgld_moving_from_ranges(lo, hi, 4, 10, &n);
		ok(mv && n == 5 && memcmp(mv, want, sizeof want) == 0 && sgld_method_check(&(struct sgld_method){
		    .moving = mv, .nmoving = n}, 10) == NULL,
		    "moving list from ranges [7,9) [2,4) [3,5) [9,9): 2 3 4 7 8, a valid method");
		free(mv);
		hi[0] = 11;
		ok(sgld_moving_from_ranges(lo, hi, 4, 10, &n) == NULL && n == 0 &&
		    sgld_moving_from_ranges(lo + 3, hi + 3, 1, 10, &n) == NULL,
		    "a range beyond P, or ranges covering nothing: no list");
	}
	m.moving = bad;
	m.nmoving = 3;
	ok(sgld_method_check(&m, 6) != NULL, "a repeated moving index is refused: %s", sgld_method_check(&m, 6));
	m.moving = low;
	ok(sgld_method_check(&m, 2) != NULL && sgld_method_check(&m, 3) == NULL, "an index beyond P is refused");
	m.nmoving = 0;
	ok(sgld_method_check(&m, 6) != NULL, "no moving parameter is refused");
	sgld_method_default(&m);
	m.precond = SGLD_PRECOND_RMSPROP;
	m.alpha = 1;
	ok(sgld_method_check(&m, 6) != NULL, "RMSprop alpha 1 is refused");
	m.alpha = 0.99;
	m.delta = 0;
	ok(sgld_method_check(&m, 6) != NULL, "RMSprop delta 0 is refused");
}


static void
test_drift(void)
{
	enum { N = 4000 };
	double *x = malloc(N * sizeof(double));
	struct chain_drift dr;

	/* Drift: a stationary chain's |z| is of order one; one relaxing from 3 sd away is not. */
	ar1(x, 1, N, 0.9, NULL, 5);
	chain_half_drift(x, N, &dr);
	ok(fabs(dr.z) < 4 && fabs(dr.diff - (dr.second - dr.first)) < 1e-15, "drift of a stationary chain: z = %.2f", dr.z);
	for (long i = 0; i < N; i++)
		x[i] += 3 * exp(-(double)i / 1000);
	chain_half_drift(x, N, &dr);
	ok(dr.z < -4, "drift of a chain relaxing from +3 with time constant N/4: z = %.2f", dr.z);
	x[7] = NAN;
	chain_half_drift(x, N, &dr);
	ok(isnan(dr.z) && isnan(chains_rhat(x, 1, N)) && isnan(chain_ess(x, N)) && isnan(chains_ess_mean(x, 1, 3)),
	    "NaN draws or fewer than 4 draws: NaN diagnostics");
	free(x);
}

int
main(void)
{
	test_diagnostics();
	test_drift();
	test_eps_auto();
	test_eps_mala();
	test_mala();
	test_mala_same_batch();
	test_restrict();
	test_method_checks();
	test_conditioning();
	test_rlct_formulas();
	test_singular();
	return tap_done();
}
