#define _POSIX_C_SOURCE 200809L
#include "gemm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#undef I   /* complex.h, through OpenBLAS's cblas.h */

/*
 * Why a kernel of our own: at the MLP's shapes (K and N of 128, M the
 * batch of a few thousand) OpenBLAS reaches 60-75% of its large-matrix
 * rate: it packs both operands for every call, its AVX2 kernels are what
 * DYNAMIC_ARCH picks on CPUs it does not know (AVX-512 ones included),
 * and its tiles waste work on widths that are not a multiple of theirs.
 * Here a transposed B is packed once per call into 32-column panels (one
 * K block of at most 64 KiB, on the stack), an untransposed one and A are
 * read where they lie (a row of B is a vector, an element of A a
 * broadcast), K in blocks that stay in L2; a 12 x 32 tile of C stays in 24 registers for
 * the whole K block, and the bias, ReLU or mask that follows is applied
 * as the tile is stored, so C is written once.
 *
 * The spans a caller names in gemm_epi.next (the next products' cold
 * operands) are prefetched into L2 a few lines a tile as the tiles run.
 *
 * Each element of C is beta C (or the bias, or 0), then one FMA per k in
 * ascending k: the same sequence whatever the tile it falls in, so the
 * results do not depend on M, on where a row sits, or on the K blocking.
 */

#define MR 12                /* rows of C in a tile */
#define NR 32                /* columns of C in a full tile (two vectors) */
#define PACK_FLOATS 16384    /* the packed K block of B: 64 KiB */

static int own = -1;   /* -1: not decided yet */

void
gemm_setup(int threads)
{
	const char *env = getenv("GROKKIT_GEMM");

	own = 0;
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	own = threads == 1 && __builtin_cpu_supports("avx512f") && !(env && strcmp(env, "openblas") == 0);
#else
	(void)threads;
	(void)env;
#endif
}

const char *
gemm_kernel(void)
{
	if (own < 0)
		gemm_setup(1);
	return own ? "avx512" : "openblas";
}

/* The epilogue after OpenBLAS's product, as the kernel applies it. */
static void
epilogue(int M, int N, float *C, int ldc, const struct gemm_epi *e)
{
	for (int i = 0; i < M; i++) {
		float *c = C + (size_t)i * (size_t)ldc;
		const float *m = e->mask ? e->mask + (size_t)i * (size_t)e->ldm : NULL;
		if (e->relu)
			for (int j = 0; j < N; j++)
				c[j] = c[j] > 0.0f ? c[j] : 0.0f;
		if (m)
			for (int j = 0; j < N; j++)
				c[j] = m[j] > 0.0f ? c[j] : 0.0f;
	}
}

int
gemm_splittable(int maxn)
{
	if (own < 0)
		gemm_setup(1);
	return own && maxn <= PACK_FLOATS / 16;
}

