/*
 * bench_eig: LAPACK's routines for the eigenvalues of a dense symmetric
 * n x n matrix, as gop-spectrum could call them: dsyevd, its two-stage
 * variant (what sym_eigvals uses for a whole spectrum) and dsyevr for the
 * top 10 alone.  Seconds of each on the same random matrix.  Then the
 * two-stage route's parts on a positive definite Gram matrix X X^T / 2n,
 * as gop-spectrum's are: the reduction to tridiagonal (dsytrd_2stage),
 * and for the tridiagonal's eigenvalues dsterf (what dsyevd uses) against
 * dpteqr (Cholesky + dqds, which needs the matrix positive definite).
 *
 *   bench_eig N        prints one JSON line
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>
#undef I

#include "blas.h"
#include "rng.h"
#include "util.h"

int
main(int argc, char **argv)
{
	struct rng r;
	double *a, *b, *w, t[3];
	lapack_int n, found, *isuppz;

	setprogname(argv[0]);
	if (argc != 2 || (n = atoi(argv[1])) < 20)
		die_code(2, "usage: bench_eig N (N >= 20)");
	blas_setup(1, argv);
	a = xmalloc(xmul(xmul((size_t)n, (size_t)n), sizeof *a));
	b = xmalloc(xmul(xmul((size_t)n, (size_t)n), sizeof *b));
	w = xmalloc(xmul((size_t)n, sizeof *w));
	isuppz = xmalloc(20 * sizeof *isuppz);
	rng_init(&r, 0, RNG_SAMPLE);
	for (lapack_int i = 0; i < n; i++)
		for (lapack_int j = 0; j <= i; j++)
			a[(size_t)i * n + j] = a[(size_t)j * n + i] = rng_uniform(&r);
	for (int k = 0; k < 3; k++) {
		double t0;
		memcpy(b, a, (size_t)n * n * sizeof *a);
		t0 = now_seconds();
		if (k == 0)
			LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'L', n, b, n, w);
		else if (k == 1)
			LAPACKE_dsyevd_2stage(LAPACK_ROW_MAJOR, 'N', 'L', n, b, n, w);
		else
			LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'N', 'I', 'L', n, b, n, 0, 0, n - 9, n, 0,
			    &found, w, w, 1, isuppz);
		t[k] = now_seconds() - t0;
	}
	{
		/* the parts, on X X^T / 2n with X (n, 2n) Gaussian */
		lapack_int k = 2 * n, lh = -1, lw = -1, info;
		double *x = xmalloc(xmul(xmul((size_t)n, (size_t)k), sizeof *x)), *d = xmalloc(xmul((size_t)n, sizeof *d));
		double *e = xmalloc(xmul((size_t)n, sizeof *e)), *d2 = xmalloc(xmul((size_t)n, sizeof *d2));
		double *e2 = xmalloc(xmul((size_t)n, sizeof *e2)), *tau = xmalloc(xmul((size_t)n, sizeof *tau));
		double qh, qw, *hous, *work, z = 0, t0, p[3];
		char vect = 'N', uplo = 'L', compz = 'N';   /* as sym_eigvals: column-major lower */
		lapack_int one = 1;
		for (size_t i = 0; i < (size_t)n * k; i++)
			x[i] = rng_normal(&r);
		/* row-major upper = the column-major lower triangle LAPACK reads */
		cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, k, 1.0 / k, x, k, 0.0, b, n);
		LAPACK_dsytrd_2stage(&vect, &uplo, &n, b, &n, d, e, tau, &qh, &lh, &qw, &lw, &info);
		lh = (lapack_int)qh;
		lw = (lapack_int)qw;
		hous = xmalloc(xmul((size_t)lh, sizeof *hous));
		work = xmalloc(xmul((size_t)(lw > 4 * n ? lw : 4 * n), sizeof *work));
		t0 = now_seconds();
		LAPACK_dsytrd_2stage(&vect, &uplo, &n, b, &n, d, e, tau, hous, &lh, work, &lw, &info);
		p[0] = now_seconds() - t0;
		memcpy(d2, d, (size_t)n * sizeof *d);
		memcpy(e2, e, (size_t)n * sizeof *e);
		t0 = now_seconds();
		LAPACK_dsterf(&n, d, e, &info);
		p[1] = now_seconds() - t0;
		t0 = now_seconds();
		LAPACK_dpteqr(&compz, &n, d2, e2, &z, &one, work, &info);
		p[2] = now_seconds() - t0;
		printf("{\"n\":%d,\"dsyevd_seconds\":%.3f,\"dsyevd_2stage_seconds\":%.3f,\"dsyevr_top10_seconds\":%.3f,"
		    "\"gram_dsytrd_2stage_seconds\":%.4f,\"gram_dsterf_seconds\":%.4f,\"gram_dpteqr_seconds\":%.4f,"
		    "\"gram_dpteqr_info\":%d}\n", (int)n, t[0], t[1], t[2], p[0], p[1], p[2], (int)info);
		free(x); free(d); free(e); free(d2); free(e2); free(tau); free(hous); free(work);
	}
	finish_stdout();
	free(a);
	free(b);
	free(w);
	free(isuppz);
	return 0;
}
