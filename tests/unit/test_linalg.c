/*
 * linalg: Lanczos, power iteration, Hutchinson and stochastic Lanczos
 * quadrature on dense symmetric matrices of known spectrum, and on the
 * Hessian of a small model against LAPACK's dsyevd.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>
#undef I

#include "linalg.h"
#include "mlp.h"
#include "rng.h"
#include "tap.h"

struct dense {
	int n;
	double *a;   /* (n, n) symmetric */
};

static void
dense_apply(void *ctx, double *y, const double *x)
{
	struct dense *d = ctx;

	cblas_dgemv(CblasRowMajor, CblasNoTrans, d->n, d->n, 1.0, d->a, d->n, x, 1, 0.0, y, 1);
}

static int
cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* A = Q diag(lambda) Q^T with Q orthogonal from the QR of a Gaussian matrix. */
static void
make_matrix(struct dense *d, const double *lambda, struct rng *r)
{
	int n = d->n;
	double *q = malloc((size_t)n * n * sizeof *q), *tau = malloc((size_t)n * sizeof *tau);

	for (int i = 0; i < n * n; i++)
		q[i] = rng_normal(r);
	LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, n, n, q, n, tau);
	LAPACKE_dorgqr(LAPACK_ROW_MAJOR, n, n, n, q, n, tau);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double s = 0;
			for (int k = 0; k < n; k++)
				s += q[i * n + k] * lambda[k] * q[j * n + k];
			d->a[i * n + j] = s;
		}
	free(q);
	free(tau);
}

/*
 * An operator that is zero outside n of its N coordinates (as the Hessian
 * is on the parameters of dead units), solved on its restriction and
 * embedded back: the embedded result must be the full matrix's dsyevd
 * spectrum, exact zeros included where they rank.  With sign +1 the
 * restriction has two positive eigenvalues, so zeros fill the top-5 from
 * third place; with -1 they fill the bottom-5.
 */
static void
embedded(void)
{
	enum { N = 60, NZ = 12, n = N - NZ, K = 5 };
	size_t map[n];
	double lambda[n], *F = calloc((size_t)N * N, sizeof *F), e[N], ay[N];
	struct dense d = {n, malloc((size_t)n * n * sizeof(double))};
	struct linop A = {n, dense_apply, &d, 0};
	struct eig_result res;
	struct rng r;

	rng_init(&r, 13, RNG_SAMPLE);
	for (size_t k = 0, c = 0; c < N; c++)
		if (c % 5 != 0)   /* coordinates 0, 5, ..., 55 are outside */
			map[k++] = c;
	for (int sign = 1; sign >= -1; sign -= 2) {
		double err = 0, verr = 0, orth = 0;
		int zt = 0, zb = 0;
		for (int i = 0; i < n; i++)
			lambda[i] = i == 0 ? 9.0 * sign : i == 1 ? 4.0 * sign : -sign * (1.0 + 9.0 * i / n);
		make_matrix(&d, lambda, &r);
		memset(F, 0, (size_t)N * N * sizeof *F);
		for (int i = 0; i < n; i++)
			for (int j = 0; j < n; j++)
				F[map[i] * N + map[j]] = d.a[i * n + j];
		lanczos_eigs(&A, K, EIG_BOTH, CONVERGE_RESIDUAL, 1e-10, n, &r, 1, &res);
		eig_result_embed(&res, map, n, N, 1);
		LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', N, F, N, e);   /* ascending; F is spent */
		for (int i = 0; i < N * N; i++)
			F[i] = 0;
		for (int i = 0; i < n; i++)
			for (int j = 0; j < n; j++)
				F[map[i] * N + map[j]] = d.a[i * n + j];
		for (int i = 0; i < K; i++) {
			const double *v = res.top_vecs + (size_t)i * N;
			err = fmax(err, fmax(fabs(res.top[i] - e[N - 1 - i]), fabs(res.bottom[i] - e[i])));
			zt += res.top[i] == 0 && res.top_res[i] == 0;
			zb += res.bottom[i] == 0 && res.bottom_res[i] == 0;
			cblas_dgemv(CblasRowMajor, CblasNoTrans, N, N, 1.0, F, N, v, 1, 0.0, ay, 1);
			cblas_daxpy(N, -res.top[i], v, 1, ay, 1);
			verr = fmax(verr, fmax(cblas_dnrm2(N, ay, 1), fabs(cblas_dnrm2(N, v, 1) - 1)));
			for (int j = 0; j < i; j++)
				orth = fmax(orth, fabs(cblas_ddot(N, v, 1, res.top_vecs + (size_t)j * N, 1)));
		}
		ok(err < 1e-8 && zt == (sign > 0 ? 3 : 0) && zb == (sign > 0 ? 0 : 3),
		    "restricted to %d of %d coordinates, embedded: top-5 and bottom-5 = the full dsyevd's (max error %.2e), "
		    "%d zeros merged in the top, %d in the bottom", n, N, err, zt, zb);
		ok(verr < 1e-8 && orth < 1e-8, "embedded top vectors are orthonormal eigenvectors of the full matrix "
		    "(residual %.2e, overlap %.2e)", verr, orth);
		eig_result_free(&res);
	}
	free(F);
	free(d.a);
}

/*
 * Run to n steps on a spectrum that converges its top pairs within a few
 * steps (1e4, 1e3, then a cluster and a wide bulk): the classic way to
 * lose orthogonality.  With the basis kept orthogonal, T_n's eigenvalues
 * are all of A's, each once; a lost one shows as a ghost copy of a
 * converged value and a missing bulk value.
 */
