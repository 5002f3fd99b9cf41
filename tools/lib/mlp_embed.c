/*
 * mlp_embed: the embedding MLP's layout, kernels (forward, loss,
 * backward, exact Hessian and Gauss-Newton products) and its glue to the
 * model interface.  Layout and names: mlp_embed.h.
 *
 * The embedding is a gather: row b's input is [e(x_b), e(+), e(y_b),
 * e(=)], so its gradient is a scatter-add of the input gradient's four
 * E-wide pieces into those rows of the table.  The Hessian product goes
 * through the gather with Pearlmutter's R-operator: R{input} is the
 * gather of v's embedding rows, and the embedding times the first layer
 * is a bilinear term, whose cross products appear in the backward pass
 * as delta_0 (v's first-layer weight) for the embedding and delta_0^T
 * R{input} for the first layer's weight.  ReLU's second derivative is
 * zero almost everywhere, so the product is exact.
 */
#include "mlp_embed.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#undef I   /* complex.h, through OpenBLAS's cblas.h */
#include <lapacke.h>

#include "ckpt.h"
#include "mlp.h"
#include "util.h"

struct emb {
	struct model base;
	struct mlp_embed_config c;
	int V, L;                             /* p + 2 tokens; D + 1 linear layers */
	int in[MLP_MAX_DEPTH + 1], out[MLP_MAX_DEPTH + 1];
	size_t woff[MLP_MAX_DEPTH + 1], boff[MLP_MAX_DEPTH + 1];
	struct model_tensor tensors[1 + 2 * (MLP_MAX_DEPTH + 1)];
	float *tbl;                           /* (E, V) the probes' transposed table (embedding) */
	char gnames[MLP_MAX_DEPTH + 2][MODEL_NAME_MAX];
	const char *gptr[MLP_MAX_DEPTH + 2];
};

/* Forward and backward scratch for up to maxb rows. */
struct emb_work {
	struct model_work base;
	const struct emb *m;
	float *ain;                     /* (B, 4E) the gathered input */
	float *acts[MLP_MAX_DEPTH + 1]; /* (B, out_i) hidden layers after the ReLU; the last: logits */
	float *dlogits;                 /* (B, V) */
	float *dbuf[2];                 /* (B, max width) ping-pong deltas */
	float *din;                     /* (B, 4E) d loss / d input */
	float *probs;                   /* (B, V) softmax */
	float *mem;
};

struct emb_point {
	struct model_point base;
	const float *theta;
	const int32_t *x, *y;
};

struct emb_hvp {
	struct model_hvp base;
	struct emb_work *w;                   /* the prepared forward pass */
	float *deltas[MLP_MAX_DEPTH + 1];     /* (B, out_i) d loss / d z_i */
	float *rain;                          /* (B, 4E) R{input} */
	float *racts[MLP_MAX_DEPTH + 1];      /* (B, out_i) R{a_i}; the last: R{logits} */
	float *rbuf[2];                       /* (B, max width) R{deltas} */
	float *rdin;                          /* (B, 4E) */
	float *mem;
	struct emb_point pt;
};

static const struct emb *
emb_of(const struct model *m)
{
	return (const struct emb *)model_cast(m, &mlp_embed_family, "emb_of");
}

/* Tensor k of e: a matrix (d0, d1), or a vector (d0) when d1 is 0. */
static void
add_tensor(struct emb *e, int k, const char *name, int64_t d0, int64_t d1, size_t off, int group)
{
	const int64_t shape[2] = {d0, d1};

	model_tensor_set(&e->tensors[k], name, d1 ? 2 : 1, shape, off, group);
}

struct model *
mlp_embed_model_new(const struct mlp_embed_config *c)
{
	struct emb *e;
	size_t off;
	char name[MODEL_NAME_MAX];

	if (c->p < 2 || c->p > 4096 || c->embed < 1 || c->embed > MLP_EMBED_MAX ||
	    c->depth < 0 || c->depth > MLP_MAX_DEPTH || c->width < 1 || c->width > MLP_MAX_WIDTH)
		return NULL;
	e = xcalloc(1, sizeof *e);
	e->c = *c;
	e->V = c->p + 2;
	e->L = c->depth + 1;
	add_tensor(e, 0, "net.0.weight", e->V, c->embed, 0, 0);
	off = (size_t)e->V * (size_t)c->embed;
	snprintf(e->gnames[0], sizeof e->gnames[0], "net.0");
	for (int i = 0; i < e->L; i++) {
		e->in[i] = i == 0 ? 4 * c->embed : c->width;
		e->out[i] = i == c->depth ? e->V : c->width;
		e->woff[i] = off;
		snprintf(name, sizeof name, "net.%d.weight", 2 + 2 * i);
		add_tensor(e, 1 + 2 * i, name, e->out[i], e->in[i], off, 1 + i);
		off += (size_t)e->in[i] * (size_t)e->out[i];
		e->boff[i] = off;
		snprintf(name, sizeof name, "net.%d.bias", 2 + 2 * i);
		add_tensor(e, 2 + 2 * i, name, e->out[i], 0, off, 1 + i);
		off += (size_t)e->out[i];
		snprintf(e->gnames[1 + i], sizeof e->gnames[1 + i], "net.%d", 2 + 2 * i);
	}
	model_base_init(&e->base, &mlp_embed_family, c->p, e->tensors, 1 + 2 * e->L, e->gnames,
	    e->gptr, 1 + e->L);
	return &e->base;
}

