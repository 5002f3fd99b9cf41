#include "symeig.h"
#include "rng.h"
#include "util.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>
#undef I   /* complex.h, through OpenBLAS's headers */

/* Storage for up to m steps on vectors of length n. */
struct symeig_ws {
	double *Q;        /* (m + 1, n) the basis */
	double *alpha, *beta;   /* (m) the tridiagonal */
	double *w, *h;    /* (n), (m + 1) scratch */
	double *theta, *e;      /* (m) Ritz values, ascending; scratch */
	double *prev;     /* (k) the top k Ritz values of the step before */
	double *z;        /* (m, m) Ritz vectors of the tridiagonal, column-major */
};

static void
ws_init(struct symeig_ws *ws, int n, int m, int k)
{
	ws->Q = xmalloc(xmul(xmul((size_t)m + 1, (size_t)n), sizeof(double)));
	ws->alpha = xmalloc(xmul((size_t)m, sizeof(double)));
	ws->beta = xmalloc(xmul((size_t)m, sizeof(double)));
	ws->w = xmalloc(xmul((size_t)n, sizeof(double)));
	ws->h = xmalloc(xmul((size_t)m + 1, sizeof(double)));
	ws->theta = xmalloc(xmul((size_t)m, sizeof(double)));
	ws->e = xmalloc(xmul((size_t)m, sizeof(double)));
	ws->prev = xmalloc(xmul((size_t)k, sizeof(double)));
	ws->z = xmalloc(xmul(xmul((size_t)m, (size_t)m), sizeof(double)));
}

static void
ws_free(struct symeig_ws *ws)
{
	free(ws->Q);
	free(ws->alpha);
	free(ws->beta);
	free(ws->w);
	free(ws->h);
	free(ws->theta);
	free(ws->e);
	free(ws->prev);
	free(ws->z);
}

/*
 * Step j: q_{j+1} from A q_j, orthogonalised against every q so far by
 * classical Gram-Schmidt, a second pass only when the first removed more
 * than 0.717 of the vector (Daniel, Gragg, Kaufman and Stewart).  Returns
 * beta_j; 0 when the Krylov space is invariant.
 */
static double
step(const struct symop *A, struct symeig_ws *ws, int j)
{
	int n = A->n;
	double *Q = ws->Q, *w = ws->w, *q = Q + (size_t)j * n, b = 0, anorm;

	A->apply(A->ctx, w, q);
	ws->alpha[j] = cblas_ddot(n, q, 1, w, 1);
	cblas_daxpy(n, -ws->alpha[j], q, 1, w, 1);
	if (j > 0)
		cblas_daxpy(n, -ws->beta[j - 1], q - n, 1, w, 1);
	anorm = cblas_dnrm2(n, w, 1);
	for (int pass = 0; pass < 2; pass++) {
		cblas_dgemv(CblasRowMajor, CblasNoTrans, j + 1, n, 1.0, Q, n, w, 1, 0.0, ws->h, 1);
		cblas_dgemv(CblasRowMajor, CblasTrans, j + 1, n, -1.0, Q, n, ws->h, 1, 1.0, w, 1);
		b = cblas_dnrm2(n, w, 1);
		if (b > 0.717 * anorm)
			break;
		anorm = b;
	}
	ws->beta[j] = b;
	if (b > 0)
		for (int i = 0; i < n; i++)
			Q[(size_t)(j + 1) * n + i] = w[i] / b;
	return b;
}

/*
 * The m-step tridiagonal's eigenvalues into theta (ascending), and with
 * vecs its eigenvectors into z.  0, or -1 if LAPACK fails.
 */
static int
ritz(struct symeig_ws *ws, int m, int vecs)
{
	memcpy(ws->theta, ws->alpha, (size_t)m * sizeof *ws->theta);
	memcpy(ws->e, ws->beta, (size_t)(m - 1) * sizeof *ws->e);
	if (!vecs)
		return LAPACKE_dsterf(m, ws->theta, ws->e) == 0 ? 0 : -1;
	return LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', m, ws->theta, ws->e, ws->z, m) == 0 ? 0 : -1;
}

