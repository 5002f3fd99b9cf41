#include "sgld.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chains.h"
#include "rng.h"
#include "util.h"

double
sgld_default_nbeta(int batch)
{
	return batch / log((double)batch);
}

void
sgld_method_default(struct sgld_method *m)
{
	memset(m, 0, sizeof *m);
	m->precond = SGLD_PRECOND_NONE;
	m->alpha = 0.99;
	m->delta = 0.1;
}

size_t *
sgld_moving_from_ranges(const size_t *lo, const size_t *hi, int n, size_t P, size_t *count)
{
	unsigned char *in = xcalloc(P ? P : 1, 1);
	size_t *idx, c = 0;

	*count = 0;
	for (int i = 0; i < n; i++) {
		if (lo[i] > hi[i] || hi[i] > P) {
			free(in);
			return NULL;
		}
		memset(in + lo[i], 1, hi[i] - lo[i]);
	}
	for (size_t k = 0; k < P; k++)
		c += in[k];
	if (c == 0) {
		free(in);
		return NULL;
	}
	idx = xmalloc(xmul(c, sizeof(size_t)));
	for (size_t k = 0, j = 0; k < P; k++)
		if (in[k])
			idx[j++] = k;
	free(in);
	*count = c;
	return idx;
}

const char *
sgld_method_check(const struct sgld_method *m, size_t P)
{
	if (m->precond != SGLD_PRECOND_NONE && m->precond != SGLD_PRECOND_RMSPROP)
		return "unknown preconditioner";
	if (m->precond == SGLD_PRECOND_RMSPROP) {
		if (!(m->alpha >= 0 && m->alpha < 1))
			return "RMSprop alpha must be in [0, 1)";
		if (!(m->delta > 0 && isfinite(m->delta)))
			return "RMSprop delta must be positive and finite";
	}
	if (m->mala_every < 0 || (m->mala_every > 0 && !m->mala))
		return "the same-minibatch MALA (mala_every > 0) needs mala";
	if (m->moving) {
		if (m->nmoving < 1 || m->nmoving > P)
			return "the moving parameters must number 1..P";
		for (size_t j = 0; j < m->nmoving; j++)
			if (m->moving[j] >= P || (j > 0 && m->moving[j] <= m->moving[j - 1]))
				return "the moving parameters must be ascending indices below P";
	}
	return NULL;
}

double
sgld_eps_auto(double lambda_max, double nbeta, double gamma, double margin)
{
	double a = nbeta * lambda_max + gamma;

	if (!(lambda_max >= 0 && nbeta > 0 && gamma >= 0 && margin > 0 && a > 0 && isfinite(a) &&
	    isfinite(margin)))
		return NAN;
	return 4 / (margin * a);
}

double
sgld_eps_mala(double lambda_max, double nbeta, double gamma, size_t d, double accept)
{
	double top = nbeta * lambda_max + gamma, x = normal_quantile(1 - accept / 2);
	double s3 = (double)(d - 1) * gamma * gamma * gamma + top * top * top;

	if (!(lambda_max >= 0 && nbeta > 0 && gamma >= 0 && d >= 1 && accept > 0 && accept < 1 &&
	    isfinite(top) && s3 > 0 && isfinite(s3)))
		return NAN;
	/* 2 Phi(-sigma / 2) = accept, sigma^2 = eps^3 s3 / 16: eps = (64 x^2 / s3)^(1/3). */
	return cbrt(64 * x * x / s3);
}

/*
 * The stages of a step are inlined into step_blocks, which is compiled
 * twice: for AVX-512 where the CPU has it, and for the build's baseline.
 * Every stage is elementwise in float or sums in a fixed lane order, and
 * ISO C mode contracts nothing into FMAs, so both give the same bits.
 */
#define STAGE inline __attribute__((always_inline))
#define AVX512 __attribute__((target("avx512f")))

/*
 * One chain's state.  Vectors over the moving parameters are indexed by
 * j, parameters by k = at(c, j).
 */
