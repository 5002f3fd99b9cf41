#include "linalg.h"
#include "util.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>
#undef I   /* complex.h, through OpenBLAS's headers */

const char *const eig_which_names[] = {"top", "bottom", "both", NULL};
const char *const eig_converge_names[] = {"residual", "value", NULL};

static void
apply(struct linop *A, double *y, const double *x)
{
	A->apply(A->ctx, y, x);
	A->count++;
}

static double
dot(const double *a, const double *b, size_t n)
{
	return cblas_ddot((int)n, a, 1, b, 1);
}

static double
norm(const double *a, size_t n)
{
	return cblas_dnrm2((int)n, a, 1);
}

/*
 * One Lanczos step: w = A q_j - alpha_j q_j - beta_{j-1} q_{j-1},
 * reorthogonalised against q_0..q_j by classical Gram-Schmidt, then
 * q_{j+1} = w / beta_j.  Q is (j+2, n) row-major.  One pass can leave w
 * far from orthogonal when it cancels most of A q_j; a second pass then
 * always suffices ("twice is enough").  The second pass runs only when
 * needed, by the test ARPACK uses (Daniel, Gragg, Kaufman and Stewart,
 * 1976): the first left less than 0.717 of the vector it was given.  Each
 * pass reads all of Q twice, and on a large model that traffic is the
 * step's cost after the product.
 *
 * hcol (j+2) receives every coefficient the step took off, so that
 * A q_j = sum_i hcol[i] q_i exactly up to double rounding: the column j
 * of the Hessenberg matrix H with A Q_j = Q_{j+1} H.  T (alpha, beta) is
 * its symmetric part as Lanczos assumes it; what H has besides (mostly
 * at i = j-1) is the product's own departure from symmetry, float32
 * rounding for the Hessian, which explicit residuals must show.
 * Returns beta_j; 0 means the Krylov space is invariant.
 */
static double
lanczos_step(struct linop *A, double *Q, int j, double *alpha, double *beta,
    double *w, double *h, double *hcol)
{
	size_t n = A->n;
	const double *q = Q + (size_t)j * n;
	double b, anorm;

	apply(A, w, q);
	alpha[j] = dot(q, w, n);
	cblas_daxpy((int)n, -alpha[j], q, 1, w, 1);
	memset(hcol, 0, (size_t)(j + 2) * sizeof *hcol);
	hcol[j] = alpha[j];
	if (j > 0) {
		cblas_daxpy((int)n, -beta[j - 1], q - n, 1, w, 1);
		hcol[j - 1] = beta[j - 1];
	}
	anorm = norm(w, n);
	for (int pass = 0; pass < 2; pass++) {
		/* h = Q w; w -= Q^T h over the j+1 vectors so far */
		cblas_dgemv(CblasRowMajor, CblasNoTrans, j + 1, (int)n, 1.0, Q, (int)n, w, 1, 0.0, h, 1);
		cblas_dgemv(CblasRowMajor, CblasTrans, j + 1, (int)n, -1.0, Q, (int)n, h, 1, 1.0, w, 1);
		cblas_daxpy(j + 1, 1.0, h, 1, hcol, 1);
		b = norm(w, n);
		if (b > 0.717 * anorm)
			break;
		anorm = b;
	}
	beta[j] = b;
	hcol[j + 1] = b;
	if (b > 0)
		for (size_t i = 0; i < n; i++)
			Q[(size_t)(j + 1) * n + i] = w[i] / b;
	return b;
}

/* Storage for up to m Lanczos steps on vectors of length n. */
struct lanczos_ws {
	double *Q;       /* (m + 1, n) the basis */
	double *alpha;   /* (m) diagonal of T */
	double *beta;    /* (m) off-diagonal of T */
	double *w;       /* (n) scratch vector */
	double *h;       /* (m + 1) reorthogonalisation coefficients */
	double *z;       /* (m, m) eigenvectors of T */
	double *H;       /* (m, m + 1) column j: lanczos_step's hcol, then zeros */
};

static void
lanczos_ws_init(struct lanczos_ws *ws, size_t n, int m)
{
	ws->Q = xmalloc_big(xmul(xmul((size_t)m + 1, n), sizeof(double)));
	ws->alpha = xcalloc((size_t)m, sizeof(double));
	ws->beta = xcalloc((size_t)m, sizeof(double));
	ws->w = xmalloc(xmul(n, sizeof(double)));
	ws->h = xmalloc(xmul((size_t)m + 1, sizeof(double)));
	ws->z = xmalloc(xmul(xmul((size_t)m, (size_t)m), sizeof(double)));
	ws->H = xcalloc(xmul((size_t)m, (size_t)m + 1), sizeof(double));
}

static void
lanczos_ws_free(struct lanczos_ws *ws)
{
	free(ws->Q);
	free(ws->alpha);
	free(ws->beta);
	free(ws->w);
	free(ws->h);
	free(ws->z);
	free(ws->H);
}

/* Eigenpairs of the m x m tridiagonal (alpha, beta): values ascending into d, vectors into z (m, m). */
static void
tridiag_eigen(int m, const double *alpha, const double *beta, double *d, double *z)
{
	double *e = xcalloc((size_t)m + 1, sizeof *e);
	lapack_int info;

	memcpy(d, alpha, (size_t)m * sizeof *d);
	memcpy(e, beta, (size_t)(m > 1 ? m - 1 : 0) * sizeof *e);
	info = LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', m, d, e, z, m);
	free(e);
	if (info != 0)
		die("LAPACK dstev failed (info %d) on a %d x %d tridiagonal matrix", (int)info, m, m);
}

