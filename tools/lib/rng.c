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

void
rng_init_part(struct rng *r, uint64_t seed, enum rng_stream stream, uint64_t index)
{
	uint64_t x = seed ^ ((uint64_t)stream << 56), y;

	y = splitmix64(&x) ^ index;
	/* The index also picks the increment: parts are distinct LCG sequences. */
	rng_seed_raw(r, splitmix64(&y), (index << 8) | (uint64_t)stream);
}

/*
 * The ziggurat: 128 layers of equal area v under f(x) = exp(-x^2/2), the
 * base layer holding the tail beyond R.  zig_x[i] is layer i's right edge,
 * zig_x[0] = v / f(R) the base's virtual width, zig_x[128] = 0.
 */
#define ZIG_N 128
#define ZIG_R 3.442619855899
#define ZIG_V 9.91256303526217e-3

static double zig_x[ZIG_N + 1], zig_f[ZIG_N + 1];
static int zig_ready;

static void
zig_setup(void)
{
	zig_x[0] = ZIG_V / exp(-0.5 * ZIG_R * ZIG_R);
	zig_x[1] = ZIG_R;
	for (int i = 1; i < ZIG_N - 1; i++)
		zig_x[i + 1] = sqrt(-2.0 * log(ZIG_V / zig_x[i] + exp(-0.5 * zig_x[i] * zig_x[i])));
	zig_x[ZIG_N] = 0.0;
	for (int i = 0; i <= ZIG_N; i++)
		zig_f[i] = exp(-0.5 * zig_x[i] * zig_x[i]);
	zig_ready = 1;
}

static double
zig_normal(struct rng *r)
{
	for (;;) {
		uint32_t u = rng_u32(r);
		int i = (int)(u & (ZIG_N - 1));
		double x = (double)(u >> 8) * (1.0 / 16777216.0) * zig_x[i];

		if (x < zig_x[i + 1])   /* inside the layer's inner rectangle: ~99% */
			return (u & ZIG_N) ? -x : x;
		if (i == 0) {
			/* The tail beyond R, by Marsaglia's 1964 method. */
			double a, b;
			do {
				a = -log(1.0 - rng_uniform(r)) / ZIG_R;
				b = -log(1.0 - rng_uniform(r));
			} while (b + b < a * a);
			return (u & ZIG_N) ? -(ZIG_R + a) : ZIG_R + a;
		}
		/* The wedge between the inner rectangle and the curve. */
		if (zig_f[i] + rng_uniform(r) * (zig_f[i + 1] - zig_f[i]) < exp(-0.5 * x * x))
			return (u & ZIG_N) ? -x : x;
	}
}

void
rng_normals(struct rng *r, float *out, size_t n)
{
	if (!zig_ready)
		zig_setup();
	for (size_t k = 0; k < n; k++)
		out[k] = (float)zig_normal(r);
}
