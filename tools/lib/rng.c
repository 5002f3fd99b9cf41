#include "rng.h"

#include <math.h>

uint32_t
rng_u32(struct rng *r)
{
	uint64_t old = r->state;
	uint32_t xorshifted, rot;

	r->state = old * 6364136223846793005ULL + r->inc;
	xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
	rot = (uint32_t)(old >> 59u);
	return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

void
rng_seed_raw(struct rng *r, uint64_t initstate, uint64_t initseq)
{
	r->state = 0;
	r->inc = (initseq << 1u) | 1u;
	rng_u32(r);
	r->state += initstate;
	rng_u32(r);
}

uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void
rng_init(struct rng *r, uint64_t seed, enum rng_stream stream)
{
	/*
	 * Seeds 0, 1, 2... differ in few bits; splitmix64 spreads them so
	 * neighbouring seeds start far apart in the LCG's cycle.
	 */
	uint64_t x = seed ^ ((uint64_t)stream << 56);

	rng_seed_raw(r, splitmix64(&x), (uint64_t)stream);
}

uint32_t
rng_below(struct rng *r, uint32_t bound)
{
	/* Reject the 2^32 mod bound smallest values so every residue is equally likely. */
	uint32_t threshold = (0u - bound) % bound;

	for (;;) {
		uint32_t v = rng_u32(r);
		if (v >= threshold)
			return v % bound;
	}
}

double
rng_uniform(struct rng *r)
{
	uint64_t hi = rng_u32(r) >> 5, lo = rng_u32(r) >> 6;

	return ((double)hi * 67108864.0 + (double)lo) * (1.0 / 9007199254740992.0);
}

double
rng_normal(struct rng *r)
{
	/* 1 - u lies in (0, 1], so the logarithm is finite. */
	double u1 = 1.0 - rng_uniform(r), u2 = rng_uniform(r);

	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double
rng_sign(struct rng *r)
{
	return (rng_u32(r) >> 31) ? 1.0 : -1.0;
}

void
rng_shuffle(struct rng *r, int32_t *a, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = rng_below(r, (uint32_t)i);
		int32_t t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}