struct chain {
	size_t P, nm;
	const size_t *idx;   /* NULL: every parameter, k = j */
	float *w, *grad;     /* (P) */
	float *grad1;        /* (P) the same-minibatch MALA's gradient at the proposal, or NULL */
	float *noise;        /* (P) for the plain unrestricted step, else (nm) */
	float *v, *G;        /* (nm) RMSprop's second moment and preconditioner, or NULL */
	float *mw;           /* (nm) MALA: the last point (a copy of w's floats), or NULL */
	double *mf;          /* (nm) MALA: the mean of the proposal from it, or NULL */
	double U;            /* MALA: the energy at mw */
	int have;            /* mw, mf and U hold a point */
};

static size_t
at(const struct chain *c, size_t j)
{
	return c->idx ? c->idx[j] : j;
}

static void
chain_init(struct chain *c, const struct sgld_target *t, const struct sgld_method *m, const float *wstar)
{
	memset(c, 0, sizeof *c);
	c->P = t->P;
	c->idx = m->moving;
	c->nm = m->moving ? m->nmoving : t->P;
	c->w = xmalloc(xmul(c->P, sizeof(float)));
	c->grad = xmalloc(xmul(c->P, sizeof(float)));
	c->noise = xmalloc(xmul(c->nm, sizeof(float)));
	memcpy(c->w, wstar, c->P * sizeof(float));
	if (m->precond == SGLD_PRECOND_RMSPROP) {
		c->v = xcalloc(c->nm, sizeof(float));
		c->G = xmalloc(xmul(c->nm, sizeof(float)));
	}
	if (m->mala) {
		c->mw = xmalloc(xmul(c->nm, sizeof(float)));
		c->mf = xmalloc(xmul(c->nm, sizeof(double)));
	}
	if (m->mala_every > 0)
		c->grad1 = xmalloc(xmul(c->P, sizeof(float)));
}

static void
chain_free(struct chain *c)
{
	free(c->w);
	free(c->grad);
	free(c->grad1);
	free(c->noise);
	free(c->v);
	free(c->G);
	free(c->mw);
	free(c->mf);
}

/*
 * RMSprop's running second moment and G from this step's gradient, as
 * devinterp in float.  The unrestricted loop carries no index map, so it
 * vectorises (sqrtf too: the build has -fno-math-errno); either loop gives
 * the same floats.
 */
static STAGE void
precondition(struct chain *c, const struct sgld_method *m, size_t j0, size_t j1)
{
	float alpha = (float)m->alpha, rest = (float)(1 - m->alpha), delta = (float)m->delta;
	float *v = c->v, *G = c->G;
	const float *grad = c->grad;

	if (!c->idx) {
		for (size_t j = j0; j < j1; j++) {
			v[j] = v[j] * alpha + rest * grad[j] * grad[j];
			G[j] = 1.0f / (sqrtf(v[j]) + delta);
		}
		return;
	}
	for (size_t j = j0; j < j1; j++) {
		float g = grad[c->idx[j]];
		v[j] = v[j] * alpha + rest * g * g;
		G[j] = 1.0f / (sqrtf(v[j]) + delta);
	}
}

/*
 * The sums of a MALA ratio over the moving parameters, in double: r2 =
 * |w - w*|^2 for the energy and d = sum (|ef|^2 - |er|^2) / G, the
 * forward minus the reverse proposal's exponent (times 2 eps).  Taking
 * the difference per parameter, not of two sums of order eps P, keeps the
 * cancellation out of the total; eight interleaved partial sums (one
 * AVX-512 register) in a fixed order break the chain of dependent
 * additions (and let the compiler pair them) while the result stays the
 * same on every run of a build.
 */
#define MALA_LANES 8   /* one AVX-512 register of doubles */

struct mala_sums {
	double r2[MALA_LANES], d[MALA_LANES];
};

