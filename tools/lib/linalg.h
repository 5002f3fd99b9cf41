/*
 * linalg: spectra of symmetric operators known only through products.
 *
 * The operator is a callback y = A x in double precision (hess-eig passes
 * the Hessian-vector product of a model), so nothing here knows about
 * models.  Accumulation is in double throughout.
 *
 *   lanczos_eigs    extreme eigenpairs by Lanczos with full
 *                   reorthogonalisation (classical Gram-Schmidt, twice),
 *                   stopping on Ritz residuals; lanczos_eigs_start from a
 *                   warm start (a previous solve's Ritz vectors);
 *                   lanczos_run with every option (the settling gate
 *                   for operators whose product is cheap)
 *   power_eigs      power iteration with deflation, for comparison
 *   eig_result_embed  either's result on a restriction, as the full
 *                   operator's (the operator zero elsewhere)
 *   hutchinson      trace by Rademacher probes, with standard error
 *   slq_probe       Gauss quadrature nodes and weights of one probe
 *                   (stochastic Lanczos quadrature)
 *   slq_density     the probes' nodes smoothed onto a grid
 */
#ifndef LINALG_H
#define LINALG_H

#include <stddef.h>

#include "rng.h"

struct linop {
	size_t n;
	void (*apply)(void *ctx, double *y, const double *x);
	void *ctx;
	long count;                  /* products taken so far */
};

/* x . A x for an operator's ctx, where it has a cheaper route than the product. */
typedef double (*linop_quad)(void *ctx, const double *x);

enum eig_which { EIG_TOP, EIG_BOTTOM, EIG_BOTH };
extern const char *const eig_which_names[];   /* "top", "bottom", "both", NULL */

/* What --tol bounds: each pair's residual, or each eigenvalue's error. */
enum eig_converge { CONVERGE_RESIDUAL, CONVERGE_VALUE };
extern const char *const eig_converge_names[]; /* "residual", "value", NULL */

struct eig_result {
	int ntop, nbottom;
	double *top;        /* (ntop) largest algebraic, descending */
	double *bottom;     /* (nbottom) smallest algebraic, ascending */
	double *top_res;    /* explicit residuals ||A y - theta y||, y unit */
	double *bottom_res;
	double *top_vecs;   /* (ntop, n) unit eigenvectors, if asked for */
	double lowest;      /* Lanczos: the smallest Ritz value (>= A's smallest eigenvalue) */
	int iterations;     /* Lanczos steps or power iterations */
	int guides;         /* warm-start vectors the start vector was made from (0: random) */
	int converged;      /* every wanted pair met the tolerance */
};

/*
 * The k largest (and/or smallest) eigenvalues of A.  With residual r =
 * |beta_j s_ji| of a Ritz pair and scale = max(|theta|, eps^(2/3) max|theta|)
 * (ARPACK's floor for eigenvalues near zero), a pair counts as converged
 * under CONVERGE_RESIDUAL when r <= tol * scale, and under CONVERGE_VALUE
 * when its eigenvalue error bound min(r, r^2 / gap) <= tol * scale, gap
 * being the distance to the nearest other Ritz value (Kato-Temple), with
 * r <= sqrt(tol) * scale besides so that a gap misjudged early cannot stop
 * it.  Stops at convergence, at maxiter steps, or when the Krylov space is
 * invariant.  The start vector is Gaussian from r.  Returns 0, or -1 if k
 * or maxiter is out of range for A's size.
 */
int lanczos_eigs(struct linop *A, int k, enum eig_which which, enum eig_converge conv,
    double tol, int maxiter, struct rng *r, int want_vecs, struct eig_result *res);
/*
 * A warm start: guide vectors thought close to the wanted eigenvectors
 * (a previous solve's Ritz vectors on a nearby operator).  Lanczos then
 * starts from their sum plus the usual Gaussian at weight noise (see
 * lanczos_eigs_start); the answer is that of any start vector, only
 * reached in fewer products when the guides are good.
 */
struct eig_start {
	const double *vecs;  /* (count, n), any norms; zero rows are skipped */
	int count;
	double noise;        /* the Gaussian's weight against the guides', >= 0 */
};
/*
 * lanczos_eigs from a warm start (NULL: the Gaussian start, the same as
 * lanczos_eigs).  The Gaussian is drawn from r either way, so r's later
 * draws do not depend on the start; res->guides says how many guides
 * were used.
 */
int lanczos_eigs_start(struct linop *A, int k, enum eig_which which, enum eig_converge conv,
    double tol, int maxiter, struct rng *r, const struct eig_start *start, int want_vecs,
    struct eig_result *res);
