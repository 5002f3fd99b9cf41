/* rng: PCG32 and splitmix64 against their reference vectors, and the derived draws. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "tap.h"

static void
reference_vectors(void)
{
	/* pcg32-demo from the PCG reference: pcg32_srandom_r(&rng, 42u, 54u). */
	static const uint32_t want[6] = {
		0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e,
	};
	/* splitmix64 seeded with 1234567, as in the xoshiro reference tests. */
	static const uint64_t want64[5] = {
		6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL,
		4593380528125082431ULL, 16408922859458223821ULL,
	};
	struct rng r;
	uint64_t x = 1234567;
	int same = 1;

	rng_seed_raw(&r, 42, 54);
	ok(r.state == 1753877967969059832ULL && r.inc == 109,
	    "pcg32 seeding state %llu inc %llu", (unsigned long long)r.state,
	    (unsigned long long)r.inc);
	for (int i = 0; i < 6; i++)
		same &= rng_u32(&r) == want[i];
	ok(same, "pcg32 reference vector (42, 54)");
	same = 1;
	for (int i = 0; i < 5; i++)
		same &= splitmix64(&x) == want64[i];
	ok(same, "splitmix64 reference vector (1234567)");
}

static void
streams(void)
{
	struct rng a, b, c;
	int equal = 0, same = 1;

	rng_init(&a, 7, RNG_INIT);
	rng_init(&b, 7, RNG_SHUFFLE);
	rng_init(&c, 7, RNG_INIT);
	for (int i = 0; i < 1000; i++) {
		uint32_t x = rng_u32(&a), y = rng_u32(&b), z = rng_u32(&c);
		equal += x == y;
		same &= x == z;
	}
	ok(same, "same seed and stream give the same sequence");
	ok(equal < 3, "different streams differ (%d equal draws of 1000)", equal);
	rng_init(&a, 0, RNG_INIT);
	rng_init(&b, 1, RNG_INIT);
	equal = 0;
	for (int i = 0; i < 1000; i++)
		equal += rng_u32(&a) == rng_u32(&b);
	ok(equal < 3, "neighbouring seeds differ (%d equal draws of 1000)", equal);
}

static void
draws(void)
{
	enum { N = 200000 };
	struct rng r;
	double s = 0, s2 = 0, mn = 1, mx = 0, ns = 0, ns2 = 0, signs = 0;
	int counts[7] = {0}, in_range = 1, perm_ok = 1;
	int32_t a[100];
	int seen[100] = {0};

	rng_init(&r, 3, RNG_SAMPLE);
	for (int i = 0; i < N; i++) {
		double u = rng_uniform(&r), z = rng_normal(&r);
		uint32_t k = rng_below(&r, 7);
		s += u;
		s2 += u * u;
		mn = u < mn ? u : mn;
		mx = u > mx ? u : mx;
		ns += z;
		ns2 += z * z;
		in_range &= k < 7;
		if (k < 7)
			counts[k]++;
		signs += rng_sign(&r);
	}
	ok(mn >= 0 && mx < 1, "uniform in [0, 1): min %g max %g", mn, mx);
	ok(fabs(s / N - 0.5) < 0.005 && fabs(s2 / N - 1.0 / 3) < 0.005,
	    "uniform moments: mean %g, mean square %g", s / N, s2 / N);
	ok(fabs(ns / N) < 0.01 && fabs(ns2 / N - 1) < 0.02,
	    "normal moments: mean %g, variance %g", ns / N, ns2 / N);
	ok(fabs(signs / N) < 0.01, "Rademacher mean %g", signs / N);
	ok(in_range, "bounded draws stay below the bound");
	for (int k = 0; k < 7; k++)
		in_range &= abs(counts[k] - N / 7) < 5 * 160;
	ok(in_range, "bounded draws are uniform over 0..6 (within 5 sigma)");

	for (int i = 0; i < 100; i++)
		a[i] = i;
	rng_shuffle(&r, a, 100);
	for (int i = 0; i < 100; i++) {
		if (a[i] < 0 || a[i] >= 100 || seen[a[i]]++)
			perm_ok = 0;
	}
	ok(perm_ok, "shuffle is a permutation");

	/* Every value lands in every position with probability 1/4 (Fisher-Yates is uniform). */
	{
		enum { T = 40000 };
		long at[4][4] = {{0}};
		long worst = 0;
		for (int t = 0; t < T; t++) {
			int32_t b[4] = {0, 1, 2, 3};
			rng_shuffle(&r, b, 4);
			for (int i = 0; i < 4; i++)
				at[i][b[i]]++;
		}
		for (int i = 0; i < 4; i++)
			for (int v = 0; v < 4; v++)
				if (labs(at[i][v] - T / 4) > worst)
					worst = labs(at[i][v] - T / 4);
		/* sd sqrt(T * 1/4 * 3/4) = 87: 5 sd is 433 */
		ok(worst < 433, "shuffle of 4: each value in each position 10000 +- %d times of 40000 (< 433)", (int)worst);
	}
}

int
main(void)
{
	reference_vectors();
	streams();
	draws();
	return tap_done();
}