/* The widest of 4E, W and V: the ping-pong buffers' row length. */
static size_t
widest(const struct emb *e)
{
	size_t w = (size_t)e->V;

	if ((size_t)e->c.width > w)
		w = (size_t)e->c.width;
	return w;
}

/* ---- kernels ---- */

/* a (B, 4E) = [E[x], E[+], E[y], E[=]] per row. */
static void
gather(const struct emb *e, float *a, const float *Et, const int32_t *x, int B)
{
	size_t n = (size_t)e->c.embed, sz = n * sizeof(float);

	for (int b = 0; b < B; b++) {
		float *r = a + (size_t)b * 4 * n;
		memcpy(r, Et + (size_t)x[2 * b] * n, sz);
		memcpy(r + n, Et + (size_t)e->c.p * n, sz);
		memcpy(r + 2 * n, Et + (size_t)x[2 * b + 1] * n, sz);
		memcpy(r + 3 * n, Et + (size_t)(e->c.p + 1) * n, sz);
	}
}

/* gE (V, E) += the four pieces of each row of d (B, 4E) into the rows they came from. */
static void
scatter(const struct emb *e, float *gE, const float *d, const int32_t *x, int B)
{
	size_t n = (size_t)e->c.embed;
	size_t rows[4];

	for (int b = 0; b < B; b++) {
		rows[0] = (size_t)x[2 * b];
		rows[1] = (size_t)e->c.p;
		rows[2] = (size_t)x[2 * b + 1];
		rows[3] = (size_t)e->c.p + 1;
		for (int k = 0; k < 4; k++) {
			float *g = gE + rows[k] * n;
			const float *s = d + (size_t)b * 4 * n + (size_t)k * n;
			for (size_t j = 0; j < n; j++)
				g[j] += s[j];
		}
	}
}

/* z (B, nout) = a (B, nin) . W^T + bias (bias may be NULL: none); beta 1 adds into z. */
static void
linear(float *z, const float *a, const float *W, const float *bias, int B, int nout, int nin,
    float beta)
{
	if (bias && beta == 0.0f)
		for (int b = 0; b < B; b++)
			memcpy(z + (size_t)b * nout, bias, (size_t)nout * sizeof(float));
	else if (bias)
		for (int b = 0; b < B; b++)
			for (int j = 0; j < nout; j++)
				z[(size_t)b * nout + j] += bias[j];
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, nout, nin,
	    1.0f, a, nin, W, nin, bias && beta == 0.0f ? 1.0f : beta, z, nout);
}

/* d (n) = 0 where the ReLU's output a is not positive (torch: relu'(0) = 0). */
static void
mask(float *restrict d, const float *restrict a, size_t n)
{
	for (size_t k = 0; k < n; k++)
		d[k] = a[k] > 0.0f ? d[k] : 0.0f;
}

static void
forward(const struct emb *e, struct emb_work *w, const float *theta, const int32_t *x, int B)
{
	const float *a = w->ain;

	gather(e, w->ain, theta, x, B);
	for (int i = 0; i < e->L; i++) {
		float *z = w->acts[i];
		linear(z, a, theta + e->woff[i], theta + e->boff[i], B, e->out[i], e->in[i], 0.0f);
		if (i < e->L - 1)
			for (size_t k = 0; k < (size_t)B * (size_t)e->out[i]; k++)
				z[k] = z[k] > 0.0f ? z[k] : 0.0f;
		a = z;
	}
}

/* Cross-entropy over V logits in double; dlogits = scale * (softmax - onehot(y)). */
static void
loss_rows(const struct emb *e, struct emb_work *w, struct model_eval *ev, const int32_t *y,
    int B, float scale)
{
	int V = e->V;
	const float *logits = w->acts[e->L - 1];

	for (int b = 0; b < B; b++) {
		const float *z = logits + (size_t)b * V;
		float *dz = w->dlogits + (size_t)b * V, *pr = w->probs + (size_t)b * V;
		double mx = z[0], s = 0.0, pmax;
		int arg = 0;

		for (int j = 1; j < V; j++)
			if (z[j] > mx) {
				mx = z[j];
				arg = j;
			}
		for (int j = 0; j < V; j++)
			s += exp((double)z[j] - mx);
		pmax = 1.0 / s;
		for (int j = 0; j < V; j++) {
			double q = exp((double)z[j] - mx) / s;
			pr[j] = (float)q;
			dz[j] = (float)(scale * (q - (j == y[b])));
		}
		ev->loss_sum += mx + log(s) - (double)z[y[b]];
		ev->correct += arg == y[b];
		ev->collapsed += (float)pmax == 1.0f;
	}
}