static void
orthogonality_kept(void)
{
	enum { N = 120 };
	double lambda[N], sorted[N], err = 0;
	struct dense d = {N, malloc(N * N * sizeof(double))};
	struct linop A = {N, dense_apply, &d, 0};
	struct eig_result res;
	struct rng r;

	rng_init(&r, 7, RNG_SAMPLE);
	for (int i = 0; i < N; i++)
		lambda[i] = i == 0 ? 1e4 : i == 1 ? 1e3 : i < 6 ? 300.0 - i : -1.0 + 2.0 * i / N;
	make_matrix(&d, lambda, &r);
	memcpy(sorted, lambda, sizeof sorted);
	qsort(sorted, N, sizeof *sorted, cmp_desc);
	lanczos_eigs(&A, N / 2, EIG_BOTH, CONVERGE_RESIDUAL, 1e-300, N, &r, 0, &res);
	for (int i = 0; i < N / 2; i++) {
		err = fmax(err, fabs(res.top[i] - sorted[i]));
		err = fmax(err, fabs(res.bottom[i] - sorted[N - 1 - i]));
	}
	ok(res.iterations == N && err < 1e-9 * 1e4,
	    "lanczos to n = %d steps: every eigenvalue once, no ghosts (max error %.2e)", N, err);
	eig_result_free(&res);
	free(d.a);
}

static void
known_spectrum(void)
{
	enum { N = 80 };
	double lambda[N], sorted[N], err = 0, berr = 0, maxres = 0;
	struct dense d = {N, malloc(N * N * sizeof(double))};
	struct linop A = {N, dense_apply, &d, 0};
	struct eig_result res;
	struct rng r;

	rng_init(&r, 1, RNG_SAMPLE);
	for (int i = 0; i < N; i++)
		lambda[i] = i < 5 ? 50.0 - 7 * i : -3.0 + 2.5 * i / N + (i % 7 == 0 ? -10 : 0);
	make_matrix(&d, lambda, &r);
	memcpy(sorted, lambda, sizeof sorted);
	qsort(sorted, N, sizeof *sorted, cmp_desc);

	{
		int rc = lanczos_eigs(&A, 5, EIG_BOTH, CONVERGE_RESIDUAL, 1e-8, 80, &r, 1, &res);
		ok(rc == 0, "lanczos runs");
	}
	for (int i = 0; i < 5; i++) {
		err = fmax(err, fabs(res.top[i] - sorted[i]));
		berr = fmax(berr, fabs(res.bottom[i] - sorted[N - 1 - i]));
		maxres = fmax(maxres, fmax(res.top_res[i], res.bottom_res[i]));
	}
	ok(res.converged && err < 1e-8 * 50, "lanczos top-5 = the known spectrum, max error %.2e in %d steps",
	    err, res.iterations);
	ok(berr < 1e-8 * 50, "lanczos bottom-5 = the known spectrum, max error %.2e", berr);
	ok(maxres < 1e-8 * 50, "residuals within tol of the scale (max %.2e)", maxres);
	{
		/* The reported residuals are ||A y - theta y|| of the returned vectors. */
		double ay[N], worst = 0;
		for (int i = 0; i < 5; i++) {
			const double *y = res.top_vecs + (size_t)i * N;
			dense_apply(&d, ay, y);
			for (int j = 0; j < N; j++)
				ay[j] -= res.top[i] * y[j];
			worst = fmax(worst, fabs(cblas_dnrm2(N, ay, 1) - res.top_res[i]));
		}
		ok(worst < 1e-12, "reported residuals = ||Ay - theta y|| (max diff %.2e)", worst);
	}
	{
		double y[N], ay[N], e = 0;
		dense_apply(&d, ay, res.top_vecs);
		memcpy(y, res.top_vecs, sizeof y);
		for (int i = 0; i < N; i++)
			e = fmax(e, fabs(ay[i] - res.top[0] * y[i]));
		ok(e < 1e-6 && fabs(cblas_dnrm2(N, y, 1) - 1) < 1e-12, "top eigenvector is a unit eigenvector (%.2e)", e);
	}
	eig_result_free(&res);

	power_eigs(&A, 3, 1e-10, 2000, &r, 0, &res);
	ok(fabs(res.top[0] - 50) < 1e-6 && fabs(res.top[1] - 43) < 1e-5 && fabs(res.top[2] - 36) < 1e-5,
	    "power iteration with deflation: %.8f %.8f %.8f", res.top[0], res.top[1], res.top[2]);
	eig_result_free(&res);

	{
		double mean, se, tr = 0;
		for (int i = 0; i < N; i++)
			tr += lambda[i];
		hutchinson(&A, 4000, &r, &mean, &se);
		ok(fabs(mean - tr) < 4 * se && se > 0, "Hutchinson trace %.3f +- %.3f, exact %.3f", mean, se, tr);
	}
	{
		/* Gauss quadrature with m nodes integrates polynomials of degree <= 2m - 1 exactly. */
		double v[N], av[N], a2v[N], nodes[4], weights[4], mom[4] = {0}, want[4];
		int m;
		for (int i = 0; i < N; i++)
			v[i] = rng_sign(&r) / sqrt((double)N);
		m = slq_probe(&A, v, 4, nodes, weights);
		for (int i = 0; i < m; i++)
			for (int j = 0; j < 4; j++)
				mom[j] += weights[i] * pow(nodes[i], j);
		dense_apply(&d, av, v);
		dense_apply(&d, a2v, av);
		want[0] = 1;
		want[1] = cblas_ddot(N, v, 1, av, 1);
		want[2] = cblas_ddot(N, av, 1, av, 1);
		want[3] = cblas_ddot(N, av, 1, a2v, 1);
		ok(m == 4 && fabs(mom[0] - 1) < 1e-12 && fabs(mom[1] - want[1]) < 1e-10 &&
		    fabs(mom[2] - want[2]) < 1e-8 * want[2] && fabs(mom[3] - want[3]) < 1e-8 * fabs(want[3]),
		    "SLQ probe: quadrature moments 0..3 = v^T A^k v exactly (%.6f %.6f %.6f)", mom[1], mom[2], mom[3]);
	}
	{
		double nodes[2] = {-1, 3}, weights[2] = {0.25, 0.75}, grid[2001], dens[2001], integral = 0, mean = 0;
		slq_density(nodes, weights, 2, 1, 0.01, 2001, grid, dens);
		for (int g = 1; g < 2001; g++) {
			integral += dens[g] * (grid[g] - grid[g - 1]);
			mean += grid[g] * dens[g] * (grid[g] - grid[g - 1]);
		}
		ok(fabs(integral - 1) < 1e-3 && fabs(mean - 2) < 0.01, "density integrates to %.4f with mean %.4f (want 1, 2)",
		    integral, mean);
	}
	free(d.a);
}

