/*
 * gemm: the single-precision products of the MLP's training step and its
 * Hessian-vector products, with the elementwise passes that follow them
 * fused into the product's last write.
 *
 * On one thread, on a CPU with AVX-512, a kernel made for these shapes
 * (K and N of a few hundred at most, M the batch) runs them; anywhere
 * else, and for shapes it is not made for, OpenBLAS does (cblas_sgemm)
 * followed by the same elementwise pass.  Either way every call is
 * deterministic: each element of C is one fixed sequence of rounded
 * operations for a given build, CPU and thread count.
 */
#ifndef GEMM_H
#define GEMM_H

#include <stddef.h>

/* What is done to C after the product, element by element. */
struct gemm_epi {
	const float *bias;   /* (N): C = bias + op(A) op(B) (beta must be 0), or NULL */
	int relu;            /* C = max(C, 0) (torch's ReLU) */
	const float *mask;   /* (M, N), leading dimension ldm: C = 0 where mask <= 0, or NULL */
	int ldm;
	/*
	 * A hint, no part of the result: up to two spans of memory the
	 * caller reads next (the next products' operands), fetched towards
	 * cache while this product runs, a little each tile; NULL for none.
	 */
	const void *next[2];
	size_t next_bytes[2];
};

/*
 * C (M, N) = op(A) op(B) + beta C, row-major; op(X) is X, or X^T when
 * its trans flag is set (A is then (K, M), B (N, K)); beta is 0 or 1.
 * Then the epilogue e (NULL for none).
 */
void gemm(int transa, int transb, int M, int N, int K, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc, const struct gemm_epi *e);

/*
 * Whether the own kernel may run: blas_setup says how many threads
 * OpenBLAS has (with more than one, OpenBLAS's threaded products win);
 * GROKKIT_GEMM=openblas in the environment turns the kernel off.
 */
void gemm_setup(int threads);
/* "avx512" or "openblas": what runs the products gemm is made for. */
const char *gemm_kernel(void);
/*
 * Whether the own kernel runs every product whose N is at most maxn.
 * Then each element of C is one FMA chain in ascending k whatever the
 * call, so a product split into calls over blocks of rows of C, or over
 * consecutive blocks of K with beta = 1 after the first, gives the whole
 * call's bits: the MLP runs its batch in row blocks that stay in cache.
 */
int gemm_splittable(int maxn);

#endif