static void
gemm_openblas(int transa, int transb, int M, int N, int K, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc, const struct gemm_epi *e)
{
	if (e && e->bias) {
		for (int i = 0; i < M; i++)
			memcpy(C + (size_t)i * (size_t)ldc, e->bias, (size_t)N * sizeof(float));
		beta = 1.0f;
	}
	cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans,
	    transb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
	if (e && (e->relu || e->mask))
		epilogue(M, N, C, ldc, e);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

/*
 * bp [panel][k][NR] = rows k0.. k0 + kc of B^T, NR columns a panel, the
 * columns past N zero.  (An untransposed B is read where it lies: its
 * rows are already the kernel's vectors.)
 */
static void
pack_bt(float *bp, const float *B, int ldb, int N, int k0, int kc)
{
	for (int j0 = 0; j0 < N; j0 += NR) {
		int nr = N - j0 < NR ? N - j0 : NR;
		float *p = bp + (size_t)(j0 / NR) * (size_t)kc * NR;
		for (int j = 0; j < NR; j++) {
			const float *b = B + (size_t)(j0 + j) * (size_t)ldb + k0;
			if (j < nr)
				for (int k = 0; k < kc; k++)
					p[(size_t)k * NR + j] = b[k];
			else
				for (int k = 0; k < kc; k++)
					p[(size_t)k * NR + j] = 0.0f;
		}
	}
}

/* What a tile starts from and ends with. */
struct tile_io {
	float *C;
	int ldc;
	int init;                 /* 0: zero, 1: C, 2: the bias */
	int last;                 /* the last K block: apply the epilogue */
	__mmask16 m[2];           /* the tile's columns in each vector */
	const float *bias;        /* at the tile's first column */
	const float *mask;        /* at the tile's first element */
	int ldm, relu;
};

/*
 * One tile: mr rows (constant once inlined) by one or two vectors of
 * columns, over kc rows of op(B), row k at bp + k ldbp.  a(i, k) is
 * op(A)'s element in the tile's row i: A[i lda + k], or A[k lda + i]
 * transposed.
 */
static inline __attribute__((always_inline)) AVX512 void
tile(int mr, int two, int transa, const float *A, int lda, const float *bp, size_t ldbp, int kc,
    const struct tile_io *t)
{
	__m512 acc[MR][2], zero = _mm512_setzero_ps();
	size_t ia = transa ? 1 : (size_t)lda, ka = transa ? (size_t)lda : 1;

#pragma GCC unroll 12
	for (int i = 0; i < mr; i++)
#pragma GCC unroll 2
		for (int h = 0; h < 1 + two; h++) {
			if (t->init == 1)
				acc[i][h] = _mm512_maskz_loadu_ps(t->m[h], t->C + (size_t)i * t->ldc + 16 * h);
			else if (t->init == 2)
				acc[i][h] = _mm512_maskz_loadu_ps(t->m[h], t->bias + 16 * h);
			else
				acc[i][h] = zero;
		}
	for (int k = 0; k < kc; k++) {
		const float *a = A + (size_t)k * ka;
		__m512 b0 = _mm512_maskz_loadu_ps(t->m[0], bp + (size_t)k * ldbp), b1 = zero;
		if (two)
			b1 = _mm512_maskz_loadu_ps(t->m[1], bp + (size_t)k * ldbp + 16);
#pragma GCC unroll 12
		for (int i = 0; i < mr; i++) {
			__m512 x = _mm512_set1_ps(a[(size_t)i * ia]);
			acc[i][0] = _mm512_fmadd_ps(x, b0, acc[i][0]);
			if (two)
				acc[i][1] = _mm512_fmadd_ps(x, b1, acc[i][1]);
		}
	}
#pragma GCC unroll 12
	for (int i = 0; i < mr; i++)
#pragma GCC unroll 2
		for (int h = 0; h < 1 + two; h++) {
			__m512 c = acc[i][h];
			if (t->last && t->relu)
				c = _mm512_max_ps(c, zero);
			if (t->last && t->mask) {
				__m512 m = _mm512_maskz_loadu_ps(t->m[h], t->mask + (size_t)i * t->ldm + 16 * h);
				c = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, zero, _CMP_GT_OQ), c);
			}
			_mm512_mask_storeu_ps(t->C + (size_t)i * t->ldc + 16 * h, t->m[h], c);
		}
}

/* The tile for mr rows, each mr its own compiled kernel. */
static AVX512 void
tile_rows(int mr, int two, int transa, const float *A, int lda, const float *bp, size_t ldbp,
    int kc, const struct tile_io *t)
{
#define TILE(r) case r: \
	if (two) tile(r, 1, transa, A, lda, bp, ldbp, kc, t); \
	else tile(r, 0, transa, A, lda, bp, ldbp, kc, t); \
	break;
	switch (mr) {
	TILE(1) TILE(2) TILE(3) TILE(4) TILE(5) TILE(6)
	TILE(7) TILE(8) TILE(9) TILE(10) TILE(11) TILE(12)
	default:
		abort();
	}
#undef TILE
}

