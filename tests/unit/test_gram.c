/*
 * gop-spectrum's building blocks against direct computation: a dense
 * layer's Gram term (gram_layer, the AVX-512 kernel and OpenBLAS's route
 * both) against the sums written out in long double, and the explicit
 * matrix's spectral routes (sym_top_ritz, the centred Lanczos and the
 * smallest eigenvalue through the Schur complement) against dsyevd on the
 * matrices they stand for.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "gram.h"
#include "linalg.h"
#include "rng.h"
#include "tap.h"

#define SENTINEL 12345.0

/* (a_b . a_c) for the inner-product callback: a's rows from ctx, k columns. */
struct rows {
	const float *a;
	int k;
};

static void
rows_inner(const void *ctx, int r0, int r1, double *S, int lds)
{
	const struct rows *r = ctx;

	for (int b = r0; b < r1; b++)
		for (int c = 0; c <= b; c++) {
			double s = 0;
			for (int t = 0; t < r->k; t++)
				s += (double)r->a[b * r->k + t] * r->a[c * r->k + t];
			S[(size_t)(b - r0) * lds + c] = s;
		}
}

/*
 * The worst difference of out's lower triangle from the sums in long
 * double, relative to the entry's scale |d_b| |d_c| (|a_b| |a_c| + 1)
 * (an entry can cancel to near zero); whether the upper triangle was kept.
 */
static double
gram_error(const double *out, int n, const float *D, int kd, const float *A, int ka, int *kept)
{
	double worst = 0;

	*kept = 1;
	for (int b = 0; b < n; b++)
		for (int c = 0; c < n; c++) {
			long double dd = 0, aa = 0, want, nd[2] = {0, 0}, na[2] = {0, 0};
			if (c > b) {
				*kept &= out[b * n + c] == SENTINEL;
				continue;
			}
			for (int t = 0; t < kd; t++) {
				dd += (long double)D[b * kd + t] * D[c * kd + t];
				nd[0] += (long double)D[b * kd + t] * D[b * kd + t];
				nd[1] += (long double)D[c * kd + t] * D[c * kd + t];
			}
			for (int t = 0; t < ka; t++) {
				aa += (long double)A[b * ka + t] * A[c * ka + t];
				na[0] += (long double)A[b * ka + t] * A[b * ka + t];
				na[1] += (long double)A[c * ka + t] * A[c * ka + t];
			}
			want = dd * (aa + 1);
			double scale = (double)(sqrtl(nd[0] * nd[1]) * (sqrtl(na[0] * na[1]) + 1));
			worst = fmax(worst, fabs((double)(out[b * n + c] - want)) / fmax(scale, 1e-300));
		}
	return worst;
}

/*
 * gram_layer's other modes against its GRAM_RAW term (raw): each entry
 * of a random out becomes raw / n, out + raw / n or out / n + raw / n.
 */
static int
modes_exact(const double *raw, int n, const float *D, int kd, const float *A, int ka, const struct rows *ctx,
    double *scratch, struct rng *r)
{
	double *out = malloc((size_t)n * n * sizeof *out), *was = malloc((size_t)n * n * sizeof *was);
	int exact = 1;

	for (int how = GRAM_SET; how <= GRAM_RESCALE_ADD; how++) {
		for (int i = 0; i < n * n; i++)
			was[i] = out[i] = i % n <= i / n ? rng_normal(r) : SENTINEL;
		gram_layer(out, n, D, kd, A, ka, rows_inner, ctx, (enum gram_acc)how, scratch);
		for (int b = 0; b < n; b++)
			for (int c = 0; c < n; c++) {
				double t = raw[b * n + c], o = was[b * n + c];
				double want = c > b ? SENTINEL : how == GRAM_SET ? t / n : how == GRAM_ADD ? o + t / n :
				    o / n + t / n;
				exact &= memcmp(&out[b * n + c], &want, sizeof want) == 0;
			}
	}
	free(out);
	free(was);
	return exact;
}

