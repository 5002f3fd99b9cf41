/*
 * symeig: the largest eigenvalues of a symmetric positive semi-definite
 * operator of modest size (an explicit n x n matrix, its inverse through
 * a factorisation, a projection of either), by Lanczos with full
 * reorthogonalisation.
 *
 * linalg's lanczos_eigs serves operators whose product costs a model's
 * backward pass, and solves the whole tridiagonal eigenproblem with
 * vectors after every step.  Here a product is one pass over an n x n
 * matrix (a fraction of a millisecond at n = 1,000), so that O(m^3) a
 * step would cost as much as the products; each step instead takes only
 * the Ritz pairs its stopping test reads (the top k + 1, by MRRR: O(m k)).
 */
#ifndef SYMEIG_H
#define SYMEIG_H

struct symop {
	int n;
	void (*apply)(void *ctx, double *y, const double *x);   /* y = A x */
	void *ctx;
};

/*
 * The k largest eigenvalues of A into ev (descending), each with error
 * bound min(r, r^2 / gap) <= tol theta (Kato-Temple, r the Ritz residual
 * |beta_m s_mi|, gap the distance to the nearest other Ritz value
 * computed) and r <= sqrt(tol) theta, theta floored at eps^(2/3) times the
 * largest (A is semi-definite: the largest Ritz value is the largest in
 * magnitude).  Start: v0 (n, need not be normalised), or (NULL or zero) a fixed
 * Gaussian vector (seed 0, stream RNG_SAMPLE).  vecs (k, n): the unit Ritz
 * vectors, or NULL.  *lowest (unless NULL): the smallest Ritz value, at
 * least A's smallest eigenvalue (interlacing), so an upper bound on it.
 * *iters: the products taken.  Returns 0; -1 when k or
 * maxiter is out of range, when not converged within maxiter products,
 * or when the Krylov space closed with fewer than k Ritz values.
 */
int symeig_top(const struct symop *A, int k, double tol, int maxiter, const double *v0,
    double *ev, double *vecs, double *lowest, int *iters);

#endif