/*
 * Backward from w->dlogits: every layer's delta into deltas[i] if deltas
 * is not NULL (else the ping-pong buffers), the gradient into grad if
 * not NULL.
 */
static void
backward(const struct emb *e, struct emb_work *w, float *grad, float **deltas,
    const float *theta, const int32_t *x, int B)
{
	const float *dz = w->dlogits;
	int cur = 0;

	if (deltas)
		memcpy(deltas[e->L - 1], dz, (size_t)B * (size_t)e->V * sizeof(float));
	for (int i = e->L - 1; i >= 0; i--) {
		int nout = e->out[i], nin = e->in[i];
		const float *a = i ? w->acts[i - 1] : w->ain;
		float *dprev = i == 0 ? w->din : deltas ? deltas[i - 1] : w->dbuf[cur];

		if (grad) {
			for (int b = 0; b < B; b++)
				for (int j = 0; j < nout; j++)
					grad[e->boff[i] + j] += dz[(size_t)b * nout + j];
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nout, nin, B,
			    1.0f, dz, nout, a, nin, 1.0f, grad + e->woff[i], nin);
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, nin, nout,
		    1.0f, dz, nout, theta + e->woff[i], nin, 0.0f, dprev, nin);
		if (i > 0)
			mask(dprev, a, (size_t)B * (size_t)nin);
		dz = dprev;
		cur ^= 1;
	}
	if (grad)
		scatter(e, grad, w->din, x, B);
}

static struct emb_work *
emb_work_new(const struct emb *e, int maxb)
{
	struct emb_work *w = xcalloc(1, sizeof *w);
	size_t B = (size_t)maxb, n4 = 4 * (size_t)e->c.embed, wide = widest(e), n = 0, off = 0;

	for (int i = 0; i < e->L; i++)
		n += B * (size_t)e->out[i];
	n += 2 * B * n4 + 2 * B * (size_t)e->V + 2 * B * wide;
	w->base.maxb = maxb;
	w->base.m = &e->base;
	w->m = e;
	w->mem = xmalloc(xmul(n, sizeof(float)));
	w->ain = w->mem;
	off = B * n4;
	w->din = w->mem + off;
	off += B * n4;
	for (int i = 0; i < e->L; i++, off += B * (size_t)e->out[i - 1])
		w->acts[i] = w->mem + off;
	w->dlogits = w->mem + off;
	off += B * (size_t)e->V;
	w->probs = w->mem + off;
	off += B * (size_t)e->V;
	w->dbuf[0] = w->mem + off;
	w->dbuf[1] = w->mem + off + B * wide;
	return w;
}

static void
emb_work_free(struct emb_work *w)
{
	if (!w)
		return;
	free(w->mem);
	free(w);
}

/* ---- Hessian and Gauss-Newton products ---- */

/* R-forward: racts from v, R{logits} in racts[L-1]. */
static void
r_forward(const struct emb *e, struct emb_hvp *h, const float *theta, const float *v,
    const int32_t *x, int B)
{
	struct emb_work *w = h->w;
	const float *a = w->ain, *ra = h->rain;

	gather(e, h->rain, v, x, B);
	for (int i = 0; i < e->L; i++) {
		float *rz = h->racts[i];
		/* R{z_i} = R{a} W^T + a V_W^T + V_b */
		linear(rz, ra, theta + e->woff[i], v + e->boff[i], B, e->out[i], e->in[i], 0.0f);
		linear(rz, a, v + e->woff[i], NULL, B, e->out[i], e->in[i], 1.0f);
		if (i < e->L - 1)
			mask(rz, w->acts[i], (size_t)B * (size_t)e->out[i]);
		a = w->acts[i];
		ra = rz;
	}
}

/* rd (B, V) = scale * (diag(q) - q q^T) rz per row: the softmax cross-entropy's Hessian in the logits. */
static void
r_loss(const struct emb *e, const struct emb_hvp *h, float *rd, const float *rz, int B, float scale)
{
	int V = e->V;

	for (int b = 0; b < B; b++) {
		const float *q = h->w->probs + (size_t)b * V, *r = rz + (size_t)b * V;
		double dot = 0.0;
		for (int j = 0; j < V; j++)
			dot += (double)q[j] * r[j];
		for (int j = 0; j < V; j++)
			rd[(size_t)b * V + j] = (float)(scale * q[j] * (r[j] - dot));
	}
}

/*
 * The R-backward from rd = R{delta_L}: hv += H v (or G v, with ggn: the
 * terms with the deltas themselves dropped, leaving J^T H_out J v).
 */
