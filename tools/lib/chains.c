#define _XOPEN_SOURCE 700   /* M_PI */
#include "chains.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

double
normal_quantile(double p)
{
	/* Acklam's rational approximation (relative error 1.15e-9), then one Halley step on erfc. */
	static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
	    1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
	static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
	    6.680131188771972e+01, -1.328068155288572e+01};
	static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
	    -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
	static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
	    3.754408661907416e+00};
	double q, r, x, e, u;

	if (!(p > 0 && p < 1))
		return NAN;
	if (p < 0.02425 || p > 1 - 0.02425) {
		q = sqrt(-2 * log(p < 0.5 ? p : 1 - p));
		x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
		    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
		if (p > 0.5)
			x = -x;
	} else {
		q = p - 0.5;
		r = q * q;
		x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
		    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
	}
	e = 0.5 * erfc(-x / sqrt(2.0)) - p;
	u = e * sqrt(2 * M_PI) * exp(x * x / 2);
	return x - u / (1 + x * u / 2);
}

/*
 * In-place radix-2 FFT of (re, im)[0..n-1], n a power of two; sign -1
 * forward, +1 inverse (unscaled).  tw holds the n/2 twiddles cos and sin
 * of 2 pi k / n (fft_twiddles), so no stage calls the trigonometric
 * functions.
 */
static void
fft(double *re, double *im, size_t n, int sign, const double *tw)
{
	for (size_t i = 1, j = 0; i < n; i++) {
		size_t bit = n >> 1;
		for (; j & bit; bit >>= 1)
			j ^= bit;
		j ^= bit;
		if (i < j) {
			double t = re[i]; re[i] = re[j]; re[j] = t;
			t = im[i]; im[i] = im[j]; im[j] = t;
		}
	}
	for (size_t len = 2; len <= n; len <<= 1) {
		size_t stride = n / len;
		for (size_t i = 0; i < n; i += len) {
			for (size_t k = 0; k < len / 2; k++) {
				double wr = tw[2 * k * stride], wi = sign * tw[2 * k * stride + 1];
				size_t p = i + k, q = i + k + len / 2;
				double xr = re[q] * wr - im[q] * wi, xi = re[q] * wi + im[q] * wr;
				re[q] = re[p] - xr;
				im[q] = im[p] - xi;
				re[p] += xr;
				im[p] += xi;
			}
		}
	}
}

static double *
fft_twiddles(size_t n)
{
	double *tw = xmalloc(xmul(n, sizeof(double)));

	for (size_t k = 0; k < n / 2; k++) {
		tw[2 * k] = cos(2 * M_PI * (double)k / (double)n);
		tw[2 * k + 1] = sin(2 * M_PI * (double)k / (double)n);
	}
	return tw;
}

/*
 * power[k] += |X_k|^2 for the mean-removed, zero-padded chains x and (if
 * not NULL) x2, by one complex FFT of x + i x2: with Z = FFT(x + i x2),
 * X_k = (Z_k + conj Z_-k) / 2 and X2_k = (Z_k - conj Z_-k) / 2i.
 */
static void
add_power(const double *x, const double *x2, long N, double *power, double *re, double *im, size_t nfft,
    const double *tw)
{
	double m = 0, m2 = 0;

	for (long i = 0; i < N; i++) {
		m += x[i] / N;
		m2 += x2 ? x2[i] / N : 0;
	}
	memset(re, 0, nfft * sizeof(double));
	memset(im, 0, nfft * sizeof(double));
	for (long i = 0; i < N; i++) {
		re[i] = x[i] - m;
		im[i] = x2 ? x2[i] - m2 : 0;
	}
	fft(re, im, nfft, -1, tw);
	for (size_t k = 0; k < nfft; k++) {
		size_t j = (nfft - k) % nfft;
		double ar = re[k] + re[j], ai = im[k] - im[j], br = re[k] - re[j], bi = im[k] + im[j];
		power[k] += (ar * ar + ai * ai + br * br + bi * bi) / 4;
	}
}

static int
all_finite(const double *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return 0;
	return 1;
}

/*
 * Geyer's (1992) initial monotone sequence estimator of tau = 1 + 2 sum
 * rho_t from rho[0..N-1] (rho[0] = 1): the pair sums rho_2k + rho_2k+1 up
 * to the first negative one, each capped by the one before; at least
 * 1 / log10(total), as Stan.
 */