static void
gram_case(int n, int kd, int ka, int use_inner, struct rng *r)
{
	float *D = malloc(((size_t)n * kd + 1) * sizeof *D), *A = malloc(((size_t)n * ka + 1) * sizeof *A);
	double *out[2], *scratch = malloc(gram_layer_scratch(n, kd, ka) * sizeof *scratch);
	const char *route[2];
	struct rows ctx = {A, ka};
	int kept;

	for (int i = 0; i < n * kd; i++)
		D[i] = (float)rng_normal(r);
	for (int i = 0; i < n * ka; i++)
		A[i] = rng_uniform(r) < 0.5 ? 0.0f : (float)rng_uniform(r);   /* ReLU-like: half zeros */
	for (int route_i = 0; route_i < 2; route_i++) {
		gemm_setup(route_i == 0 ? 1 : 2);   /* the kernel where the CPU has it, then OpenBLAS's */
		route[route_i] = gemm_kernel();
		out[route_i] = malloc((size_t)n * n * sizeof(double));
		for (int i = 0; i < n * n; i++)
			out[route_i][i] = SENTINEL;
		gram_layer(out[route_i], n, D, kd, use_inner ? NULL : A, use_inner ? 0 : ka, rows_inner, &ctx, GRAM_RAW,
		    scratch);
		double err = gram_error(out[route_i], n, D, kd, A, ka, &kept);
		ok(err <= 1e-14 && kept, "gram_layer (%s), n %d, kd %d, ka %d%s: max error %.1e of the scale (<= 1e-14), "
		    "upper triangle untouched %d", route[route_i], n, kd, ka, use_inner ? " by callback" : "", err, kept);
		ok(modes_exact(out[route_i], n, D, kd, use_inner ? NULL : A, use_inner ? 0 : ka, &ctx, scratch, r),
		    "gram_layer (%s), n %d: K = T / n, K += T / n and K = K / n + T / n as the term's entries "
		    "divided and added, bit for bit, upper triangle untouched", route[route_i], n);
	}
	gemm_setup(1);
	free(out[0]);
	free(out[1]);
	free(D);
	free(A);
	free(scratch);
}

/*
 * gram_accumulate, gram_sums and gram_centred_sums on a random lower
 * triangle (SENTINEL above it): against the sums in long double, the
 * upper triangle never read or written, and the AVX-512 route and the
 * plain C one bit for bit the same.
 */