static void
r_backward(const struct emb *e, struct emb_hvp *h, float *hv, const float *v, int ggn,
    const float *theta, const int32_t *x, int B)
{
	struct emb_work *w = h->w;
	const float *rd = h->rbuf[0];
	int cur = 1;

	for (int i = e->L - 1; i >= 0; i--) {
		int nout = e->out[i], nin = e->in[i];
		const float *a = i ? w->acts[i - 1] : w->ain, *ra = i ? h->racts[i - 1] : h->rain;
		float *rprev = i == 0 ? h->rdin : h->rbuf[cur];

		for (int b = 0; b < B; b++)
			for (int j = 0; j < nout; j++)
				hv[e->boff[i] + j] += rd[(size_t)b * nout + j];
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nout, nin, B,
		    1.0f, rd, nout, a, nin, 1.0f, hv + e->woff[i], nin);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, nin, nout,
		    1.0f, rd, nout, theta + e->woff[i], nin, 0.0f, rprev, nin);
		if (!ggn) {
			/* the bilinear terms: delta_i^T R{a} into W_i, delta_i V_W into R{d a} */
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nout, nin, B,
			    1.0f, h->deltas[i], nout, ra, nin, 1.0f, hv + e->woff[i], nin);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, nin, nout,
			    1.0f, h->deltas[i], nout, v + e->woff[i], nin, 1.0f, rprev, nin);
		}
		if (i > 0)
			mask(rprev, a, (size_t)B * (size_t)nin);
		rd = rprev;
		cur ^= 1;
	}
	scatter(e, hv, h->rdin, x, B);
}

static void
product(struct model_point *mp, int ggn, float *hv, const float *v)
{
	struct emb_point *pt = (struct emb_point *)mp;
	struct emb_hvp *h = (struct emb_hvp *)mp->h;
	const struct emb *e = h->w->m;

	r_forward(e, h, pt->theta, v, pt->x, mp->rows);
	r_loss(e, h, h->rbuf[0], h->racts[e->L - 1], mp->rows, mp->scale);
	r_backward(e, h, hv, v, ggn, pt->theta, pt->x, mp->rows);
}

static struct emb_hvp *
emb_hvp_new(const struct emb *e, int maxb)
{
	struct emb_hvp *h = xcalloc(1, sizeof *h);
	size_t B = (size_t)maxb, n4 = 4 * (size_t)e->c.embed, wide = widest(e), n = 0, off;

	h->base.m = &e->base;
	h->base.maxb = maxb;
	h->w = emb_work_new(e, maxb);
	for (int i = 0; i < e->L; i++)
		n += 2 * B * (size_t)e->out[i];
	n += 2 * B * n4 + 2 * B * wide;
	h->mem = xmalloc(xmul(n, sizeof(float)));
	h->rain = h->mem;
	h->rdin = h->mem + B * n4;
	off = 2 * B * n4;
	for (int i = 0; i < e->L; i++) {
		h->deltas[i] = h->mem + off;
		off += B * (size_t)e->out[i];
		h->racts[i] = h->mem + off;
		off += B * (size_t)e->out[i];
	}
	h->rbuf[0] = h->mem + off;
	h->rbuf[1] = h->mem + off + B * wide;
	return h;
}

/* ---- the reference ---- */

/* One row's forward in double: a[0] input, a[1 + i] layer i's output (post-ReLU but the last). */
static void
ref_forward(const struct emb *e, const double *th, const int32_t *x, double **a)
{
	int n = e->c.embed, tok[4] = {x[0], e->c.p, x[1], e->c.p + 1};

	for (int k = 0; k < 4; k++)
		for (int j = 0; j < n; j++)
			a[0][k * n + j] = th[(size_t)tok[k] * n + j];
	for (int i = 0; i < e->L; i++)
		for (int o = 0; o < e->out[i]; o++) {
			double s = th[e->boff[i] + o];
			for (int c = 0; c < e->in[i]; c++)
				s += th[e->woff[i] + (size_t)o * e->in[i] + c] * a[i][c];
			a[i + 1][o] = i < e->L - 1 && s < 0.0 ? 0.0 : s;
		}
}

/* One row's backward in double from d (V) = d loss / d logits; d is overwritten. */
static void
ref_backward(const struct emb *e, const double *th, const int32_t *x, double **a, double *d,
    double *dp, double *grad, double scale)
{
	int n = e->c.embed, tok[4] = {x[0], e->c.p, x[1], e->c.p + 1};

	for (int i = e->L - 1; i >= 0; i--) {
		for (int c = 0; c < e->in[i]; c++)
			dp[c] = 0.0;
		for (int o = 0; o < e->out[i]; o++) {
			grad[e->boff[i] + o] += scale * d[o];
			for (int c = 0; c < e->in[i]; c++) {
				grad[e->woff[i] + (size_t)o * e->in[i] + c] += scale * d[o] * a[i][c];
				dp[c] += d[o] * th[e->woff[i] + (size_t)o * e->in[i] + c];
			}
		}
		for (int c = 0; c < e->in[i]; c++)
			d[c] = i > 0 && a[i][c] <= 0.0 ? 0.0 : dp[c];
	}
	for (int k = 0; k < 4; k++)
		for (int j = 0; j < n; j++)
			grad[(size_t)tok[k] * n + j] += scale * d[k * n + j];
}