static double
geyer_tau(const double *rho, long N, double total)
{
	double sum = 0, prev = INFINITY;

	for (long k = 0; 2 * k + 1 < N; k++) {
		double pair = rho[2 * k] + rho[2 * k + 1];
		if (k > 0 && pair < 0)
			break;
		prev = fmin(prev, pair);
		sum += prev;
	}
	return fmax(-1 + 2 * sum, 1 / log10(total));
}

/*
 * Multi-chain ESS of M chains of N (contiguous), N >= 4.  Only the chains'
 * mean autocovariance is needed, the inverse transform of their mean
 * power spectrum: M/2 forward transforms (two real chains in each) and one
 * inverse.
 */
static double
ess_core(const double *y, int M, long N)
{
	size_t nfft = 1;
	double *power, *rho, *re, *im, *tw, mean_var = 0, var_plus, mm = 0, bvar = 0, ess;
	double *means = xcalloc((size_t)M, sizeof(double));

	while (nfft < 2 * (size_t)N)
		nfft <<= 1;
	power = xcalloc(nfft, sizeof(double));
	rho = xcalloc((size_t)N, sizeof(double));
	re = xmalloc(xmul(nfft, sizeof(double)));
	im = xmalloc(xmul(nfft, sizeof(double)));
	tw = fft_twiddles(nfft);
	for (int m = 0; m < M; m += 2)
		add_power(y + (size_t)m * N, m + 1 < M ? y + (size_t)(m + 1) * N : NULL, N, power, re, im, nfft, tw);
	for (int m = 0; m < M; m++) {
		double v = 0;
		for (long i = 0; i < N; i++)
			means[m] += y[(size_t)m * N + i] / N;
		for (long i = 0; i < N; i++)
			v += (y[(size_t)m * N + i] - means[m]) * (y[(size_t)m * N + i] - means[m]);
		mean_var += v / (N - 1) / M;
		mm += means[m] / M;
	}
	for (int m = 0; m < M; m++)
		bvar += (means[m] - mm) * (means[m] - mm);
	var_plus = mean_var * (N - 1) / N + (M > 1 ? bvar / (M - 1) : 0);
	memcpy(re, power, nfft * sizeof(double));
	memset(im, 0, nfft * sizeof(double));
	fft(re, im, nfft, 1, tw);
	/* re[t] / (nfft N M): the chains' mean (biased) autocovariance at lag t. */
	rho[0] = 1;
	for (long t = 1; t < N; t++)
		rho[t] = 1 - (mean_var - re[t] / ((double)nfft * N * M)) / var_plus;
	ess = var_plus > 0 ? (double)M * N / geyer_tau(rho, N, (double)M * N) : NAN;
	free(power);
	free(rho);
	free(re);
	free(im);
	free(tw);
	free(means);
	return ess;
}

/* Split R-hat of M chains of N (contiguous). */
static double
rhat_core(const double *y, int M, long N)
{
	double W = 0, mm = 0, B = 0, *means = xmalloc(xmul((size_t)M, sizeof(double))), r;

	for (int m = 0; m < M; m++) {
		double s = 0, v = 0;
		for (long i = 0; i < N; i++)
			s += y[(size_t)m * N + i];
		means[m] = s / N;
		for (long i = 0; i < N; i++)
			v += (y[(size_t)m * N + i] - means[m]) * (y[(size_t)m * N + i] - means[m]);
		W += v / (N - 1) / M;
		mm += means[m] / M;
	}
	for (int m = 0; m < M; m++)
		B += (means[m] - mm) * (means[m] - mm) * N / (M - 1);
	r = W > 0 ? sqrt(((N - 1.0) / N * W + B / N) / W) : NAN;
	free(means);
	return r;
}

/* The 2C half-chains of x, each of n/2 draws, in a new array; NULL if too few or not finite. */
static double *
split(const double *x, int C, long n)
{
	long h = n / 2;
	double *y;

	if (C < 1 || n < 4 || !all_finite(x, (size_t)C * (size_t)n))
		return NULL;
	y = xmalloc(xmul(xmul((size_t)C, 2 * (size_t)h), sizeof(double)));
	for (int c = 0; c < C; c++) {
		memcpy(y + (size_t)(2 * c) * h, x + (size_t)c * n, (size_t)h * sizeof(double));
		memcpy(y + (size_t)(2 * c + 1) * h, x + (size_t)c * n + (n - h), (size_t)h * sizeof(double));
	}
	return y;
}

struct ranked {
	double v;
	size_t i;
};