/*
 * The same eigenvalues alone (dsterf: no vectors, O(m^2)), for the
 * settling gate; they may differ from tridiag_eigen's in the last bits.
 */
static void
tridiag_values(int m, const double *alpha, const double *beta, double *d)
{
	double *e = xcalloc((size_t)m + 1, sizeof *e);
	lapack_int info;

	memcpy(d, alpha, (size_t)m * sizeof *d);
	memcpy(e, beta, (size_t)(m > 1 ? m - 1 : 0) * sizeof *e);
	info = LAPACKE_dsterf(m, d, e);
	free(e);
	if (info != 0)
		die("LAPACK dsterf failed (info %d) on a %d x %d tridiagonal matrix", (int)info, m, m);
}

static void
random_unit(double *v, size_t n, struct rng *r)
{
	double s;

	for (size_t i = 0; i < n; i++)
		v[i] = rng_normal(r);
	s = norm(v, n);
	for (size_t i = 0; i < n; i++)
		v[i] /= s;
}

/* ||A y - theta y|| for the unit vector y; one product. */
static double
residual(struct linop *A, const double *y, double theta, double *tmp)
{
	apply(A, tmp, y);
	cblas_daxpy((int)A->n, -theta, y, 1, tmp, 1);
	return norm(tmp, A->n);
}

/* Ritz vector y = Q^T s of column c of z (m x m, column-major), normalised. */
static void
ritz_vector(const double *Q, int m, size_t n, const double *z, int c, double *y)
{
	double nrm;

	cblas_dgemv(CblasRowMajor, CblasTrans, m, (int)n, 1.0, Q, (int)n, z + (size_t)c * m, 1, 0.0, y, 1);
	nrm = norm(y, n);
	cblas_dscal((int)n, 1 / nrm, y, 1);
}

/*
 * ||A y - theta y|| for the Ritz pair (theta, y = Q_m s), s column c of z,
 * from the Hessenberg record H alone: A Q_m = Q_{m+1} H, so A y - theta y
 * = Q_{m+1} (H s - theta s), whose norm is that of the (m+1)-vector since
 * Q is orthonormal to working precision.  This is the explicit residual
 * of the products actually taken, without forming y or A y.
 */
static double
ritz_residual(const double *H, int ld, int m, const double *z, int c, double theta)
{
	const double *s = z + (size_t)c * m;
	double r2 = 0;

	for (int i = 0; i <= m; i++) {
		double t = i < m ? -theta * s[i] : 0;
		for (int j = 0; j < m; j++)
			t += H[(size_t)j * ld + i] * s[j];
		r2 += t * t;
	}
	return sqrt(r2);
}

/* Which Ritz columns are wanted: the top k (descending), then the bottom k (ascending). */
static int
wanted(int m, int k, enum eig_which which, int *cols, int *ntop, int *nbot)
{
	int kk = k < m ? k : m, c = 0;

	*ntop = which != EIG_BOTTOM ? kk : 0;
	*nbot = which != EIG_TOP ? kk : 0;
	for (int i = 0; i < *ntop; i++)
		cols[c++] = m - 1 - i;
	for (int i = 0; i < *nbot; i++)
		cols[c++] = i;
	return c;
}

/*
 * Lanczos's start vector q (n): a unit Gaussian from r, drawn whether or
 * not a warm start is given so that r moves the same either way.  With
 * one, q = sum of the guides (each to unit length; a guide of norm zero
 * or not finite is left out) + noise sqrt(count) g, normalised: every
 * guide's direction weighs alike, and the Gaussian g keeps every
 * eigenvector of A in the Krylov space (the guides alone could be
 * orthogonal to one) at a share noise^2 / (1 + noise^2) of q's norm
 * when the guides are orthonormal.  With noise 0 the guides alone, a
 * single one divided by its norm as it is.  Returns how many guides were
 * used.
 */
static int
start_vector(double *q, size_t n, struct rng *r, const struct eig_start *start, double *w)
{
	int used = 0;

	random_unit(q, n, r);
	if (!start || start->count < 1)
		return 0;
	memset(w, 0, n * sizeof *w);
	for (int i = 0; i < start->count; i++) {
		const double *g = start->vecs + (size_t)i * n;
		double gn = norm(g, n);
		if (!(gn > 0) || !isfinite(gn))
			continue;
		if (start->noise == 0)
			for (size_t j = 0; j < n; j++)
				w[j] += g[j] / gn;
		else
			cblas_daxpy((int)n, 1.0 / gn, g, 1, w, 1);
		used++;
	}
	if (used == 0)
		return 0;
	if (start->noise > 0)
		cblas_daxpy((int)n, start->noise * sqrt((double)used), q, 1, w, 1);
	if (start->noise > 0 || used > 1)
		cblas_dscal((int)n, 1.0 / norm(w, n), w, 1);
	memcpy(q, w, n * sizeof *q);
	return used;
}

/*
 * The settling gate (lanczos_opts.settle): whether any of the nw wanted
 * Ritz values d[cols[i]] (dsterf's) moved by more than SETTLE relative
 * to the largest in magnitude since the step before, keeping them in
 * prev for the next.  Until they settle the error bound cannot hold (a
 * value's change bounds its error at the step before from below), so
 * the tridiagonal's eigenvectors, O(m^3), are not worth computing yet.
 * The first call has nothing to compare: its values are tested.
 */
