/*
 * sgld: stochastic-gradient Langevin chains localised at a point, for the
 * local learning coefficient (Lau, Furman, Wang, Murfet and Wei 2023,
 * "The local learning coefficient: a singularity-aware complexity
 * measure"; devinterp's estimator).
 *
 * Around w*, each step draws a minibatch and moves
 *
 *   w <- w - (eps/2) (nbeta grad L_batch(w) + gamma (w - w*)) + N(0, eps I),
 *
 * a discretised Langevin diffusion whose stationary law is close to the
 * tempered, localised posterior exp(-nbeta L(w) - gamma/2 |w - w*|^2).
 * The estimate is lambda = nbeta (E[L_batch(w)] - L(w*)) over the draws.
 *
 * The loss is a callback, so the sampler runs the same on the MLP and on
 * the quadratic losses the tests know the answer for.
 */
#ifndef SGLD_H
#define SGLD_H

#include <stddef.h>
#include <stdint.h>

#define SGLD_MAX_STEPS 100000000L   /* burn-in + draws * thin, per chain */

struct sgld_params {
	double epsilon;   /* step size */
	double gamma;     /* localisation strength */
	double nbeta;     /* inverse temperature times n */
	int batch;        /* minibatch rows */
	long draws;       /* draws kept per chain */
	long burnin;      /* steps before the first draw */
	long thin;        /* steps between draws (1: every step) */
	double explode;   /* a draw with a larger loss counts as exploded */
};

/*
 * The loss being sampled: rows 0..n-1, P parameters.  loss_grad returns the
 * mean loss of the B rows idx[] at w and adds its gradient into grad.
 */
struct sgld_target {
	size_t P;
	long n;
	double (*loss_grad)(void *ctx, float *grad, const float *w, const int32_t *idx, int B);
	void *ctx;
};

/* What one chain did. */
struct sgld_chain {
	long steps;        /* steps taken (fewer than asked if the loss went non-finite) */
	long nonfinite;    /* steps whose loss was NaN or infinite (0 or 1: the chain stops) */
	long exploded;     /* draws whose loss exceeded params.explode */
	double loss_mean;  /* mean loss over the draws (NaN if the chain stopped) */
};

/*
 * Run chain number `chain` from w*: minibatches in a reshuffled order each
 * pass (a last partial batch dropped), noise and order from seed's
 * RNG_SHUFFLE and RNG_NOISE streams, part `chain`, so a chain's draws do
 * not depend on how many chains run.  Writes the draws' losses into
 * loss[draws] (NaN after a non-finite step).  batch must be 1..n.
 */
void sgld_run(const struct sgld_target *t, const struct sgld_params *sp, const float *wstar,
    uint64_t seed, int chain, double *loss, struct sgld_chain *out);

/* nbeta = B / ln B, devinterp's default for batch B >= 2. */
double sgld_default_nbeta(int batch);