static __mmask16
cols_mask(int n)
{
	return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/*
 * The caller's next spans (gemm_epi.next), in cache lines, spread
 * evenly over the call's tiles: a few prefetches a tile keep the misses
 * in flight without stalling the tile's own loads.
 */
struct ahead {
	const char *p[2];
	size_t lines[2], done[2], per;
};

static void
ahead_init(struct ahead *a, const struct gemm_epi *e, size_t tiles)
{
	size_t all = 0;

	for (int s = 0; s < 2; s++) {
		/* from the line holding the first byte to the one holding the last */
		size_t off = (size_t)((uintptr_t)e->next[s] & 63);
		a->p[s] = NULL;
		a->lines[s] = a->done[s] = 0;
		if (e->next[s] && e->next_bytes[s]) {
			a->p[s] = (const char *)e->next[s] - off;
			a->lines[s] = (e->next_bytes[s] + off + 63) / 64;
		}
		all += a->lines[s];
	}
	a->per = (all + tiles - 1) / tiles;
}

static inline void
ahead_step(struct ahead *a)
{
	size_t n = a->per;

	for (int s = 0; s < 2; s++)
		for (; n > 0 && a->done[s] < a->lines[s]; n--, a->done[s]++)
			_mm_prefetch(a->p[s] + 64 * a->done[s], _MM_HINT_T1);
}

/*
 * Every tile of C over one K block: op(B)'s rows at bp with leading
 * dimension ldbp, or packed in panels (ldbp = 0).
 */
static AVX512 void
gemm_block(int transa, int M, int N, const float *A, int lda, const float *bp, size_t ldbp,
    int kc, float beta, float *C, int ldc, const struct gemm_epi *e, int first, int last)
{
	struct tile_io t = {0};
	struct ahead ah = {0};

	t.ldc = ldc;
	t.init = !first || beta != 0.0f ? 1 : e && e->bias ? 2 : 0;
	t.last = last;
	t.relu = e ? e->relu : 0;
	t.ldm = e ? e->ldm : 0;
	if (e && first && (e->next[0] || e->next[1]))
		ahead_init(&ah, e, (size_t)((M + MR - 1) / MR) * (size_t)((N + NR - 1) / NR));

	for (int i0 = 0; i0 < M; i0 += MR) {
		int mr = M - i0 < MR ? M - i0 : MR;
		const float *a = transa ? A + i0 : A + (size_t)i0 * (size_t)lda;
		for (int j0 = 0; j0 < N; j0 += NR) {
			int nr = N - j0 < NR ? N - j0 : NR;
			t.C = C + (size_t)i0 * (size_t)ldc + j0;
			t.m[0] = cols_mask(nr);
			t.m[1] = cols_mask(nr - 16);
			t.bias = e && e->bias ? e->bias + j0 : NULL;
			t.mask = e && e->mask ? e->mask + (size_t)i0 * (size_t)e->ldm + j0 : NULL;
			if (ah.per)
				ahead_step(&ah);
			if (ldbp)
				tile_rows(mr, nr > 16, transa, a, lda, bp + j0, ldbp, kc, &t);
			else
				tile_rows(mr, nr > 16, transa, a, lda, bp + (size_t)(j0 / NR) * (size_t)kc * NR, NR,
				    kc, &t);
		}
	}
}

static void
gemm_own(int transa, int transb, int M, int N, int K, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc, const struct gemm_epi *e)
{
	_Alignas(64) float bp[PACK_FLOATS];
	int npad = (N + NR - 1) / NR * NR, kb = PACK_FLOATS / npad;

	for (int k0 = 0; k0 < K; k0 += kb) {
		int kc = K - k0 < kb ? K - k0 : kb;
		const float *a = transa ? A + (size_t)k0 * (size_t)lda : A + k0;
		if (transb) {
			pack_bt(bp, B, ldb, N, k0, kc);
			gemm_block(transa, M, N, a, lda, bp, 0, kc, beta, C, ldc, e, k0 == 0, k0 + kc >= K);
		} else {
			gemm_block(transa, M, N, a, lda, B + (size_t)k0 * (size_t)ldb, (size_t)ldb, kc, beta, C,
			    ldc, e, k0 == 0, k0 + kc >= K);
		}
	}
}
#endif

void
gemm(int transa, int transb, int M, int N, int K, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc, const struct gemm_epi *e)
{
	if (own < 0)
		gemm_setup(1);
#if defined(__x86_64__) && defined(__GNUC__)
	/* K blocks of at least 16 rows: N up to 1024 (gemm_splittable's bound) */
	if (own && M > 0 && K > 0 && N > 0 && N <= PACK_FLOATS / 16 && (beta == 0.0f || beta == 1.0f) &&
	    !(e && e->bias && beta != 0.0f)) {
		gemm_own(transa, transb, M, N, K, A, lda, B, ldb, beta, C, ldc, e);
		return;
	}
#endif
	gemm_openblas(transa, transb, M, N, K, A, lda, B, ldb, beta, C, ldc, e);
}