static void
sums_case(int n, struct rng *r)
{
	size_t nn = (size_t)n * n + 1;
	double *K = malloc(nn * sizeof *K), *S = malloc(nn * sizeof *S), *acc[2], rs[2][64], m[64];
	double tr[2], fro[2], ctr[2], cfro[2], worst_acc = 0, worst_row = 0, fused[64], ftr, ffro;
	double *acc2 = calloc(nn, sizeof *acc2);
	int same_pass = 1;
	long double t = 0, f = 0, ct = 0, cf = 0, want_row[64];
	const char *route[2];
	int kept = 1;

	for (int b = 0; b < n; b++)
		for (int q = 0; q < n; q++) {
			K[b * n + q] = q <= b ? rng_normal(r) : NAN;      /* NaN above: a read would show */
			S[b * n + q] = q <= b ? rng_normal(r) : SENTINEL;
		}
	for (int i = 0; i < 2; i++) {
		gemm_setup(i == 0 ? 1 : 2);
		route[i] = gemm_kernel();
		acc[i] = malloc(nn * sizeof *K);
		memcpy(acc[i], S, nn * sizeof *K);
		gram_accumulate(acc[i], K, n, GRAM_ADD, NULL, NULL, NULL);     /* S + K / n */
		gram_accumulate(acc2, acc[i], n, GRAM_ADD, fused, &ftr, &ffro);   /* the sums in the same pass */
		gram_sums(acc2, n, rs[i], &tr[i], &fro[i]);
		same_pass &= memcmp(fused, rs[i], n * sizeof *fused) == 0 && ftr == tr[i] && ffro == fro[i];
		gram_sums(K, n, rs[i], &tr[i], &fro[i]);
		for (int b = 0; b < n; b++)
			m[b] = rs[0][b] / n;
		gram_centred_sums(K, n, m, 0.25, &ctr[i], &cfro[i]);
	}
	gemm_setup(1);
	for (int b = 0; b < n; b++) {
		want_row[b] = 0;
		for (int q = 0; q < n; q++)
			want_row[b] += q <= b ? K[b * n + q] : K[q * n + b];
	}
	for (int b = 0; b < n; b++)
		for (int q = 0; q < n; q++) {
			double x = q <= b ? K[b * n + q] : K[q * n + b];
			long double v = (long double)x - m[b] - m[q] + 0.25L;
			if (q > b) {
				kept &= acc[0][b * n + q] == SENTINEL;
				continue;
			}
			worst_acc = fmax(worst_acc, fabs(acc[0][b * n + q] - (S[b * n + q] + x / n)));
			f += (long double)x * x * (q < b ? 2 : 1);
			cf += v * v * (q < b ? 2 : 1);
			if (q == b) {
				t += x;
				ct += v;
			}
		}
	for (int b = 0; b < n; b++)
		worst_row = fmax(worst_row, fabs((double)(rs[0][b] - want_row[b])));
	ok(worst_acc == 0 && kept, "gram_accumulate (%s), n %d: S + K / n entry by entry, upper triangle kept",
	    route[0], n);
	ok(same_pass, "gram_accumulate, n %d: the sums of its pass are gram_sums's of its result", n);
	for (int how = GRAM_SET; how <= GRAM_RESCALE_ADD; how += GRAM_RESCALE_ADD - GRAM_SET) {
		int exact = 1, same = 1;
		for (int i = 0; i < 2; i++) {
			gemm_setup(i == 0 ? 1 : 2);
			memcpy(acc2, S, nn * sizeof *K);
			gram_accumulate(acc2, K, n, (enum gram_acc)how, NULL, NULL, NULL);
			for (int b = 0; b < n; b++)
				for (int q = 0; q < n; q++) {
					double want = q > b ? SENTINEL : how == GRAM_SET ? K[b * n + q] / n :
					    S[b * n + q] / n + K[b * n + q] / n;
					exact &= memcmp(&acc2[b * n + q], &want, sizeof want) == 0;
				}
			same &= exact;
		}
		gemm_setup(1);
		ok(exact && same, "gram_accumulate (%s), n %d: entry by entry, both routes",
		    how == GRAM_SET ? "K = S / n" : "K = K / n + S / n", n);
	}
	ok(memcmp(acc[0], acc[1], nn * sizeof *K) == 0 && memcmp(rs[0], rs[1], n * sizeof **rs) == 0 &&
	    tr[0] == tr[1] && fro[0] == fro[1] && ctr[0] == ctr[1] && cfro[0] == cfro[1],
	    "gram sums, n %d: %s and %s bit for bit", n, route[0], route[1]);
	ok(worst_row <= 1e-15 * n && fabs(tr[0] - (double)t) <= 1e-15 * n &&
	    fabs(fro[0] - (double)sqrtl(f)) <= 1e-15 * fro[0], "gram_sums (%s), n %d: row sums within %.1e, trace "
	    "%.17g vs %.17g, Frobenius %.17g vs %.17g", route[0], n, worst_row, tr[0], (double)t, fro[0],
	    (double)sqrtl(f));
	ok(fabs(ctr[0] - (double)ct) <= 1e-15 * n && fabs(cfro[0] - (double)sqrtl(cf)) <= 1e-15 * cfro[0],
	    "gram_centred_sums (%s), n %d: trace %.17g vs %.17g, Frobenius %.17g vs %.17g", route[0], n, ctr[0],
	    (double)ct, cfro[0], (double)sqrtl(cf));
	free(K);
	free(S);
	free(acc[0]);
	free(acc[1]);
	free(acc2);
}

/* A (n, n) = V diag(lambda) V^T, V a random orthogonal matrix (Householder products), full. */
static void
make_psd(double *A, int n, const double *lambda, struct rng *r)
{
	double *V = calloc((size_t)n * n, sizeof *V), *v = malloc((size_t)n * sizeof *v);

	for (int i = 0; i < n; i++)
		V[i * n + i] = 1;
	for (int h = 0; h < 3; h++) {
		double s = 0;
		for (int i = 0; i < n; i++) {
			v[i] = rng_normal(r);
			s += v[i] * v[i];
		}
		for (int row = 0; row < n; row++) {
			double d = 0;
			for (int i = 0; i < n; i++)
				d += V[row * n + i] * v[i];
			for (int i = 0; i < n; i++)
				V[row * n + i] -= 2 * d * v[i] / s;
		}
	}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double s = 0;
			for (int q = 0; q < n; q++)
				s += V[i * n + q] * lambda[q] * V[j * n + q];
			A[i * n + j] = s;
		}
	free(V);
	free(v);
}