static STAGE void
mala_term(struct mala_sums *t, int lane, double w, double ws, double g, double G, double mw,
    double mf, const struct sgld_params *sp, int have, double h)
{
	double e = w - ws, gU = sp->nbeta * g + sp->gamma * e;

	t->r2[lane] += e * e;
	if (have) {
		double ef = w - mf, er = mw - (w - h * G * gU);
		t->d[lane] += (ef * ef - er * er) / G;
	}
}

/*
 * Add the moving parameters j0..j1-1 (j0 a multiple of MALA_LANES) to the
 * sums at w with gradient grad (from the previous point mw, forward mean
 * mf and the G that made the step); store w's floats into mw when store
 * is set.  Each parameter goes to partial sum j mod MALA_LANES whatever
 * the ranges, so the totals do not depend on how a pass is cut into
 * blocks.
 */
static STAGE void
mala_sums(const struct chain *c, const struct sgld_params *sp, const float *wstar, const float *grad,
    int store, size_t j0, size_t j1, struct mala_sums *t)
{
	const float *w = c->w;
	double h = 0.5 * sp->epsilon;
	size_t j = j0;

	if (!c->idx && c->G && c->have) {
		/* The common case (every parameter, preconditioned, a proposal made), branch-free. */
		double nbeta = sp->nbeta, gamma = sp->gamma;
		const float *G = c->G;
		const float *mw = c->mw;
		const double *mf = c->mf;
		/* Local partial sums: through t they could alias mf, and each addition would go to memory. */
		double r2[MALA_LANES], dd[MALA_LANES];
		memcpy(r2, t->r2, sizeof r2);
		memcpy(dd, t->d, sizeof dd);
		for (; j + MALA_LANES <= j1; j += MALA_LANES) {
			for (int l = 0; l < MALA_LANES; l++) {
				double wl = w[j + l], e = wl - wstar[j + l], gU = nbeta * grad[j + l] + gamma * e;
				double ef = wl - mf[j + l], er = mw[j + l] - (wl - h * G[j + l] * gU);
				r2[l] += e * e;
				dd[l] += (ef * ef - er * er) / G[j + l];
			}
		}
		memcpy(t->r2, r2, sizeof r2);
		memcpy(t->d, dd, sizeof dd);
	} else if (!c->idx && c->have) {
		/* The same without a preconditioner (G = 1, which multiplies and divides exactly). */
		double nbeta = sp->nbeta, gamma = sp->gamma;
		const float *mw = c->mw;
		const double *mf = c->mf;
		double r2[MALA_LANES], dd[MALA_LANES];
		memcpy(r2, t->r2, sizeof r2);
		memcpy(dd, t->d, sizeof dd);
		for (; j + MALA_LANES <= j1; j += MALA_LANES) {
			for (int l = 0; l < MALA_LANES; l++) {
				double wl = w[j + l], e = wl - wstar[j + l], gU = nbeta * grad[j + l] + gamma * e;
				double ef = wl - mf[j + l], er = mw[j + l] - (wl - h * gU);
				r2[l] += e * e;
				dd[l] += ef * ef - er * er;
			}
		}
		memcpy(t->r2, r2, sizeof r2);
		memcpy(t->d, dd, sizeof dd);
	}
	for (; j < j1; j++) {
		size_t k = at(c, j);
		mala_term(t, (int)(j % MALA_LANES), w[k], wstar[k], grad[k], c->G ? c->G[j] : 1.0, c->mw[j],
		    c->mf[j], sp, c->have, h);
	}
	if (store && !c->idx)
		memcpy(c->mw + j0, w + j0, (j1 - j0) * sizeof(float));
	else if (store)
		for (j = j0; j < j1; j++)
			c->mw[j] = w[c->idx[j]];
}

/*
 * The MALA acceptance probability from the sums of a whole pass: of the
 * proposal that led from the stored point (energy c->U) to the point of
 * loss l the sums were taken at.
 */
