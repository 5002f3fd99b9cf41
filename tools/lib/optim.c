#include "optim.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const optim_names[] = {"adam", "adamw", "sgd", NULL};

void
optim_init(struct optim *o, const struct optim_config *c, size_t n)
{
	memset(o, 0, sizeof *o);
	o->c = *c;
	o->n = n;
	o->m = xcalloc(n, sizeof(float));
	o->v = xcalloc(n, sizeof(float));
}

void
optim_free(struct optim *o)
{
	free(o->m);
	free(o->v);
	memset(o, 0, sizeof *o);
}

/*
 * Scalars are formed in double as torch forms them in Python, then used
 * as float32 by the tensor kernels, as torch's CPU kernels do; each
 * expression keeps the association of torch's kernels (addcmul is
 * self + (value * t1) * t2, addcdiv self + (value * t1) / t2) so that the
 * two agree to rounding.
 */
static double
adam_step(struct optim *o, float *theta, const float *grad, double lr)
{
	const struct optim_config *c = &o->c;
	double bc1 = 1.0 - pow(c->beta1, (double)o->t);
	double bc2 = 1.0 - pow(c->beta2, (double)o->t);
	float b1 = (float)c->beta1, b2 = (float)c->beta2;
	float a1 = (float)(1.0 - c->beta1), a2 = (float)(1.0 - c->beta2);
	float step = (float)(lr / bc1), bc2s = (float)sqrt(bc2), eps = (float)c->eps;
	float wd = (float)c->wd, decay = (float)(1.0 - lr * c->wd);
	double du = 0.0;

	for (size_t k = 0; k < o->n; k++) {
		float th = theta[k], g = grad[k], old = th, denom;
		if (c->kind == OPT_ADAMW)
			th *= decay;
		else if (c->wd != 0.0)
			g = g + wd * th;
		o->m[k] = o->m[k] * b1 + a1 * g;
		o->v[k] = o->v[k] * b2 + (a2 * g) * g;
		denom = sqrtf(o->v[k]) / bc2s + eps;
		th = th + ((-step) * o->m[k]) / denom;
		theta[k] = th;
		du += (double)(th - old) * (double)(th - old);
	}
	return du;
}

static double
sgd_step(struct optim *o, float *theta, const float *grad, double lr)
{
	const struct optim_config *c = &o->c;
	float wd = (float)c->wd, mu = (float)c->momentum, mlr = (float)-lr;
	double du = 0.0;

	for (size_t k = 0; k < o->n; k++) {
		float g = grad[k], old = theta[k];
		if (c->wd != 0.0)
			g = g + wd * theta[k];
		if (c->momentum != 0.0) {
			o->m[k] = o->t == 1 ? g : o->m[k] * mu + g;
			g = c->nesterov ? g + mu * o->m[k] : o->m[k];
		}
		theta[k] = old + mlr * g;
		du += (double)(theta[k] - old) * (double)(theta[k] - old);
	}
	return du;
}

double
optim_step(struct optim *o, float *theta, const float *grad, double lr)
{
	o->t++;
	return o->c.kind == OPT_SGD ? sgd_step(o, theta, grad, lr) : adam_step(o, theta, grad, lr);
}