#define SETTLE 1e-8
static int
moving(const double *d, int m, const int *cols, int nw, double *prev, int first)
{
	double scale = fmax(fabs(d[0]), fabs(d[m - 1]));
	int moved = 0;

	for (int i = 0; i < nw; i++) {
		double th = d[cols[i]];
		moved |= !first && !(fabs(th - prev[i]) <= SETTLE * scale);
		prev[i] = th;
	}
	return moved;
}

/* Whether each wanted Ritz pair meets the tolerance (see linalg.h); d ascending, z its vectors. */
static int
ritz_converged(const double *d, const double *z, int m, double b, const int *cols, int nw,
    enum eig_converge conv, double tol)
{
	double eps23 = pow(DBL_EPSILON, 2.0 / 3.0), scale = fmax(fabs(d[0]), fabs(d[m - 1]));

	for (int i = 0; i < nw; i++) {
		double ri = fabs(b * z[(size_t)cols[i] * m + (m - 1)]), th = d[cols[i]];
		double floor = fmax(fabs(th), eps23 * scale), gap = HUGE_VAL;
		/* the nearest other Ritz value is a neighbour: d is sorted */
		if (cols[i] > 0)
			gap = fmin(gap, th - d[cols[i] - 1]);
		if (cols[i] < m - 1)
			gap = fmin(gap, d[cols[i] + 1] - th);
		if (conv == CONVERGE_RESIDUAL ? !(ri <= tol * floor) :
		    !(ri <= sqrt(tol) * floor && fmin(ri, ri * ri / gap) <= tol * floor))
			return 0;
	}
	return 1;
}

int
lanczos_eigs(struct linop *A, int k, enum eig_which which, enum eig_converge conv,
    double tol, int maxiter, struct rng *r, int want_vecs, struct eig_result *res)
{
	struct lanczos_opts o = {NULL, want_vecs, 0};

	return lanczos_run(A, k, which, conv, tol, maxiter, r, &o, res);
}

int
lanczos_eigs_start(struct linop *A, int k, enum eig_which which, enum eig_converge conv,
    double tol, int maxiter, struct rng *r, const struct eig_start *start, int want_vecs,
    struct eig_result *res)
{
	struct lanczos_opts o = {start, want_vecs, 0};

	return lanczos_run(A, k, which, conv, tol, maxiter, r, &o, res);
}

/*
 * res from the m-step run's Ritz pairs (d ascending, z its vectors):
 * the wanted values, their explicit residuals, and the top vectors when
 * asked for.
 */
static void
lanczos_result(struct eig_result *res, const struct lanczos_ws *ws, int ld, int m, size_t n, int k,
    enum eig_which which, const double *d, int want_vecs)
{
	int ntop, nbot, *cols = xmalloc(2 * (size_t)k * sizeof *cols), nw = wanted(m, k, which, cols, &ntop, &nbot);

	res->iterations = m;
	res->ntop = ntop;
	res->nbottom = nbot;
	res->lowest = d[0];
	res->top = xcalloc((size_t)ntop + 1, sizeof(double));
	res->bottom = xcalloc((size_t)nbot + 1, sizeof(double));
	res->top_res = xcalloc((size_t)ntop + 1, sizeof(double));
	res->bottom_res = xcalloc((size_t)nbot + 1, sizeof(double));
	if (want_vecs)
		res->top_vecs = xcalloc(xmul((size_t)ntop + 1, n), sizeof(double));
	/*
	 * Reported residuals are explicit, ||A y - theta y|| of the operator's
	 * own products (ritz_residual): Lanczos's |beta_m s_mi| (used for
	 * stopping) falls far below what an operator computed in float32 can
	 * deliver, and a fresh product per pair would cost k more.
	 */
	for (int i = 0; i < nw; i++) {
		double th = d[cols[i]], ri = ritz_residual(ws->H, ld, m, ws->z, cols[i], th);
		if (i < ntop) {
			res->top[i] = th;
			res->top_res[i] = ri;
			if (want_vecs)
				ritz_vector(ws->Q, m, n, ws->z, cols[i], res->top_vecs + (size_t)i * n);
		} else {
			res->bottom[i - ntop] = th;
			res->bottom_res[i - ntop] = ri;
		}
	}
	free(cols);
}

int
lanczos_run(struct linop *A, int k, enum eig_which which, enum eig_converge conv, double tol, int maxiter,
    struct rng *r, const struct lanczos_opts *o, struct eig_result *res)
{
	size_t n = A->n;
	int m = 0, vm = 0, done = 0, ntop, nbot, nw, need = which == EIG_BOTH ? 2 * k : k, *cols;
	double *d, *prev;
	struct lanczos_ws ws;

	memset(res, 0, sizeof *res);
	if (k < 1 || (size_t)k > n || maxiter < 1)
		return -1;
	if ((size_t)maxiter > n)
		maxiter = (int)n;
	lanczos_ws_init(&ws, n, maxiter);
	d = xmalloc(xmul((size_t)maxiter, sizeof *d));
	prev = xmalloc(2 * (size_t)k * sizeof *prev);
	cols = xmalloc(2 * (size_t)k * sizeof *cols);
	res->guides = start_vector(ws.Q, n, r, o->start, ws.w);
	while (m < maxiter && !done) {
		double b = lanczos_step(A, ws.Q, m, ws.alpha, ws.beta, ws.w, ws.h, ws.H + (size_t)m * (maxiter + 1));
		m++;
		/* Invariant: the Ritz values are eigenvalues.  Else enough of them, each within tolerance. */
		done = b == 0.0;
		if (!done && m < need)
			continue;
		nw = wanted(m, k, which, cols, &ntop, &nbot);
		if (!done && o->settle) {
			tridiag_values(m, ws.alpha, ws.beta, d);
			if (moving(d, m, cols, nw, prev, m == need))
				continue;
		}
		tridiag_eigen(m, ws.alpha, ws.beta, d, ws.z);
		vm = m;
		done = done || ritz_converged(d, ws.z, m, b, cols, nw, conv, tol);
	}
	if (vm != m)
		tridiag_eigen(m, ws.alpha, ws.beta, d, ws.z);
	res->converged = done;
	lanczos_result(res, &ws, maxiter + 1, m, n, k, which, d, o->want_vecs);
	lanczos_ws_free(&ws);
	free(d);
	free(prev);
	free(cols);
	return 0;
}

