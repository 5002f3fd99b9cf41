#include "progress.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

/* Neurons transformed at once: keeps neuron_freqs' scratch at 2 n^2 * 64 doubles. */
#define NEURON_CHUNK 64

static int
is_prime(int p)
{
	if (p < 2)
		return 0;
	for (int q = 2; (long)q * q <= p; q++)
		if (p % q == 0)
			return 0;
	return 1;
}

static long
powmod(long b, long e, long m)
{
	long r = 1;

	b %= m;
	while (e > 0) {
		if (e & 1)
			r = r * b % m;
		b = b * b % m;
		e >>= 1;
	}
	return r;
}

/* The smallest primitive root of the prime p: g^((p-1)/q) != 1 for every prime q | p - 1. */
static int
primitive_root(int p)
{
	int n = p - 1, q[32], nq = 0, m = n;

	for (int f = 2; (long)f * f <= m; f++)
		if (m % f == 0) {
			q[nq++] = f;
			while (m % f == 0)
				m /= f;
		}
	if (m > 1)
		q[nq++] = m;
	for (int g = 2; g < p; g++) {
		int ok = 1;
		for (int i = 0; i < nq && ok; i++)
			ok = powmod(g, n / q[i], p) != 1;
		if (ok)
			return g;
	}
	return 1;   /* p = 2: the trivial group */
}

static void
fill_basis(double *B, int n)
{
	for (int u = 0; u < n; u++)
		B[u] = 1 / sqrt(n);
	for (int k = 1; 2 * k <= n; k++) {
		if (2 * k == n) {
			for (int u = 0; u < n; u++)
				B[(size_t)(n - 1) * n + u] = (u % 2 ? -1.0 : 1.0) / sqrt(n);
			break;
		}
		for (int u = 0; u < n; u++) {
			/* k u reduced mod n first, so no digits are lost to a large argument. */
			double t = TWO_PI * (double)(((long)k * u) % n) / n;
			B[(size_t)(2 * k - 1) * n + u] = cos(t) * sqrt(2.0 / n);
			B[(size_t)(2 * k) * n + u] = sin(t) * sqrt(2.0 / n);
		}
	}
}

int
fourier_group_init(struct fourier_group *g, int p, const char *op)
{
	memset(g, 0, sizeof *g);
	g->p = p;
	if (!strcmp(op, "add") || !strcmp(op, "sub")) {
		g->n = p;
		g->sign = op[0] == 'a' ? 1 : -1;
	} else if ((!strcmp(op, "mul") || !strcmp(op, "div")) && is_prime(p) && p > 2) {
		g->n = p - 1;
		g->sign = op[0] == 'm' ? 1 : -1;
		g->mult = 1;
		g->generator = primitive_root(p);
	} else
		return -1;
	g->coord = xmalloc(xmul((size_t)p, sizeof *g->coord));
	g->residue = xmalloc(xmul((size_t)g->n, sizeof *g->residue));
	for (int r = 0; r < p; r++)
		g->coord[r] = g->mult ? -1 : r;
	for (int u = 0; u < g->n; u++) {
		int r = g->mult ? (int)powmod(g->generator, u, p) : u;
		g->residue[u] = r;
		g->coord[r] = u;
	}
	g->nfreq = g->n / 2;
	g->basis = xmalloc(xmul(xmul((size_t)g->n, (size_t)g->n), sizeof *g->basis));
	fill_basis(g->basis, g->n);
	return 0;
}

void
fourier_group_free(struct fourier_group *g)
{
	free(g->coord);
	free(g->residue);
	free(g->basis);
	memset(g, 0, sizeof *g);
}

int
fourier_rows(const struct fourier_group *g, int k, int *first)
{
	*first = 2 * k - 1;
	return 2 * k == g->n ? 1 : 2;
}

