#include "chol.h"
#include "gemm.h"
#include "linalg.h"

#include <math.h>
#include <string.h>

/*
 * Why a factorisation of our own: at gop-spectrum's sizes (n of one to a
 * few thousand) LAPACK's dpotrf through OpenBLAS runs on the AVX2
 * kernels DYNAMIC_ARCH picks on AVX-512 CPUs it does not know, at about
 * a third of what the core can do, and needs the matrix mirrored into
 * the upper triangle first (a scalar pass of its own).  Here the mirror
 * goes by 8 x 8 blocks transposed in registers, and the factorisation is
 * right-looking by blocks of NB rows of U:
 *
 *   - each GR rows of the block row: first updated from the block's rows
 *     above them (one update of depth up to NB - GR, left-looking, so
 *     that those rows are loaded and stored once), then factored
 *     unblocked across the whole width (the diagonal block and the
 *     triangular solve at once), then packed;
 *   - the trailing matrix by a depth-NB update from the packed block row,
 *     each GR x GC tile of it in 24 registers for the whole depth
 *     (gram.c's kernel, with a fused multiply-subtract).
 *
 * Every entry is updated in place by one fused multiply-subtract per row
 * of U above it, in ascending order, wherever that row's update runs.
 */
#define NB 64   /* rows of U a trailing update takes: its packed panel (NB x n doubles) stays in L2 */
#define GR 8    /* rows of a tile (broadcasts) and of an unblocked step */
#define GC 24   /* columns of a tile: three vectors of 8 doubles */

static size_t
padded(int n)
{
	return ((size_t)n + GC - 1) / GC * GC;
}

size_t
chol_scratch(int n)
{
	return (size_t)NB * padded(n);
}

/* log det A = 2 sum log U_ii, in sym_cholesky's order. */
static double
logdet_of(const double *U, int n)
{
	double s = 0;

	for (int i = 0; i < n; i++)
		s += log(U[(size_t)i * n + i]);
	return 2 * s;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

/* The first m of 8 lanes (none for m <= 0, all for m >= 8). */
static inline AVX512 __mmask8
first(int m)
{
	static const __mmask8 lanes[9] = {0x00, 0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff};

	return lanes[m < 0 ? 0 : m > 8 ? 8 : m];
}

/* r[0..8) = the 8 x 8 block's transpose, in place. */
static inline AVX512 void
transpose8(__m512d *r)
{
	const __m512i lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
	const __m512i lo2 = _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0), hi2 = _mm512_set_epi64(15, 14, 13, 12, 7, 6, 5, 4);
	__m512d t[8], u[8];

	for (int i = 0; i < 4; i++) {
		t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
	}
	/* t[0]: 00 10 02 12 04 14 06 16; t[2]: 20 30 22 32 ...: pairs of 2-lane blocks, then of 4 */
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++) {
			u[4 * i + j] = _mm512_permutex2var_pd(t[4 * i + j], lo, t[4 * i + j + 2]);
			u[4 * i + j + 2] = _mm512_permutex2var_pd(t[4 * i + j], hi, t[4 * i + j + 2]);
		}
	for (int j = 0; j < 4; j++) {
		r[j] = _mm512_permutex2var_pd(u[j], lo2, u[j + 4]);
		r[j + 4] = _mm512_permutex2var_pd(u[j], hi2, u[j + 4]);
	}
}

/*
 * The 8 x 8 block of the lower triangle at rows ib.., columns jb.. (ib >=
 * jb, those inside A) into the upper one, transposed in registers; its
 * entries times zero added into *bad (NaN if one is not finite).
 */
static inline AVX512 void
mirror_block(double *A, int n, int ib, int jb, __m512d *bad)
{
	__m512d r[8], zero = _mm512_setzero_pd();
	__mmask8 cols = first(n - jb);

	for (int i = 0; i < 8; i++) {
		__mmask8 m = ib + i < n ? cols & (ib == jb ? first(i + 1) : 0xff) : 0;
		r[i] = _mm512_maskz_loadu_pd(m, A + (size_t)(ib + i < n ? ib + i : ib) * n + jb);
		*bad = _mm512_add_pd(*bad, _mm512_mul_pd(r[i], zero));
	}
	transpose8(r);
	for (int j = 0; j < 8 && jb + j < n; j++) {
		/* row jb + j of the upper triangle: columns past the diagonal, below n */
		__mmask8 m = first(n - ib) & ~first(jb + j + 1 - ib);
		_mm512_mask_storeu_pd(A + (size_t)(jb + j) * n + ib, m, r[j]);
	}
}

/*
 * The lower triangle into the upper one, by tiles of TILE x TILE (whose
 * rows in and out stay in cache) of 8 x 8 blocks, the diagonal saved in
 * d.  -1 if an entry is not finite.
 */