int
power_eigs(struct linop *A, int k, double tol, int maxiter, struct rng *r,
    int want_vecs, struct eig_result *res)
{
	size_t n = A->n;
	double *V = xcalloc(xmul((size_t)k + 1, n), sizeof *V), *w = xmalloc(xmul(n, sizeof *w));
	int all = 1;

	memset(res, 0, sizeof *res);
	if (k < 1 || (size_t)k > n || maxiter < 1) {
		free(V);
		free(w);
		return -1;
	}
	res->ntop = k;
	res->top = xcalloc((size_t)k, sizeof(double));
	res->top_res = xcalloc((size_t)k, sizeof(double));
	res->bottom = xcalloc(1, sizeof(double));
	res->bottom_res = xcalloc(1, sizeof(double));
	for (int e = 0; e < k; e++) {
		double *v = V + (size_t)e * n, lambda = 0, prev = 0;
		int it, conv = 0;
		random_unit(v, n, r);
		for (it = 0; it < maxiter && !conv; it++) {
			double s;
			/* deflate: keep v orthogonal to the eigenvectors found so far */
			for (int f = 0; f < e; f++)
				cblas_daxpy((int)n, -dot(V + (size_t)f * n, v, n), V + (size_t)f * n, 1, v, 1);
			s = norm(v, n);
			for (size_t i = 0; i < n; i++)
				v[i] /= s;
			apply(A, w, v);
			lambda = dot(v, w, n);
			s = norm(w, n);
			if (s == 0)
				break;
			for (size_t i = 0; i < n; i++)
				v[i] = w[i] / s;
			/* PyHessian's test: relative change of the Rayleigh quotient */
			conv = it > 0 && fabs(lambda - prev) / (fabs(prev) + 1e-6) < tol;
			prev = lambda;
		}
		res->iterations += it;
		all &= conv;
		res->top[e] = lambda;
		res->top_res[e] = residual(A, v, lambda, w);
	}
	res->converged = all;
	if (want_vecs)
		res->top_vecs = V;
	else
		free(V);
	free(w);
	return 0;
}

void
eig_result_embed(struct eig_result *res, const size_t *map, size_t n, size_t N, int merge_zeros)
{
	size_t nz = N - n, zt = 0, zb = 0, other = 0;
	unsigned char *kept = xcalloc(N, 1);
	double *top = xcalloc((size_t)res->ntop + 1, sizeof(double));
	double *tres = xcalloc((size_t)res->ntop + 1, sizeof(double));
	double *bot = xcalloc((size_t)res->nbottom + 1, sizeof(double));
	double *bres = xcalloc((size_t)res->nbottom + 1, sizeof(double));
	double *vecs = res->top_vecs ? xcalloc(xmul((size_t)res->ntop + 1, N), sizeof(double)) : NULL;

	for (size_t k = 0; k < n; k++)
		kept[map[k]] = 1;
	/* Merge each list with nz zeros; on a tie the computed value goes first. */
	for (int i = 0, j = 0; i < res->ntop; i++) {
		double *v = vecs ? vecs + (size_t)i * N : NULL;
		if (!merge_zeros || zt == nz || res->top[j] >= 0) {
			top[i] = res->top[j];
			tres[i] = res->top_res[j];
			for (size_t k = 0; v && k < n; k++)
				v[map[k]] = res->top_vecs[(size_t)j * n + k];
			j++;
		} else {
			/* the next coordinate outside the map: A e = 0 exactly */
			while (kept[other])
				other++;
			if (v)
				v[other] = 1;
			other++;
			zt++;
		}
	}
	for (int i = 0, j = 0; i < res->nbottom; i++) {
		if (!merge_zeros || zb == nz || res->bottom[j] <= 0) {
			bot[i] = res->bottom[j];
			bres[i] = res->bottom_res[j];
			j++;
		} else {
			zb++;
		}
	}
	free(res->top);
	free(res->top_res);
	free(res->bottom);
	free(res->bottom_res);
	free(res->top_vecs);
	res->top = top;
	res->top_res = tres;
	res->bottom = bot;
	res->bottom_res = bres;
	res->top_vecs = vecs;
	free(kept);
}

void
eig_result_free(struct eig_result *res)
{
	free(res->top);
	free(res->bottom);
	free(res->top_res);
	free(res->bottom_res);
	free(res->top_vecs);
	memset(res, 0, sizeof *res);
}

void
hutchinson(struct linop *A, int probes, struct rng *r, double *mean, double *stderr)
{
	size_t n = A->n;
	double *z = xmalloc(xmul(n, sizeof *z)), *az = xmalloc(xmul(n, sizeof *az));
	double s = 0, s2 = 0;

	for (int p = 0; p < probes; p++) {
		double t;
		for (size_t i = 0; i < n; i++)
			z[i] = rng_sign(r);
		apply(A, az, z);
		t = dot(z, az, n);
		s += t;
		s2 += t * t;
	}
	*mean = s / probes;
	*stderr = probes > 1 ? sqrt(fmax(0, (s2 - s * s / probes) / (probes - 1)) / probes) : NAN;
	free(z);
	free(az);
}