double
mlp_embed_ref_loss(const struct model *m, const double *theta, const int32_t *x,
    const int32_t *y, int B, double *grad)
{
	const struct emb *e = emb_of(m);
	size_t wide = widest(e) > 4 * (size_t)e->c.embed ? widest(e) : 4 * (size_t)e->c.embed;
	double *a[MLP_MAX_DEPTH + 2], *d = xcalloc(wide, sizeof *d), *dp = xcalloc(wide, sizeof *dp);
	double total = 0.0;

	for (int i = 0; i <= e->L; i++)
		a[i] = xcalloc(wide, sizeof(double));
	for (int b = 0; b < B; b++) {
		const double *z;
		double mx, s = 0.0;
		ref_forward(e, theta, x + 2 * b, a);
		z = a[e->L];
		mx = z[0];
		for (int j = 1; j < e->V; j++)
			mx = z[j] > mx ? z[j] : mx;
		for (int j = 0; j < e->V; j++)
			s += exp(z[j] - mx);
		total += mx + log(s) - z[y[b]];
		if (!grad)
			continue;
		for (int j = 0; j < e->V; j++)
			d[j] = exp(z[j] - mx) / s - (j == y[b]);
		ref_backward(e, theta, x + 2 * b, a, d, dp, grad, 1.0 / B);
	}
	for (int i = 0; i <= e->L; i++)
		free(a[i]);
	free(d);
	free(dp);
	return total / B;
}

/*
 * One row's R-forward in double: ra[0] the gathered v, ra[1 + i] R{layer
 * i's output}, masked as the forward's a (ref_forward's).
 */
static void
ref_rforward(const struct emb *e, const double *th, const double *v, const int32_t *x,
    double **a, double **ra)
{
	int n = e->c.embed, tok[4] = {x[0], e->c.p, x[1], e->c.p + 1};

	for (int k = 0; k < 4; k++)
		for (int j = 0; j < n; j++)
			ra[0][k * n + j] = v[(size_t)tok[k] * n + j];
	for (int i = 0; i < e->L; i++)
		for (int o = 0; o < e->out[i]; o++) {
			double s = v[e->boff[i] + o];
			for (int c = 0; c < e->in[i]; c++) {
				size_t q = e->woff[i] + (size_t)o * e->in[i] + c;
				s += th[q] * ra[i][c] + v[q] * a[i][c];
			}
			ra[i + 1][o] = i < e->L - 1 && a[i + 1][o] <= 0.0 ? 0.0 : s;
		}
}

/* One row's R-backward in double from d = delta and rd = R{delta} at the logits (both overwritten). */
static void
ref_rbackward(const struct emb *e, const double *th, const double *v, const int32_t *x,
    double **a, double **ra, double *d, double *rd, double *dp, double *rdp, double *hv, double scale)
{
	int n = e->c.embed, tok[4] = {x[0], e->c.p, x[1], e->c.p + 1};

	for (int i = e->L - 1; i >= 0; i--) {
		for (int c = 0; c < e->in[i]; c++)
			dp[c] = rdp[c] = 0.0;
		for (int o = 0; o < e->out[i]; o++) {
			hv[e->boff[i] + o] += scale * rd[o];
			for (int c = 0; c < e->in[i]; c++) {
				size_t q = e->woff[i] + (size_t)o * e->in[i] + c;
				hv[q] += scale * (rd[o] * a[i][c] + d[o] * ra[i][c]);
				dp[c] += d[o] * th[q];
				rdp[c] += rd[o] * th[q] + d[o] * v[q];
			}
		}
		for (int c = 0; c < e->in[i]; c++) {
			int dead = i > 0 && a[i][c] <= 0.0;
			d[c] = dead ? 0.0 : dp[c];
			rd[c] = dead ? 0.0 : rdp[c];
		}
	}
	for (int k = 0; k < 4; k++)
		for (int j = 0; j < n; j++)
			hv[(size_t)tok[k] * n + j] += scale * rd[k * n + j];
}