/*
 * How a chain moves, beyond sgld_run's plain SGLD over every parameter.
 *
 * Preconditioning (devinterp's rmsprop_sgld; Li, Chen, Carlson and Carin
 * 2016, "Preconditioned stochastic gradient Langevin dynamics").  Each
 * step first updates the running second moment of the raw minibatch
 * gradient g = grad L_batch(w) (not of nbeta g) and then scales the
 * drift, the localisation and the noise by G = 1 / (sqrt(v) + delta):
 *
 *   v <- alpha v + (1 - alpha) g^2          (v = 0 before the first step)
 *   G  = 1 / (sqrt(v) + delta)
 *   w <- w - (eps/2) G (nbeta g + gamma (w - w*)) + sqrt(eps G) N(0, I)
 *
 * elementwise, in float and in devinterp's order of operations.  In a
 * direction of curvature h the stationary gradient is ~ sqrt(h / nbeta),
 * so G h ~ sqrt(h nbeta): the preconditioned chain sees the square root of
 * the loss's conditioning, which is what lets one eps explore flat and
 * sharp directions at once.  delta bounds G by 1/delta where the gradient
 * vanishes (at a minimum, on the first step): it is in the units of the
 * gradient, and devinterp's 0.1 suits losses of order one.  With G held
 * fixed the chain is plain SGLD in the coordinates G^-1/2 w, so its
 * stationary law is the same tempered, localised posterior; a G that
 * follows the chain makes it approximately so (the Gamma correction term
 * of Li et al. is dropped, as devinterp and Li et al. do).
 *
 * That approximation is not small.  Where a direction relaxes more slowly
 * than the running moment forgets (1 / (1 - alpha) steps: 100 at
 * devinterp's 0.99), v follows the chain's position, G ~ 1 / |g| shrinks
 * the steps where |w - w*| is large, and the chain's law becomes
 * ~ exp(-U) / G instead of exp(-U): on a quadratic its lambda-hat is too
 * large by up to a factor of 2 (test_llc_known measures +43% on a
 * quadratic of condition number 10^6).  freeze adapts G
 * during the burn-in only and holds it through the draws, as Stan adapts
 * its metric during warm-up: with G fixed the draws are plain SGLD in the
 * coordinates G^-1/2 w, exact up to the discretisation, whose bias along
 * a direction of curvature h is the plain chain's with eps G in place of
 * eps: a variance 1 / (a (1 - eps G a / 4)), a = nbeta h + gamma.  A
 * frozen G suits a posterior whose curvature is roughly the same wherever
 * the chain goes (a basin); on a singular set whose arms differ in
 * curvature by orders of magnitude, a G frozen on one arm is unstable on
 * another, so freeze is off by default and a diverging or disagreeing
 * chain (R-hat, MALA) says when it was wrong.
 *
 * Restriction (devinterp's optimize_over / mask): only the parameters
 * moving[0..nmoving-1] move; the others stay at w* (their gradient is
 * computed by the callback and ignored).  The estimator is unchanged: the
 * LLC of the moving parameters with the others held at w*.  The noise
 * stream then gives nmoving normals a step, so a restricted chain is not a
 * sub-chain of the unrestricted one; restricting to every parameter in
 * order is the unrestricted chain exactly.
 *
 * MALA acceptance (devinterp's MalaAcceptanceRate, Roberts and Tweedie
 * 1996).  With the energy U(w) = nbeta L_batch(w) + gamma/2 |w - w*|^2 and
 * the proposal q(w'|w) = N(w - (eps/2) G grad U(w), eps G), the step from
 * w to w' would be accepted by a Metropolis-adjusted chain with
 *
 *   a = min(1, exp(U(w) - U(w') + log q(w|w') - log q(w'|w))).
 *
 * The chain accepts every step regardless; a, averaged over the steps,
 * says how far the discretisation is from the posterior it targets (1:
 * exact; devinterp suggests 0.9 to 0.95 for a trusted chain).  U(w') and
 * grad U(w') come from the next step's evaluation, so measuring costs no
 * extra call; like devinterp, U at the two ends is on two different
 * minibatches, so with small batches a also measures the minibatch
 * noise.  The preconditioner that made the proposal is used for both
 * directions.  Counted over the proposals from draw-phase steps (after
 * the burn-in) whose end was evaluated (all but the last).
 *
 * That minibatch noise is not small: nbeta times the difference of two
 * batches' mean losses at the same w has a spread of order one on the
 * grokking MLPs at batch 32, so their devinterp acceptance stays near 0.5
 * however small eps is (0.47 measured at eps = 2.5e-9), and says nothing
 * about the step.  mala_every > 0 measures the same acceptance with both
 * ends on the proposal's own minibatch, the one the step's gradient came
 * from: an extra loss and gradient at w' on that minibatch, every
 * mala_every-th draw-phase step (a cost of 1 / mala_every more
 * evaluations).  That is the acceptance of a Metropolis-adjusted step on
 * the minibatch's own posterior, which tends to 1 as eps -> 0 and falls as
 * the step's discretisation error grows.  It changes no draw: the chain
 * moves as without it.  A proposal whose loss is not finite counts 0.
 */
enum sgld_precond {
	SGLD_PRECOND_NONE,     /* plain SGLD, devinterp's sgld */
	SGLD_PRECOND_RMSPROP,  /* devinterp's rmsprop_sgld */
};

struct sgld_method {
	enum sgld_precond precond;
	double alpha;          /* RMSprop: decay of the second moment, [0, 1) (devinterp 0.99) */
	double delta;          /* RMSprop: added to its square root, > 0 (devinterp's eps, 0.1) */
	int freeze;            /* RMSprop: hold G from the last burn-in step on (the first step's without burn-in) */
	const size_t *moving;  /* ascending indices of the parameters that move; NULL: all P */
	size_t nmoving;        /* 1..P entries of moving (ignored when moving is NULL) */
	int mala;              /* measure the MALA acceptance of every proposal */
	long mala_every;       /* > 0 (needs mala): also on the proposal's own minibatch, every K-th draw step */
};

/* What the chain says about its own health, beside struct sgld_chain. */
struct sgld_health {
	double mala_mean;      /* mean acceptance probability (NaN: not measured, or no proposal) */
	double mala_min;       /* its smallest value (NaN likewise) */
	long mala_n;           /* proposals averaged */
	double mala_batch_mean;  /* the same on the proposal's own minibatch (NaN: not measured) */
	double mala_batch_min;
	long mala_batch_n;
	double precond_min;    /* range of G over the moving parameters at the last step */
	double precond_max;    /*   (1 and 1 without preconditioning) */
	float *precond;        /* the caller's: if not NULL, receives that G (nmoving floats; 1 if plain) */
};