/* The Hessian of a small model, through its HVPs, against the dense Hessian. */
struct model_op {
	struct model *m;
	struct model_hvp *w;
	float *theta, *vf, *hf, *tmp;
	const int32_t *x, *y;
	int B;
};

static void
model_apply(void *ctx, double *out, const double *in)
{
	struct model_op *o = ctx;

	for (size_t k = 0; k < o->m->nparams; k++) {
		o->vf[k] = (float)in[k];
		o->hf[k] = 0;
	}
	model_hvp_set(o->w, o->hf, o->theta, o->vf, o->x, o->y, o->B, 1.0 / o->B, o->tmp);
	for (size_t k = 0; k < o->m->nparams; k++)
		out[k] = o->hf[k];
}

/* The model operator, keeping every input and product (up to cap of each). */
struct logged_op {
	struct model_op *o;
	size_t n, cap, count;
	double *in, *out;
};

static void
logged_apply(void *ctx, double *out, const double *in)
{
	struct logged_op *l = ctx;

	model_apply(l->o, out, in);
	if (l->count < l->cap) {
		memcpy(l->in + l->count * l->n, in, l->n * sizeof *in);
		memcpy(l->out + l->count * l->n, out, l->n * sizeof *out);
		l->count++;
	}
}

/*
 * Reported residuals on a float32 operator: they must be those of the
 * products actually taken, ||sum_j (q_j . y) A q_j - theta y||, rebuilt
 * here from the logged inputs q_j and products A q_j.  Lanczos's own
 * |beta_m s_m| is far smaller once converged (the operator's rounding is
 * not in it), so a residual taken from T alone fails this.
 */
static void
model_residuals(struct model_op *o, size_t P, struct rng *r)
{
	struct logged_op l = {o, P, P, 0, calloc(P * P, sizeof(double)), calloc(P * P, sizeof(double))};
	struct linop A = {P, logged_apply, &l, 0};
	struct eig_result res;
	double *ay = calloc(P, sizeof *ay), worst = 0, least = HUGE_VAL;

	lanczos_eigs(&A, 5, EIG_TOP, CONVERGE_RESIDUAL, 1e-6, (int)P, r, 1, &res);
	for (int i = 0; i < res.ntop; i++) {
		const double *y = res.top_vecs + (size_t)i * P;
		for (size_t k = 0; k < P; k++)
			ay[k] = -res.top[i] * y[k];
		for (size_t j = 0; j < l.count; j++)
			cblas_daxpy((int)P, cblas_ddot((int)P, l.in + j * P, 1, y, 1), l.out + j * P, 1, ay, 1);
		worst = fmax(worst, fabs(cblas_dnrm2((int)P, ay, 1) - res.top_res[i]));
		least = fmin(least, res.top_res[i]);
	}
	ok(res.converged && (long)l.count == A.count && worst < 1e-12 * fabs(res.top[0]) && least > 1e-10 * fabs(res.top[0]),
	    "model Hessian: residuals are the products' own, %.2e..., max diff %.2e over %ld products",
	    least, worst, A.count);
	eig_result_free(&res);
	free(l.in);
	free(l.out);
	free(ay);
}

static void
model_hessian(void)
{
	enum { B = 20 };
	struct mlp_config c = {5, 2, 6, MLP_ONEHOT, MLP_CE};
	struct mlp m;
	struct model_op o;
	struct rng r;
	int32_t x[2 * B], y[B];
	size_t P;
	double *H, *e, *col, *unit, err = 0, tr = 0, trH2 = 0, mean, se;
	struct linop A;
	struct eig_result res;

	mlp_layout(&m, &c);
	P = m.nparams;
	rng_init(&r, 5, RNG_INIT);
	o.m = mlp_model_new(&c);
	o.w = model_hvp_new(o.m, 7);
	o.tmp = calloc(2 * P, sizeof(float));
	o.theta = calloc(P, sizeof(float));
	o.vf = calloc(P, sizeof(float));
	o.hf = calloc(P, sizeof(float));
	mlp_init_params(&m, o.theta, &r);
	for (int b = 0; b < B; b++) {
		x[2 * b] = (int32_t)rng_below(&r, 5);
		x[2 * b + 1] = (int32_t)rng_below(&r, 5);
		y[b] = (x[2 * b] + x[2 * b + 1]) % 5;
	}
	o.x = x;
	o.y = y;
	o.B = B;
	A = (struct linop){P, model_apply, &o, 0};

	H = calloc(P * P, sizeof *H);
	e = calloc(P, sizeof *e);
	col = calloc(P, sizeof *col);
	unit = calloc(P, sizeof *unit);
	for (size_t j = 0; j < P; j++) {
		unit[j] = 1;
		model_apply(&o, col, unit);
		unit[j] = 0;
		for (size_t i = 0; i < P; i++)
			H[i * P + j] = col[i];
	}
	for (size_t i = 0; i < P; i++)
		for (size_t j = 0; j < i; j++)
			err = fmax(err, fabs(H[i * P + j] - H[j * P + i]));
	ok(err < 1e-6, "dense Hessian from %zu HVPs is symmetric (max asymmetry %.2e)", P, err);
	for (size_t i = 0; i < P; i++) {
		tr += H[i * P + i];
		for (size_t j = 0; j < P; j++)
			trH2 += H[i * P + j] * H[j * P + i];
	}
	LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', (int)P, H, (int)P, e);  /* ascending */

	lanczos_eigs(&A, 5, EIG_BOTH, CONVERGE_VALUE, 1e-6, (int)P, &r, 0, &res);
	err = 0;
	for (int i = 0; i < 5; i++) {
		err = fmax(err, fabs(res.top[i] - e[P - 1 - i]));
		err = fmax(err, fabs(res.bottom[i] - e[i]));
	}
	ok(res.converged && err < 1e-5 * fabs(e[P - 1]), "model Hessian: Lanczos top-5 and bottom-5 = dsyevd's, max diff %.2e "
	    "(top %.6f, bottom %.6f)", err, e[P - 1], e[0]);
	eig_result_free(&res);
	model_residuals(&o, P, &r);

	hutchinson(&A, 3000, &r, &mean, &se);
	ok(fabs(mean - tr) < 4 * se, "model Hessian: Hutchinson trace %.5f +- %.5f, exact %.5f", mean, se, tr);
	{
		/* SLQ moments over many probes against tr(H)/P and tr(H^2)/P. */
		enum { PROBES = 200, M = 30 };
		double *nodes = malloc(M * sizeof *nodes), *w = malloc(M * sizeof *w), *v = malloc(P * sizeof *v);
		double m1 = 0, m2 = 0, m1sq = 0, m2sq = 0;
		for (int p = 0; p < PROBES; p++) {
			double a = 0, b = 0;
			int n;
			for (size_t i = 0; i < P; i++)
				v[i] = rng_sign(&r);
			n = slq_probe(&A, v, M, nodes, w);
			for (int i = 0; i < n; i++) {
				a += w[i] * nodes[i];
				b += w[i] * nodes[i] * nodes[i];
			}
			m1 += a; m2 += b; m1sq += a * a; m2sq += b * b;
		}
		m1 /= PROBES;
		m2 /= PROBES;
		ok(fabs(m1 - tr / P) < 4 * sqrt((m1sq / PROBES - m1 * m1) / PROBES) &&
		    fabs(m2 - trH2 / P) < 4 * sqrt((m2sq / PROBES - m2 * m2) / PROBES),
		    "model Hessian: SLQ density moments %.6f, %.6f = tr(H)/P %.6f, tr(H^2)/P %.6f within 4 s.e.",
		    m1, m2, tr / P, trH2 / P);
		free(nodes); free(w); free(v);
	}
	free(H); free(e); free(col); free(unit);
	free(o.theta); free(o.vf); free(o.hf);
	free(o.tmp);
	model_hvp_free(o.w);
	model_free(o.m);
}

