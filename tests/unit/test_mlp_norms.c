/*
 * mlp_norms: the per-example squared gradient norms the backward pass
 * returns (model_eval_set_norms, the family's example_norms) against each
 * example's gradient computed alone by the double-precision reference
 * model; the gradient of the same pass against model_eval_set's; and a
 * family without the method (the transformer) refusing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"
#include "rng.h"
#include "tap.h"

static void
check_norms(int p, int depth, int width, enum mlp_encoding enc, enum mlp_loss loss)
{
	enum { N = 13, MAXB = 5 };   /* batches of 5, 5 and 3: the offsets matter */
	struct mlp_config c = {p, depth, width, enc, loss};
	struct model *mm = mlp_model_new(&c);
	const struct mlp *m = mlp_of(mm);
	struct model_work *w = model_work_new(mm, MAXB);
	struct model_eval ev1, ev2;
	struct rng r;
	int32_t x[2 * N], y[N];
	size_t P = m->nparams;
	float *theta = calloc(P, sizeof *theta), *g1 = calloc(P, sizeof *g1), *g2 = calloc(P, sizeof *g2);
	double *th = calloc(P, sizeof *th), *gi = calloc(P, sizeof *gi), sq[N], err = 0, gerr = 0, gmax = 0;
	int rc;
	char what[96];

	snprintf(what, sizeof what, "%s/%s depth %d", mlp_encoding_names[enc], mlp_loss_names[loss], depth);
	rng_init(&r, 7 + depth, RNG_INIT);
	mlp_init_params(m, theta, &r);
	for (size_t k = 0; k < P; k++)
		th[k] = theta[k];
	for (int b = 0; b < N; b++) {
		x[2 * b] = (int32_t)rng_below(&r, (uint32_t)p);
		x[2 * b + 1] = b == 0 ? x[0] : (int32_t)rng_below(&r, (uint32_t)p);   /* x = y once */
		y[b] = (x[2 * b] + x[2 * b + 1]) % p;
	}
	rc = model_eval_set_norms(w, &ev1, g1, sq, theta, x, y, N, NULL);
	model_eval_set(w, &ev2, g2, theta, x, y, N, NULL);
	ok(rc == 0, "%s: the MLP has example_norms", what);
	/* each example's gradient alone, in double: B = 1, so the mean loss is its own */
	for (int b = 0; b < N; b++) {
		double s = 0;
		memset(gi, 0, P * sizeof *gi);
		mlp_ref_loss(m, th, x + 2 * b, y + b, 1, gi, NULL);
		for (size_t k = 0; k < P; k++)
			s += gi[k] * gi[k];
		err = fmax(err, fabs(sq[b] - s) / s);
		if (!(s > 0) || !isfinite(sq[b]))
			err = INFINITY;
	}
	ok(err < 1e-4, "%s: |g_i|^2 of 13 rows against each row's own reference gradient, rel. err %.2e",
	    what, err);
	for (size_t k = 0; k < P; k++) {
		gerr = fmax(gerr, fabs((double)g1[k] - g2[k]));
		gmax = fmax(gmax, fabs((double)g2[k]));
	}
	ok(gerr <= 1e-6 * gmax && gmax > 0, "%s: the pass's gradient is model_eval_set's (max diff %.2e of %.2e)",
	    what, gerr, gmax);
	ok(ev1.loss_sum == ev2.loss_sum && ev1.correct == ev2.correct, "%s: and its loss sums", what);
	model_work_free(w);
	model_free(mm);
	free(theta); free(g1); free(g2); free(th); free(gi);
}

/* The mean of |g_i|^2 is the trace of G = (1/n) sum g_i g_i^T, which the Gram route also gives. */
static void
check_gram_trace(void)
{
	enum { N = 9 };
	struct mlp_config c = {7, 2, 5, MLP_ONEHOT, MLP_CE};
	struct model *mm = mlp_model_new(&c);
	struct model_work *w = model_work_new(mm, N);
	struct model_eval ev;
	struct rng r;
	int32_t x[2 * N], y[N];
	float *theta = calloc(mm->nparams, sizeof *theta), *g = calloc(mm->nparams, sizeof *g);
	double sq[N], *K = calloc((size_t)N * N, sizeof *K), tr = 0, sum = 0;

	rng_init(&r, 3, RNG_INIT);
	mlp_init_params(mlp_of(mm), theta, &r);
	for (int b = 0; b < N; b++) {
		x[2 * b] = (int32_t)rng_below(&r, 7);
		x[2 * b + 1] = (int32_t)rng_below(&r, 7);
		y[b] = (x[2 * b] + x[2 * b + 1]) % 7;
	}
	model_eval_set_norms(w, &ev, g, sq, theta, x, y, N, NULL);
	for (int gr = 0; gr < mm->ngroups; gr++) {
		model_gram_generic(mm, theta, x, y, N, gr, 1 << 20, K);
		for (int b = 0; b < N; b++)
			tr += K[(size_t)b * N + b];
	}
	for (int b = 0; b < N; b++)
		sum += sq[b];
	ok(fabs(sum - tr) <= 1e-5 * tr && tr > 0, "sum of |g_i|^2 %.9g = the generic Gram's trace %.9g", sum, tr);
	model_work_free(w);
	model_free(mm);
	free(theta); free(g); free(K);
}

static void
check_refusal(void)
{
	char err[256];
	json_t *hp = json_pack("{s:i, s:i, s:i, s:i, s:i}", "layers", 1, "d_model", 8, "heads", 2,
	    "d_head", 4, "d_mlp", 16);
	struct model *m = model_new_json("transformer", hp, 7, err, sizeof err);
	struct model_work *w = m ? model_work_new(m, 4) : NULL;
	struct model_eval ev;
	int32_t x[8] = {1, 2, 3, 4, 5, 6, 0, 1}, y[4] = {3, 0, 4, 1};
	float *g = m ? calloc(m->nparams, sizeof *g) : NULL, *theta = m ? calloc(m->nparams, sizeof *theta) : NULL;
	double sq[4] = {-1, -1, -1, -1};

	ok(m && model_eval_set_norms(w, &ev, g, sq, theta, x, y, 4, NULL) == -1 && sq[0] == -1,
	    "the transformer has no example_norms: -1, nothing written");
	model_work_free(w);
	model_free(m);
	json_decref(hp);
	free(g); free(theta);
}

int
main(void)
{
	for (int enc = 0; enc < 2; enc++)
		for (int loss = 0; loss < 2; loss++) {
			check_norms(5, 0, 6, (enum mlp_encoding)enc, (enum mlp_loss)loss);
			check_norms(5, 1, 6, (enum mlp_encoding)enc, (enum mlp_loss)loss);
			check_norms(7, 3, 8, (enum mlp_encoding)enc, (enum mlp_loss)loss);
		}
	check_gram_trace();
	check_refusal();
	return tap_done();
}
