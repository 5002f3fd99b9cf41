/*
 * gram: the Gram matrix of a dense layer's per-example gradients, formed
 * a block of rows at a time.
 *
 * Row b's gradient of a layer y = W a + c is d_b [a_b; 1]^T (d_b the
 * output delta, a_b the input), so the Gram entry is
 * g_b . g_c = (d_b . d_c)(a_b . a_c + 1).  Dimensions: n rows (examples),
 * kd outputs, ka inputs.
 */
#ifndef GRAM_H
#define GRAM_H

#include <stddef.h>

/*
 * S[(b - r0) * lds + c] = a_b . a_c for r0 <= b < r1 and c <= b, for an
 * input held other than as rows of floats (the MLP's one-hot and integer
 * encodings); entries past the diagonal are not read.
 */
typedef void (*gram_inner_fn)(const void *ctx, int r0, int r1, double *S, int lds);

/* Doubles of scratch gram_layer needs. */
size_t gram_layer_scratch(int n, int kd, int ka);

/*
 * out (n, n), lower triangle and diagonal (nothing above it is written)
 * = (D D^T) * (A A^T + 1) elementwise, for D (n, kd) and A (n, ka)
 * float, or the inner products from inner(ctx) when A is NULL.  The
 * products run in double (from floats, each term is exact) on a block of
 * GRAM_ROWS rows at a time against the rows before it: one dgemm each,
 * the Hadamard product taken while the block is in cache, and each
 * entry of out written once.  scratch: gram_layer_scratch(n, kd, ka).
 */
void gram_layer(double *out, int n, const float *D, int kd, const float *A, int ka,
    gram_inner_fn inner, const void *ctx, double *scratch);

#endif
