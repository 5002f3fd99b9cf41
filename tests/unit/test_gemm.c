/*
 * gemm: every transposition, beta 0 and 1, the bias, ReLU and mask
 * epilogues, on shapes that hit every tail of the kernel's tiles (rows
 * 1..12 past a multiple of 12, columns past 16 and 32, K longer than one
 * packed block), against a double-precision product written out here.
 *
 * With the AVX-512 kernel each element must be exactly the chain the
 * kernel documents: the start value, then fmaf(a, b, acc) in ascending k,
 * then the epilogue; that is what makes a result independent of the
 * tiling (a row's value does not depend on M or its place in C).  With
 * OpenBLAS (another CPU, or GROKKIT_GEMM=openblas) each element must be
 * within float32 rounding of the double product.  Both runs check the
 * double product, so a wrong index fails either way.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "rng.h"
#include "tap.h"

struct shape {
	int ta, tb, M, N, K;
	float beta;
	int bias, relu, mask;
};

static float
el(const float *X, int ld, int trans, int r, int c)
{
	return trans ? X[(size_t)c * ld + r] : X[(size_t)r * ld + c];
}

/* One case: the worst error against double (in units of sum |a b|) and whether the fma chain matched. */
static void
run_case(const struct shape *s, struct rng *r, double *worst, int *chain_equal)
{
	int M = s->M, N = s->N, K = s->K;
	int lda = s->ta ? M + 3 : K + 3, ldb = s->tb ? K + 1 : N + 2, ldc = N + 5;
	size_t na = (size_t)(s->ta ? K : M) * lda, nb = (size_t)(s->tb ? N : K) * ldb;
	float *A = malloc(na * sizeof *A), *Bm = malloc(nb * sizeof *Bm);
	float *C = malloc((size_t)M * ldc * sizeof *C), *C0 = malloc((size_t)M * ldc * sizeof *C0);
	float *bias = malloc((size_t)N * sizeof *bias), *mask = malloc((size_t)M * (N + 1) * sizeof *mask);
	struct gemm_epi e = {s->bias ? bias : NULL, s->relu, s->mask ? mask : NULL, N + 1, {NULL, NULL}, {0, 0}};

	for (size_t k = 0; k < na; k++)
		A[k] = (float)rng_normal(r);
	for (size_t k = 0; k < nb; k++)
		Bm[k] = (float)rng_normal(r);
	for (size_t k = 0; k < (size_t)M * ldc; k++)
		C[k] = C0[k] = (float)rng_normal(r);
	for (int j = 0; j < N; j++)
		bias[j] = (float)rng_normal(r);
	for (size_t k = 0; k < (size_t)M * (N + 1); k++)
		mask[k] = rng_uniform(r) < 0.5 ? 0.0f : 1.0f;
	gemm(s->ta, s->tb, M, N, K, A, lda, Bm, ldb, s->beta, C, ldc, &e);
	*worst = 0.0;
	*chain_equal = 1;
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			float start = s->bias ? bias[j] : s->beta != 0.0f ? C0[(size_t)i * ldc + j] : 0.0f;
			float acc = start, got = C[(size_t)i * ldc + j];
			double d = start, mag = fabs(start);
			int zero = s->mask && !(mask[(size_t)i * (N + 1) + j] > 0.0f);
			for (int k = 0; k < K; k++) {
				float a = el(A, lda, s->ta, i, k), b = el(Bm, ldb, s->tb, k, j);
				acc = fmaf(a, b, acc);
				d += (double)a * b;
				mag += fabs((double)a * b);
			}
			if (s->relu) {
				acc = acc > 0.0f ? acc : 0.0f;
				d = d > 0.0 ? d : 0.0;
			}
			if (zero)
				acc = 0.0f, d = 0.0;
			*chain_equal &= memcmp(&acc, &got, sizeof acc) == 0;
			if (!(fabs(got - d) <= *worst * mag))
				*worst = fabs(got - d) / mag;
		}
	/* the padding between rows is never written */
	for (int i = 0; i < M; i++)
		for (int j = N; j < ldc; j++)
			if (memcmp(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], sizeof(float)) != 0)
				*worst = INFINITY;
	free(A), free(Bm), free(C), free(C0), free(bias), free(mask);
}

/*
 * gemm_splittable's promise, which the MLP's row blocks rest on: a
 * product split into calls over blocks of rows of C, or over consecutive
 * blocks of K (beta 1 after the first), gives the whole call's bits.
 */