static void
statistics(void)
{
	const double ev[4] = {4, 2, 1, 1e-12};
	struct spectrum_stats s;
	double h = -(4.0 / 7 * log(4.0 / 7) + 2.0 / 7 * log(2.0 / 7) + 1.0 / 7 * log(1.0 / 7) +
	    1e-12 / 7 * log(1e-12 / 7));

	spectrum_stats(ev, 4, 1e-6, &s);
	ok(fabs(s.trace - (7 + 1e-12)) < 1e-12 && fabs(s.frobenius - sqrt(21)) < 1e-12 && s.spectral == 4 &&
	    s.smallest == 1e-12, "spectrum statistics: trace, Frobenius, spectral, smallest");
	ok(s.rank == 3 && fabs(s.rank_tol - 4e-6) < 1e-18 && fabs(s.condition - 4) < 1e-12 &&
	    fabs(s.logdet - log(8)) < 1e-12, "numerical rank 3 at 1e-6, condition 4, log-determinant log 8");
	ok(fabs(s.effective_rank - exp(h)) < 1e-9 && fabs(s.stable_rank - 21.0 / 16) < 1e-12,
	    "effective rank %.6f (exp entropy %.6f), stable rank %.6f (21/16)", s.effective_rank, exp(h), s.stable_rank);
	{
		/* dsyevr's top k agree with dsyevd's full spectrum, and its vectors are eigenvectors */
		enum { N = 30 };
		double a[N * N], b[N * N], c[N * N], full[N], top[3], vec[N * 3], err = 0;
		struct rng r;
		rng_init(&r, 9, RNG_SAMPLE);
		for (int i = 0; i < N; i++)
			for (int j = 0; j <= i; j++)
				a[i * N + j] = a[j * N + i] = rng_normal(&r);
		memcpy(b, a, sizeof a);
		memcpy(c, a, sizeof a);
		sym_eigvals(b, N, 0, full, NULL);
		sym_eigvals(c, N, 3, top, vec);
		for (int i = 0; i < 3; i++) {
			err = fmax(err, fabs(top[i] - full[i]));
			for (int row = 0; row < N; row++) {
				double av = 0;
				for (int col = 0; col < N; col++)
					av += a[row * N + col] * vec[col * 3 + i];
				err = fmax(err, fabs(av - top[i] * vec[row * 3 + i]));
			}
		}
		ok(err < 1e-10 && full[0] >= full[1], "dsyevr top-3 (with vectors) = dsyevd's largest, max diff %.2e", err);
	}
	{
		/*
		 * The whole spectrum reads the lower triangle alone (the upper
		 * holds garbage here), and a NaN there is refused, not solved.
		 */
		enum { N = 150 };
		double *a = malloc(N * N * sizeof *a), lambda[N], sorted[N], ev[N], err = 0;
		struct dense d = {N, a};
		struct rng r;
		rng_init(&r, 13, RNG_SAMPLE);
		for (int i = 0; i < N; i++)
			lambda[i] = i < 3 ? 1e3 / (i + 1) : 1e-9 * i;
		make_matrix(&d, lambda, &r);
		memcpy(sorted, lambda, sizeof sorted);
		qsort(sorted, N, sizeof *sorted, cmp_desc);
		for (int i = 0; i < N; i++)
			for (int j = i + 1; j < N; j++)
				a[i * N + j] = 1e30;
		ok(sym_eigvals(a, N, 0, ev, NULL) == N, "whole spectrum of a lower triangle runs");
		for (int i = 0; i < N; i++)
			err = fmax(err, fabs(ev[i] - sorted[i]));
		ok(err < 1e-11 * 1e3, "whole spectrum = the known one, upper triangle ignored (max error %.2e)", err);
		make_matrix(&d, lambda, &r);
		a[7 * N + 3] = NAN;
		ok(sym_eigvals(a, N, 0, ev, NULL) == -1, "a NaN in the matrix fails the whole spectrum");
		free(a);
	}
}

/*
 * The statistics with a tolerance on an explicit matrix of known rank:
 * A = Q diag(d) Q^T, n = 60, with seven eigenvalues from 10 down to 1e-4,
 * three at 0.3 x tol (below gop-spectrum's tolerance n 2^-23 x largest,
 * but above 2^-23 x largest) and fifty exact zeros.  dsyevd's spectrum
 * through spectrum_stats must give rank 7, condition 1e5, the
 * log-determinant of the seven and the effective rank of all ten, each in
 * closed form from d.
 */