static double
mala_accept(const struct mala_sums *t, const struct sgld_params *sp, double U, double l, double *U1)
{
	double r2 = ((t->r2[0] + t->r2[1]) + (t->r2[2] + t->r2[3])) +
	    ((t->r2[4] + t->r2[5]) + (t->r2[6] + t->r2[7]));
	double d = ((t->d[0] + t->d[1]) + (t->d[2] + t->d[3])) + ((t->d[4] + t->d[5]) + (t->d[6] + t->d[7])), la;

	*U1 = sp->nbeta * l + 0.5 * sp->gamma * r2;
	la = U - *U1 + d / (2 * sp->epsilon);
	return la >= 0 ? 1.0 : exp(la);
}

/* The forward proposal's mean from the stored point, with this step's G, for j0..j1-1. */
static STAGE void
mala_forward(struct chain *c, const struct sgld_params *sp, const float *wstar, size_t j0, size_t j1)
{
	double h = 0.5 * sp->epsilon, nbeta = sp->nbeta, gamma = sp->gamma;
	const float *w = c->w, *grad = c->grad;

	if (!c->idx && c->G) {
		for (size_t j = j0; j < j1; j++)
			c->mf[j] = w[j] - h * c->G[j] * (nbeta * grad[j] + gamma * ((double)w[j] - wstar[j]));
		return;
	}
	if (!c->idx) {
		for (size_t j = j0; j < j1; j++)
			c->mf[j] = w[j] - h * (nbeta * grad[j] + gamma * ((double)w[j] - wstar[j]));
		return;
	}
	for (size_t j = j0; j < j1; j++) {
		size_t k = at(c, j);
		double G = c->G ? c->G[j] : 1.0;
		c->mf[j] = w[k] - h * G * (nbeta * grad[k] + gamma * ((double)w[k] - wstar[k]));
	}
}

/*
 * The acceptance of the proposal just made (from mw, energy U, forward
 * mean mf, preconditioner G) with both ends on its own minibatch idx: the
 * energy and gradient at the new w on the same rows.
 */
static double
mala_same_batch(struct chain *c, const struct sgld_target *t, const struct sgld_params *sp,
    const float *wstar, const int32_t *idx)
{
	struct mala_sums sums = {{0}, {0}};
	double l1, U1;

	memset(c->grad1, 0, c->P * sizeof(float));
	l1 = t->loss_grad(t->ctx, c->grad1, c->w, idx, sp->batch);
	if (!isfinite(l1))
		return 0;
	mala_sums(c, sp, wstar, c->grad1, 0, 0, c->nm, &sums);
	return mala_accept(&sums, sp, c->U, l1, &U1);
}

/* A running mean and minimum of acceptance probabilities. */
struct acceptance {
	double sum, min;
	long n;
};

static void
accept_add(struct acceptance *a, double x)
{
	a->sum += x;
	a->min = a->n == 0 ? x : fmin(a->min, x);
	a->n++;
}

/* One move of the moving parameters j0..j1-1 with this step's gradient and their noise. */
static STAGE void
move(struct chain *c, const struct sgld_params *sp, const struct sgld_method *m, const float *wstar,
    struct rng *rnoise, size_t j0, size_t j1)
{
	float *w = c->w, *grad = c->grad, *noise = c->noise;

