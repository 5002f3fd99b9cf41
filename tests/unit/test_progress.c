/*
 * test_progress: the progress measures on constructed arrays whose answers
 * are known in closed form (a pure frequency, a Fourier algorithm's
 * logits, a pizza and a clock).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"
#include "tap.h"
#include "util.h"

static double
maxabs_offdiag_identity(const double *B, int n)
{
	double worst = 0;

	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double s = 0;
			for (int u = 0; u < n; u++)
				s += B[i * n + u] * B[j * n + u];
			s -= i == j;
			worst = fabs(s) > worst ? fabs(s) : worst;
		}
	return worst;
}

static void
groups(void)
{
	static const struct { int p; const char *op; int n; } cases[] = {
		{7, "add", 7}, {8, "add", 8}, {11, "sub", 11}, {11, "mul", 10}, {13, "div", 12},
	};
	struct fourier_group g;

	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		int p = cases[c].p, bad = 0, rc = fourier_group_init(&g, p, cases[c].op);
		ok(rc == 0 && g.n == cases[c].n, "p = %d, %s: a group of order %d", p, cases[c].op, g.n);
		ok(maxabs_offdiag_identity(g.basis, g.n) < 1e-13,
		    "p = %d, %s: the basis is orthonormal", p, cases[c].op);
		/* The operation is a sum (or difference) of coordinates. */
		for (int x = 0; x < p; x++)
			for (int y = 0; y < p; y++) {
				int u = g.coord[x], v = g.coord[y], z;
				if (u < 0 || v < 0)
					continue;
				if (!g.mult)
					z = g.sign > 0 ? (x + y) % p : (x - y + p) % p;
				else if (g.sign > 0)
					z = x * y % p;
				else {
					int inv = 1;
					while (inv * y % p != 1)
						inv++;
					z = x * inv % p;
				}
				bad += g.coord[z] != ((u + g.sign * v) % g.n + g.n) % g.n;
			}
		ok(!bad, "p = %d, %s: label coordinate = u %c v on every pair (%d wrong)", p,
		    cases[c].op, g.sign > 0 ? '+' : '-', bad);
		fourier_group_free(&g);
	}
	ok(fourier_group_init(&g, 9, "mul") == -1, "mul with p = 9 (not prime) has no group");
	ok(fourier_group_init(&g, 11, "x2+y2") == -1, "x2+y2 has no group");
}

static void
ginis(void)
{
	double one[5] = {0, 0, 3, 0, 0}, flat[4] = {2, 2, 2, 2}, ramp[4] = {4, 1, 3, 2};

	ok(fabs(gini(one, 5) - 0.8) < 1e-15, "Gini of one non-zero of 5 is 1 - 1/5");
	ok(fabs(gini(flat, 4)) < 1e-15, "Gini of a flat distribution is 0");
	ok(fabs(gini(ramp, 4) - 0.25) < 1e-15, "Gini of {1,2,3,4} is 20 / (2 4 10) = 0.25");
}

/* An embedding (d, 2p) whose x and y columns are pure frequency k in group coordinates, plus c. */
static float *
pure_embedding(const struct fourier_group *g, int d, int k, double c)
{
	int p = g->p;
	float *E = xcalloc((size_t)d * 2 * p, sizeof *E);

	for (int i = 0; i < d; i++)
		for (int r = 0; r < p; r++) {
			int u = g->coord[r];
			if (u < 0)
				continue;
			double t = TWO_PI * k * u / g->n + 0.7 * i;
			E[(size_t)i * 2 * p + r] = (float)(c + cos(t) * (1 + i));
			E[(size_t)i * 2 * p + p + r] = (float)(c + sin(t) * (1 + i));
		}
	return E;
}

static void
spectra(void)
{
	static const struct { int p; const char *op; int k; } cases[] = {
		{13, "add", 4}, {17, "mul", 3}, {12, "add", 6},
	};

	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct fourier_group g;
		fourier_group_init(&g, cases[c].p, cases[c].op);
		int k = cases[c].k, p = g.p, worst = 0;
		float *E = pure_embedding(&g, 5, k, 0);
		double *frac = xmalloc(g.nfreq * sizeof *frac), cf;
		embed_spectrum(&g, E, 5, 2 * p, 0, frac, &cf);
		for (int j = 0; j < g.nfreq; j++)
			worst |= fabs(frac[j] - (j + 1 == k)) > 1e-6;
		ok(!worst && cf < 1e-12, "p = %d, %s: x columns of frequency %d: all of the norm at %d",
		    p, cases[c].op, k, k);
		embed_spectrum(&g, E, 5, 2 * p, p, frac, &cf);
		ok(fabs(frac[k - 1] - 1) < 1e-6, "p = %d, %s: the y columns too", p, cases[c].op);
		ok(fabs(gini(frac, g.nfreq) - (1 - 1.0 / g.nfreq)) < 1e-6,
		    "p = %d: Gini at its maximum 1 - 1/%d", p, g.nfreq);
		free(E);
		if (2 * k != g.n) {
			/* A constant 1 in every column: its share is n / (n + n mean(scale^2) / 2). */
			E = pure_embedding(&g, 1, k, 1);
			embed_spectrum(&g, E, 1, 2 * p, 0, frac, &cf);
			ok(fabs(cf - 2.0 / 3) < 1e-6, "p = %d: constant 1 plus a unit cosine: constant share 2/3 (%.9f)",
			    p, cf);
			free(E);
		}
		free(frac);
		fourier_group_free(&g);
	}
}