void
embed_spectrum(const struct fourier_group *g, const float *E, int d, int ld, int col0,
    double *frac, double *const_frac)
{
	int n = g->n;
	double cnorm = 0, rest = 0;

	for (int k = 0; k < g->nfreq; k++)
		frac[k] = 0;
	for (int i = 0; i < d; i++) {
		const float *row = E + (size_t)i * ld + col0;
		for (int j = 0; j < n; j++) {
			const double *b = g->basis + (size_t)j * n;
			double c = 0;
			for (int u = 0; u < n; u++)
				c += b[u] * row[g->residue[u]];
			if (j == 0)
				cnorm += c * c;
			else {
				frac[(j + 1) / 2 - 1] += c * c;
				rest += c * c;
			}
		}
	}
	for (int k = 0; k < g->nfreq; k++)
		frac[k] = rest > 0 ? frac[k] / rest : NAN;
	*const_frac = cnorm + rest > 0 ? cnorm / (cnorm + rest) : NAN;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double
gini(const double *x, int n)
{
	double *s = xmalloc(xmul((size_t)n, sizeof *s)), sum = 0, w = 0;

	memcpy(s, x, (size_t)n * sizeof *s);
	qsort(s, (size_t)n, sizeof *s, cmp_double);
	for (int i = 0; i < n; i++) {
		sum += s[i];
		w += (double)(i + 1) * s[i];
	}
	free(s);
	if (!(sum > 0))
		return NAN;
	return 2 * w / (n * sum) - (double)(n + 1) / n;
}

size_t
neuron_freqs_scratch(const struct fourier_group *g, int nneur)
{
	size_t c = nneur < NEURON_CHUNK ? (size_t)nneur : NEURON_CHUNK;
	return 2 * (size_t)g->n * (size_t)g->n * c;
}

/* Each neuron's share per frequency from its 2-D transform F (n, n, c), neuron fastest. */
static void
neuron_shares(const struct fourier_group *g, const double *F, int c, int *best, double *share)
{
	int n = g->n;

	for (int j = 0; j < c; j++) {
		double total = 0, top = 0;
		int topk = 0;
		for (size_t a = 0; a < (size_t)n * n; a++)
			total += F[a * c + j] * F[a * c + j];
		for (int k = 1; k <= g->nfreq; k++) {
			int f0, nr = fourier_rows(g, k, &f0), idx[3] = {0, f0, f0 + 1};
			double s = 0;
			for (int a = 0; a <= nr; a++)
				for (int b = 0; b <= nr; b++)
					s += F[((size_t)idx[a] * n + idx[b]) * c + j] *
					    F[((size_t)idx[a] * n + idx[b]) * c + j];
			if (total > 0 && s / total > top) {
				top = s / total;
				topk = k;
			}
		}
		best[j] = topk;
		share[j] = top;
	}
}

void
neuron_freqs(const struct fourier_group *g, const float *acts, int nneur, int ld,
    int *best, double *share, double *scratch)
{
	int n = g->n, p = g->p;
	size_t nn = (size_t)n * n;

	for (int j0 = 0; j0 < nneur; j0 += NEURON_CHUNK) {
		int c = nneur - j0 < NEURON_CHUNK ? nneur - j0 : NEURON_CHUNK;
		double *T = scratch, *T1 = scratch + nn * c;
		/* T (u, v, j): the neuron's activation on the pair at group coordinates (u, v), centred. */
		for (int u = 0; u < n; u++)
			for (int v = 0; v < n; v++) {
				const float *a = acts + ((size_t)g->residue[u] * p + g->residue[v]) * ld + j0;
				for (int j = 0; j < c; j++)
					T[((size_t)u * n + v) * c + j] = a[j];
			}
		for (int j = 0; j < c; j++) {
			double mean = 0;
			for (size_t a = 0; a < nn; a++)
				mean += T[a * c + j];
			mean /= (double)nn;
			for (size_t a = 0; a < nn; a++)
				T[a * c + j] -= mean;
		}
		/* Transform over u: T1 (f, v j) = B (f, u) T (u, v j); then over v, in T. */
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n * c, n, 1.0,
		    g->basis, n, T, n * c, 0.0, T1, n * c);
		for (int f = 0; f < n; f++)
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, c, n, 1.0,
			    g->basis, n, T1 + (size_t)f * n * c, c, 0.0, T + (size_t)f * n * c, c);
		neuron_shares(g, T, c, best + j0, share + j0);
	}
}

/* -log softmax(z)_y over p classes, log-sum-exp in double. */
static double
xent(const double *z, int p, int y)
{
	double m = z[0], s = 0;

	for (int c = 1; c < p; c++)
		if (z[c] > m)
			m = z[c];
	for (int c = 0; c < p; c++)
		s += exp(z[c] - m);
	return m + log(s) - z[y];
}

size_t
logit_measures_scratch(const struct fourier_group *g)
{
	/* Class means, coefficients, three rows of logits (restricted, excluded, own), directions. */
	return (size_t)g->p * (4 + 2 * (size_t)g->nfreq) + 2 * (size_t)g->nfreq;
}

/* The unit key directions at the pair (u, v): dir[2i] cos, dir[2i+1] sin (0 at n/2). */
static void
key_directions(const struct fourier_group *g, const int *keys, int nkeys, int u, int v,
    double *dir)
{
	int n = g->n;
	long t = ((long)u + g->sign * (long)v % n + n) % n;

	for (int i = 0; i < nkeys; i++) {
		int k = keys[i];
		double th = TWO_PI * (double)((k * t) % n) / n;
		if (2 * k == n) {
			dir[2 * i] = cos(th) / n;
			dir[2 * i + 1] = 0;
		} else {
			dir[2 * i] = cos(th) * sqrt(2.0) / n;
			dir[2 * i + 1] = sin(th) * sqrt(2.0) / n;
		}
	}
}