/* H A H's spectrum less the ones vector's zero, descending, by dsyevd on the explicit matrix. */
static void
centred_spectrum(const double *A, int n, double *ev)
{
	double *h = malloc((size_t)n * n * sizeof *h), *rm = calloc((size_t)n, sizeof *rm), all = 0, *w = malloc((size_t)n * sizeof *w);
	int z = 0;

	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			rm[i] += A[i * n + j] / n;
	for (int i = 0; i < n; i++)
		all += rm[i] / n;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			h[i * n + j] = A[i * n + j] - rm[i] - rm[j] + all;
	sym_eigvals(h, n, 0, w, NULL);
	for (int i = 1; i < n; i++)
		if (fabs(w[i]) < fabs(w[z]))
			z = i;
	for (int i = 0, j = 0; i < n; i++)
		if (i != z)
			ev[j++] = w[i];
	free(h);
	free(rm);
	free(w);
}

static void
spectral_routes(void)
{
	enum { N = 300, K = 10 };
	double *a = malloc((size_t)N * N * sizeof *a), *w = malloc((size_t)N * N * sizeof *w);
	double lambda[N], ev[N], evc[N], top[K], ctop[K], vecs[K * N], v0[N], d[N], wv[N], lowest, lmin, logdet;
	double worst = 0, cworst = 0, s1 = 0, ldc = 0;
	int iters, citers, cold, inv;
	struct rng r;

	rng_init(&r, 7, RNG_SAMPLE);
	/* a cluster at the top (slow for Lanczos), a mean direction, a tail down to 1e-3 */
	for (int i = 0; i < N; i++)
		lambda[i] = i < 12 ? 1 - 0.01 * i : 0.5 * pow(1e-3 / 0.5, (double)(i - 12) / (N - 13));
	make_psd(a, N, lambda, &r);
	for (int i = 0; i < N; i++)
		for (int j = 0; j < N; j++)
			a[i * N + j] += 0.3;   /* the mean gradient's part: 0.3 11^T */
	memcpy(w, a, (size_t)N * N * sizeof *w);
	sym_eigvals(w, N, 0, ev, NULL);
	centred_spectrum(a, N, evc);
	int rc = sym_top_ritz(a, N, K, 0, 1e-12, 300, NULL, top, vecs, &lowest, &iters);
	ok(rc == 0, "explicit Lanczos: top %d of A in %d products", K, iters);
	for (int i = 0; i < K; i++)
		worst = fmax(worst, fabs(top[i] - ev[i]) / ev[i]);
	ok(worst <= 1e-10 && lowest >= ev[N - 1] * (1 - 1e-12), "explicit Lanczos: within %.1e of dsyevd's (<= 1e-10); lowest Ritz "
	    "value %.3g at least the smallest eigenvalue %.3g", worst, lowest, ev[N - 1]);
	/* the centred top 10 from A's Ritz vectors (projected) against a cold start: the same values, fewer products */
	memset(v0, 0, sizeof v0);
	for (int e = 0; e < K; e++)
		for (int i = 0; i < N; i++)
			v0[i] += vecs[e * N + i];
	rc = sym_top_ritz(a, N, K, 1, 1e-12, 300, NULL, ctop, NULL, NULL, &cold);
	rc |= sym_top_ritz(a, N, K, 1, 1e-12, 300, v0, ctop, NULL, NULL, &citers);
	ok(rc == 0, "centred Lanczos: %d products from A's Ritz vectors, %d from the fixed start", citers, cold);
	for (int i = 0; i < K; i++)
		cworst = fmax(cworst, fabs(ctop[i] - evc[i]) / evc[i]);
	ok(cworst <= 1e-10 && citers < cold, "centred Lanczos: top %d of H A H within %.1e of dsyevd's (<= 1e-10)", K,
	    cworst);
	/* the low end through A's Cholesky factor: smallest on the ones vector's complement, log-determinant */
	memcpy(w, a, (size_t)N * N * sizeof *w);
	ok(sym_cholesky(w, N, d, &logdet) == 0, "Cholesky of A");
	for (int i = 0; i < N; i++)
		wv[i] = 1;
	sym_chol_solve(w, N, wv);
	for (int i = 0; i < N; i++)
		s1 += wv[i];
	inv = sym_bottom_centred_chol(w, N, wv, 1e-12, 300, &lmin, &iters);
	for (int i = 0; i < N - 1; i++)
		ldc += log(evc[i]);
	ok(inv == 0 && fabs(lmin - evc[N - 2]) <= 1e-10 * evc[N - 2], "Schur complement: smallest of H A H on the "
	    "complement %.15g (dsyevd %.15g), %d products", lmin, evc[N - 2], iters);
	ok(fabs(logdet + log(s1 / N) - ldc) <= 1e-9 * fabs(ldc), "Schur complement: log det A + log(1^T A^-1 1 / n) "
	    "%.12f = the centred log-determinant %.12f", logdet + log(s1 / N), ldc);
	free(a);
	free(w);
}

