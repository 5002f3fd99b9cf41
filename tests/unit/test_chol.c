/*
 * chol_upper (AVX-512 kernel and LAPACK's route both) against the
 * factorisation written out: bit for bit against the unblocked loop with
 * one fma per row above (the kernel's own order, whatever its blocking),
 * to 1e-12 against LAPACK's dpotrf, U^T U against A, the lower triangle
 * kept, the same bits on a second run, and the failures (a pivot that is
 * not positive, an entry that is not finite).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chol.h"
#include "gemm.h"
#include "linalg.h"
#include "rng.h"
#include "tap.h"

#define SENTINEL 12345.0

/* A (n, n) = B B^T / m + I, B (n, m) Gaussian, in the lower triangle; SENTINEL above. */
static void
spd(double *A, int n, struct rng *r)
{
	int m = n + 7;
	double *B = malloc(((size_t)n * m + 1) * sizeof *B);

	for (size_t i = 0; i < (size_t)n * m; i++)
		B[i] = rng_normal(r);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double s = i == j;
			for (int t = 0; t < m && j <= i; t++)
				s += B[(size_t)i * m + t] * B[(size_t)j * m + t] / m;
			A[(size_t)i * n + j] = j <= i ? s : SENTINEL;
		}
	free(B);
}

/* U (upper, with diagonal) of the lower-triangle matrix A, row by row with one fma per row above. */
static void
naive(const double *A, int n, double *U)
{
	for (int i = 0; i < n; i++)
		for (int j = i; j < n; j++) {
			double s = A[(size_t)j * n + i];
			for (int t = 0; t < i; t++)
				s = fma(-U[(size_t)t * n + i], U[(size_t)t * n + j], s);
			U[(size_t)i * n + j] = j == i ? sqrt(s) : s / U[(size_t)i * n + i];
		}
}

/* max |U^T U - A| / max |A| over the lower triangle. */
static double
residual(const double *U, const double *A, int n)
{
	double worst = 0, big = 0;

	for (int i = 0; i < n; i++)
		for (int j = 0; j <= i; j++) {
			long double s = 0;
			for (int t = 0; t <= j; t++)
				s += (long double)U[(size_t)t * n + i] * U[(size_t)t * n + j];
			worst = fmax(worst, fabs((double)(s - A[(size_t)i * n + j])));
			big = fmax(big, fabs(A[(size_t)i * n + j]));
		}
	return worst / big;
}

/* Upper triangles (with diagonal) equal bit for bit; the worst difference relative to max |V|. */
static int
same_upper(const double *U, const double *V, int n, double *rel)
{
	int same = 1;
	double worst = 0, big = 0;

	for (int i = 0; i < n; i++)
		for (int j = i; j < n; j++) {
			same &= memcmp(&U[(size_t)i * n + j], &V[(size_t)i * n + j], sizeof *U) == 0;
			worst = fmax(worst, fabs(U[(size_t)i * n + j] - V[(size_t)i * n + j]));
			big = fmax(big, fabs(V[(size_t)i * n + j]));
		}
	*rel = big > 0 ? worst / big : worst;
	return same;
}

static int
lower_kept(const double *A, const double *orig, int n)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			if (memcmp(&A[(size_t)i * n + j], &orig[(size_t)i * n + j], sizeof *A) != 0)
				return 0;
	return 1;
}