void
mlp_embed_ref_hvp(const struct model *m, const double *theta, const double *v,
    const int32_t *x, const int32_t *y, int B, double *hv)
{
	const struct emb *e = emb_of(m);
	size_t wide = widest(e) > 4 * (size_t)e->c.embed ? widest(e) : 4 * (size_t)e->c.embed;
	double *a[MLP_MAX_DEPTH + 2], *ra[MLP_MAX_DEPTH + 2], *buf = xcalloc(4 * wide, sizeof *buf);
	double *d = buf, *rd = buf + wide, *dp = buf + 2 * wide, *rdp = buf + 3 * wide;

	for (int i = 0; i <= e->L; i++) {
		a[i] = xcalloc(wide, sizeof(double));
		ra[i] = xcalloc(wide, sizeof(double));
	}
	for (int b = 0; b < B; b++) {
		const double *z, *rz;
		double mx, s = 0.0, dot = 0.0;
		ref_forward(e, theta, x + 2 * b, a);
		ref_rforward(e, theta, v, x + 2 * b, a, ra);
		z = a[e->L];
		rz = ra[e->L];
		mx = z[0];
		for (int j = 1; j < e->V; j++)
			mx = z[j] > mx ? z[j] : mx;
		for (int j = 0; j < e->V; j++)
			s += exp(z[j] - mx);
		for (int j = 0; j < e->V; j++)
			dot += exp(z[j] - mx) / s * rz[j];
		for (int j = 0; j < e->V; j++) {
			double q = exp(z[j] - mx) / s;
			d[j] = q - (j == y[b]);
			rd[j] = q * (rz[j] - dot);
		}
		ref_rbackward(e, theta, v, x + 2 * b, a, ra, d, rd, dp, rdp, hv, 1.0 / B);
	}
	for (int i = 0; i <= e->L; i++) {
		free(a[i]);
		free(ra[i]);
	}
	free(buf);
}

/* ---- the family's methods ---- */

static json_t *
hparams_json(const struct model *m)
{
	const struct emb *e = emb_of(m);

	return json_pack("{s:i, s:i, s:i, s:i, s:s, s:s}", "p", e->c.p, "embed", e->c.embed,
	    "depth", e->c.depth, "width", e->c.width, "encoding", "embed", "loss", "ce");
}

static struct model *
from_json(const json_t *hp, int p, char *err, size_t errlen)
{
	json_t *em = json_object_get(hp, "embed"), *d = json_object_get(hp, "depth");
	json_t *w = json_object_get(hp, "width");
	struct mlp_embed_config c = {p, 0, 0, 0};
	struct model *m;

	if (!json_is_integer(em) || !json_is_integer(d) || !json_is_integer(w)) {
		snprintf(err, errlen, "mlp-embed: hyper-parameters need integer embed, depth and width");
		return NULL;
	}
	/* out-of-range values become -1, which mlp_embed_model_new refuses */
	c.embed = json_integer_value(em) < 1 || json_integer_value(em) > MLP_EMBED_MAX ? -1 :
	    (int)json_integer_value(em);
	c.depth = json_integer_value(d) < 0 || json_integer_value(d) > MLP_MAX_DEPTH ? -1 :
	    (int)json_integer_value(d);
	c.width = json_integer_value(w) < 1 || json_integer_value(w) > MLP_MAX_WIDTH ? -1 :
	    (int)json_integer_value(w);
	if (!(m = mlp_embed_model_new(&c)))
		snprintf(err, errlen, "mlp-embed: embed 1..%d, depth 0..%d and width 1..%d",
		    MLP_EMBED_MAX, MLP_MAX_DEPTH, MLP_MAX_WIDTH);
	return m;
}

static const struct model_meta_int meta_ints[] = {
	{"p", 2, 4096, offsetof(struct mlp_embed_config, p)},
	{"embed", 1, MLP_EMBED_MAX, offsetof(struct mlp_embed_config, embed)},
	{"depth", 0, MLP_MAX_DEPTH, offsetof(struct mlp_embed_config, depth)},
	{"width", 1, MLP_MAX_WIDTH, offsetof(struct mlp_embed_config, width)},
};
#define NMETA_INTS ((int)(sizeof meta_ints / sizeof meta_ints[0]))

static struct model *
from_meta(const struct st_frame *f, const char *name, char *err, size_t errlen)
{
	struct mlp_embed_config c;
	struct model *m;

	if (model_meta_read_ints(f, meta_ints, NMETA_INTS, &c, name, err, errlen) < 0)
		return NULL;
	if (!(m = mlp_embed_model_new(&c)))
		snprintf(err, errlen, "%s: the metadata describe no model this suite builds", name);
	return m;
}

static void
to_meta(const struct model *m, struct st_writer *w)
{
	model_meta_write_ints(w, meta_ints, NMETA_INTS, &emb_of(m)->c);
}

static void
describe(const struct model *m, json_t *rec)
{
	model_record_shape(rec, emb_of(m)->c.depth, emb_of(m)->c.width);
}

static void
summary(const struct model *m, char *buf, size_t n)
{
	model_meta_words(buf, n, meta_ints, NMETA_INTS, &emb_of(m)->c);
}