/*
 * The one Lanczos behind both, with its options.  noise 0 in the start:
 * the guides alone, no Gaussian (an explicit start vector, used as it is
 * when it is the only guide; the caller vouches that it reaches every
 * wanted eigenvector).  settle: test convergence only once the wanted
 * Ritz values have settled, each moving by at most 1e-8 of the largest
 * in magnitude from one step to the next, taking until then the
 * tridiagonal's eigenvalues alone (O(m^2) a step, not O(m^3) with its
 * eigenvectors): for operators whose product is cheap (an explicit
 * matrix's, a pass over n^2 doubles), where O(m^3) a step would cost as
 * much as the products; it can cost a step or two where a wanted value
 * is already within tolerance but still moving.
 */
struct lanczos_opts {
	const struct eig_start *start;   /* NULL: the Gaussian start */
	int want_vecs;                   /* the top Ritz vectors into res->top_vecs */
	int settle;
};
int lanczos_run(struct linop *A, int k, enum eig_which which, enum eig_converge conv, double tol,
    int maxiter, struct rng *r, const struct lanczos_opts *o, struct eig_result *res);
/* The k eigenvalues of largest magnitude by power iteration with deflation. */
int power_eigs(struct linop *A, int k, double tol, int maxiter, struct rng *r,
    int want_vecs, struct eig_result *res);
/*
 * The result for an N x N operator that is zero outside n of its
 * coordinates, from res computed on its n x n restriction: map[k] is
 * restricted coordinate k's index in N.  Vectors are scattered into N.
 * With merge_zeros (results in algebraic order, as Lanczos gives them)
 * the N - n exact zero eigenvalues of the other coordinates take their
 * rank in the top and bottom lists, each with a unit vector on one of
 * those coordinates and residual 0; they rank only where fewer than k
 * eigenvalues of the restriction are positive (top) or negative (bottom).
 */
void eig_result_embed(struct eig_result *res, const size_t *map, size_t n, size_t N, int merge_zeros);
void eig_result_free(struct eig_result *res);

/* tr(A) ~ mean of z.Az over probes Rademacher z; *stderr is the mean's standard error. */
void hutchinson(struct linop *A, int probes, struct rng *r, double *mean, double *stderr);

/*
 * hutchinson's estimate of tr(A) and, on the same probes, of the traces
 * of nb of A's diagonal blocks: block b is A restricted to coordinates
 * off[b] .. off[b] + blocks[b]->n - 1, as an operator of its own, and
 * gets z_b . A_bb z_b from each probe z's entries there.  Per probe the
 * blocks' terms do not add up to z . A z (the off-diagonal blocks add
 * z_b . A_bc z_c, zero only in expectation); when the blocks tile A their
 * sum is the block-diagonal estimate of the same trace, returned in
 * *sum_mean with its own standard error.  tr(A) (mean, stderr) and the
 * probes drawn are exactly hutchinson's with the same r.  quad (NULL, or
 * nb entries, each NULL or not): block b's z_b . A_bb z_b from quad[b]
 * instead of its product (counted in its count as one).
 */
void hutchinson_blocks(struct linop *A, struct linop *const *blocks, const linop_quad *quad,
    const size_t *off, int nb, int probes, struct rng *r, double *mean, double *stderr, double *bmean, double *bstderr,
    double *sum_mean, double *sum_stderr);
/*
 * frac[j], j < k: the fraction of |g|^2 in the span of the first j + 1
 * of the orthonormal vectors vecs (k, n): sum_{i <= j} (v_i . g)^2 / |g|^2
 * (0 when g = 0).
 */
void subspace_fraction(const double *vecs, int k, size_t n, const double *g, double *frac);

/*
 * m Lanczos steps from v0 (normalised here): the Ritz values (nodes) and
 * the squared first components of their vectors (weights, summing to 1).
 * Returns the number of nodes (fewer than m on breakdown).
 */
int slq_probe(struct linop *A, const double *v0, int m, double *nodes, double *weights);
/*
 * Density of nprobes probes' nodes/weights (count nodes in all) as a
 * mixture of Gaussians of variance sigma2 on ngrid points spanning the
 * nodes with margins of 1% of their span or 3 sigma, whichever is wider;
 * normalised to integrate to 1.
 */
void slq_density(const double *nodes, const double *weights, int count, int nprobes,
    double sigma2, int ngrid, double *grid, double *density);

/*
 * Eigenvalues of the symmetric n x n matrix A (row-major, lower triangle
 * read; destroyed; an entry that is not finite fails), largest first: all n by LAPACK's dsyevd (its two-stage
 * variant when no vectors are wanted), or only the k largest by dsyevr
 * when 0 < k < n.  With vecs (n, k) not NULL, the unit
 * eigenvectors too, column j for ev[j].  Returns the count, -1 on failure.
 */
int sym_eigvals(double *A, int n, int k, double *ev, double *vecs);