	rng_normals(rnoise, noise + j0, j1 - j0);
	if (m->precond == SGLD_PRECOND_RMSPROP) {
		/* devinterp: d_p = G (nbeta g) + G (gamma (w - w*)); w += -eps/2 d_p; w += sqrt(eps) sqrt(G) xi. */
		float nbeta = (float)sp->nbeta, gamma = (float)sp->gamma;
		float half = (float)(-0.5 * sp->epsilon), root = (float)sqrt(sp->epsilon);
		const float *G = c->G;
		if (!c->idx) {
			/* The same floats as the loop below, without the index map: it vectorises. */
			for (size_t k = j0; k < j1; k++) {
				float dp = G[k] * (grad[k] * nbeta) + G[k] * (gamma * (w[k] - wstar[k]));
				w[k] += half * dp;
				w[k] += root * (sqrtf(G[k]) * noise[k]);
			}
			return;
		}
		for (size_t j = j0; j < j1; j++) {
			size_t k = c->idx[j];
			float dp = G[j] * (grad[k] * nbeta) + G[j] * (gamma * (w[k] - wstar[k]));
			w[k] += half * dp;
			w[k] += root * (sqrtf(G[j]) * noise[j]);
		}
	} else {
		/* The plain update's coefficients, in float like the parameters. */
		float drift = (float)(0.5 * sp->epsilon * sp->nbeta);
		float pull = (float)(0.5 * sp->epsilon * sp->gamma);
		float sd = (float)sqrt(sp->epsilon);
		if (!c->idx) {
			/* sgld_run's loop, kept free of the index map so it vectorises. */
			for (size_t k = j0; k < j1; k++)
				w[k] += -drift * grad[k] - pull * (w[k] - wstar[k]) + sd * noise[k];
			return;
		}
		for (size_t j = j0; j < j1; j++) {
			size_t k = c->idx[j];
			w[k] += -drift * grad[k] - pull * (w[k] - wstar[k]) + sd * noise[j];
		}
	}
}

/*
 * One step after the loss l at w: the MALA sums at w (of the proposal
 * that led here), the preconditioner, the next proposal's mean and the
 * move, each parameter's in that order.  They run block by block, so a
 * block's w, gradient, G and noise are read from cache by every stage
 * instead of streaming the whole vectors once a stage; every stage is
 * elementwise, and the noise stream is read in order, so the blocks change
 * no value.
 */
#define STEP_BLOCK 2048   /* a multiple of MALA_LANES (mala_sums' partial sums) */

static STAGE void
step_blocks(struct chain *c, const struct sgld_params *sp, const struct sgld_method *m, const float *wstar,
    struct rng *rnoise, int adapt, struct mala_sums *t)
{
	for (size_t j0 = 0; j0 < c->nm; j0 += STEP_BLOCK) {
		size_t j1 = c->nm - j0 < STEP_BLOCK ? c->nm : j0 + STEP_BLOCK;
		if (m->mala)
			mala_sums(c, sp, wstar, c->grad, 1, j0, j1, t);
		if (adapt)
			precondition(c, m, j0, j1);
		if (m->mala)
			mala_forward(c, sp, wstar, j0, j1);
		move(c, sp, m, wstar, rnoise, j0, j1);
	}
}

AVX512 static void
step_blocks_avx512(struct chain *c, const struct sgld_params *sp, const struct sgld_method *m,
    const float *wstar, struct rng *rnoise, int adapt, struct mala_sums *t)
{
	step_blocks(c, sp, m, wstar, rnoise, adapt, t);
}

static void
step_blocks_base(struct chain *c, const struct sgld_params *sp, const struct sgld_method *m,
    const float *wstar, struct rng *rnoise, int adapt, struct mala_sums *t)
{
	step_blocks(c, sp, m, wstar, rnoise, adapt, t);
}

static void
step(struct chain *c, const struct sgld_params *sp, const struct sgld_method *m, const float *wstar,
    struct rng *rnoise, double l, long s, struct acceptance *mala)
{
	static int avx512 = -1;
	struct mala_sums t = {{0}, {0}};
	int adapt = c->G && !(m->freeze && s >= sp->burnin && s > 0);

	if (avx512 < 0)
		avx512 = __builtin_cpu_supports("avx512f") && !getenv("GROK_SGLD_BASELINE");
	if (avx512)
		step_blocks_avx512(c, sp, m, wstar, rnoise, adapt, &t);
	else
		step_blocks_base(c, sp, m, wstar, rnoise, adapt, &t);
	if (m->mala) {
		double U1, a = mala_accept(&t, sp, c->U, l, &U1);
		/* The proposal from step s - 1 ends here: count it if it left a draw-phase step. */
		if (c->have && s - 1 >= sp->burnin)
			accept_add(mala, a);
		c->U = U1;
		c->have = 1;
	}
}