/*
 * The moving list for parameter ranges (tensors, layers): the distinct
 * indices in the n half-open ranges [lo[i], hi[i]) of 0..P-1, in any order
 * and overlapping or not, ascending in a new array of *count entries.
 * NULL (and *count 0) if they cover nothing or a range leaves 0..P-1.
 */
size_t *sgld_moving_from_ranges(const size_t *lo, const size_t *hi, int n, size_t P, size_t *count);

/* Plain SGLD over every parameter, no MALA; RMSprop's alpha and delta at devinterp's defaults. */
void sgld_method_default(struct sgld_method *m);

/* NULL if m is valid for P parameters, else what is wrong with it. */
const char *sgld_method_check(const struct sgld_method *m, size_t P);

/*
 * sgld_run with a method (m valid: see sgld_method_check); health may be
 * NULL (its precond pointer is read, every other field written).  With
 * sgld_method_default it is sgld_run: the same draws, bit for bit.
 */
void sgld_run_method(const struct sgld_target *t, const struct sgld_params *sp,
    const struct sgld_method *m, const float *wstar, uint64_t seed, int chain, double *loss,
    struct sgld_chain *out, struct sgld_health *health);

/*
 * The step size from the sharpest curvature: on a quadratic of curvature
 * h the plain chain contracts by 1 - eps a / 2 a step, a = nbeta h + gamma,
 * and is stable iff eps a / 2 < 2.  eps_auto puts eps a_max / 2 at 2 /
 * margin:
 *
 *   eps = 4 / (margin (nbeta lambda_max + gamma)).
 *
 * The margin pays for three things.  (1) Bias: the discretised chain's
 * variance along a direction is 1 / (a (1 - eps a / 4)) instead of 1/a, so
 * each direction adds at most (1/2) (1 / (1 - 1/margin) - 1) =
 * 1 / (2 (margin - 1)) to lambda-hat, 0.026 at margin 20, less in flatter
 * directions (eps a / 8 each).  (2) Under-estimated curvature: a few
 * Lanczos steps give a Ritz value below lambda_max, and a minibatch's
 * Hessian is sharper than the full one; margin 20 leaves a factor 20
 * before the chain is at the stability edge.  (3) Cost: the flattest
 * direction a_min relaxes in 2 / (eps a_min) = margin a_max / (2 a_min)
 * steps, so a larger margin buys accuracy with longer chains.
 * SGLD_EPS_MARGIN is the default; a margin below 1 gives a step that
 * diverges on the quadratic (the calibration grid may want one).  NaN if
 * an argument is out of range (lambda_max >= 0, nbeta > 0, gamma >= 0,
 * nbeta lambda_max + gamma > 0, margin > 0, all finite).
 */
#define SGLD_EPS_MARGIN 20.0
double sgld_eps_auto(double lambda_max, double nbeta, double gamma, double margin);

/*
 * The step size from the dimension: the largest eps at which a
 * Metropolis-adjusted step would be accepted with mean probability
 * `accept` on a Gaussian posterior with one direction of precision
 * nbeta lambda_max + gamma and d - 1 of precision gamma (the
 * localisation: the least any direction has).  On a Gaussian of
 * precisions a_i the log acceptance ratio of the proposal is close to
 * N(-s/2, s), s = sum_i (eps a_i)^3 / 16, whose mean min(1, e^r) is
 * 2 Phi(-sqrt(s) / 2) (Roberts and Rosenthal 1998, "Optimal scaling of
 * discrete approximations to Langevin diffusions": the d^(-1/3)
 * scaling).  So eps = (64 x^2 / S)^(1/3), x = Phi^-1(1 - accept / 2),
 * S = (d - 1) gamma^3 + (nbeta lambda_max + gamma)^3.
 *
 * Why it matters: sgld_eps_auto's margin bounds each direction's error,
 * but the MALA acceptance sums the errors of all d directions, so on a
 * flat checkpoint of 10^5 parameters the margin's eps gamma = 0.04 gives
 * an acceptance of 0.74 (measured on the grokking MLPs; this formula
 * says 0.73), though every direction's variance is within 1% of its
 * target.  The loss's own curvature only adds precision, so the true
 * acceptance is somewhat below `accept`; llc-estimate asks for
 * SGLD_EPS_ACCEPT and measures what it got.  NaN if an argument is out of
 * range (lambda_max >= 0, nbeta > 0, gamma >= 0, d >= 1, accept in
 * (0, 1), S > 0, all finite).
 */
#define SGLD_EPS_ACCEPT 0.97
double sgld_eps_mala(double lambda_max, double nbeta, double gamma, size_t d, double accept);

#endif
