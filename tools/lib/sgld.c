#include "sgld.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "util.h"

double
sgld_default_nbeta(int batch)
{
	return batch / log((double)batch);
}

void
sgld_run(const struct sgld_target *t, const struct sgld_params *sp, const float *wstar,
    uint64_t seed, int chain, double *loss, struct sgld_chain *out)
{
	size_t P = t->P;
	long total = sp->burnin + sp->draws * sp->thin, pos = t->n;  /* pos = n: shuffle first */
	float *w = xmalloc(xmul(P, sizeof(float)));
	float *grad = xmalloc(xmul(P, sizeof(float)));
	float *noise = xmalloc(xmul(P, sizeof(float)));
	int32_t *order = xmalloc(xmul((size_t)t->n, sizeof(int32_t)));
	/* The update's coefficients, in float like the parameters. */
	float drift = (float)(0.5 * sp->epsilon * sp->nbeta);
	float pull = (float)(0.5 * sp->epsilon * sp->gamma);
	float sd = (float)sqrt(sp->epsilon);
	struct rng shuffle, rnoise;

	memset(out, 0, sizeof *out);
	memcpy(w, wstar, P * sizeof(float));
	for (long i = 0; i < t->n; i++)
		order[i] = (int32_t)i;
	rng_init_part(&shuffle, seed, RNG_SHUFFLE, (uint64_t)chain);
	rng_init_part(&rnoise, seed, RNG_NOISE, (uint64_t)chain);
	for (long d = 0; d < sp->draws; d++)
		loss[d] = NAN;

	for (long s = 0; s < total; s++) {
		double l;

		if (pos + sp->batch > t->n) {
			rng_shuffle(&shuffle, order, (size_t)t->n);
			pos = 0;
		}
		memset(grad, 0, P * sizeof(float));
		l = t->loss_grad(t->ctx, grad, w, order + pos, sp->batch);
		pos += sp->batch;
		out->steps = s + 1;
		if (!isfinite(l)) {
			/* Nothing after a non-finite loss is a draw of anything. */
			out->nonfinite = 1;
			break;
		}
		/* As devinterp: the draw is the loss at w before the step from it. */
		if (s >= sp->burnin && (s - sp->burnin) % sp->thin == 0) {
			long d = (s - sp->burnin) / sp->thin;
			loss[d] = l;
			if (l > sp->explode)
				out->exploded++;
		}
		rng_normals(&rnoise, noise, P);
		for (size_t k = 0; k < P; k++)
			w[k] += -drift * grad[k] - pull * (w[k] - wstar[k]) + sd * noise[k];
	}
	if (out->nonfinite) {
		out->loss_mean = NAN;
	} else {
		double sum = 0;
		for (long d = 0; d < sp->draws; d++)
			sum += loss[d];
		out->loss_mean = sum / sp->draws;
	}
	free(w);
	free(grad);
	free(noise);
	free(order);
}
