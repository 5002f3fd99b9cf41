#include "gemm.h"
#include "gram.h"
#include "util.h"

#include <math.h>
#include <string.h>

#include <cblas.h>
#undef I   /* complex.h, through OpenBLAS's cblas.h */

/*
 * Rows per block.  Two blocks of products (GRAM_ROWS x n doubles each)
 * stay in a core's L2 at the sizes gop-spectrum meets (n of a few
 * thousand), and 64 rows keep dgemm near its full rate.  Against dsyrk
 * and a separate Hadamard pass, the upper half of each diagonal block is
 * the only extra work (under GRAM_ROWS / n of the whole), and the n x n
 * products never travel through memory.
 */
#define GRAM_ROWS 64

/*
 * The AVX-512 kernel's tile: GR rows (broadcasts) by GC columns (three
 * vectors of 8 doubles), 24 accumulators for the whole K.
 */
#define GR 8
#define GC 24

static size_t
padded(int n)
{
	return ((size_t)n + GC - 1) / GC * GC;
}

size_t
gram_layer_scratch(int n, int kd, int ka)
{
	return xmul(padded(n), (size_t)kd + (size_t)ka + 2 * GRAM_ROWS);
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

/* out = term, term / n, out + term / n or out / n + term / n, as how says (gram.h). */
static inline double
acc_of(double out, double term, double n, enum gram_acc how)
{
	switch (how) {
	case GRAM_SET: return term / n;
	case GRAM_ADD: return out + term / n;
	case GRAM_RESCALE_ADD: return out / n + term / n;
	default: return term;
	}
}

/* OpenBLAS's route: a dgemm per factor and row block. */
static void
gram_blas(double *out, int n, const float *D, int kd, const float *A, int ka,
    gram_inner_fn inner, const void *ctx, enum gram_acc how, double *scratch)
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
				o[c] = acc_of(o[c], s[c] * (u[c] + 1.0), n, how);
		}
	}
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

/*
 * xp [panel][t][GC] = X's rows panel GC .. panel GC + GC - 1, column t,
 * in double; rows past n zero.  A panel is the kernel's columns, and any
 * GR of its rows (at an offset a multiple of GR) its broadcasts.
 */
static void
pack_panels(double *xp, const float *X, int n, int k)
{
	for (int c0 = 0; c0 < n; c0 += GC) {
		double *p = xp + (size_t)(c0 / GC) * (size_t)k * GC;
		for (int j = 0; j < GC; j++) {
			const float *x = X + (size_t)(c0 + j) * k;
			for (int t = 0; t < k; t++)
				p[(size_t)t * GC + j] = c0 + j < n ? x[t] : 0.0;
		}
	}
}

/*
 * acc (GR, GC) = rows b0 .. b0 + GR - 1 of X X^T, columns c0 .. c0 + GC -
 * 1, X packed by pack_panels: each entry one FMA per t in ascending t
 * from zero, whatever the tile.  The 24 accumulators are named, so that
 * they stay in registers for the whole K.
 */
#define ROW(i) \
	x = _mm512_set1_pd(a[(size_t)t * GC + (i)]); \
	s##i##0 = _mm512_fmadd_pd(x, v0, s##i##0); \
	s##i##1 = _mm512_fmadd_pd(x, v1, s##i##1); \
	s##i##2 = _mm512_fmadd_pd(x, v2, s##i##2)