/* Statistics of a non-negative spectrum (gradient outer products, Grams). */
struct spectrum_stats {
	double trace;            /* sum (= nuclear norm) */
	double frobenius;        /* sqrt(sum of squares) */
	double spectral;         /* largest */
	double smallest;         /* smallest (rounding can make it slightly negative) */
	double rank_tol;         /* absolute: eigenvalues above it count */
	int rank;
	double condition;        /* largest / smallest counted */
	double logdet;           /* sum of log over the counted ones */
	double effective_rank;   /* exp(entropy of lambda / sum lambda), Roy & Vetterli */
	double stable_rank;      /* frobenius^2 / spectral^2 */
};
/* ev descending; rank_rtol relative to the largest. */
void spectrum_stats(const double *ev, int n, double rank_rtol, struct spectrum_stats *s);


/*
 * Exact statistics of an explicit symmetric matrix without its whole
 * spectrum (gop-spectrum's cheap routes).  A is n x n row-major with the
 * matrix in its lower triangle.  The factorisations work in A's upper
 * triangle and diagonal (no n x n copy); the strict lower triangle is
 * never written, and d (n doubles) keeps the diagonal.
 *
 *   sym_trace_frob   trace and Frobenius norm from the entries
 *   sym_top_lanczos  the k largest eigenvalues by Lanczos on y = A x
 *                    (dsymv), each eigenvalue's error bound under tol
 *                    relative (CONVERGE_VALUE): lanczos_run with the
 *                    settling gate, A as one more linop
 *   sym_count_above  how many eigenvalues exceed tau: the inertia of
 *                    A - tau I from its LDL^T factorisation (Sylvester's
 *                    law), exact up to the factorisation's backward error
 *   sym_cholesky     A = U^T U and log det A, if A is positive definite
 *   sym_chol_solve   A^-1 x from that factor
 *   sym_bottom_chol  the smallest eigenvalue from that factor, by Lanczos
 *                    on A^-1 (two triangular solves a product)
 *   sym_top_ritz     sym_top_lanczos with a start vector and Ritz vectors,
 *                    of A or of H A H (H = I - 11^T / n)
 *   sym_bottom_centred_chol  the smallest eigenvalue of A on the
 *                    complement of the ones vector, from A's factor
 *   sym_deflate_ones A on the complement of the ones vector: the
 *                    spectrum of H A H, H = I - 11^T/n, less the zero
 *                    that H gives the ones vector exactly
 */
void sym_trace_frob(const double *A, int n, double *trace, double *frob);
/* ev (k) descending; *iters the products taken.  0, or -1 when not converged in maxiter. */
int sym_top_lanczos(const double *A, int n, int k, double tol, int maxiter, double *ev, int *iters);
/*
 * The same, of H A H (H = I - 11^T / n) when centred, from the start v0
 * (NULL: fixed Gaussian), with the unit Ritz vectors into vecs (k, n) and
 * the smallest Ritz value (an upper bound on the smallest eigenvalue)
 * into *lowest, each unless NULL.
 */
int sym_top_ritz(const double *A, int n, int k, int centred, double tol, int maxiter, const double *v0,
    double *ev, double *vecs, double *lowest, int *iters);
/* The count, or -1 if LAPACK fails or an entry is not finite; A's diagonal restored. */
int sym_count_above(double *A, int n, double tau, double *d);
/*
 * U into A's upper triangle and diagonal (the diagonal saved in d): 0, or
 * -1 if A is not (numerically) positive definite or an entry is not
 * finite.  Either way sym_restore_diag(A, n, d) afterwards.
 */
int sym_cholesky(double *A, int n, double *d, double *logdet);
/* x = A^-1 x from sym_cholesky's U (two triangular solves). */
void sym_chol_solve(const double *U, int n, double *x);
/* 1 / (A^-1's largest) from sym_cholesky's U; tol as sym_top_lanczos's.  0, or -1 if not converged. */
int sym_bottom_chol(const double *U, int n, double tol, int maxiter, double *lmin, int *iters);
/*
 * The smallest eigenvalue of A on the complement of the ones vector (of
 * P^T A P, P an orthonormal basis of it; H A H's spectrum less the ones
 * vector's zero) from sym_cholesky's U and w = A^-1 1, by Lanczos on
 * (P^T A P)^-1 = P^T (A^-1 - w w^T / 1^T w) P; tol as sym_top_lanczos's.
 * 0, or -1 if not converged (or n < 2).  Its determinant is det A times
 * 1^T w / n (the Schur complement of the ones direction in A^-1).
 */
int sym_bottom_centred_chol(const double *U, int n, const double *w, double tol, int maxiter, double *lmin,
    int *iters);
void sym_restore_diag(double *A, int n, const double *d);
/*
 * C ((n-1) x (n-1), row-major lower, leading dimension n-1) = the
 * trailing block of P A P, P = I - 2 u u^T / u^T u the Householder
 * reflector with P e_1 = 1 / sqrt(n): P H A H P = diag(0, C).  w is n
 * doubles of scratch.  n >= 2.
 */
void sym_deflate_ones(const double *A, int n, double *C, double *w);

#endif