static AVX512 int
mirror(double *A, int n, double *d)
{
	enum { TILE = 64 };
	__m512d bad = _mm512_setzero_pd();

	for (int i = 0; i < n; i++)
		d[i] = A[(size_t)i * n + i];
	for (int it = 0; it < n; it += TILE)
		for (int jt = 0; jt <= it; jt += TILE)
			for (int ib = it; ib < n && ib < it + TILE; ib += 8)
				for (int jb = jt; jb <= ib && jb < jt + TILE; jb += 8)
					mirror_block(A, n, ib, jb, &bad);
	return _mm512_reduce_add_pd(bad) == 0 ? 0 : -1;
}

/* x[0..len) /= u. */
static AVX512 void
row_divide(double *x, int len, double u)
{
	__m512d uv = _mm512_set1_pd(u);

	for (int j = 0; j < len; j += 8) {
		__mmask8 m = first(len - j);
		_mm512_mask_storeu_pd(x + j, m, _mm512_div_pd(_mm512_maskz_loadu_pd(m, x + j), uv));
	}
}

/* y[0..len) = fma(-a, x, y). */
static AVX512 void
row_subtract(double *y, const double *x, int len, double a)
{
	__m512d av = _mm512_set1_pd(a);

	for (int j = 0; j < len; j += 8) {
		__mmask8 m = first(len - j);
		_mm512_mask_storeu_pd(y + j, m,
		    _mm512_fnmadd_pd(av, _mm512_maskz_loadu_pd(m, x + j), _mm512_maskz_loadu_pd(m, y + j)));
	}
}

/*
 * Rows s0 .. s1 - 1 of U, unblocked across the whole width, from rows
 * whose every update from the rows above s0 is in: for each row its
 * diagonal's square root, the row divided by it, the rows below it in the
 * step updated.  -1 at a pivot that is not positive.
 */
static AVX512 int
rows_factor(double *A, int n, int s0, int s1)
{
	for (int i = s0; i < s1; i++) {
		double *row = A + (size_t)i * n, u;
		if (!(row[i] > 0))
			return -1;
		u = sqrt(row[i]);
		row[i] = u;
		row_divide(row + i + 1, n - i - 1, u);
		for (int r = i + 1; r < s1; r++)
			row_subtract(A + (size_t)r * n + r, row + r, n - r, row[r]);
	}
	return 0;
}

/*
 * The packed block row P [panel][t][GC], panels of GC columns from
 * origin, NB rows apiece: rows t0 .. t1 - 1 of A (row t as P's row
 * t - origin) from the panel that holds column t0 on, columns past n
 * zero and those left of t0 unset (never read).  For the tile kernel a
 * panel's columns are vectors and any GR of them (at an offset a
 * multiple of GR from origin) broadcasts.
 */
static AVX512 void
pack(double *P, const double *A, int n, int origin, int t0, int t1)
{
	for (int c0 = origin + (t0 - origin) / GC * GC; c0 < n; c0 += GC) {
		double *p = P + (size_t)((c0 - origin) / GC) * NB * GC;
		__mmask8 m0 = first(n - c0), m1 = first(n - c0 - 8), m2 = first(n - c0 - 16);
		for (int t = t0; t < t1; t++) {
			const double *a = A + (size_t)t * n + c0;
			double *q = p + (size_t)(t - origin) * GC;
			_mm512_storeu_pd(q, _mm512_maskz_loadu_pd(m0, a));
			_mm512_storeu_pd(q + 8, _mm512_maskz_loadu_pd(m1, a + 8));
			_mm512_storeu_pd(q + 16, _mm512_maskz_loadu_pd(m2, a + 16));
		}
	}
}

/*
 * A's rows b0 .. b0 + GR - 1 (those below rowend), columns c0 .. c0 + GC
 * - 1 (those below n, at or right of each row's diagonal) -= the
 * products of P's rows t0 .. t1 - 1 (P packed by pack() from origin).
 * The 24 accumulators are named, so that they stay in registers for the
 * whole depth; a tile inside the triangle needs no masks.
 */
#define MASKS(i) \
	m##i##0 = full ? 0xff : b0 + (i) < rowend ? first(n - c0) & ~first(b0 + (i) - c0) : 0; \
	m##i##1 = full ? 0xff : b0 + (i) < rowend ? first(n - c0 - 8) & ~first(b0 + (i) - c0 - 8) : 0; \
	m##i##2 = full ? 0xff : b0 + (i) < rowend ? first(n - c0 - 16) & ~first(b0 + (i) - c0 - 16) : 0; \
	c = A + (size_t)(b0 + (i) < rowend ? b0 + (i) : b0) * n + c0; \
	__m512d s##i##0 = _mm512_maskz_loadu_pd(m##i##0, c); \
	__m512d s##i##1 = _mm512_maskz_loadu_pd(m##i##1, c + 8); \
	__m512d s##i##2 = _mm512_maskz_loadu_pd(m##i##2, c + 16)