#define ZERO(i) __m512d s##i##0 = _mm512_setzero_pd(), s##i##1 = s##i##0, s##i##2 = s##i##0
#define STORE(i) \
	_mm512_storeu_pd(acc + (i) * GC, s##i##0); \
	_mm512_storeu_pd(acc + (i) * GC + 8, s##i##1); \
	_mm512_storeu_pd(acc + (i) * GC + 16, s##i##2)

static AVX512 void
tile_products(double *acc, const double *xp, int k, int b0, int c0)
{
	const double *a = xp + (size_t)(b0 / GC) * (size_t)k * GC + b0 % GC, *b = xp + (size_t)(c0 / GC) * (size_t)k * GC;
	ZERO(0); ZERO(1); ZERO(2); ZERO(3); ZERO(4); ZERO(5); ZERO(6); ZERO(7);

	for (int t = 0; t < k; t++) {
		__m512d v0 = _mm512_loadu_pd(b + (size_t)t * GC), v1 = _mm512_loadu_pd(b + (size_t)t * GC + 8);
		__m512d v2 = _mm512_loadu_pd(b + (size_t)t * GC + 16), x;
		ROW(0); ROW(1); ROW(2); ROW(3); ROW(4); ROW(5); ROW(6); ROW(7);
	}
	STORE(0); STORE(1); STORE(2); STORE(3); STORE(4); STORE(5); STORE(6); STORE(7);
}

/* The first m of 8 lanes. */
static inline AVX512 __mmask8
first_lanes(int m)
{
	return m <= 0 ? 0 : m >= 8 ? 0xff : (__mmask8)((1u << m) - 1);
}

/* The lanes of columns c0 + 8 j .. at or below row b's diagonal. */
static inline AVX512 __mmask8
lanes(int b, int c0, int j)
{
	return first_lanes(b - (c0 + 8 * j) + 1);
}

/* acc_of on 8 lanes (m: those stored at o): the same operations in the same order. */
static inline AVX512 __m512d
acc_vec(__m512d term, const double *o, __mmask8 m, __m512d nd, enum gram_acc how)
{
	if (how != GRAM_RAW)
		term = _mm512_div_pd(term, nd);
	if (how == GRAM_ADD)
		term = _mm512_add_pd(_mm512_maskz_loadu_pd(m, o), term);
	else if (how == GRAM_RESCALE_ADD)
		term = _mm512_add_pd(_mm512_div_pd(_mm512_maskz_loadu_pd(m, o), nd), term);
	return term;
}

/*
 * One tile of out = (D D^T) * (u + 1): u the A-products of the same tile
 * (ap, when A was given) or U's rows (from row r0, leading dimension lds).
 * fma(s, u, s) = s (u + 1) with one rounding.
 */
static AVX512 void
tile_gram(double *out, int n, const double *dp, int kd, const double *ap, int ka, const double *U, int r0, int lds,
    int b0, int c0, enum gram_acc how)
{
	double sd[GR * GC], su[GR * GC];
	__m512d nd = _mm512_set1_pd((double)n);

	/*
	 * The tile of out that the store adds into: a column strip of rows
	 * far apart, which no hardware prefetcher follows; fetched now, it
	 * arrives while the products run.
	 */
	for (int i = 0; how >= GRAM_ADD && i < GR && b0 + i < n; i++) {
		const char *o = (const char *)(out + (size_t)(b0 + i) * n + c0);
		_mm_prefetch(o, _MM_HINT_T0);
		_mm_prefetch(o + 64, _MM_HINT_T0);
		_mm_prefetch(o + 128, _MM_HINT_T0);
		_mm_prefetch(o + 191, _MM_HINT_T0);
	}
	if (ap)
		tile_products(su, ap, ka, b0, c0);
	tile_products(sd, dp, kd, b0, c0);
	for (int i = 0; i < GR && b0 + i < n; i++) {
		int b = b0 + i;
		for (int j = 0; j < 3; j++) {
			__mmask8 m = lanes(b, c0, j);
			const double *u = ap ? su + i * GC + 8 * j : U + (size_t)(b - r0) * lds + c0 + 8 * j;
			__m512d sv = _mm512_loadu_pd(sd + i * GC + 8 * j);
			if (!m)
				break;
			double *o = out + (size_t)b * n + c0 + 8 * j;
			__m512d v = _mm512_fmadd_pd(sv, _mm512_maskz_loadu_pd(m, u), sv);
			_mm512_mask_storeu_pd(o, m, acc_vec(v, o, m, nd, how));
		}
	}
}

/*
 * The kernel's route: D and A packed once into column panels of GC
 * (double), then for each block of GRAM_ROWS rows (the inner products
 * from inner into U first, when there is no A) each GR x GC tile at or
 * below the diagonal, the Hadamard product taken in registers.
 */
static AVX512 void
gram_avx512(double *out, int n, const float *D, int kd, const float *A, int ka,
    gram_inner_fn inner, const void *ctx, enum gram_acc how, double *scratch)
{
	double *dp = scratch, *ap = dp + padded(n) * kd, *U = ap + padded(n) * (A ? ka : 0);

	pack_panels(dp, D, n, kd);
	if (A)
		pack_panels(ap, A, n, ka);
	for (int r0 = 0; r0 < n; r0 += GRAM_ROWS) {
		int r1 = n - r0 < GRAM_ROWS ? n : r0 + GRAM_ROWS;
		if (!A)
			inner(ctx, r0, r1, U, r1);
		for (int c0 = 0; c0 < r1; c0 += GC)
			for (int b0 = r0; b0 < r1; b0 += GR)
				if (c0 <= b0 + GR - 1)
					tile_gram(out, n, dp, kd, A ? ap : NULL, ka, U, r0, r1, b0, c0, how);
	}
}
#endif

/* The lanes' sum in gram.h's fixed order. */
static double
fold(const double *v)
{
	return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

/*
 * The plain C route of gram.h's passes, the kernel's operations lane by
 * lane: with S, row b of K first takes S's divided by n as gram_acc
 * says; then with sums (rowsum or trace) K's sums as gram_sums's.
 */
struct sums {
	double *rowsum;         /* (n) or NULL */
	double off[8], diag, trace;
};

static void
sums_init(struct sums *u, double *rowsum, int n)
{
	memset(u, 0, sizeof *u);
	u->rowsum = rowsum;
	if (rowsum)
		memset(rowsum, 0, (size_t)n * sizeof *rowsum);
}

static void
sums_end(struct sums *u, const double *off, double *trace, double *frob)
{
	*trace = u->trace;
	*frob = sqrt(u->diag + 2 * fold(off));
}

static void
pass_c(double *K, const double *S, int n, enum gram_acc how, struct sums *u)
{
	for (int b = 0; b < n; b++) {
		double *row = K + (size_t)b * n, r[8] = {0};
		const double *s = S ? S + (size_t)b * n : NULL;
		for (int q = 0; s && q <= b; q++)
			row[q] = acc_of(row[q], s[q], n, how);
		if (!u)
			continue;
		/* 8 lanes at a time, those past the diagonal adding zeros, as the kernel's masked loads */
		for (int q0 = 0; q0 <= b; q0 += 8)
			for (int l = 0; l < 8; l++) {
				int q = q0 + l;
				double x = q <= b ? row[q] : 0.0, xb = q < b ? x : 0.0;
				r[l] += x;
				u->off[l] = fma(xb, xb, u->off[l]);
				if (u->rowsum && q < b)
					u->rowsum[q] += xb;
			}
		/* rowsum[b] holds nothing yet: the column below b comes later */
		if (u->rowsum)
			u->rowsum[b] = fold(r);
		u->trace += row[b];
		u->diag += row[b] * row[b];
	}
}

static void
centred_sums_c(const double *K, int n, const double *m, double all, double *trace, double *frob)
{
	double off[8] = {0}, diag = 0, t = 0;

	for (int b = 0; b < n; b++) {
		const double *row = K + (size_t)b * n;
		for (int q = 0; q < b; q++) {
			double v = row[q] - m[b] - m[q] + all;
			off[q % 8] = fma(v, v, off[q % 8]);
		}
		double v = row[b] - m[b] - m[b] + all;
		t += v;
		diag += v * v;
	}
	*trace = t;
	*frob = sqrt(diag + 2 * fold(off));
}

#if defined(__x86_64__) && defined(__GNUC__)
static AVX512 void
pass_avx512(double *K, const double *S, int n, enum gram_acc how, struct sums *u)
{
	__m512d nd = _mm512_set1_pd((double)n), off = _mm512_setzero_pd();
	double lanes[8];

	for (int b = 0; b < n; b++) {
		double *row = K + (size_t)b * n;
		const double *s = S ? S + (size_t)b * n : NULL;
		__m512d r = _mm512_setzero_pd();
		for (int q = 0; q <= b; q += 8) {
			/* the row's entries to the diagonal; those left of it squared and down their columns */
			__mmask8 m = first_lanes(b + 1 - q), below = first_lanes(b - q);
			__m512d x;
			if (s) {
				x = acc_vec(_mm512_maskz_loadu_pd(m, s + q), row + q, m, nd, how);
				_mm512_mask_storeu_pd(row + q, m, x);
			} else {
				x = _mm512_maskz_loadu_pd(m, row + q);
			}
			if (!u)
				continue;
			__m512d xb = _mm512_maskz_mov_pd(below, x);
			r = _mm512_add_pd(r, x);
			off = _mm512_fmadd_pd(xb, xb, off);
			if (u->rowsum)
				_mm512_mask_storeu_pd(u->rowsum + q, below,
				    _mm512_add_pd(_mm512_maskz_loadu_pd(below, u->rowsum + q), xb));
		}
		if (!u)
			continue;
		if (u->rowsum) {
			_mm512_storeu_pd(lanes, r);
			u->rowsum[b] = fold(lanes);
		}
		u->trace += row[b];
		u->diag += row[b] * row[b];
	}
	_mm512_storeu_pd(u ? u->off : lanes, off);
}

static AVX512 void
centred_sums_avx512(const double *K, int n, const double *mean, double all, double *trace, double *frob)
{
	__m512d off = _mm512_setzero_pd(), av = _mm512_set1_pd(all);
	double diag = 0, t = 0, lanes[8];

	for (int b = 0; b < n; b++) {
		const double *row = K + (size_t)b * n;
		__m512d mb = _mm512_set1_pd(mean[b]);
		for (int q = 0; q < b; q += 8) {
			__mmask8 m = first_lanes(b - q);
			__m512d v = _mm512_sub_pd(_mm512_maskz_loadu_pd(m, row + q), mb);
			v = _mm512_maskz_add_pd(m, _mm512_sub_pd(v, _mm512_maskz_loadu_pd(m, mean + q)), av);
			off = _mm512_fmadd_pd(v, v, off);
		}
		double v = row[b] - mean[b] - mean[b] + all;
		t += v;
		diag += v * v;
	}
	_mm512_storeu_pd(lanes, off);
	*trace = t;
	*frob = sqrt(diag + 2 * fold(lanes));
}
#endif

/* Whether gram.h's passes take the AVX-512 route: where gram_layer's kernel does. */
static int
use_avx512(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	return strcmp(gemm_kernel(), "avx512") == 0;
#else
	return 0;
#endif
}

/* One pass of gram.h's (S NULL: the sums alone; trace NULL: no sums). */
static void
pass(double *K, const double *S, int n, enum gram_acc how, double *rowsum, double *trace, double *frob)
{
	struct sums u;

	sums_init(&u, rowsum, n);
#if defined(__x86_64__) && defined(__GNUC__)
	if (use_avx512())
		pass_avx512(K, S, n, how, trace ? &u : NULL);
	else
#endif
		pass_c(K, S, n, how, trace ? &u : NULL);
	if (trace)
		sums_end(&u, u.off, trace, frob);
}

void
gram_accumulate(double *K, const double *S, int n, enum gram_acc how, double *rowsum, double *trace, double *frob)
{
	pass(K, S, n, how, rowsum, trace, frob);
}

void
gram_sums(const double *K, int n, double *rowsum, double *trace, double *frob)
{
	/* S NULL: K is only read */
	pass((double *)K, NULL, n, GRAM_ADD, rowsum, trace, frob);
}

void
gram_centred_sums(const double *K, int n, const double *m, double all, double *trace, double *frob)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (use_avx512()) {
		centred_sums_avx512(K, n, m, all, trace, frob);
		return;
	}
#endif
	centred_sums_c(K, n, m, all, trace, frob);
}

void
gram_layer(double *out, int n, const float *D, int kd, const float *A, int ka,
    gram_inner_fn inner, const void *ctx, enum gram_acc how, double *scratch)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (use_avx512()) {
		gram_avx512(out, n, D, kd, A, ka, inner, ctx, how, scratch);
		return;
	}
#endif
	gram_blas(out, n, D, kd, A, ka, inner, ctx, how, scratch);
}