/*
 * The explicit matrix's Lanczos (sym_top_ritz: linalg's one Lanczos with
 * the settling gate) at its edges, on A = diag(3, 3, 2, 2, 1, 1): k out
 * of range, a start in an invariant space, too few products allowed.
 */
static void
explicit_edges(void)
{
	double a[36] = {0}, ev[6], v0[6] = {1, 0, 1, 0, 1, 0}, zero[6] = {0}, lowest = -1;
	int iters, rc;

	for (int i = 0; i < 6; i++)
		a[i * 6 + i] = 3 - i / 2;
	ok(sym_top_ritz(a, 6, 0, 0, 1e-12, 10, NULL, ev, NULL, NULL, &iters) == -1 &&
	    sym_top_ritz(a, 6, 7, 0, 1e-12, 10, NULL, ev, NULL, NULL, &iters) == -1 && iters == 0,
	    "explicit Lanczos: k out of range fails, no products");
	rc = sym_top_ritz(a, 6, 3, 0, 1e-12, 10, v0, ev, NULL, &lowest, &iters);
	ok(rc == 0 && iters == 3 && fabs(ev[0] - 3) < 1e-14 && fabs(ev[1] - 2) < 1e-14 && fabs(ev[2] - 1) < 1e-14 &&
	    fabs(lowest - 1) < 1e-14, "explicit Lanczos: a start in a 3-dimensional invariant space: its 3 "
	    "eigenvalues in %d products, lowest Ritz value %g", iters, lowest);
	ok(sym_top_ritz(a, 6, 3, 0, 1e-12, 2, NULL, ev, NULL, NULL, &iters) == -1 && iters == 2,
	    "explicit Lanczos: fewer products allowed than eigenvalues asked for fails");
	/* a zero start is no start: the fixed Gaussian, the same run as none */
	int cold;
	double evz[3];
	rc = sym_top_ritz(a, 6, 3, 0, 1e-12, 10, NULL, ev, NULL, NULL, &cold);
	rc |= sym_top_ritz(a, 6, 3, 0, 1e-12, 10, zero, evz, NULL, NULL, &iters);
	ok(rc == 0 && iters == cold && memcmp(ev, evz, sizeof evz) == 0 && fabs(ev[0] - 3) < 1e-12 &&
	    fabs(ev[2] - 1) < 1e-12, "explicit Lanczos: a zero start vector falls back to the fixed Gaussian "
	    "(%d products both)", iters);
}

int
main(void)
{
	struct rng r;

	rng_init(&r, 3, RNG_SAMPLE);
	gram_case(1, 5, 4, 0, &r);
	gram_case(7, 3, 0, 0, &r);
	gram_case(61, 128, 97, 0, &r);
	gram_case(130, 20, 33, 1, &r);
	gram_case(200, 0, 16, 0, &r);
	for (int n = 1; n <= 64; n += 9)   /* 1, 10, .., 64: across the 8 lanes */
		sums_case(n, &r);
	spectral_routes();
	explicit_edges();
	return tap_done();
}