#define ROW(i) \
	x = _mm512_set1_pd(a[(size_t)t * GC + (i)]); \
	s##i##0 = _mm512_fnmadd_pd(x, v0, s##i##0); \
	s##i##1 = _mm512_fnmadd_pd(x, v1, s##i##1); \
	s##i##2 = _mm512_fnmadd_pd(x, v2, s##i##2)
#define STORE(i) \
	c = A + (size_t)(b0 + (i) < rowend ? b0 + (i) : b0) * n + c0; \
	_mm512_mask_storeu_pd(c, m##i##0, s##i##0); \
	_mm512_mask_storeu_pd(c + 8, m##i##1, s##i##1); \
	_mm512_mask_storeu_pd(c + 16, m##i##2, s##i##2)

static inline AVX512 __attribute__((always_inline)) void
tile(double *A, int n, const double *P, int origin, int t1, int rowend, int b0, int c0, int full)
{
	const double *a = P + (size_t)((b0 - origin) / GC) * NB * GC + (b0 - origin) % GC;
	const double *b = P + (size_t)((c0 - origin) / GC) * NB * GC;
	__mmask8 m00, m01, m02, m10, m11, m12, m20, m21, m22, m30, m31, m32;
	__mmask8 m40, m41, m42, m50, m51, m52, m60, m61, m62, m70, m71, m72;
	double *c;
	MASKS(0); MASKS(1); MASKS(2); MASKS(3); MASKS(4); MASKS(5); MASKS(6); MASKS(7);

	for (int t = 0; t < t1 - origin; t++) {
		__m512d v0 = _mm512_loadu_pd(b + (size_t)t * GC), v1 = _mm512_loadu_pd(b + (size_t)t * GC + 8);
		__m512d v2 = _mm512_loadu_pd(b + (size_t)t * GC + 16), x;
		ROW(0); ROW(1); ROW(2); ROW(3); ROW(4); ROW(5); ROW(6); ROW(7);
	}
	STORE(0); STORE(1); STORE(2); STORE(3); STORE(4); STORE(5); STORE(6); STORE(7);
}

/* A tile inside the triangle (every lane stored), and one across its edge. */
static AVX512 void
tile_full(double *A, int n, const double *P, int origin, int t1, int b0, int c0)
{
	tile(A, n, P, origin, t1, n, b0, c0, 1);
}

static AVX512 void
tile_edge(double *A, int n, const double *P, int origin, int t1, int rowend, int b0, int c0)
{
	tile(A, n, P, origin, t1, rowend, b0, c0, 0);
}

/*
 * A's rows r0 .. rowend - 1, from each row's diagonal to n, -= the
 * products of the packed rows origin .. t1 - 1 (columns from r0's panel
 * on).  Row tiles outermost: a tile's broadcasts stay in L1 while the
 * panels stream from L2.
 */
static AVX512 void
update(double *A, int n, const double *P, int origin, int t1, int r0, int rowend)
{
	for (int b0 = r0; b0 < rowend; b0 += GR)
		for (int c0 = origin + (b0 - origin) / GC * GC; c0 < n; c0 += GC)
			if (c0 >= b0 + GR - 1 && c0 + GC <= n && b0 + GR <= rowend)
				tile_full(A, n, P, origin, t1, b0, c0);
			else
				tile_edge(A, n, P, origin, t1, rowend, b0, c0);
}

static AVX512 int
chol_avx512(double *A, int n, double *P)
{
	for (int k0 = 0; k0 < n; k0 += NB) {
		int k1 = n - k0 < NB ? n : k0 + NB;
		for (int s0 = k0; s0 < k1; s0 += GR) {
			int s1 = k1 - s0 < GR ? k1 : s0 + GR;
			if (s0 > k0)
				update(A, n, P, k0, s0, s0, s1);
			if (rows_factor(A, n, s0, s1) < 0)
				return -1;
			pack(P, A, n, k0, s0, s1);
		}
		if (k1 < n)
			update(A, n, P, k0, k1, k1, n);
	}
	return 0;
}
#endif

int
chol_upper(double *A, int n, double *d, double *logdet, double *scratch)
{
	if (n == 0) {
		*logdet = 0;    /* the empty product (LAPACK would reject the leading dimension) */
		return 0;
	}
#if defined(__x86_64__) && defined(__GNUC__)
	if (strcmp(gemm_kernel(), "avx512") == 0) {
		if (mirror(A, n, d) < 0 || chol_avx512(A, n, scratch) < 0)
			return -1;
		*logdet = logdet_of(A, n);
		return 0;
	}
#endif
	(void)scratch;
	return sym_cholesky(A, n, d, logdet);
}
