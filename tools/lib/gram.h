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

/*
 * How a Gram term enters out (n, the rows): out = term (GRAM_RAW), term /
 * n (GRAM_SET), out + term / n (GRAM_ADD) or out / n + term / n
 * (GRAM_RESCALE_ADD: out held the first term undivided), entry by entry,
 * each division correctly rounded and then the addition: a sum over
 * groups of their terms divided by n, with no n x n term held apart.
 */
enum gram_acc { GRAM_RAW, GRAM_SET, GRAM_ADD, GRAM_RESCALE_ADD };

/* Doubles of scratch gram_layer needs. */
size_t gram_layer_scratch(int n, int kd, int ka);

/*
 * out (n, n), lower triangle and diagonal (nothing above it is written)
 * = (D D^T) * (A A^T + 1) elementwise, for D (n, kd) and A (n, ka)
 * float, or the inner products from inner(ctx) when A is NULL.  The
 * products run in double (from floats, each term is exact) on a block of
 * GRAM_ROWS rows at a time against the rows before it: one dgemm each,
 * the Hadamard product taken while the block is in cache, and each
 * entry of out written once, as how says.  scratch:
 * gram_layer_scratch(n, kd, ka).
 */
void gram_layer(double *out, int n, const float *D, int kd, const float *A, int ka,
    gram_inner_fn inner, const void *ctx, enum gram_acc how, double *scratch);

/*
 * One pass each over an n x n Gram matrix K held in its lower triangle
 * (row-major, leading dimension n), on AVX-512 where gram_layer's kernel
 * runs and in plain C elsewhere, with the same bits either way.
 *
 * gram_accumulate: K takes S as a Gram term as how says (S may be K);
 * with trace (not NULL) the resulting K's gram_sums in the same pass.
 *
 * gram_sums: K's row sums K 1 into rowsum (n, or NULL), its trace and
 * Frobenius norm.  Each sum over a row's entries runs in 8 lanes (lane l
 * the columns q = l mod 8, from zero, in ascending q), folded as
 * ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)); row b's sum is its
 * own entries' (diagonal included) plus, after it, the entries below the
 * diagonal in column b, in ascending row.  The squares below the
 * diagonal are one fused multiply-add apiece into 8 lanes over the whole
 * triangle, folded as above; the diagonal's, and the trace, sequential.
 * No more rounding than the sequential sums: less (partial sums of an
 * eighth the length, a square rounded once).
 *
 * gram_centred_sums: the trace and Frobenius norm of H K H, H = I -
 * 11^T / n, from K and its row means m and their mean all, each entry
 * (K_bq - m_b) - m_q + all as the centred matrix holds it, its squares
 * summed as gram_sums's.
 */
void gram_accumulate(double *K, const double *S, int n, enum gram_acc how, double *rowsum, double *trace,
    double *frob);
void gram_sums(const double *K, int n, double *rowsum, double *trace, double *frob);
void gram_centred_sums(const double *K, int n, const double *m, double all, double *trace, double *frob);

#endif
