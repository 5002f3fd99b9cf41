/*
 * chol: the Cholesky factorisation A = U^T U of an explicit symmetric
 * positive definite matrix held as gop-spectrum holds its Gram matrix:
 * n x n row-major, the matrix in the lower triangle, the factor written
 * into the upper triangle and diagonal so that the matrix stays.
 */
#ifndef CHOL_H
#define CHOL_H

#include <stddef.h>

/* Doubles of scratch chol_upper needs. */
size_t chol_scratch(int n);

/*
 * U (row-major upper, A = U^T U) into A's upper triangle and diagonal,
 * A's diagonal first saved in d (n), log det A into *logdet; the strict
 * lower triangle is never written.  Returns 0, or -1 if A is not
 * (numerically) positive definite or an entry is not finite; either way
 * sym_restore_diag(A, n, d) puts the diagonal back.  linalg's
 * sym_cholesky's contract, which is also the route where the AVX-512
 * kernel is not in use (gemm_kernel()).  On the kernel's route each
 * entry of U is A's entry less one fused product per row above it, in
 * ascending order, then a square root or a division by U's diagonal:
 * the same operations whatever the blocking, and the same result on
 * every run.  scratch: chol_scratch(n) doubles.
 */
int chol_upper(double *A, int n, double *d, double *logdet, double *scratch);

#endif
