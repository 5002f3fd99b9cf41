/*
 * mlp_norms: each row's squared per-example gradient norm, added by the
 * MLP's backward pass (mlp_backward_norms in mlp.c) for the training log
 * (model.h's example_norms).
 *
 * Dimension letters as mlp.h: B rows, W hidden width, V = p classes.
 *
 * A linear layer's gradient for row b alone is the outer product
 * delta_b a_b^T (weight) and delta_b (bias), delta_b (out) the row's
 * gradient at the layer's pre-activation and a_b (in) its input; so its
 * squared Frobenius norm is |delta_b|^2 (|a_b|^2 + 1), and the row's
 * squared gradient norm is that summed over the layers:
 *
 *     |g_b|^2 = sum_i |delta_{i,b}|^2 (|a_{i,b}|^2 + 1),
 *
 * the diagonal of the per-example Gram matrix, whose trace over n is the
 * gradient outer product's trace.  The one-hot first layer's input has
 * |a|^2 = 2 (one 1 in the x block and one in the y block, also when
 * x = y); the integer encoding's is x^2 + y^2.  The backward pass holds
 * every delta and activation, one layer at a time, so the norms cost
 * O(B (I + W D + V)) multiply-adds beside the pass's O(B W (W D + V)):
 * no per-example gradient is formed and no second pass runs, and the
 * gradient is the pass's own.
 */
#include "mlp.h"

/* sq (B) += |row b of d (B, n)|^2 * (|row b of a (B, nin)|^2 + 1), or (anorm + 1) when a is NULL. */
static void
add_norms(double *sq, const float *d, int n, const float *a, int nin, double anorm, int B)
{
	for (int b = 0; b < B; b++) {
		const float *db = d + (size_t)b * n;
		double dd = 0, aa = anorm;
		for (int j = 0; j < n; j++)
			dd += (double)db[j] * db[j];
		if (a) {
			const float *ab = a + (size_t)b * nin;
			aa = 0;
			for (int j = 0; j < nin; j++)
				aa += (double)ab[j] * ab[j];
		}
		sq[b] += dd * (aa + 1.0);
	}
}

void
mlp_row_norms_add(double *sq, const float *d, int n, const float *a, int nin, int B)
{
	add_norms(sq, d, n, a, nin, 0.0, B);
}

void
mlp_row_norms_first(const struct mlp *m, const struct mlp_work *w, double *sq,
    const float *dz, int B)
{
	if (m->c.encoding == MLP_ONEHOT)
		add_norms(sq, dz, m->out[0], NULL, 0, 2.0, B);
	else   /* the forward pass left the rows' integers, as floats, in xin (B, 2) */
		add_norms(sq, dz, m->out[0], w->xin, 2, 0.0, B);
}
