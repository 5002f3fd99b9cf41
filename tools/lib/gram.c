#include "gram.h"
#include "util.h"

#include <string.h>

#include <cblas.h>

/*
 * Rows per block.  Two blocks of products (GRAM_ROWS x n doubles each)
 * stay in a core's L2 at the sizes gop-spectrum meets (n of a few
 * thousand), and 64 rows keep dgemm near its full rate.  Against dsyrk
 * and a separate Hadamard pass, the upper half of each diagonal block is
 * the only extra work (under GRAM_ROWS / n of the whole), and the n x n
 * products never travel through memory.
 */
#define GRAM_ROWS 64

size_t
gram_layer_scratch(int n, int kd, int ka)
{
	return xmul((size_t)n, (size_t)kd + (size_t)ka + 2 * GRAM_ROWS);
}

/* Y (n, k) double = X float: every product of two of them is then exact in double. */
static void
widen(double *Y, const float *X, size_t count)
{
	for (size_t i = 0; i < count; i++)
		Y[i] = X[i];
}

/* S (r1 - r0, r1), leading dimension r1 = rows r0..r1-1 of X X^T, X (n, k). */
static void
block_products(double *S, const double *X, int k, int r0, int r1)
{
	if (k == 0) {
		memset(S, 0, (size_t)(r1 - r0) * (size_t)r1 * sizeof *S);
		return;
	}
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, k, 1.0, X + (size_t)r0 * k, k,
	    X, k, 0.0, S, r1);
}

void
gram_layer(double *out, int n, const float *D, int kd, const float *A, int ka,
    gram_inner_fn inner, const void *ctx, double *scratch)
{
	double *Dd = scratch, *Ad = Dd + (size_t)n * kd;
	double *S = Ad + (size_t)n * (A ? ka : 0), *U = S + (size_t)GRAM_ROWS * n;

	widen(Dd, D, (size_t)n * kd);
	if (A)
		widen(Ad, A, (size_t)n * ka);
	for (int r0 = 0; r0 < n; r0 += GRAM_ROWS) {
		int r1 = n - r0 < GRAM_ROWS ? n : r0 + GRAM_ROWS;
		block_products(S, Dd, kd, r0, r1);
		if (A)
			block_products(U, Ad, ka, r0, r1);
		else
			inner(ctx, r0, r1, U, r1);
		for (int b = r0; b < r1; b++) {
			const double *s = S + (size_t)(b - r0) * r1, *u = U + (size_t)(b - r0) * r1;
			double *o = out + (size_t)b * n;
			for (int c = 0; c <= b; c++)
				o[c] = s[c] * (u[c] + 1.0);
		}
	}
}