/* A linear layer beyond depth (net.{2+2(D+1)}.weight) means a different model. */
static int
check_frame(const struct model *m, const struct st_frame *f, const char *name, char *err,
    size_t errlen)
{
	const struct emb *e = emb_of(m);
	char tname[MODEL_NAME_MAX];

	snprintf(tname, sizeof tname, "net.%d.weight", 2 + 2 * e->L);
	return model_frame_deeper(f, tname, "layers than depth", e->c.depth, name, err, errlen);
}

static void
model_free_emb(struct model *m)
{
	free(((struct emb *)m)->tbl);
	free(m);
}

/*
 * The source's initialisation: nn.Embedding's default N(0, 1) for the
 * table; every Linear's weight kaiming_normal_(nonlinearity="relu"),
 * N(0, 2 / fan_in), the read-out's too; biases zero.
 */
static void
init(const struct model *m, float *theta, struct rng *r)
{
	const struct emb *e = emb_of(m);

	rng_normals(r, theta, (size_t)e->V * (size_t)e->c.embed);
	for (int i = 0; i < e->L; i++) {
		size_t nw = (size_t)e->in[i] * (size_t)e->out[i];
		float sd = (float)sqrt(2.0 / e->in[i]);
		rng_normals(r, theta + e->woff[i], nw);
		for (size_t k = 0; k < nw; k++)
			theta[e->woff[i] + k] *= sd;
		memset(theta + e->boff[i], 0, (size_t)e->out[i] * sizeof(float));
	}
}

/* Uniform logits over all V = p + 2 outputs. */
static double
chance_loss(const struct model *m)
{
	return log((double)emb_of(m)->V);
}

static struct model_work *
work_new(const struct model *m, int maxb)
{
	return &emb_work_new(emb_of(m), maxb)->base;
}

static void
work_free(struct model_work *w)
{
	emb_work_free((struct emb_work *)w);
}

static void
loss_grad(struct model_work *mw, struct model_eval *ev, float *grad, const float *theta,
    const int32_t *x, const int32_t *y, int B, float scale, struct model_diag *diag)
{
	struct emb_work *w = (struct emb_work *)mw;

	(void)diag;
	forward(w->m, w, theta, x, B);
	loss_rows(w->m, w, ev, y, B, scale);
	if (grad)
		backward(w->m, w, grad, NULL, theta, x, B);
}

static struct model_hvp *
hvp_new(const struct model *m, int maxb)
{
	return &emb_hvp_new(emb_of(m), maxb)->base;
}

static void
hvp_free(struct model_hvp *mh)
{
	struct emb_hvp *h = (struct emb_hvp *)mh;

	emb_work_free(h->w);
	free(h->mem);
	free(h);
}

static struct model_point *
prepare(struct model_hvp *mh, const float *theta, const int32_t *x, const int32_t *y, int B,
    float scale, struct model_diag *diag)
{
	struct emb_hvp *h = (struct emb_hvp *)mh;
	struct emb_point *pt = &h->pt;

	(void)diag;
	model_point_init(&pt->base, mh, B, scale);
	pt->theta = theta;
	pt->x = x;
	pt->y = y;
	forward(h->w->m, h->w, theta, x, B);
	loss_rows(h->w->m, h->w, &pt->base.eval, y, B, scale);
	backward(h->w->m, h->w, NULL, h->deltas, theta, x, B);
	return &pt->base;
}

static void
apply(struct model_point *pt, float *hv, const float *v)
{
	product(pt, 0, hv, v);
}

static void
ggn_apply(struct model_point *pt, float *gv, const float *v)
{
	product(pt, 1, gv, v);
}

/* The gradient from the prepared deltas: one product per layer and the scatter of din. */
static void
grad(const struct model_point *mp, float *g)
{
	const struct emb_point *pt = (const struct emb_point *)mp;
	struct emb_hvp *h = (struct emb_hvp *)mp->h;
	const struct emb *e = h->w->m;
	int B = mp->rows;

	for (int i = 0; i < e->L; i++) {
		const float *a = i ? h->w->acts[i - 1] : h->w->ain, *d = h->deltas[i];
		for (int b = 0; b < B; b++)
			for (int j = 0; j < e->out[i]; j++)
				g[e->boff[i] + j] += d[(size_t)b * e->out[i] + j];
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, e->out[i], e->in[i], B,
		    1.0f, d, e->out[i], a, e->in[i], 1.0f, g + e->woff[i], e->in[i]);
	}
	scatter(e, g, h->w->din, pt->x, B);
}

/*
 * The training log's own fields: the spectral norm (largest singular
 * value) of every linear layer's weight, in order, the last being the
 * read-out's (the source's TODO: whether it cycles, as the Slingshot
 * paper reports).  One small SVD per layer, in double.
 */
