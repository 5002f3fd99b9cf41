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

#endif