static int
by_value(const void *a, const void *b)
{
	double x = ((const struct ranked *)a)->v, y = ((const struct ranked *)b)->v;
	return (x > y) - (x < y);
}

/* y[i] <- the normal score of its pooled rank (ties averaged): probit((r - 3/8) / (S + 1/4)). */
static void
rank_normalise(double *y, size_t S)
{
	struct ranked *r = xmalloc(xmul(S, sizeof *r));

	for (size_t i = 0; i < S; i++)
		r[i] = (struct ranked){y[i], i};
	qsort(r, S, sizeof *r, by_value);
	for (size_t i = 0; i < S;) {
		size_t j = i;
		while (j + 1 < S && r[j + 1].v == r[i].v)
			j++;
		double rank = (double)(i + j) / 2 + 1;   /* the tie's average 1-based rank */
		for (size_t k = i; k <= j; k++)
			y[r[k].i] = normal_quantile((rank - 0.375) / ((double)S + 0.25));
		i = j + 1;
	}
	free(r);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double
chains_rhat_basic(const double *x, int C, long n)
{
	double *y = split(x, C, n), r;

	if (!y)
		return NAN;
	r = rhat_core(y, 2 * C, n / 2);
	free(y);
	return r;
}

double
chains_rhat(const double *x, int C, long n)
{
	double *y = split(x, C, n), *f, med, bulk, folded;
	size_t S = (size_t)C * 2 * (size_t)(n / 2);

	if (!y)
		return NAN;
	f = xmalloc(xmul(S, sizeof(double)));
	memcpy(f, y, S * sizeof(double));
	qsort(f, S, sizeof(double), cmp_double);
	med = S % 2 ? f[S / 2] : (f[S / 2 - 1] + f[S / 2]) / 2;
	for (size_t i = 0; i < S; i++)
		f[i] = fabs(y[i] - med);
	rank_normalise(y, S);
	rank_normalise(f, S);
	bulk = rhat_core(y, 2 * C, n / 2);
	folded = rhat_core(f, 2 * C, n / 2);
	free(y);
	free(f);
	return isnan(bulk) || isnan(folded) ? NAN : fmax(bulk, folded);
}

double
chains_ess_bulk(const double *x, int C, long n)
{
	double *y = split(x, C, n), e;

	if (!y)
		return NAN;
	rank_normalise(y, (size_t)C * 2 * (size_t)(n / 2));
	e = ess_core(y, 2 * C, n / 2);
	free(y);
	return e;
}

double
chains_ess_mean(const double *x, int C, long n)
{
	double *y = split(x, C, n), e;

	if (!y)
		return NAN;
	e = ess_core(y, 2 * C, n / 2);
	free(y);
	return e;
}

double
chains_mcse_mean(const double *x, int C, long n)
{
	size_t S = (size_t)C * (size_t)n;
	double mean = 0, v = 0, e = chains_ess_mean(x, C, n);

	if (isnan(e))
		return NAN;
	for (size_t i = 0; i < S; i++)
		mean += x[i] / (double)S;
	for (size_t i = 0; i < S; i++)
		v += (x[i] - mean) * (x[i] - mean) / (double)(S - 1);
	return sqrt(v / e);
}

double
chain_ess(const double *x, long n)
{
	if (n < 4 || !all_finite(x, (size_t)n))
		return NAN;
	return ess_core(x, 1, n);
}

void
chain_half_drift(const double *x, long n, struct chain_drift *out)
{
	long h = n / 2;
	double v[2] = {0, 0}, m[2] = {0, 0}, e[2];
	const double *part[2] = {x, x + (n - h)};

	out->first = out->second = out->diff = out->se = out->z = NAN;
	if (n < 8 || !all_finite(x, (size_t)n))
		return;
	for (int p = 0; p < 2; p++) {
		for (long i = 0; i < h; i++)
			m[p] += part[p][i] / h;
		for (long i = 0; i < h; i++)
			v[p] += (part[p][i] - m[p]) * (part[p][i] - m[p]) / (h - 1);
		e[p] = ess_core(part[p], 1, h);
	}
	out->first = m[0];
	out->second = m[1];
	out->diff = m[1] - m[0];
	/* The steadier half's variance of the mean stands for both: a trend inflates its own half's. */
	out->se = sqrt(2 * fmin(v[0] / e[0], v[1] / e[1]));
	out->z = out->se > 0 ? out->diff / out->se : (out->diff == 0 ? 0 : copysign(INFINITY, out->diff));
}
