/*
 * optim: every branch of Adam (L2 decay), AdamW (decoupled decay) and SGD
 * (plain, momentum, Nesterov) against the torch.optim update rules written
 * out by hand in double, over several steps with gradients that change
 * sign.  The coordinates are chosen so that each term of the rule moves
 * the result by far more than float32 rounding:
 *
 *   - a gradient whose sign the L2 term flips (Adam normalises the step,
 *     so an L2 term that only scaled the gradient would not show);
 *   - a gradient of 1e-8, where eps = 1e-8 halves Adam's step;
 *   - the first steps, where the bias corrections 1 - beta^t are far
 *     from 1;
 *   - a parameter of 3 with weight decay 0.5, where AdamW's decay
 *     lr * wd * theta is ten times a step.
 *
 * The float32 results must match the double reference to a few float32
 * units in the last place; every planted change to a rule moves some
 * coordinate by at least 1e-5 (tests/mutate plants them).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "tap.h"

enum { N = 6, STEPS = 4 };

/* Gradients per step and coordinate: magnitudes from 1e-8 to 3, sign changes. */
static const double grads[STEPS][N] = {
	{0.3, -0.05, 1e-8, 2.0, -1.0, 0.01},
	{-0.2, -0.04, 1e-8, 1.5, 0.5, -0.02},
	{0.1, -0.06, -1e-8, -3.0, 0.25, 0.03},
	{0.4, -0.05, 1e-8, 0.5, -0.75, -0.01},
};
static const double theta0[N] = {1.0, 0.4, -0.5, 3.0, -2.0, 0.25};

/* The reference: torch.optim's rules (1.13) in double, lr per step. */
static void
reference(const struct optim_config *c, const double *lr, double th[STEPS + 1][N])
{
	double m[N] = {0}, v[N] = {0};

	memcpy(th[0], theta0, sizeof theta0);
	for (int t = 1; t <= STEPS; t++)
		for (int k = 0; k < N; k++) {
			double w = th[t - 1][k], g = grads[t - 1][k];
			if (c->kind == OPT_SGD) {
				g += c->wd * w;
				if (c->momentum != 0) {
					m[k] = t == 1 ? g : c->momentum * m[k] + g;
					g = c->nesterov ? g + c->momentum * m[k] : m[k];
				}
				th[t][k] = w - lr[t - 1] * g;
				continue;
			}
			if (c->kind == OPT_ADAMW)
				w *= 1 - lr[t - 1] * c->wd;
			else
				g += c->wd * w;
			m[k] = c->beta1 * m[k] + (1 - c->beta1) * g;
			v[k] = c->beta2 * v[k] + (1 - c->beta2) * g * g;
			/* torch's form: (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
			double denom = sqrt(v[k]) / sqrt(1 - pow(c->beta2, t)) + c->eps;
			th[t][k] = w - (lr[t - 1] / (1 - pow(c->beta1, t))) * m[k] / denom;
		}
}

/*
 * Run the optimiser and compare every step with the reference: each
 * coordinate within TOL_ULP float32 units of the reference's magnitude,
 * and the returned squared update norm equal to the one of the float
 * parameters.
 */
static void
check(const char *name, const struct optim_config *c, const double *lr)
{
	double ref[STEPS + 1][N], worst = 0, du_err = 0;
	float theta[N], grad[N], old[N];
	struct optim o;

	reference(c, lr, ref);
	for (int k = 0; k < N; k++)
		theta[k] = (float)theta0[k];
	optim_init(&o, c, N);
	for (int t = 1; t <= STEPS; t++) {
		double du, want = 0;
		for (int k = 0; k < N; k++)
			grad[k] = (float)grads[t - 1][k];
		memcpy(old, theta, sizeof theta);
		du = optim_step(&o, theta, grad, lr[t - 1]);
		for (int k = 0; k < N; k++) {
			double e = fabs(theta[k] - ref[t][k]) / (fabs(ref[t][k]) * 0x1p-23);
			worst = fmax(worst, isnan(e) ? INFINITY : e);
			want += (double)(theta[k] - old[k]) * (double)(theta[k] - old[k]);
		}
		du_err = fmax(du_err, fabs(du - want) / want);
	}
	ok(worst <= 8, "%s: %d steps within %.1f float32 ulps of the hand-computed rule (allowed 8)", name, STEPS,
	    worst);
	ok(du_err <= 1e-12 && o.t == STEPS, "%s: the returned squared update norm is the parameters' (rel. err %.1e)",
	    name, du_err);
	optim_free(&o);
}

int
main(void)
{
	const double lr[STEPS] = {1e-2, 1e-2, 1e-2, 1e-2};
	const double warm[STEPS] = {2.5e-3, 5e-3, 7.5e-3, 1e-2};   /* as a warm-up would pass them */
	struct optim_config adam = {
		.kind = OPT_ADAM, .lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .wd = 0.5,
	};
	struct optim_config c;

	check("adam, L2 weight decay 0.5", &adam, lr);
	c = adam;
	c.wd = 0;
	check("adam, no weight decay", &c, lr);
	c = adam;
	c.beta1 = 0.5;
	c.beta2 = 0.9;
	c.eps = 1e-6;
	check("adam, betas (0.5, 0.9), eps 1e-6", &c, lr);
	c = adam;
	c.kind = OPT_ADAMW;
	check("adamw, decoupled weight decay 0.5", &c, lr);
	check("adamw, the learning rate of a warm-up (step 1..4 of 4)", &c, warm);
	c.wd = 0;
	check("adamw, no weight decay", &c, lr);

	c = (struct optim_config){.kind = OPT_SGD, .lr = 0.1, .wd = 0.5};
	check("sgd, L2 weight decay 0.5", &c, (const double[STEPS]){0.1, 0.1, 0.1, 0.1});
	c.momentum = 0.9;
	check("sgd, momentum 0.9, decay 0.5", &c, (const double[STEPS]){0.1, 0.1, 0.1, 0.1});
	c.nesterov = 1;
	check("sgd, Nesterov momentum 0.9, decay 0.5", &c, (const double[STEPS]){0.1, 0.1, 0.1, 0.1});
	c.wd = 0;
	check("sgd, Nesterov momentum 0.9, no decay", &c, warm);

	/* Each rule differs from the others on these steps (else one test could stand for another). */
	{
		double a[STEPS + 1][N], b[STEPS + 1][N], w[STEPS + 1][N];
		struct optim_config aw = adam;
		aw.kind = OPT_ADAMW;
		reference(&adam, lr, a);
		c = adam;
		c.wd = 0;
		reference(&c, lr, b);
		reference(&aw, lr, w);
		double dab = 0, daw = 0;
		for (int k = 0; k < N; k++) {
			dab = fmax(dab, fabs(a[STEPS][k] - b[STEPS][k]));
			daw = fmax(daw, fabs(a[STEPS][k] - w[STEPS][k]));
		}
		ok(dab > 1e-3 && daw > 1e-3, "the L2 term moves adam by %.2e, decoupling it by %.2e", dab, daw);
	}
	return tap_done();
}