static void
log_json(const struct model *m, const float *theta, const struct model_diag *d, json_t *rec)
{
	const struct emb *e = emb_of(m);
	json_t *arr = json_array();

	(void)d;
	for (int i = 0; i < e->L; i++) {
		int r = e->out[i], c = e->in[i], k = r < c ? r : c;
		double *a = xmalloc(xmul((size_t)r * (size_t)c, sizeof *a));
		double *s = xmalloc((size_t)k * sizeof *s), *sup = xmalloc((size_t)k * sizeof *sup);
		for (size_t q = 0; q < (size_t)r * (size_t)c; q++)
			a[q] = theta[e->woff[i] + q];
		if (LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'N', r, c, a, c, s, NULL, 1, NULL, 1, sup) != 0)
			json_array_append_new(arr, json_null());
		else
			json_array_append_new(arr, json_real(s[0]));
		free(a);
		free(s);
		free(sup);
	}
	json_object_set_new(rec, "spectral_norms", arr);
}

/*
 * Probes for the progress measures.  Neurons: the last hidden layer after
 * its ReLU.  Embeddings: x and y are looked up in the same table, rows
 * 0..p-1 of net.0.weight; the probes want each residue's vector as a
 * column, so embedding() hands out a transposed copy held by the model
 * (rewritten at every call: theta may change between calls).  The
 * gradients of a logit with respect to x's and y's vectors are the input
 * gradient's first and third E-wide pieces, which differ (the first
 * layer weighs the two positions apart).
 */
static int
probe_neurons(const struct model *m, const char **what)
{
	const struct emb *e = emb_of(m);

	*what = e->c.depth > 0 ? "the last hidden layer after its ReLU" : "none";
	return e->c.depth > 0 ? e->c.width : 0;
}

static void
probe_forward(struct model_work *mw, const float *theta, const int32_t *x, int B,
    float *logits, float *acts)
{
	struct emb_work *w = (struct emb_work *)mw;
	const struct emb *e = w->m;
	const float *z = w->acts[e->L - 1];

	forward(e, w, theta, x, B);
	/* the p residues' logits; the two operator tokens' are no class of the data */
	for (int b = 0; b < B; b++)
		memcpy(logits + (size_t)b * e->c.p, z + (size_t)b * e->V, (size_t)e->c.p * sizeof(float));
	if (acts && e->c.depth > 0)
		memcpy(acts, w->acts[e->L - 2], (size_t)B * (size_t)e->c.width * sizeof(float));
}

static int
probe_embedding(const struct model *m, const float *theta, int i, const float **E, int *d,
    int *ld, int *col0)
{
	struct emb *e = (struct emb *)(uintptr_t)emb_of(m);   /* the copy is the model's scratch */
	int n = e->c.embed, V = e->V;

	(void)i;
	if (!e->tbl)
		e->tbl = xmalloc(xmul((size_t)n * (size_t)V, sizeof *e->tbl));
	for (int r = 0; r < V; r++)
		for (int k = 0; k < n; k++)
			e->tbl[(size_t)k * V + r] = theta[(size_t)r * n + k];
	*E = e->tbl;
	*d = n;
	*ld = V;
	*col0 = 0;
	return 0;
}

static void
probe_embed_grad(struct model_work *mw, const float *theta, const int32_t *x, int B,
    const int *cls, int nc, float *gx, float *gy)
{
	struct emb_work *w = (struct emb_work *)mw;
	const struct emb *e = w->m;
	size_t n = (size_t)e->c.embed;

	forward(e, w, theta, x, B);
	for (int k = 0; k < nc; k++) {
		memset(w->dlogits, 0, (size_t)B * (size_t)e->V * sizeof(float));
		for (int b = 0; b < B; b++)
			w->dlogits[(size_t)b * e->V + cls[k]] = 1.0f;
		backward(e, w, NULL, NULL, theta, x, B);
		for (int b = 0; b < B; b++) {
			const float *din = w->din + (size_t)b * 4 * n;
			memcpy(gx + ((size_t)k * B + b) * n, din, n * sizeof(float));
			memcpy(gy + ((size_t)k * B + b) * n, din + 2 * n, n * sizeof(float));
		}
	}
}

static const struct model_probes emb_probes = {
	.neurons = probe_neurons,
	.forward = probe_forward,
	.embedding = probe_embedding,
	.embed_grad = probe_embed_grad,
};

const struct model_family mlp_embed_family = {
	.version = MODEL_FAMILY_VERSION,
	.name = "mlp-embed",
	.from_json = from_json,
	.hparams_json = hparams_json,
	.from_meta = from_meta,
	.to_meta = to_meta,
	.describe = describe,
	.summary = summary,
	.check_frame = check_frame,
	.free = model_free_emb,
	.init = init,
	.chance_loss = chance_loss,
	.work_new = work_new,
	.work_free = work_free,
	.loss_grad = loss_grad,
	.hvp_new = hvp_new,
	.hvp_free = hvp_free,
	.prepare = prepare,
	.apply = apply,
	.grad = grad,
	.ggn_apply = ggn_apply,
	.probes = &emb_probes,
	.log_json = log_json,
};