/* Class means over the group's pairs (mean), and each key direction's coefficient per class. */
static void
project_logits(const struct fourier_group *g, const float *logits, int ld, const int *keys,
    int nkeys, double *mean, double *coef, double *dir)
{
	int n = g->n, p = g->p;

	memset(mean, 0, (size_t)p * sizeof *mean);
	memset(coef, 0, 2 * (size_t)nkeys * p * sizeof *coef);
	for (int u = 0; u < n; u++)
		for (int v = 0; v < n; v++) {
			const float *z = logits + ((size_t)g->residue[u] * p + g->residue[v]) * ld;
			key_directions(g, keys, nkeys, u, v, dir);
			for (int c = 0; c < p; c++)
				mean[c] += z[c];
			for (int i = 0; i < 2 * nkeys; i++)
				for (int c = 0; c < p; c++)
					coef[(size_t)i * p + c] += dir[i] * z[c];
		}
	for (int c = 0; c < p; c++)
		mean[c] /= (double)n * n;
}

void
logit_measures(const struct fourier_group *g, const float *logits, int ld,
    const int *labels, const unsigned char *train, const int *keys, int nkeys,
    struct logit_measures *out, double *scratch)
{
	int n = g->n, p = g->p;
	double *mean = scratch, *coef = mean + p, *zr = coef + 2 * (size_t)nkeys * p;
	double *ze = zr + p, *zo = ze + p, *dir = zo + p;
	double var = 0, keyvar = 0, la = 0, lt = 0, lr = 0, lx = 0;
	long np = 0, nt = 0;

	project_logits(g, logits, ld, keys, nkeys, mean, coef, dir);
	for (int u = 0; u < n; u++)
		for (int v = 0; v < n; v++) {
			size_t r = (size_t)g->residue[u] * p + g->residue[v];
			const float *z = logits + r * ld;
			key_directions(g, keys, nkeys, u, v, dir);
			for (int c = 0; c < p; c++) {
				double proj = 0;
				for (int i = 0; i < 2 * nkeys; i++)
					proj += coef[(size_t)i * p + c] * dir[i];
				zo[c] = z[c];
				zr[c] = mean[c] + proj;
				ze[c] = z[c] - proj;
				var += (z[c] - mean[c]) * (z[c] - mean[c]);
			}
			la += xent(zo, p, labels[r]);
			lr += xent(zr, p, labels[r]);
			np++;
			if (train[r]) {
				lt += xent(zo, p, labels[r]);
				lx += xent(ze, p, labels[r]);
				nt++;
			}
		}
	for (size_t i = 0; i < 2 * (size_t)nkeys * p; i++)
		keyvar += coef[i] * coef[i];
	out->pairs = np;
	out->train_pairs = nt;
	out->loss_all = la / np;
	out->restricted = lr / np;
	out->loss_train = nt ? lt / nt : NAN;
	out->excluded = nt ? lx / nt : NAN;
	out->key_var_frac = var > 0 ? keyvar / var : NAN;
}

double
distance_irrelevance(const struct fourier_group *g, const float *logits, int ld,
    const int *labels)
{
	int n = g->n, p = g->p;
	double *t, all = 0, all2 = 0, cols = 0;

	if (n % 2 == 0)
		return NAN;
	t = xmalloc(xmul(xmul((size_t)n, (size_t)n), sizeof *t));
	for (int u = 0; u < n; u++)
		for (int v = 0; v < n; v++) {
			size_t r = (size_t)g->residue[u] * p + g->residue[v];
			long s = ((long)u + g->sign * (long)v + n) % n;
			long d = ((long)u - g->sign * (long)v + n) % n;
			t[s * n + d] = logits[r * ld + labels[r]];
		}
	for (int d = 0; d < n; d++) {
		double m = 0, m2 = 0;
		for (int s = 0; s < n; s++)
			m += t[(size_t)s * n + d];
		m /= n;
		for (int s = 0; s < n; s++)
			m2 += (t[(size_t)s * n + d] - m) * (t[(size_t)s * n + d] - m);
		cols += sqrt(m2 / n);
		all += m * n;
	}
	all /= (double)n * n;
	for (size_t i = 0; i < (size_t)n * n; i++)
		all2 += (t[i] - all) * (t[i] - all);
	free(t);
	all2 = sqrt(all2 / ((double)n * n));
	return all2 > 0 ? cols / n / all2 : NAN;
}

double
cosine(const double *a, const double *b, int d)
{
	double ab = 0, aa = 0, bb = 0;

	for (int i = 0; i < d; i++) {
		ab += a[i] * b[i];
		aa += a[i] * a[i];
		bb += b[i] * b[i];
	}
	return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : NAN;
}