static void
splits(struct rng *r)
{
	enum { M = 197, N = 122, K = 130, RB = 96, KB = 50 };
	float *A = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * K * N);
	float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
	float *G1 = malloc(sizeof(float) * K * N), *G2 = malloc(sizeof(float) * K * N);
	float bias[N];
	struct gemm_epi e = {bias, 1, NULL, 0, {NULL, NULL}, {0, 0}};
	int rows_ok, k_ok;

	for (int k = 0; k < M * K; k++)
		A[k] = (float)rng_normal(r);
	for (int k = 0; k < K * N; k++)
		W[k] = (float)rng_normal(r), G1[k] = G2[k] = (float)rng_normal(r);
	for (int j = 0; j < N; j++)
		bias[j] = (float)rng_normal(r);
	/* rows: a forward product with bias and ReLU, in row blocks */
	gemm(0, 0, M, N, K, A, K, W, N, 0.0f, C1, N, &e);
	for (int r0 = 0; r0 < M; r0 += RB)
		gemm(0, 0, M - r0 < RB ? M - r0 : RB, N, K, A + (size_t)r0 * K, K, W, N, 0.0f,
		    C2 + (size_t)r0 * N, N, &e);
	rows_ok = memcmp(C1, C2, sizeof(float) * M * N) == 0;
	/* K: a weight gradient (A^T C) over K = M rows in consecutive blocks */
	gemm(1, 0, K, N, M, A, K, C1, N, 1.0f, G1, N, NULL);
	for (int k0 = 0; k0 < M; k0 += KB)
		gemm(1, 0, K, N, M - k0 < KB ? M - k0 : KB, A + (size_t)k0 * K, K, C1 + (size_t)k0 * N, N,
		    1.0f, G2, N, NULL);
	k_ok = memcmp(G1, G2, sizeof(float) * K * N) == 0;
	if (gemm_splittable(N)) {
		ok(rows_ok, "split into row blocks of %d: the whole product's bits", RB);
		ok(k_ok, "split into K blocks of %d (beta 1 after the first): the whole product's bits", KB);
	}
	ok(!gemm_splittable(1100) && gemm_splittable(N) == (strcmp(gemm_kernel(), "avx512") == 0),
	    "gemm_splittable: only the own kernel, only up to its widest N");
	free(A), free(W), free(C1), free(C2), free(G1), free(G2);
}

/*
 * gemm_epi.next is a hint: a product that fetches spans for the next
 * (here its own operand, unaligned, and a span larger than the call's
 * tiles take a line each) gives the bits of the same product without,
 * with the epilogue applied, and leaves the spans as they were.
 */
static void
hints(struct rng *r)
{
	enum { M = 96, N = 90, K = 87, BIG = 1 << 16 };
	float *A = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * K * N);
	float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
	float *mask = malloc(sizeof(float) * M * N), *big = malloc(sizeof(float) * BIG);
	float *big0 = malloc(sizeof(float) * BIG);
	struct gemm_epi plain = {NULL, 0, mask, N, {NULL, NULL}, {0, 0}};
	struct gemm_epi hinted = {NULL, 0, mask, N, {W + 3, big + 1}, {sizeof(float) * (K * N - 3),
	    sizeof(float) * (BIG - 1)}};

	for (int k = 0; k < M * K; k++)
		A[k] = (float)rng_normal(r);
	for (int k = 0; k < K * N; k++)
		W[k] = (float)rng_normal(r);
	for (int k = 0; k < M * N; k++)
		C1[k] = C2[k] = (float)rng_normal(r), mask[k] = rng_uniform(r) < 0.5 ? 0.0f : 1.0f;
	for (int k = 0; k < BIG; k++)
		big[k] = big0[k] = (float)rng_normal(r);
	gemm(0, 0, M, N, K, A, K, W, N, 1.0f, C1, N, &plain);
	gemm(0, 0, M, N, K, A, K, W, N, 1.0f, C2, N, &hinted);
	ok(memcmp(C1, C2, sizeof(float) * M * N) == 0 && memcmp(big, big0, sizeof(float) * BIG) == 0,
	    "a product with next spans to fetch: the same bits, the spans untouched");
	free(A), free(W), free(C1), free(C2), free(mask), free(big), free(big0);
}

int
main(void)
{
	static const struct shape shapes[] = {
		{0, 1, 2823 % 100 + 13, 128, 128, 0.0f, 1, 1, 0},   /* forward, through the ReLU */
		{0, 1, 37, 97, 128, 0.0f, 1, 0, 0},                 /* logits: a 1-column tail */
		{1, 0, 97, 128, 700, 1.0f, 0, 0, 0},                /* a weight gradient, K in 6 blocks */
		{1, 0, 128, 97, 300, 1.0f, 0, 0, 0},
		{0, 0, 50, 128, 97, 0.0f, 0, 0, 1},                 /* a delta through the ReLU */
		{0, 0, 25, 85, 116, 1.0f, 0, 0, 1},                 /* live widths, accumulated */
		{1, 1, 13, 33, 40, 1.0f, 0, 1, 0},
		{0, 0, 1, 1, 1, 0.0f, 0, 0, 0},
		{1, 0, 12, 17, 2000, 0.0f, 0, 0, 0},
		{0, 1, 11, 31, 5, 0.0f, 1, 1, 1},
		{0, 0, 3, 1100, 9, 0.0f, 0, 0, 0},                  /* wider than the kernel takes */
	};
	int own = strcmp(gemm_kernel(), "openblas") != 0;
	struct rng r;

	rng_init(&r, 7, 0);
	for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
		const struct shape *s = &shapes[c];
		double worst;
		int chain;
		run_case(s, &r, &worst, &chain);
		ok(worst < 4e-6, "%c%c M %d N %d K %d beta %g bias %d relu %d mask %d: error %.2g of sum |ab|",
		    s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->M, s->N, s->K, s->beta, s->bias, s->relu,
		    s->mask, worst);
		if (own && s->N <= 1024)
			ok(chain, "%s kernel: every element is its fma chain in ascending k", gemm_kernel());
	}
	splits(&r);
	hints(&r);
	return tap_done();
}