/* The mean of n values from their sum and sum of squares, and its standard error. */
static void
mean_stderr(double s, double s2, int n, double *mean, double *se)
{
	*mean = s / n;
	*se = n > 1 ? sqrt(fmax(0, (s2 - s * s / n) / (n - 1)) / n) : NAN;
}

void
hutchinson_blocks(struct linop *A, struct linop *const *blocks, const linop_quad *quad,
    const size_t *off, int nb, int probes, struct rng *r, double *mean, double *stderr, double *bmean, double *bstderr,
    double *sum_mean, double *sum_stderr)
{
	size_t n = A->n;
	double *z = xmalloc(xmul(n, sizeof *z)), *az = xmalloc(xmul(n, sizeof *az));
	double *bs = xcalloc(xmul((size_t)nb, 2), sizeof *bs), s = 0, s2 = 0, ss = 0, ss2 = 0;

	for (int p = 0; p < probes; p++) {
		double t, tsum = 0;
		for (size_t i = 0; i < n; i++)
			z[i] = rng_sign(r);
		apply(A, az, z);
		t = dot(z, az, n);
		s += t;
		s2 += t * t;
		for (int b = 0; b < nb; b++) {
			size_t nbk = blocks[b]->n;
			if (quad && quad[b]) {
				t = quad[b](blocks[b]->ctx, z + off[b]);
				blocks[b]->count++;
			} else {
				apply(blocks[b], az, z + off[b]);
				t = dot(z + off[b], az, nbk);
			}
			bs[2 * b] += t;
			bs[2 * b + 1] += t * t;
			tsum += t;
		}
		ss += tsum;
		ss2 += tsum * tsum;
	}
	mean_stderr(s, s2, probes, mean, stderr);
	mean_stderr(ss, ss2, probes, sum_mean, sum_stderr);
	for (int b = 0; b < nb; b++)
		mean_stderr(bs[2 * b], bs[2 * b + 1], probes, bmean + b, bstderr + b);
	free(z);
	free(az);
	free(bs);
}

void
subspace_fraction(const double *vecs, int k, size_t n, const double *g, double *frac)
{
	double g2 = dot(g, g, n), acc = 0;

	for (int j = 0; j < k; j++) {
		double c = dot(vecs + (size_t)j * n, g, n);
		acc += c * c;
		frac[j] = g2 > 0 ? acc / g2 : 0;
	}
}

int
slq_probe(struct linop *A, const double *v0, int m, double *nodes, double *weights)
{
	size_t n = A->n;
	struct lanczos_ws ws;
	double s;
	int j = 0;

	if ((size_t)m > n)
		m = (int)n;
	lanczos_ws_init(&ws, n, m);
	s = norm(v0, n);
	for (size_t i = 0; i < n; i++)
		ws.Q[i] = v0[i] / s;
	while (j < m) {
		double b = lanczos_step(A, ws.Q, j, ws.alpha, ws.beta, ws.w, ws.h, ws.H + (size_t)j * (m + 1));
		j++;
		if (b == 0.0)
			break;
	}
	tridiag_eigen(j, ws.alpha, ws.beta, nodes, ws.z);
	for (int i = 0; i < j; i++)
		weights[i] = ws.z[(size_t)i * j] * ws.z[(size_t)i * j];
	lanczos_ws_free(&ws);
	return j;
}

void
slq_density(const double *nodes, const double *weights, int count, int nprobes,
    double sigma2, int ngrid, double *grid, double *density)
{
	double lo = nodes[0], hi = nodes[0], width, pad, dx, total = 0;

	for (int i = 1; i < count; i++) {
		lo = fmin(lo, nodes[i]);
		hi = fmax(hi, nodes[i]);
	}
	width = hi - lo;
	/* Margins wide enough that no kernel is cut short: 1% of the span, at least 3 sigma. */
	pad = fmax(0.01 * width, 3 * sqrt(sigma2));
	lo -= pad;
	hi += pad;
	dx = ngrid > 1 ? (hi - lo) / (ngrid - 1) : 1;
	for (int g = 0; g < ngrid; g++) {
		double t = lo + g * dx, acc = 0;
		for (int i = 0; i < count; i++) {
			double u = t - nodes[i];
			acc += weights[i] * exp(-u * u / (2 * sigma2));
		}
		grid[g] = t;
		density[g] = acc / (nprobes * sqrt(2 * 3.14159265358979323846 * sigma2));
		total += density[g] * dx;
	}
	/* The grid truncates the kernels' tails; renormalise so it integrates to 1. */
	if (total > 0)
		for (int g = 0; g < ngrid; g++)
			density[g] /= total;
}

/*
 * The upper triangle of row-major A from its lower one, tile by tile so
 * that the strided side stays in cache; 0, or -1 if an entry is not finite.
 */
static int
mirror_lower(double *A, int n)
{
	enum { TILE = 64 };
	int bad = 0;

	for (int ib = 0; ib < n; ib += TILE)
		for (int jb = 0; jb <= ib; jb += TILE)
			for (int i = ib; i < n && i < ib + TILE; i++)
				for (int j = jb; j <= i && j < jb + TILE; j++) {
					double v = A[(size_t)i * n + j];
					bad |= !isfinite(v);
					A[(size_t)j * n + i] = v;
				}
	return bad ? -1 : 0;
}

