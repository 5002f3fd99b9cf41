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

/*
 * rng_normals against the one-at-a-time rng_zig_normal: the same floats in
 * the same order and the generator left at the same state, over calls of
 * sizes that cross every boundary of the batched path (fills of fewer
 * than four draws, the 256-draw buffer, a slow path that runs the buffer
 * dry).  The scalar side counts the draws each normal took, so the test
 * proves it met the rare paths: a normal of more than one draw left the
 * fast path (tail or wedge), one of more than three was a wedge rejection
 * drawn again, and |z| > 3.4426 came from the tail.
 */
static void
batched_normals(void)
{
	static const size_t sizes[] = {1, 2, 3, 4, 5, 7, 255, 256, 257, 511, 4096, 100003};
	enum { TOTAL = 6000000 };
	static float got[100003];
	struct rng a, b;
	long drawn = 0, slow = 0, redrawn = 0, tail = 0, mismatch = 0, state_off = 0;
	size_t c = 0;

	rng_init(&a, 11, RNG_NOISE);
	b = a;
	while (drawn < TOTAL) {
		size_t n = sizes[c++ % (sizeof sizes / sizeof sizes[0])];
		rng_normals(&a, got, n);
		for (size_t k = 0; k < n; k++) {
			struct rng before = b;
			int took = 0;
			float want = (float)rng_zig_normal(&b);
			while (before.state != b.state && took < 100) {
				rng_u32(&before);
				took++;
			}
			slow += took > 1;
			redrawn += took > 3;
			tail += fabsf(want) > 3.4426f;
			if (memcmp(&want, &got[k], sizeof want) != 0)
				mismatch++;
		}
		state_off += a.state != b.state;
		drawn += (long)n;
	}
	ok(mismatch == 0, "batched normals equal the scalar ziggurat's bit for bit (%ld of %ld differ)",
	    mismatch, drawn);
	ok(state_off == 0, "and leave the generator where it leaves it (%ld calls off)", state_off);
	/* Expected: ~1.2% leave the fast path, ~0.06% lie in the tail. */
	ok(slow > drawn / 200 && redrawn > 100 && tail > drawn / 4000,
	    "the comparison met %ld slow paths, %ld wedge rejections, %ld tail draws", slow, redrawn, tail);
}

int
main(void)
{
	reference_vectors();
	streams();
	draws();
	batched_normals();
	return tap_done();
}