static void
neurons(void)
{
	enum { P = 13, NN = 70 };
	struct fourier_group g;
	float *acts = xcalloc((size_t)P * P * NN, sizeof *acts);
	int best[NN], bad = 0;
	double share[NN], w = TWO_PI / P;

	fourier_group_init(&g, P, "add");
	for (int x = 0; x < P; x++)
		for (int y = 0; y < P; y++) {
			float *a = acts + ((size_t)x * P + y) * NN;
			for (int j = 0; j < NN; j++) {
				int k = 1 + j % 5;
				switch (j % 4) {
				case 0: a[j] = (float)cos(w * k * (x + y)); break;
				case 1: a[j] = (float)(3 + cos(w * k * x) + sin(w * k * y)); break;
				/* Variance 1 in frequency k, 1/4 in k + 1: a share of 4/5. */
				case 2: a[j] = (float)(2 * cos(w * k * x) * cos(w * k * y) + sqrt(0.5) * sin(w * (k + 1) * x)); break;
				case 3: a[j] = j == 3 ? 5.0f : (float)cos(w * k * x + 1); break;
				}
			}
		}
	double *scratch = xmalloc(neuron_freqs_scratch(&g, NN) * sizeof(double));
	neuron_freqs(&g, acts, NN, NN, best, share, scratch);
	free(scratch);
	for (int j = 0; j < NN; j++) {
		int k = 1 + j % 5;
		double want = j % 4 == 2 ? 0.8 : 1;
		if (j == 3)
			bad += best[j] != 0 || share[j] != 0;
		else
			bad += best[j] != k || fabs(share[j] - want) > 1e-6;
	}
	ok(!bad, "%d neurons in two chunks: each one's frequency and share (%d wrong)", NN, bad);
	ok(best[2] == 3 && fabs(share[2] - 0.8) < 1e-6,
	    "a neuron 2 cos(3x) cos(3y) + sin(4x): frequency 3, share 0.8 (%d, %.9f)", best[2], share[2]);
	free(acts);
	fourier_group_free(&g);
}

/*
 * Logits sum_i amp[i] cos(w k_i (u + s v - z)) in group coordinates: the
 * Fourier algorithm's output.  Labels and a training mask come with them.
 */
static float *
fourier_logits(const struct fourier_group *g, const int *k, const double *amp, int nk,
    int *labels, unsigned char *train)
{
	int p = g->p, n = g->n;
	float *L = xcalloc((size_t)p * p * p, sizeof *L);

	for (int x = 0; x < p; x++)
		for (int y = 0; y < p; y++) {
			size_t r = (size_t)x * p + y;
			int u = g->coord[x], v = g->coord[y];
			train[r] = (x * 7 + y * 3) % 5 < 2;
			if (u < 0 || v < 0) {
				labels[r] = 0;
				continue;
			}
			int t = ((u + g->sign * v) % n + n) % n;
			labels[r] = g->residue[t];
			for (int z = 0; z < p; z++) {
				int c = g->coord[z];
				double s = 0;
				for (int i = 0; i < nk && c >= 0; i++)
					s += amp[i] * cos(TWO_PI * k[i] * (t - c) / n);
				L[r * p + z] = (float)s;
			}
		}
	return L;
}