/*
 * All eigenvalues, no vectors: dsyevd's two-stage variant (dense to band
 * by blocked level-3 updates, then band to tridiagonal), faster than
 * dsyevd's level-2-bound dsytrd at n in the thousands.  Called on A in
 * place: with both triangles filled, A read column-major is A.  LAPACKE
 * would instead copy all n^2 entries into a transposed buffer of its own,
 * after scanning them for NaN; the mirror pass does that scan.
 */
static int
eigvals_inplace(double *A, int n, double *w)
{
	lapack_int nn = n, lwork = -1, liwork = -1, iq = 0, info = 0, *iwork;
	double q = 0, *work;

	if (mirror_lower(A, n) < 0)
		return -1;
	LAPACK_dsyevd_2stage("N", "L", &nn, A, &nn, w, &q, &lwork, &iq, &liwork, &info);
	if (info != 0)
		return -1;
	lwork = (lapack_int)q;
	liwork = iq;
	work = xmalloc(xmul((size_t)lwork, sizeof *work));
	iwork = xmalloc(xmul((size_t)liwork, sizeof *iwork));
	LAPACK_dsyevd_2stage("N", "L", &nn, A, &nn, w, work, &lwork, iwork, &liwork, &info);
	free(work);
	free(iwork);
	return info == 0 ? 0 : -1;
}

int
sym_eigvals(double *A, int n, int k, double *ev, double *vecs)
{
	lapack_int info, found = 0;
	double *w;

	if (k <= 0 || k >= n) {
		w = xmalloc(xmul((size_t)n, sizeof *w));
		if (vecs)
			info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'L', n, A, n, w);
		else
			info = eigvals_inplace(A, n, w);
		if (info != 0) {
			free(w);
			return -1;
		}
		for (int i = 0; i < n; i++) {
			ev[i] = w[n - 1 - i];
			if (vecs)
				for (int r = 0; r < n; r++)
					vecs[(size_t)r * n + i] = A[(size_t)r * n + (n - 1 - i)];
		}
		free(w);
		return n;
	}
	{
		lapack_int *isuppz = xmalloc(2 * (size_t)k * sizeof *isuppz);
		double *z = vecs ? xmalloc(xmul(xmul((size_t)n, (size_t)k), sizeof *z)) : NULL;
		w = xmalloc(xmul((size_t)n, sizeof *w));
		info = LAPACKE_dsyevr(LAPACK_ROW_MAJOR, vecs ? 'V' : 'N', 'I', 'L', n, A, n, 0, 0,
		    n - k + 1, n, 0.0, &found, w, vecs ? z : w, vecs ? k : 1, isuppz);
		if (info == 0)
			for (int i = 0; i < found; i++) {
				ev[i] = w[found - 1 - i];
				if (vecs)
					for (int r = 0; r < n; r++)
						vecs[(size_t)r * k + i] = z[(size_t)r * k + (found - 1 - i)];
			}
		free(isuppz);
		free(z);
		free(w);
		return info == 0 ? (int)found : -1;
	}
}

void
spectrum_stats(const double *ev, int n, double rank_rtol, struct spectrum_stats *s)
{
	double sum = 0, sq = 0, pos = 0, ent = 0, small = HUGE_VAL;

	memset(s, 0, sizeof *s);
	if (n == 0)
		return;
	s->spectral = ev[0];
	s->smallest = ev[n - 1];
	s->rank_tol = rank_rtol * fmax(ev[0], 0.0);
	for (int i = 0; i < n; i++) {
		sum += ev[i];
		sq += ev[i] * ev[i];
		if (ev[i] > 0)
			pos += ev[i];
		if (ev[i] > s->rank_tol) {
			s->rank++;
			s->logdet += log(ev[i]);
			small = fmin(small, ev[i]);
		}
	}
	for (int i = 0; i < n && pos > 0; i++)
		if (ev[i] > 0) {
			double q = ev[i] / pos;
			ent -= q * log(q);
		}
	s->trace = sum;
	s->frobenius = sqrt(sq);
	s->condition = s->rank ? ev[0] / small : NAN;
	s->effective_rank = pos > 0 ? exp(ent) : 0;
	s->stable_rank = ev[0] > 0 ? sq / (ev[0] * ev[0]) : 0;
}

/*
 * Exact statistics of an explicit symmetric matrix without its spectrum
 * (gop-spectrum's cheap routes; see linalg.h).
 */

void
sym_trace_frob(const double *A, int n, double *trace, double *frob)
{
	double t = 0, diag = 0, off = 0;

	for (int i = 0; i < n; i++) {
		const double *row = A + (size_t)i * n;
		for (int j = 0; j < i; j++)
			off += row[j] * row[j];
		t += row[i];
		diag += row[i] * row[i];
	}
	*trace = t;
	*frob = sqrt(diag + 2 * off);
}

struct dense_sym {
	const double *A;
	int n;
};

/* y = A x from A's lower triangle: one pass over n^2 / 2 doubles. */
static void
dense_sym_apply(void *ctx, double *y, const double *x)
{
	const struct dense_sym *d = ctx;

	cblas_dsymv(CblasRowMajor, CblasLower, d->n, 1.0, d->A, d->n, x, 1, 0.0, y, 1);
}

/* y = H A H x, H = I - 11^T / n (scratch t: n doubles). */
struct centred_sym {
	const double *A;
	int n;
	double *t;
};

static void
centred_sym_apply(void *ctx, double *y, const double *x)
{
	const struct centred_sym *c = ctx;
	double mx = 0, my = 0;

	for (int i = 0; i < c->n; i++)
		mx += x[i];
	mx /= c->n;
	for (int i = 0; i < c->n; i++)
		c->t[i] = x[i] - mx;
	cblas_dsymv(CblasRowMajor, CblasLower, c->n, 1.0, c->A, c->n, c->t, 1, 0.0, y, 1);
	for (int i = 0; i < c->n; i++)
		my += y[i];
	my /= c->n;
	for (int i = 0; i < c->n; i++)
		y[i] -= my;
}