static void
known_rank(void)
{
	enum { N = 60, R = 7 };
	const double big[R] = {10, 3, 1, 0.3, 1e-2, 1e-3, 1e-4};
	double lambda[N] = {0}, ev[N], a[N * N], tol = N * 0x1p-23 * 10, logdet = 0, pos = 0, ent = 0;
	struct dense d = {N, a};
	struct spectrum_stats s;
	struct rng r;

	for (int i = 0; i < R; i++)
		lambda[i] = big[i];
	for (int i = R; i < R + 3; i++)
		lambda[i] = 0.3 * tol;
	for (int i = 0; i < R; i++)
		logdet += log(big[i]);
	for (int i = 0; i < R + 3; i++)
		pos += lambda[i];
	for (int i = 0; i < R + 3; i++)
		ent -= lambda[i] / pos * log(lambda[i] / pos);
	rng_init(&r, 21, RNG_SAMPLE);
	make_matrix(&d, lambda, &r);
	ok(sym_eigvals(a, N, 0, ev, NULL) == N, "known rank: the whole spectrum of a 60 x 60 matrix");
	spectrum_stats(ev, N, N * 0x1p-23, &s);
	ok(s.rank == R && fabs(s.rank_tol - tol) <= 1e-12 * tol,
	    "known rank: rank %d (7) at tol %.4e (%.4e), three eigenvalues at 0.3 tol left out", s.rank, s.rank_tol, tol);
	ok(fabs(s.condition - 1e5) <= 1e-8 * 1e5, "known rank: condition %.10e (1e5)", s.condition);
	ok(fabs(s.logdet - logdet) <= 1e-9, "known rank: log-determinant %.12f (%.12f)", s.logdet, logdet);
	ok(fabs(s.effective_rank - exp(ent)) <= 1e-9 * exp(ent), "known rank: effective rank %.12f (%.12f)",
	    s.effective_rank, exp(ent));
	spectrum_stats(ev, N, 0x1p-23, &s);
	ok(s.rank == R + 3, "known rank: at tol / n the three small ones count too (rank %d, 10)", s.rank);
}

/*
 * Hutchinson on a 2 x 2 matrix, where each probe's z.Az = tr A + 2 a12 z1 z2
 * is known once the probe's signs are: the signs are drawn again from a
 * copy of the generator, and the mean and standard error of the five
 * probes' values computed here must be the routine's exactly; on a
 * diagonal matrix every probe gives the trace (standard error 0).
 */
static void
hutchinson_exact(void)
{
	double a[4] = {3, 0.5, 0.5, 2}, diag[4] = {3, 0, 0, 2}, t[5], m = 0, v = 0, mean, se;
	struct dense d = {2, a}, dd = {2, diag};
	struct linop A = {2, dense_apply, &d, 0}, D = {2, dense_apply, &dd, 0};
	struct rng r, copy;

	rng_init(&r, 31, RNG_SAMPLE);
	copy = r;
	for (int p = 0; p < 5; p++) {
		double z1 = rng_sign(&copy), z2 = rng_sign(&copy);
		t[p] = 5 + 2 * 0.5 * z1 * z2;
		m += t[p] / 5;
	}
	for (int p = 0; p < 5; p++)
		v += (t[p] - m) * (t[p] - m) / 4;
	hutchinson(&A, 5, &r, &mean, &se);
	ok(fabs(mean - m) < 1e-14 && fabs(se - sqrt(v / 5)) < 1e-14,
	    "Hutchinson, 5 probes of a 2 x 2: mean %.15f (%.15f), stderr %.15f (%.15f)", mean, m, se, sqrt(v / 5));
	hutchinson(&D, 3, &r, &mean, &se);
	ok(mean == 5 && se == 0, "Hutchinson on a diagonal matrix: every probe is the trace (%g +- %g)", mean, se);
}

/*
 * hutchinson_blocks on a 3 x 3 with blocks {0} and {1, 2}: per probe the
 * blocks' terms are 4 z0^2 = 4 and (3 + 2 + 2 z1 z2 * 0.5) written out;
 * the whole trace's terms carry the off-diagonal 0.25 * 2 z0 z1 as well,
 * and are hutchinson's own on the same generator state.
 */
static void
hutchinson_blocks_exact(void)
{
	double a[9] = {4, 0.25, 0, 0.25, 3, 0.5, 0, 0.5, 2}, b0[1] = {4}, b1[4] = {3, 0.5, 0.5, 2};
	double mean, se, ref_mean, ref_se, bm[2], bs[2], sm, ss, s1 = 0, s12 = 0;
	struct dense d = {3, a}, d0 = {1, b0}, d1 = {2, b1};
	struct linop A = {3, dense_apply, &d, 0}, B0 = {1, dense_apply, &d0, 0}, B1 = {2, dense_apply, &d1, 0};
	struct linop *blocks[2] = {&B0, &B1};
	size_t off[2] = {0, 1};
	struct rng r, copy, copy2;
	int np = 6;

	rng_init(&r, 77, RNG_SAMPLE);
	copy = copy2 = r;
	for (int p = 0; p < np; p++) {
		double z0 = rng_sign(&copy), z1 = rng_sign(&copy), z2 = rng_sign(&copy), t = 5 + z1 * z2;
		(void)z0;
		s1 += t;
		s12 += t * t;
	}
	hutchinson(&A, np, &copy2, &ref_mean, &ref_se);
	A.count = 0;
	hutchinson_blocks(&A, blocks, NULL, off, 2, np, &r, &mean, &se, bm, bs, &sm, &ss);
	ok(mean == ref_mean && se == ref_se, "hutchinson_blocks: the whole trace is hutchinson's on the same probes (%.15g +- %.3g)",
	    mean, se);
	ok(bm[0] == 4 && bs[0] == 0, "hutchinson_blocks: a 1 x 1 block's every probe is its trace (%g +- %g)", bm[0], bs[0]);
	ok(fabs(bm[1] - s1 / np) < 1e-14 && fabs(bs[1] - sqrt((s12 - s1 * s1 / np) / (np - 1) / np)) < 1e-14,
	    "hutchinson_blocks: block {1, 2} %.15f (written out %.15f)", bm[1], s1 / np);
	ok(fabs(sm - (bm[0] + bm[1])) < 1e-14 && fabs(ss - bs[1]) < 1e-14,
	    "hutchinson_blocks: the blocks' sum %.15f +- %.3g (4 exactly plus block {1, 2})", sm, ss);
	ok(A.count == np && B0.count == np && B1.count == np, "hutchinson_blocks: one product of each per probe");
}

