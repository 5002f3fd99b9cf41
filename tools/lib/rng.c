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
 *
 * A draw u splits into the layer i = u & 127, the sign bit u & 128 and
 * the magnitude m = u >> 8, and x = m 2^-24 zig_x[i] is accepted at once
 * when x < zig_x[i + 1] (about 98.8% of draws).  The rounded product is
 * non-decreasing in m, so that test is m < zig_k[i] for the integer
 * zig_k[i] that zig_setup finds by bisection on the very same double
 * expression: the batched path decides on integers and still returns
 * what zig_normal returns, bit for bit.
 */
#define ZIG_N 128
#define ZIG_R 3.442619855899
#define ZIG_V 9.91256303526217e-3

static double zig_x[ZIG_N + 1], zig_f[ZIG_N + 1];
static uint32_t zig_k[ZIG_N];
static double zig_signed[2 * ZIG_N];   /* by u & 255: layer i's zig_x[i] 2^-24, negative if u & 128 */
static int zig_ready;

/* The magnitude scaled into layer i: zig_normal's x before the sign. */
static double
zig_scale(uint32_t m, int i)
{
	return (double)m * (1.0 / 16777216.0) * zig_x[i];
}

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
	for (int i = 0; i < ZIG_N; i++) {
		/* The first magnitude (0..2^24) that fails the fast test. */
		uint32_t lo = 0, hi = 1u << 24;
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (zig_scale(mid, i) < zig_x[i + 1])
				lo = mid + 1;
			else
				hi = mid;
		}
		zig_k[i] = lo;
		/*
		 * m zig_x[i] 2^-24 rounds as (m 2^-24) zig_x[i] does (scaling
		 * by 2^-24 is exact), and times -1 it is exactly -x: one
		 * multiply and no branch on the sign, which is a coin toss.
		 */
		zig_signed[i] = zig_x[i] * (1.0 / 16777216.0);
		zig_signed[i + ZIG_N] = -zig_signed[i];
	}
	zig_ready = 1;
}

double
rng_zig_normal(struct rng *r)
{
	if (!zig_ready)
		zig_setup();
	for (;;) {
		uint32_t u = rng_u32(r);
		int i = (int)(u & (ZIG_N - 1));
		double x = zig_scale(u >> 8, i);

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

/*
 * The batched generator reads the same stream through a buffer of raw
 * draws.  PCG32's step is a 64-bit multiply-add, a chain of ~4 cycles a
 * draw when taken one at a time; four lanes that each jump four steps
 * (s <- a^4 s + c (1 + a + a^2 + a^3), the LCG's closed form) make four
 * independent chains, so the multiplies overlap.  A fill never takes more
 * draws than the normals still owed (each takes at least one), so the
 * generator ends exactly where the one-at-a-time path would: nothing is
 * drawn ahead and thrown away, and no state needs rewinding.
 */
#define PCG_MULT 6364136223846793005ULL
#define ZBUF 256

struct zbuf {
	struct rng *r;
	uint32_t u[ZBUF];
	size_t pos, len;
};

static uint32_t
pcg_output(uint64_t old)
{
	uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u), rot = (uint32_t)(old >> 59u);

	return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

/* The next count draws of r's stream into z->u, r advanced past them. */
static void
zbuf_fill(struct zbuf *z, size_t count)
{
	struct rng *r = z->r;
	uint64_t a = PCG_MULT, a2 = a * a, a4 = a2 * a2, c4 = r->inc * (1 + a + a2 + a2 * a);
	size_t i = 0;

	if (count >= 4) {
		uint64_t s0 = r->state, s1 = s0 * a + r->inc, s2 = s1 * a + r->inc, s3 = s2 * a + r->inc;
		for (; i + 4 <= count; i += 4) {
			z->u[i] = pcg_output(s0);
			z->u[i + 1] = pcg_output(s1);
			z->u[i + 2] = pcg_output(s2);
			z->u[i + 3] = pcg_output(s3);
			s0 = s0 * a4 + c4;
			s1 = s1 * a4 + c4;
			s2 = s2 * a4 + c4;
			s3 = s3 * a4 + c4;
		}
		r->state = s0;   /* lane 0 now stands at draw i */
	}
	for (; i < count; i++)
		z->u[i] = rng_u32(r);
	z->pos = 0;
	z->len = count;
}

/* One draw for the normal still owed (owed >= 1 normals, this one included). */
static uint32_t
zbuf_u32(struct zbuf *z, size_t owed)
{
	if (z->pos == z->len)
		zbuf_fill(z, owed < ZBUF ? owed : ZBUF);
	return z->u[z->pos++];
}

/* rng_uniform on the buffer: the high draw first, as there. */
static double
zbuf_uniform(struct zbuf *z, size_t owed)
{
	uint64_t hi = zbuf_u32(z, owed) >> 5, lo = zbuf_u32(z, owed) >> 6;

	return ((double)hi * 67108864.0 + (double)lo) * (1.0 / 9007199254740992.0);
}

/*
 * rng_zig_normal's rules after a draw u failed the fast test: the normal
 * in *x and 1, or 0 when the wedge rejects it (a new u is drawn).
 */
static int
zbuf_slow(struct zbuf *z, size_t owed, uint32_t u, double *x)
{
	int i = (int)(u & (ZIG_N - 1));
	double y = zig_scale(u >> 8, i);

	if (i == 0) {
		double a, b;
		do {
			a = -log(1.0 - zbuf_uniform(z, owed)) / ZIG_R;
			b = -log(1.0 - zbuf_uniform(z, owed));
		} while (b + b < a * a);
		*x = (u & ZIG_N) ? -(ZIG_R + a) : ZIG_R + a;
		return 1;
	}
	if (zig_f[i] + zbuf_uniform(z, owed) * (zig_f[i + 1] - zig_f[i]) < exp(-0.5 * y * y)) {
		*x = (u & ZIG_N) ? -y : y;
		return 1;
	}
	return 0;
}

void
rng_normals(struct rng *r, float *out, size_t n)
{
	struct zbuf z;
	size_t k = 0;

	if (!zig_ready)
		zig_setup();
	z.r = r;
	z.pos = z.len = 0;
	while (k < n) {
		uint32_t u;
		double x;

		/* The fast path over what the buffer holds: one draw, one normal. */
		while (z.pos < z.len) {
			uint32_t v = z.u[z.pos];
			if ((v >> 8) >= zig_k[v & (ZIG_N - 1)])
				break;
			out[k++] = (float)((double)(v >> 8) * zig_signed[v & (2 * ZIG_N - 1)]);
			z.pos++;
		}
		if (k == n)
			break;
		u = zbuf_u32(&z, n - k);
		if ((u >> 8) < zig_k[u & (ZIG_N - 1)]) {
			/* The buffer had run dry: this draw came from a new fill. */
			out[k++] = (float)((double)(u >> 8) * zig_signed[u & (2 * ZIG_N - 1)]);
		} else if (zbuf_slow(&z, n - k, u, &x)) {
			out[k++] = (float)x;
		}
	}
}