/*
 * Whether the top k Ritz values moved by more than GATE relative since
 * the step before (and keep them for the next): until they settle, the
 * bound (which needs the tridiagonal's eigenvectors, O(m^3)) cannot hold,
 * since a value's change bounds its error from below at the step before.
 * The first step with k values has nothing to compare: it is tested.
 */
#define GATE 1e-8
static int
moving(struct symeig_ws *ws, int m, int k, int first)
{
	int moved = 0;

	for (int i = 0; i < k; i++) {
		double th = ws->theta[m - 1 - i];
		moved |= !first && !(fabs(th - ws->prev[i]) <= GATE * fabs(ws->theta[m - 1]));
		ws->prev[i] = th;
	}
	return moved;
}

/* Whether each of the top k Ritz pairs meets the bound (see symeig.h). */
static int
converged(const struct symeig_ws *ws, int m, int k, double b, double tol)
{
	double top = ws->theta[m - 1], eps23 = pow(DBL_EPSILON, 2.0 / 3.0);

	for (int i = m - 1; i >= m - k; i--) {
		double th = ws->theta[i], r = fabs(b * ws->z[(size_t)i * m + (m - 1)]);
		double floor = fmax(fabs(th), eps23 * fabs(top)), gap = HUGE_VAL;
		if (i > 0)
			gap = fmin(gap, th - ws->theta[i - 1]);
		if (i < m - 1)
			gap = fmin(gap, ws->theta[i + 1] - th);
		if (!(r <= sqrt(tol) * floor && fmin(r, r * r / gap) <= tol * floor))
			return 0;
	}
	return 1;
}

static void
start_vector(double *q, int n, const double *v0)
{
	struct rng r;
	double s;

	if (v0 && (s = cblas_dnrm2(n, v0, 1)) > 0 && isfinite(s)) {
		memcpy(q, v0, (size_t)n * sizeof *q);
	} else {
		/* Fixed stream: the results stay deterministic. */
		rng_init(&r, 0, RNG_SAMPLE);
		for (int i = 0; i < n; i++)
			q[i] = rng_normal(&r);
	}
	s = cblas_dnrm2(n, q, 1);
	for (int i = 0; i < n; i++)
		q[i] /= s;
}

int
symeig_top(const struct symop *A, int k, double tol, int maxiter, const double *v0,
    double *ev, double *vecs, double *lowest, int *iters)
{
	int n = A->n, m = 0, done = 0, ok = 1;
	struct symeig_ws ws;

	*iters = 0;
	if (k < 1 || k > n || maxiter < 1)
		return -1;
	if (maxiter > n)
		maxiter = n;
	ws_init(&ws, n, maxiter, k);
	start_vector(ws.Q, n, v0);
	while (ok && m < maxiter && !done) {
		double b = step(A, &ws, m);
		m++;
		if (b == 0.0) {
			/* invariant: the Ritz values are eigenvalues */
			ok = m >= k && ritz(&ws, m, 1) == 0;
			done = ok;
		} else if (m >= k) {
			ok = ritz(&ws, m, 0) == 0;
			if (ok && !moving(&ws, m, k, m == k)) {
				ok = ritz(&ws, m, 1) == 0;
				done = ok && converged(&ws, m, k, b, tol);
			}
		}
	}
	*iters = m;
	if (done && lowest)
		*lowest = ws.theta[0];
	for (int i = 0; done && i < k; i++) {
		ev[i] = ws.theta[m - 1 - i];
		if (vecs) {
			double *y = vecs + (size_t)i * n;
			cblas_dgemv(CblasRowMajor, CblasTrans, m, n, 1.0, ws.Q, n, ws.z + (size_t)(m - 1 - i) * m, 1,
			    0.0, y, 1);
			cblas_dscal(n, 1 / cblas_dnrm2(n, y, 1), y, 1);
		}
	}
	ws_free(&ws);
	return done ? 0 : -1;
}
