/*
 * mlp_norms: the MLP's backward pass that also returns each row's squared
 * per-example gradient norm, for the training log (model.h's
 * example_norms).
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
 * no per-example gradient is formed and no second pass runs.
 *
 * The pass is mlp_backward's (same products, same order, so the gradient
 * is the same) with the row norms added; it lives here rather than in
 * mlp.c so that the kernels there stay as they are.
 */
#include "mlp.h"

#include <string.h>

#include <cblas.h>
#undef I   /* complex.h, through OpenBLAS's cblas.h */

/* sq (B) += |row b of d (B, n)|^2 * (extra_b + 1), extra_b = |row b of a (B, nin)|^2, or anorm when a is NULL. */
static void
add_row_norms(double *sq, const float *d, int n, const float *a, int nin, double anorm, int B)
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

/* The first layer: its weight and bias gradients from dz (B, nout), and its share of the norms. */
static void
layer0_norms(const struct mlp *m, struct mlp_work *w, float *grad, double *sq,
    const float *dz, const int32_t *x, int B)
{
	float *gW = grad + m->woff[0], *gb = grad + m->boff[0];
	int nout = m->out[0], nin = m->in[0], p = m->c.p;

	for (int b = 0; b < B; b++)
		for (int j = 0; j < nout; j++)
			gb[j] += dz[(size_t)b * nout + j];
	if (m->c.encoding == MLP_ONEHOT) {
		/* Scatter-add into the transpose's contiguous rows, as mlp_backward. */
		float *T = w->scatter;   /* (nin, nout) */
		memset(T, 0, (size_t)nin * (size_t)nout * sizeof(float));
		for (int b = 0; b < B; b++) {
			float *tx = T + (size_t)x[2 * b] * nout;
			float *ty = T + (size_t)(p + x[2 * b + 1]) * nout;
			const float *d = dz + (size_t)b * nout;
			for (int j = 0; j < nout; j++) {
				tx[j] += d[j];
				ty[j] += d[j];
			}
		}
		for (int j = 0; j < nout; j++)
			for (int c = 0; c < nin; c++)
				gW[(size_t)j * nin + c] += T[(size_t)c * nout + j];
		add_row_norms(sq, dz, nout, NULL, 0, 2.0, B);
		return;
	}
	/* the forward pass left the rows' integers, as floats, in xin (B, 2) */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nout, 2, B,
	    1.0f, dz, nout, w->xin, 2, 1.0f, gW, 2);
	add_row_norms(sq, dz, nout, w->xin, 2, 0.0, B);
}

void
mlp_backward_norms(const struct mlp *m, struct mlp_work *w, float *grad, double *sq,
    const float *theta, const int32_t *x, int B, float scale)
{
	const float *dz = w->dlogits;
	int cur = 0;

	memset(sq, 0, (size_t)B * sizeof *sq);
	for (int i = m->nlayers - 1; i >= 1; i--) {
		int nout = m->out[i], nin = m->in[i];
		const float *a = w->acts[i - 1], *Wi = theta + m->woff[i];
		float *dprev = w->dbuf[cur], *gb = grad + m->boff[i];

		for (int b = 0; b < B; b++)
			for (int j = 0; j < nout; j++)
				gb[j] += dz[(size_t)b * nout + j];
		add_row_norms(sq, dz, nout, a, nin, 0.0, B);
		/* gW (nout, nin) += dz^T (nout, B) . a (B, nin) */
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nout, nin, B,
		    1.0f, dz, nout, a, nin, 1.0f, grad + m->woff[i], nin);
		/* dprev (B, nin) = dz (B, nout) . W (nout, nin), through the ReLU (torch: relu'(0) = 0) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, nin, nout,
		    1.0f, dz, nout, Wi, nin, 0.0f, dprev, nin);
		for (size_t k = 0; k < (size_t)B * (size_t)nin; k++)
			dprev[k] = a[k] > 0.0f ? dprev[k] : 0.0f;
		dz = dprev;
		cur ^= 1;
	}
	layer0_norms(m, w, grad, sq, dz, x, B);
	/* the deltas carried the loss's scale: undo it, so that sq is of each row's own loss */
	if (scale != 0.0f)
		for (int b = 0; b < B; b++)
			sq[b] /= (double)scale * (double)scale;
}