/*
 * The k largest eigenvalues of an explicit matrix's operator into ev, by
 * the one Lanczos with the settling gate (a product is one pass over n^2
 * doubles, so O(m^3) a step would cost as much as the products),
 * CONVERGE_VALUE, from v0 as it is (no Gaussian mixed in; NULL, zero or
 * not finite: the Gaussian of seed 0, stream RNG_SAMPLE, fixed so that
 * the results stay deterministic).  vecs (k, n), *lowest (the smallest
 * Ritz value, at least A's smallest eigenvalue by interlacing): each
 * unless NULL.  *iters: the products.  0; -1 when k or maxiter is out of
 * range, when not converged within maxiter, or when the Krylov space
 * closed with fewer than k Ritz values.
 */
static int
explicit_top(struct linop *A, int k, double tol, int maxiter, const double *v0, double *ev, double *vecs,
    double *lowest, int *iters)
{
	struct eig_start st = {v0, 1, 0.0};
	struct lanczos_opts o = {v0 ? &st : NULL, vecs != NULL, 1};
	struct eig_result res;
	struct rng r;
	int ok;

	rng_init(&r, 0, RNG_SAMPLE);
	*iters = 0;
	if (lanczos_run(A, k, EIG_TOP, CONVERGE_VALUE, tol, maxiter, &r, &o, &res) < 0)
		return -1;
	*iters = res.iterations;
	ok = res.converged && res.ntop == k;
	if (ok) {
		memcpy(ev, res.top, (size_t)k * sizeof *ev);
		if (vecs)
			memcpy(vecs, res.top_vecs, xmul((size_t)k, A->n) * sizeof *vecs);
		if (lowest)
			*lowest = res.lowest;
	}
	eig_result_free(&res);
	return ok ? 0 : -1;
}

int
sym_top_ritz(const double *A, int n, int k, int centred, double tol, int maxiter, const double *v0,
    double *ev, double *vecs, double *lowest, int *iters)
{
	struct dense_sym d = {A, n};
	struct centred_sym c = {A, n, NULL};
	struct linop op = {(size_t)n, dense_sym_apply, &d, 0};
	int rc;

	if (centred) {
		c.t = xmalloc(xmul((size_t)n, sizeof(double)));
		op = (struct linop){(size_t)n, centred_sym_apply, &c, 0};
	}
	/*
	 * Fewer than k Ritz values means the Krylov space closed (rank below
	 * k): -1, and the dense route resolves the rest (zeros) to rounding.
	 */
	rc = explicit_top(&op, k, tol, maxiter, v0, ev, vecs, lowest, iters);
	free(c.t);
	return rc;
}

int
sym_top_lanczos(const double *A, int n, int k, double tol, int maxiter, double *ev, int *iters)
{
	return sym_top_ritz(A, n, k, 0, tol, maxiter, NULL, ev, NULL, NULL, iters);
}

/*
 * The factorisations work in A's own upper triangle, so that no n x n copy
 * is touched: the strict lower triangle (the matrix) is mirrored into the
 * upper one, the diagonal (minus shift) saved in d, and LAPACK called with
 * uplo 'L' on the column-major view, which is the row-major upper
 * triangle.  The strict lower triangle is never written; sym_restore_diag
 * puts the diagonal back.  -1 if an entry is not finite.
 */
static int
mirror_upper(double *A, int n, double shift, double *d)
{
	enum { TILE = 64 };
	int bad = 0;

	for (int i = 0; i < n; i++) {
		d[i] = A[(size_t)i * n + i];
		bad |= !isfinite(d[i]);
		A[(size_t)i * n + i] = d[i] - shift;
	}
	for (int ib = 0; ib < n; ib += TILE)
		for (int jb = 0; jb <= ib; jb += TILE)
			for (int i = ib; i < n && i < ib + TILE; i++)
				for (int j = jb; j < i && j < jb + TILE; j++) {
					double v = A[(size_t)i * n + j];
					bad |= !isfinite(v);
					A[(size_t)j * n + i] = v;
				}
	return bad ? -1 : 0;
}

void
sym_restore_diag(double *A, int n, const double *d)
{
	for (int i = 0; i < n; i++)
		A[(size_t)i * n + i] = d[i];
}

/*
 * Positive eigenvalues of the block diagonal D of a Bunch-Kaufman LDL^T
 * (lower form, column-major: D's off-diagonal entry of a 2 x 2 block at
 * column-major (k+1, k), row-major (k, k+1)).  A 2 x 2 block is marked by
 * two equal negative pivots.
 */
static int
positive_inertia(const double *A, int n, const lapack_int *ipiv)
{
	int pos = 0;

	for (int k = 0; k < n; k++) {
		double d11 = A[(size_t)k * n + k];
		if (ipiv[k] > 0 || k + 1 == n) {
			pos += d11 > 0;
			continue;
		}
		double d22 = A[(size_t)(k + 1) * n + k + 1], d12 = A[(size_t)k * n + k + 1];
		double det = d11 * d22 - d12 * d12;
		pos += det < 0 ? 1 : det > 0 ? 2 * (d11 + d22 > 0) : (d11 + d22 > 0);
		k++;
	}
	return pos;
}

