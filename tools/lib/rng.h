/*
 * rng: the suite's only source of randomness.
 *
 * PCG32 (O'Neill 2014, "PCG: a family of simple fast space-efficient
 * statistically good algorithms for random number generation"), the
 * XSH-RR 64/32 variant with a 64-bit LCG state and a selectable odd
 * increment ("stream").  pcg32_srandom(initstate, initseq) is reproduced
 * exactly so the generator can be checked against the reference vectors.
 *
 * Tools never share one generator between purposes: each purpose gets its
 * own stream from the user's seed, so adding a draw to one (say, an extra
 * initialisation) never shifts another (the minibatch order).
 */
#ifndef RNG_H
#define RNG_H

#include <stddef.h>
#include <stdint.h>

struct rng {
	uint64_t state;
	uint64_t inc;
};

/* Named streams; their numbers are part of the file formats' reproducibility. */
enum rng_stream {
	RNG_SPLIT = 1,   /* gen-modadd: which pairs are train */
	RNG_INIT = 2,    /* parameter initialisation */
	RNG_SHUFFLE = 3, /* minibatch order */
	RNG_SAMPLE = 4,  /* probes and start vectors of analyses */
	RNG_NOISE = 5,   /* Langevin noise */
};

/* The reference seeding: pcg32_srandom_r(rng, initstate, initseq). */
void rng_seed_raw(struct rng *r, uint64_t initstate, uint64_t initseq);
/*
 * The suite's seeding: the user's seed and a stream number are mixed by
 * splitmix64 into initstate, and the stream number picks the increment.
 */
void rng_init(struct rng *r, uint64_t seed, enum rng_stream stream);
/*
 * Stream number index of a purpose, for work split into independent
 * parts (the chains of a sampler): part i draws the same numbers however
 * many parts there are.
 */
void rng_init_part(struct rng *r, uint64_t seed, enum rng_stream stream, uint64_t index);

uint32_t rng_u32(struct rng *r);
/* Uniform on 0..bound-1 without modulo bias; bound >= 1. */
uint32_t rng_below(struct rng *r, uint32_t bound);
/* Uniform on [0, 1) with 53 random bits. */
double rng_uniform(struct rng *r);
/* Standard normal by Box-Muller (one draw per call: no hidden state). */
double rng_normal(struct rng *r);
/*
 * n standard normals in float by the ziggurat method (Marsaglia and Tsang
 * 2000, with Doornik's 2005 split of one 32-bit draw into disjoint layer,
 * sign and magnitude bits): about one draw per normal, for noise vectors
 * as long as the parameters.  24 bits of resolution, exact tails.
 */
void rng_normals(struct rng *r, float *out, size_t n);
/*
 * One ziggurat normal in double, one draw at a time: the reference that
 * rng_normals reproduces bit for bit, (float)rng_zig_normal(r) n times.
 * rng_normals reads the stream in bulk (several PCG32 lanes, the fast
 * accept as an integer compare) and leaves r exactly where n calls of
 * this would.
 */
double rng_zig_normal(struct rng *r);
/* Rademacher: -1 or +1 with equal probability. */
double rng_sign(struct rng *r);
/* Fisher-Yates shuffle of a[0..n-1]. */
void rng_shuffle(struct rng *r, int32_t *a, size_t n);

uint64_t splitmix64(uint64_t *x);

#endif
