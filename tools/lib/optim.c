#include "optim.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const optim_names[] = {"adam", "adamw", "sgd", NULL};

#if defined(__x86_64__) && defined(__GNUC__)
/*
 * Whether the CPU has AVX-512 (then the Adam update runs sixteen entries
 * a vector: a few per cent of a width-128 training step in the scalar
 * loop of the baseline build).
 */
static int
cpu_avx512(void)
{
	__builtin_cpu_init();   /* at once if done: a look at a flag */
	return __builtin_cpu_supports("avx512f") != 0;
}
#endif

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
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* adam_step's float scalars, formed once. */
struct adam_consts {
	float b1, b2, a1, a2, step, bc2s, eps, wd, decay;
	int adamw;
};

/*
 * Entries [k0, n) of adam_step, sixteen a vector: the same float
 * operations in the same association (a multiply and an add stay two
 * roundings: no FMA), so theta, m and v come out bit for bit as the
 * scalar loop's.  Only the squared update's sum in double goes in eight
 * lanes and then a fixed tree, so its last bits differ from the serial sum.
 */
static __attribute__((target("avx512f"))) double
adam_avx512(struct optim *o, float *theta, const float *grad, const struct adam_consts *c)
{
	__m512 b1 = _mm512_set1_ps(c->b1), b2 = _mm512_set1_ps(c->b2), a1 = _mm512_set1_ps(c->a1);
	__m512 a2 = _mm512_set1_ps(c->a2), nstep = _mm512_set1_ps(-c->step);
	__m512 bc2s = _mm512_set1_ps(c->bc2s), eps = _mm512_set1_ps(c->eps);
	__m512 wd = _mm512_set1_ps(c->wd), decay = _mm512_set1_ps(c->decay);
	__m512d du0 = _mm512_setzero_pd(), du1 = _mm512_setzero_pd();
	int l2 = !c->adamw && c->wd != 0.0f;

	for (size_t k = 0; k < o->n; k += 16) {
		size_t left = o->n - k;
		__mmask16 msk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
		__m512 th = _mm512_maskz_loadu_ps(msk, theta + k), g = _mm512_maskz_loadu_ps(msk, grad + k);
		__m512 old = th, m, v, denom, d;
		__m512d dlo, dhi;
		if (c->adamw)
			th = _mm512_mul_ps(th, decay);
		else if (l2)
			g = _mm512_add_ps(g, _mm512_mul_ps(wd, th));
		m = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(msk, o->m + k), b1), _mm512_mul_ps(a1, g));
		v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(msk, o->v + k), b2),
		    _mm512_mul_ps(_mm512_mul_ps(a2, g), g));
		_mm512_mask_storeu_ps(o->m + k, msk, m);
		_mm512_mask_storeu_ps(o->v + k, msk, v);
		denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(v), bc2s), eps);
		th = _mm512_add_ps(th, _mm512_div_ps(_mm512_mul_ps(nstep, m), denom));
		_mm512_mask_storeu_ps(theta + k, msk, th);
		d = _mm512_maskz_sub_ps(msk, th, old);
		dlo = _mm512_cvtps_pd(_mm512_castps512_ps256(d));
		dhi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)));
		du0 = _mm512_add_pd(du0, _mm512_mul_pd(dlo, dlo));
		du1 = _mm512_add_pd(du1, _mm512_mul_pd(dhi, dhi));
	}
	return _mm512_reduce_add_pd(_mm512_add_pd(du0, du1));
}
#endif

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

#if defined(__x86_64__) && defined(__GNUC__)
	if (cpu_avx512()) {
		struct adam_consts k = {b1, b2, a1, a2, step, bc2s, eps, wd, decay, c->kind == OPT_ADAMW};
		return adam_avx512(o, theta, grad, &k);
	}
#endif
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