/* subspace_fraction against the squared coordinates of g in an orthonormal basis. */
static void
subspace_fraction_exact(void)
{
	double s = sqrt(0.5), vecs[6] = {s, s, 0, s, -s, 0}, g[3] = {1, 2, 2}, frac[2];

	subspace_fraction(vecs, 2, 3, g, frac);
	ok(fabs(frac[0] - 4.5 / 9) < 1e-15 && fabs(frac[1] - 5.0 / 9) < 1e-15,
	    "subspace_fraction: %.15f %.15f (4.5/9, 5/9)", frac[0], frac[1]);
	g[0] = g[1] = g[2] = 0;
	subspace_fraction(vecs, 2, 3, g, frac);
	ok(frac[0] == 0 && frac[1] == 0, "subspace_fraction of a zero gradient is 0");
}

/*
 * gop-spectrum's cheap routes against the whole spectrum (dsyevd) on the
 * same matrix: trace and Frobenius norm from the entries, the top 10 by
 * Lanczos (to 1e-10 relative), the rank as the inertia of A - tol I, the
 * log-determinant by Cholesky and the smallest eigenvalue by Lanczos on
 * the inverse (where every eigenvalue counts), and the deflation of the
 * ones vector against H A H's spectrum.
 */
struct routes_case {
	const char *name;
	int n;
	double *a;
};

/* A copy of a's lower triangle's spectrum, descending, and its statistics at n 2^-23. */
static void
full_route(const struct routes_case *c, double *ev, struct spectrum_stats *s)
{
	double *w = malloc((size_t)c->n * c->n * sizeof *w);

	memcpy(w, c->a, (size_t)c->n * c->n * sizeof *w);
	ok(sym_eigvals(w, c->n, 0, ev, NULL) == c->n, "%s: dsyevd", c->name);
	spectrum_stats(ev, c->n, c->n * 0x1p-23, s);
	free(w);
}

static void
routes_compare(const struct routes_case *c, int want_rank)
{
	int n = c->n, k = 10, iters, rank;
	double *ev = malloc((size_t)n * sizeof *ev), *w = malloc((size_t)n * n * sizeof *w);
	double *dg = malloc((size_t)n * sizeof *dg), top[10], tr, fro, worst = 0, logdet, lmin;
	int kept = 1;
	struct spectrum_stats s;

	full_route(c, ev, &s);
	sym_trace_frob(c->a, n, &tr, &fro);
	ok(fabs(tr - s.trace) <= 1e-12 * s.trace && fabs(fro - s.frobenius) <= 1e-12 * s.frobenius,
	    "%s: trace %.15g (%.15g), Frobenius %.15g (%.15g) from the entries", c->name, tr, s.trace, fro, s.frobenius);
	int conv = sym_top_lanczos(c->a, n, k, 1e-12, 600, top, &iters);
	ok(conv == 0, "%s: Lanczos converged, %d products", c->name, iters);
	for (int i = 0; i < k; i++)
		worst = fmax(worst, fabs(top[i] - ev[i]) / ev[i]);
	ok(worst <= 1e-10, "%s: top 10 by Lanczos within %.1e of dsyevd's (<= 1e-10)", c->name, worst);
	memcpy(w, c->a, (size_t)n * n * sizeof *w);
	rank = sym_count_above(w, n, s.rank_tol, dg);
	for (int i = 0; i < n; i++)
		for (int j = 0; j <= i; j++)
			kept &= w[i * n + j] == c->a[i * n + j];
	ok(rank == s.rank && rank == want_rank && kept, "%s: rank by inertia %d, from the spectrum %d (%d); lower "
	    "triangle and diagonal kept: %d", c->name, rank, s.rank, want_rank, kept);
	if (want_rank == n) {
		int chol = sym_cholesky(w, n, dg, &logdet), bot;
		ok(chol == 0 && fabs(logdet - s.logdet) <= 1e-10 * fabs(s.logdet),
		    "%s: log-determinant by Cholesky %.12f (%.12f)", c->name, logdet, s.logdet);
		lmin = NAN;
		bot = sym_bottom_chol(w, n, 1e-12, 600, &lmin, &iters);
		ok(bot == 0 && fabs(lmin - s.smallest) <= 1e-10 * s.smallest,
		    "%s: smallest by Lanczos on the inverse %.15g (%.15g), %d products", c->name, lmin, s.smallest, iters);
	} else {
		int chol = sym_cholesky(w, n, dg, &logdet), bot = -1;
		lmin = NAN;
		if (chol == 0)
			bot = sym_bottom_chol(w, n, 1e-12, 600, &lmin, &iters);
		ok(chol < 0 || bot < 0 || lmin <= s.rank_tol,
		    "%s: rank-deficient: Cholesky %s, smallest by the inverse %g (tol %g)", c->name,
		    chol < 0 ? "fails" : "succeeds", lmin, s.rank_tol);
	}
	free(ev);
	free(w);
	free(dg);
}