int
sym_count_above(double *A, int n, double tau, double *d)
{
	lapack_int nn = n, lwork = -1, info = 0, *ipiv;
	double q = 0, *work;
	int pos;

	if (n == 0)
		return 0;
	if (mirror_upper(A, n, tau, d) < 0) {
		sym_restore_diag(A, n, d);
		return -1;
	}
	ipiv = xmalloc(xmul((size_t)n, sizeof *ipiv));
	LAPACK_dsytrf("L", &nn, A, &nn, ipiv, &q, &lwork, &info);
	lwork = info == 0 ? (lapack_int)q : 1;
	work = xmalloc(xmul((size_t)lwork, sizeof *work));
	/* info > 0 is an exactly zero pivot: an eigenvalue at tau, not above it. */
	LAPACK_dsytrf("L", &nn, A, &nn, ipiv, work, &lwork, &info);
	pos = info < 0 ? -1 : positive_inertia(A, n, ipiv);
	sym_restore_diag(A, n, d);
	free(work);
	free(ipiv);
	return pos;
}

int
sym_cholesky(double *A, int n, double *d, double *logdet)
{
	lapack_int nn = n, info = 0;
	double s = 0;

	if (mirror_upper(A, n, 0.0, d) < 0)
		return -1;
	/* Column-major lower = row-major upper: A = U^T U, U row-major upper. */
	LAPACK_dpotrf("L", &nn, A, &nn, &info);
	if (info != 0)
		return -1;
	for (int i = 0; i < n; i++)
		s += log(A[(size_t)i * n + i]);
	*logdet = 2 * s;
	return 0;
}

void
sym_chol_solve(const double *U, int n, double *x)
{
	cblas_dtrsv(CblasRowMajor, CblasUpper, CblasTrans, CblasNonUnit, n, U, n, x, 1);
	cblas_dtrsv(CblasRowMajor, CblasUpper, CblasNoTrans, CblasNonUnit, n, U, n, x, 1);
}

/* y = A^-1 x = U^-1 U^-T x. */
static void
chol_inverse_apply(void *ctx, double *y, const double *x)
{
	const struct dense_sym *d = ctx;

	memcpy(y, x, (size_t)d->n * sizeof *y);
	sym_chol_solve(d->A, d->n, y);
}

int
sym_bottom_chol(const double *U, int n, double tol, int maxiter, double *lmin, int *iters)
{
	struct dense_sym d = {U, n};
	struct linop op = {(size_t)n, chol_inverse_apply, &d, 0};
	double top;

	if (explicit_top(&op, 1, tol, maxiter, NULL, &top, NULL, NULL, iters) < 0 || !(top > 0))
		return -1;
	*lmin = 1 / top;
	return 0;
}

/*
 * y = (P^T A P)^-1 x for x in the complement of the ones vector, P an
 * orthonormal basis of it, and 0 for the ones vector: the y in that
 * complement with A y = x + a 1 for some a, y = A^-1 x - w (1^T A^-1 x) /
 * (1^T w), w = A^-1 1.  Its range is the complement whatever x is.
 */
struct schur_inv {
	const double *U, *w;
	int n;
	double s;               /* 1^T w */
};

static void
schur_inverse_apply(void *ctx, double *y, const double *x)
{
	const struct schur_inv *c = ctx;
	double a = 0;

	memcpy(y, x, (size_t)c->n * sizeof *y);
	sym_chol_solve(c->U, c->n, y);
	for (int i = 0; i < c->n; i++)
		a += y[i];
	a /= c->s;
	for (int i = 0; i < c->n; i++)
		y[i] -= a * c->w[i];
}

int
sym_bottom_centred_chol(const double *U, int n, const double *w, double tol, int maxiter, double *lmin,
    int *iters)
{
	struct schur_inv c = {U, w, n, 0};
	struct linop op = {(size_t)n, schur_inverse_apply, &c, 0};
	double top;

	*iters = 0;
	for (int i = 0; i < n; i++)
		c.s += w[i];
	if (n < 2 || !(c.s > 0))
		return -1;
	if (explicit_top(&op, 1, tol, maxiter, NULL, &top, NULL, NULL, iters) < 0 || !(top > 0))
		return -1;
	*lmin = 1 / top;
	return 0;
}

void
sym_deflate_ones(const double *A, int n, double *C, double *w)
{
	/* u = e_1 - s 1, s = 1/sqrt(n): u_0 = 1 - s, u_i = -s past it; u^T u = 2 - 2 s. */
	double s = 1 / sqrt((double)n), beta = 2 / (2 - 2 * s), gamma, corner;
	int m = n - 1;

	/* w = A u = A e_1 - s A 1, from the lower triangle. */
	for (int i = 0; i < n; i++)
		w[i] = 0;
	for (int i = 0; i < n; i++) {
		const double *row = A + (size_t)i * n;
		for (int j = 0; j < i; j++) {
			w[i] += row[j];
			w[j] += row[j];
		}
		w[i] += row[i];
	}
	for (int i = 0; i < n; i++)
		w[i] = A[(size_t)i * n] - s * w[i];
	gamma = (1 - s) * w[0];
	for (int i = 1; i < n; i++)
		gamma -= s * w[i];
	/* P A P = A - beta (u w^T + w u^T) + beta^2 (u^T w) u u^T, rows and columns 1.. of it. */
	corner = beta * beta * gamma * s * s;
	for (int i = 1; i < n; i++) {
		const double *row = A + (size_t)i * n;
		double *c = C + (size_t)(i - 1) * m, bw = beta * s * w[i];
		for (int j = 1; j <= i; j++)
			c[j - 1] = row[j] + bw + beta * s * w[j] + corner;
	}
}
