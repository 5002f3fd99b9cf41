/*
 * bench_eig: LAPACK's routines for the eigenvalues of a dense symmetric
 * n x n matrix, as gop-spectrum could call them: dsyevd, its two-stage
 * variant (what sym_eigvals uses for a whole spectrum) and dsyevr for the
 * top 10 alone.  Seconds of each on the same random matrix.
 *
 *   bench_eig N        prints one JSON line
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	printf("{\"n\":%d,\"dsyevd_seconds\":%.3f,\"dsyevd_2stage_seconds\":%.3f,\"dsyevr_top10_seconds\":%.3f}\n",
	    (int)n, t[0], t[1], t[2]);
	finish_stdout();
	free(a);
	free(b);
	free(w);
	free(isuppz);
	return 0;
}