/* H A H's spectrum is that of sym_deflate_ones's (n-1) block plus the ones vector's zero. */
static void
deflate_compare(const struct routes_case *c)
{
	int n = c->n, m = n - 1;
	double *h = malloc((size_t)n * n * sizeof *h), *cm = malloc((size_t)m * m * sizeof *cm);
	double *ev = malloc((size_t)n * sizeof *ev), *evd = malloc((size_t)m * sizeof *evd), *rm = calloc((size_t)n, sizeof *rm);
	double all = 0, worst = 0;

	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			rm[i] += c->a[i * n + j] / n;
	for (int i = 0; i < n; i++)
		all += rm[i] / n;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			h[i * n + j] = c->a[i * n + j] - rm[i] - rm[j] + all;
	sym_deflate_ones(c->a, n, cm, ev);
	ok(sym_eigvals(h, n, 0, ev, NULL) == n && sym_eigvals(cm, m, 0, evd, NULL) == m, "%s: H A H and its deflation",
	    c->name);
	/* drop H A H's eigenvalue nearest zero (the ones vector's), compare the rest in order */
	int z = 0;
	for (int i = 1; i < n; i++)
		if (fabs(ev[i]) < fabs(ev[z]))
			z = i;
	for (int i = 0, j = 0; i < n; i++)
		if (i != z)
			worst = fmax(worst, fabs(ev[i] - evd[j++]) / ev[0]);
	ok(worst <= 1e-12, "%s: deflated spectrum within %.1e of H A H's, relative to the largest (<= 1e-12)", c->name,
	    worst);
	free(h);
	free(cm);
	free(ev);
	free(evd);
	free(rm);
}

static void
cheap_routes(void)
{
	enum { N = 200, NR = 150, BASE = 50, P = 80, NK = 60 };
	double *a = malloc((size_t)N * N * sizeof *a), *g = malloc((size_t)BASE * P * sizeof *g);
	double lambda[N], kl[NK] = {0}, tol = NK * 0x1p-23 * 10;
	const double big[7] = {10, 3, 1, 0.3, 1e-2, 1e-3, 1e-4};
	struct dense d = {N, a};
	struct rng r;
	struct routes_case c;

	rng_init(&r, 41, RNG_SAMPLE);
	/* well conditioned: eigenvalues 1..10, condition 10 */
	for (int i = 0; i < N; i++)
		lambda[i] = 10 - 9.0 * i / (N - 1);
	make_matrix(&d, lambda, &r);
	c = (struct routes_case){"well-conditioned 200 x 200", N, a};
	routes_compare(&c, N);
	deflate_compare(&c);
	/* a Gram matrix whose rows repeat: 150 examples, three copies of 50 gradients (rank 50) */
	for (int i = 0; i < BASE * P; i++)
		g[i] = rng_normal(&r);
	for (int i = 0; i < NR; i++)
		for (int j = 0; j < NR; j++)
			a[i * NR + j] = cblas_ddot(P, g + (i % BASE) * P, 1, g + (j % BASE) * P, 1) / NR;
	c = (struct routes_case){"Gram of repeated rows, 150 x 150 of rank 50", NR, a};
	routes_compare(&c, BASE);
	deflate_compare(&c);
	/* known_rank's spectrum: three eigenvalues at 0.3 tol, between the counted and the zeros */
	for (int i = 0; i < 7; i++)
		kl[i] = big[i];
	for (int i = 7; i < 10; i++)
		kl[i] = 0.3 * tol;
	d.n = NK;
	make_matrix(&d, kl, &r);
	c = (struct routes_case){"known rank 7 of 60, three at 0.3 tol", NK, a};
	routes_compare(&c, 7);
	free(a);
	free(g);
}

/* The k largest eigenvalues of the dense d by LAPACK's dsyevd, descending. */
static void
dense_top(const struct dense *d, int k, double *top)
{
	int n = d->n;
	double *a = malloc((size_t)n * n * sizeof *a), *w = malloc((size_t)n * sizeof *w);

	memcpy(a, d->a, (size_t)n * n * sizeof *a);
	LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'L', n, a, n, w);
	for (int i = 0; i < k; i++)
		top[i] = w[n - 1 - i];
	free(a);
	free(w);
}

/* The largest relative error of res's top k against want. */
static double
top_err(const struct eig_result *res, const double *want, int k)
{
	double e = 0;

	for (int i = 0; i < k; i++)
		e = fmax(e, fabs(res->top[i] - want[i]) / fabs(want[i]));
	return e;
}

/*
 * lanczos_eigs_start, as hess-eig --start previous uses it: the top-5 of
 * a matrix with a clustered top (slow from a random start), then of a
 * nearby matrix (the next checkpoint) from the first's Ritz vectors.  The
 * warm solve must give dsyevd's eigenvalues to the tolerance in fewer
 * products; guides that miss an eigenvector must still find it; zero
 * guides must be the random start exactly; and the generator must move
 * the same whatever the start.
 */