static void
logits(void)
{
	static const struct { int p; const char *op; } cases[] = {
		{11, "add"}, {13, "sub"}, {11, "mul"}, {13, "div"}, {7, "add"},
	};

	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct fourier_group g;
		fourier_group_init(&g, cases[c].p, cases[c].op);
		int p = g.p, keys[2] = {2, g.nfreq < 5 ? g.nfreq : 5}, other = g.nfreq < 5 ? 1 : 3, *labels = xmalloc(sizeof(int) * p * p);
		double amp[2] = {6, 3}, v0, v1;
		unsigned char *train = xmalloc((size_t)p * p);
		float *L = fourier_logits(&g, keys, amp, 2, labels, train);
		double *scratch = xmalloc(logit_measures_scratch(&g) * sizeof *scratch);
		struct logit_measures m;

		/* The logits are float32: what is exact in the measures holds to float rounding. */
		logit_measures(&g, L, p, labels, train, keys, 2, &m, scratch);
		ok(fabs(m.restricted - m.loss_all) < 1e-6 && m.loss_all < log(p) - 1,
		    "p = %d, %s: logits of key frequencies only: restricted loss = loss (%.12f, %.12f)",
		    p, cases[c].op, m.restricted, m.loss_all);
		ok(fabs(m.excluded - log(p)) < 1e-6,
		    "p = %d, %s: excluded loss = ln p with the key directions removed (%.12f)", p,
		    cases[c].op, m.excluded);
		ok(fabs(m.key_var_frac - 1) < 1e-6 && m.pairs == (long)g.n * g.n,
		    "p = %d, %s: the key frequencies explain all the variance over the %ld pairs", p,
		    cases[c].op, m.pairs);
		/* A cosine's mean square is 1/2, but 1 at frequency n/2 (the alternating sign). */
		v0 = amp[0] * amp[0] * (2 * keys[0] == g.n ? 1 : 0.5);
		v1 = amp[1] * amp[1] * (2 * keys[1] == g.n ? 1 : 0.5);
		logit_measures(&g, L, p, labels, train, keys, 1, &m, scratch);
		ok(fabs(m.key_var_frac - v0 / (v0 + v1)) < 1e-6,
		    "p = %d, %s: frequency %d alone explains %.6f of it (%.9f)", p, cases[c].op,
		    keys[0], v0 / (v0 + v1), m.key_var_frac);
		/* Every frequency a key: the largest scratch logit_measures asks for. */
		int *all = xmalloc(g.nfreq * sizeof *all);
		for (int k = 0; k < g.nfreq; k++)
			all[k] = k + 1;
		logit_measures(&g, L, p, labels, train, all, g.nfreq, &m, scratch);
		ok(fabs(m.key_var_frac - 1) < 1e-6 && fabs(m.restricted - m.loss_all) < 1e-6,
		    "p = %d, %s: every frequency a key: all the variance, restricted = loss", p, cases[c].op);
		free(all);
		logit_measures(&g, L, p, labels, train, &other, 1, &m, scratch);
		ok(fabs(m.restricted - log(p)) < 1e-6 && fabs(m.excluded - m.loss_train) < 1e-6 &&
		    fabs(m.key_var_frac) < 1e-6,
		    "p = %d, %s: a frequency not in the logits: restricted ln p, excluded = train loss "
		    "(%.9f, %.9f, %.9f, %.2g)", p, cases[c].op, m.restricted, m.excluded, m.loss_train,
		    m.key_var_frac);
		free(L);
		free(labels);
		free(train);
		free(scratch);
		fourier_group_free(&g);
	}
}

static void
pizza(void)
{
	enum { P = 11 };
	struct fourier_group g, e;
	float L[P * P * P];
	int labels[P * P];

	fourier_group_init(&g, P, "add");
	for (int kind = 0; kind < 2; kind++) {
		for (int x = 0; x < P; x++)
			for (int y = 0; y < P; y++) {
				int r = x * P + y, d = (x - y + P) % P;
				labels[r] = (x + y) % P;
				for (int z = 0; z < P; z++)
					L[r * P + z] = 0;
				/* The pizza's correct logit depends on the distance; the clock's on the sum. */
				L[r * P + labels[r]] = kind == 0 ? (float)fabs(cos((TWO_PI / 2) * d / P))
				                                 : (float)(1 + labels[r] % 3);
			}
		double dd = distance_irrelevance(&g, L, P, labels);
		ok(kind == 0 ? fabs(dd) < 1e-7 : fabs(dd - 1) < 1e-7,
		    "distance irrelevance of a logit that depends only on the %s: %g",
		    kind == 0 ? "distance" : "sum", dd);
	}
	fourier_group_init(&e, 8, "add");
	ok(isnan(distance_irrelevance(&e, L, 8, labels)), "distance irrelevance is NaN for even n");
	fourier_group_free(&e);
	fourier_group_free(&g);
	double a[3] = {1, 2, 2}, b[3] = {2, 4, 4}, z[3] = {0, 0, 0}, o[3] = {2, -1, 0};
	ok(fabs(cosine(a, b, 3) - 1) < 1e-15 && fabs(cosine(a, o, 3)) < 1e-15 &&
	    isnan(cosine(a, z, 3)), "cosine: parallel 1, orthogonal 0, a zero vector NaN");
}

int
main(void)
{
	setprogname("test_progress");
	groups();
	ginis();
	spectra();
	neurons();
	logits();
	pizza();
	return tap_done();
}