static void
health_finish(struct sgld_health *h, const struct chain *c, const struct acceptance *mala,
    const struct acceptance *same)
{
	h->mala_n = mala->n;
	h->mala_mean = mala->n ? mala->sum / mala->n : NAN;
	h->mala_min = mala->n ? mala->min : NAN;
	h->mala_batch_n = same->n;
	h->mala_batch_mean = same->n ? same->sum / same->n : NAN;
	h->mala_batch_min = same->n ? same->min : NAN;
	h->precond_min = h->precond_max = 1;
	if (h->precond)
		for (size_t j = 0; j < c->nm; j++)
			h->precond[j] = c->G ? c->G[j] : 1.0f;
	if (c->G) {
		h->precond_min = INFINITY;
		h->precond_max = -INFINITY;
		for (size_t j = 0; j < c->nm; j++) {
			h->precond_min = fmin(h->precond_min, c->G[j]);
			h->precond_max = fmax(h->precond_max, c->G[j]);
		}
	}
}

void
sgld_run_method(const struct sgld_target *t, const struct sgld_params *sp,
    const struct sgld_method *m, const float *wstar, uint64_t seed, int chain, double *loss,
    struct sgld_chain *out, struct sgld_health *health)
{
	long total = sp->burnin + sp->draws * sp->thin, pos = t->n;  /* pos = n: shuffle first */
	int32_t *order = xmalloc(xmul((size_t)t->n, sizeof(int32_t)));
	struct acceptance mala = {0, NAN, 0}, same = {0, NAN, 0};
	struct rng shuffle, rnoise;
	struct chain c;

	chain_init(&c, t, m, wstar);
	memset(out, 0, sizeof *out);
	for (long i = 0; i < t->n; i++)
		order[i] = (int32_t)i;
	rng_init_part(&shuffle, seed, RNG_SHUFFLE, (uint64_t)chain);
	rng_init_part(&rnoise, seed, RNG_NOISE, (uint64_t)chain);
	for (long d = 0; d < sp->draws; d++)
		loss[d] = NAN;

	for (long s = 0; s < total; s++) {
		double l;

		if (pos + sp->batch > t->n) {
			rng_shuffle(&shuffle, order, (size_t)t->n);
			pos = 0;
		}
		memset(c.grad, 0, c.P * sizeof(float));
		l = t->loss_grad(t->ctx, c.grad, c.w, order + pos, sp->batch);
		pos += sp->batch;
		out->steps = s + 1;
		if (!isfinite(l)) {
			/* Nothing after a non-finite loss is a draw of anything. */
			out->nonfinite = 1;
			break;
		}
		/* As devinterp: the draw is the loss at w before the step from it. */
		if (s >= sp->burnin && (s - sp->burnin) % sp->thin == 0) {
			long d = (s - sp->burnin) / sp->thin;
			loss[d] = l;
			if (l > sp->explode)
				out->exploded++;
		}
		step(&c, sp, m, wstar, &rnoise, l, s, &mala);
		/* The rows of this step's batch are still order[pos - batch ..]: the shuffle comes next step. */
		if (m->mala_every > 0 && s >= sp->burnin && (s - sp->burnin) % m->mala_every == 0)
			accept_add(&same, mala_same_batch(&c, t, sp, wstar, order + pos - sp->batch));
	}
	if (out->nonfinite) {
		out->loss_mean = NAN;
	} else {
		double sum = 0;
		for (long d = 0; d < sp->draws; d++)
			sum += loss[d];
		out->loss_mean = sum / sp->draws;
	}
	if (health)
		health_finish(health, &c, &mala, &same);
	chain_free(&c);
	free(order);
}

void
sgld_run(const struct sgld_target *t, const struct sgld_params *sp, const float *wstar,
    uint64_t seed, int chain, double *loss, struct sgld_chain *out)
{
	struct sgld_method m;

	sgld_method_default(&m);
	sgld_run_method(t, sp, &m, wstar, seed, chain, loss, out, NULL);
}