static void
warm_start(void)
{
	enum { N = 300, K = 5 };
	double lambda[N], want[K], tol = 1e-8;
	struct dense d = {N, malloc((size_t)N * N * sizeof(double))}, d2 = {N, malloc((size_t)N * N * sizeof(double))};
	struct linop A = {N, dense_apply, &d, 0}, B = {N, dense_apply, &d2, 0};
	struct eig_result first, cold, warm, res;
	struct eig_start st;
	struct rng r, rc, rw;
	double *zero = calloc((size_t)K * N, sizeof *zero);

	rng_init(&r, 7, RNG_SAMPLE);
	for (int i = 0; i < N; i++)
		lambda[i] = i < K ? 10.0 - 0.1 * i : 9.0 * (N - i) / N;
	make_matrix(&d, lambda, &r);
	/* the next checkpoint: d plus a small symmetric perturbation */
	for (int i = 0; i < N; i++)
		for (int j = 0; j <= i; j++) {
			double e = 2e-3 * rng_normal(&r);
			d2.a[i * N + j] = d.a[i * N + j] + e;
			d2.a[j * N + i] = d.a[j * N + i] + (i == j ? 0 : e);
		}
	dense_top(&d2, K, want);
	lanczos_eigs(&A, K, EIG_TOP, CONVERGE_VALUE, tol, N, &r, 1, &first);

	rng_init(&rc, 11, RNG_SAMPLE);
	rw = rc;
	lanczos_eigs(&B, K, EIG_TOP, CONVERGE_VALUE, tol, N, &rc, 0, &cold);
	st = (struct eig_start){first.top_vecs, K, 0.1};
	lanczos_eigs_start(&B, K, EIG_TOP, CONVERGE_VALUE, tol, N, &rw, &st, 0, &warm);
	ok(cold.converged && top_err(&cold, want, K) < 10 * tol, "random start: dsyevd's top-5 (max rel error %.1e) in %d products",
	    top_err(&cold, want, K), cold.iterations);
	ok(warm.converged && top_err(&warm, want, K) < 10 * tol && warm.guides == K,
	    "warm start from the previous Ritz vectors: dsyevd's top-5 (max rel error %.1e), %d guides",
	    top_err(&warm, want, K), warm.guides);
	ok(warm.iterations < cold.iterations, "warm start takes fewer products: %d against %d",
	    warm.iterations, cold.iterations);
	ok(rng_normal(&rc) == rng_normal(&rw), "the generator moves the same from either start");
	eig_result_free(&warm);

	/*
	 * Guides that miss an eigenvector exactly: on diag(lambda) the unit
	 * vectors of the first 4 span an invariant subspace, so from them
	 * alone Lanczos would stop there; the Gaussian share finds the fifth.
	 */
	memset(d.a, 0, (size_t)N * N * sizeof *d.a);
	memset(zero, 0, (size_t)K * N * sizeof *zero);
	for (int i = 0; i < N; i++)
		d.a[i * N + i] = lambda[i];
	for (int i = 0; i < K - 1; i++)
		zero[i * N + i] = 1;
	st = (struct eig_start){zero, K - 1, 0.1};
	rng_init(&rw, 11, RNG_SAMPLE);
	lanczos_eigs_start(&A, K, EIG_TOP, CONVERGE_VALUE, tol, N, &rw, &st, 0, &warm);
	ok(warm.converged && top_err(&warm, lambda, K) < 10 * tol && warm.guides == K - 1,
	    "guides missing an eigenvector still find it (max rel error %.1e in %d products)",
	    top_err(&warm, lambda, K), warm.iterations);
	eig_result_free(&warm);

	/* zero guides are skipped: the random start, bit for bit */
	memset(zero, 0, (size_t)K * N * sizeof *zero);
	st = (struct eig_start){zero, K, 0.1};
	rng_init(&rw, 11, RNG_SAMPLE);
	lanczos_eigs_start(&B, K, EIG_TOP, CONVERGE_VALUE, tol, N, &rw, &st, 0, &res);
	ok(res.guides == 0 && res.iterations == cold.iterations && memcmp(res.top, cold.top, K * sizeof *res.top) == 0,
	    "zero guides: the random start exactly (%d guides, %d products)", res.guides, res.iterations);
	eig_result_free(&res);
	eig_result_free(&cold);
	eig_result_free(&first);
	free(zero);
	free(d.a);
	free(d2.a);
}

/*
 * lanczos_run's options for explicit matrices (gop-spectrum's routes):
 * the settling gate must give dsyevd's top-k to the tolerance, the same
 * as the ungated run to well within it, never stopping sooner, and its
 * smallest Ritz value must bound the smallest eigenvalue from above; an
 * exact start (noise 0, one guide) must be the guide itself: an
 * eigenvector ends the run in one product with its eigenvalue exactly.
 */
static void
settle_and_exact_start(void)
{
	enum { N = 200, K = 8 };
	double lambda[N], want[K], tol = 1e-12, *e1 = calloc(N, sizeof *e1);
	struct dense d = {N, malloc((size_t)N * N * sizeof(double))};
	struct linop A = {N, dense_apply, &d, 0};
	struct lanczos_opts gate = {NULL, 0, 1}, plain = {NULL, 0, 0};
	struct eig_start st = {e1, 1, 0.0};
	struct eig_result g, p, one;
	struct rng r, rg, rp;

	rng_init(&r, 5, RNG_SAMPLE);
	/* semi-definite, a cluster at the top, a long tail: gop-spectrum's shape */
	for (int i = 0; i < N; i++)
		lambda[i] = i < 10 ? 1 - 0.01 * i : 0.5 * pow(1e-4, (double)(i - 10) / (N - 11));
	make_matrix(&d, lambda, &r);
	dense_top(&d, K, want);
	rng_init(&rg, 0, RNG_SAMPLE);
	rp = rg;
	lanczos_run(&A, K, EIG_TOP, CONVERGE_VALUE, tol, N, &rg, &gate, &g);
	lanczos_run(&A, K, EIG_TOP, CONVERGE_VALUE, tol, N, &rp, &plain, &p);
	ok(g.converged && top_err(&g, want, K) < 1e-10, "settling gate: dsyevd's top-%d (max rel error %.1e) in %d "
	    "products", K, top_err(&g, want, K), g.iterations);
	ok(p.converged && g.iterations >= p.iterations && top_err(&g, p.top, K) < 1e-10,
	    "settling gate: the ungated run's values (max rel difference %.1e), %d products against %d",
	    top_err(&g, p.top, K), g.iterations, p.iterations);
	ok(g.lowest >= lambda[N - 1] * (1 - 1e-12) && g.lowest < lambda[K],
	    "smallest Ritz value %.3g at least the smallest eigenvalue %.3g", g.lowest, lambda[N - 1]);
	eig_result_free(&g);
	eig_result_free(&p);

	/* on diag(lambda), e_1 is an eigenvector: the exact start stops at once */
	memset(d.a, 0, (size_t)N * N * sizeof *d.a);
	for (int i = 0; i < N; i++)
		d.a[i * N + i] = lambda[i];
	e1[0] = 2;   /* any norm */
	gate.start = &st;
	lanczos_run(&A, 1, EIG_TOP, CONVERGE_VALUE, tol, N, &r, &gate, &one);
	ok(one.converged && one.iterations == 1 && one.top[0] == lambda[0] && one.guides == 1,
	    "exact start on an eigenvector: %.17g in %d product", one.top[0], one.iterations);
	eig_result_free(&one);
	free(e1);
	free(d.a);
}

int
main(void)
{
	statistics();
	hutchinson_exact();
	hutchinson_blocks_exact();
	subspace_fraction_exact();
	known_rank();
	known_spectrum();
	warm_start();
	settle_and_exact_start();
	orthogonality_kept();
	embedded();
	model_hessian();
	cheap_routes();
	return tap_done();
}