static void
factor_case(int n, const char *route, struct rng *r)
{
	size_t nn = (size_t)n * n + 1;
	double *A = malloc(nn * sizeof *A), *orig = malloc(nn * sizeof *A), *W = malloc(nn * sizeof *A);
	double *ref = malloc(nn * sizeof *A), *lap = malloc(nn * sizeof *A), *d = malloc((size_t)(n + 1) * sizeof *d);
	double *scratch = malloc((chol_scratch(n) + 1) * sizeof *scratch), logdet = NAN, ld2 = NAN, ldl = NAN, rel = NAN, lrel;
	int rc, rc2, diag_ok = 1, kernel = strcmp(route, "avx512") == 0;

	spd(orig, n, r);
	memcpy(A, orig, nn * sizeof *A);
	rc = chol_upper(A, n, d, &logdet, scratch);
	for (int i = 0; i < n; i++)
		diag_ok &= d[i] == orig[(size_t)i * n + i];
	ok(rc == 0 && lower_kept(A, orig, n) && diag_ok, "chol_upper (%s), n %d: factored, the lower triangle and "
	    "the diagonal in d kept", route, n);
	ok(residual(A, orig, n) <= 4 * (n + 1) * 0x1p-52, "chol_upper (%s), n %d: |U^T U - A| %.1e of |A| "
	    "(<= 4 (n + 1) eps)", route, n, residual(A, orig, n));
	memcpy(lap, orig, nn * sizeof *A);
	sym_cholesky(lap, n, d, &ldl);
	same_upper(A, lap, n, &lrel);
	ok(lrel <= 1e-12 && fabs(logdet - ldl) <= 1e-12 * fmax(1, fabs(ldl)), "chol_upper (%s), n %d: within %.1e "
	    "of dpotrf's factor, log det %.17g against %.17g (<= 1e-12)", route, n, lrel, logdet, ldl);
	if (kernel) {
		int same;
		naive(orig, n, ref);
		same = same_upper(A, ref, n, &rel);
		ok(same, "chol_upper (%s), n %d: bit for bit the unblocked fma loop's (max difference %.1e)", route, n,
		    rel);
	}
	memcpy(W, orig, nn * sizeof *A);
	rc2 = chol_upper(W, n, d, &ld2, scratch);
	ok(rc2 == 0 && same_upper(W, A, n, &rel) && memcmp(&ld2, &logdet, sizeof ld2) == 0,
	    "chol_upper (%s), n %d: the same bits on a second run", route, n);
	free(A);
	free(orig);
	free(W);
	free(ref);
	free(lap);
	free(d);
	free(scratch);
}

/* Matrices that are not positive definite, or not finite: -1, the lower triangle kept. */
static void
failure_cases(const char *route, struct rng *r)
{
	enum { N = 70 };
	double *A = malloc(N * N * sizeof *A), *orig = malloc(N * N * sizeof *A), *d = malloc(N * sizeof *d);
	double *scratch = malloc(chol_scratch(N) * sizeof *scratch), logdet;
	/* the last pivot, one past a block and a tile: A's smallest eigenvalue pushed below zero */
	const int where[] = {0, 9, 64, N - 1};

	for (size_t w = 0; w < sizeof where / sizeof *where; w++) {
		spd(orig, N, r);
		/* a rank-one dent along e_k that the pivot at k sees: a_kk less its Schur complement and 1 */
		orig[(size_t)where[w] * N + where[w]] -= orig[(size_t)where[w] * N + where[w]] + 1;
		memcpy(A, orig, sizeof(double) * N * N);
		int rc = chol_upper(A, N, d, &logdet, scratch);
		sym_restore_diag(A, N, d);
		ok(rc == -1 && lower_kept(A, orig, N), "chol_upper (%s): a negative pivot at %d: -1, the lower "
		    "triangle kept", route, where[w]);
	}
	spd(orig, N, r);
	orig[5 * N + 3] = NAN;
	memcpy(A, orig, sizeof(double) * N * N);
	ok(chol_upper(A, N, d, &logdet, scratch) == -1, "chol_upper (%s): a NaN below the diagonal: -1", route);
	spd(orig, N, r);
	orig[40 * N + 40] = INFINITY;
	memcpy(A, orig, sizeof(double) * N * N);
	ok(chol_upper(A, N, d, &logdet, scratch) == -1, "chol_upper (%s): an infinite diagonal entry: -1", route);
	/* 1 1 / 1 1: the second pivot exactly zero */
	double two[4] = {1, SENTINEL, 1, 1}, d2[2];
	ok(chol_upper(two, 2, d2, &logdet, scratch) == -1, "chol_upper (%s): a zero pivot: -1", route);
	free(A);
	free(orig);
	free(d);
	free(scratch);
}

int
main(void)
{
	/* across GR = 8, GC = 24 and NB = 64 boundaries */
	const int sizes[] = {1, 2, 7, 8, 9, 23, 24, 25, 63, 64, 65, 71, 129, 200, 257};
	struct rng r;

	rng_init(&r, 7, RNG_SAMPLE);
	for (int route = 0; route < 2; route++) {
		gemm_setup(route == 0 ? 1 : 2);   /* the kernel where the CPU has it, then LAPACK's */
		const char *name = gemm_kernel();
		for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
			factor_case(sizes[i], name, &r);
		failure_cases(name, &r);
		double logdet = NAN, d[1];
		ok(chol_upper(d, 0, d, &logdet, NULL) == 0 && logdet == 0, "chol_upper (%s): n 0, log det 0", name);
	}
	gemm_setup(1);
	return tap_done();
}
