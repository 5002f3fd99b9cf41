#include "transformer.h"
#include "gemm.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#undef I   /* complex.h, through OpenBLAS's cblas.h */

const char *const tfm_attention_names[] = {"causal", "full", NULL};
const char *const tfm_act_names[] = {"relu", "gelu", NULL};

/* Not in strict C11's math.h. */
#define SQRT1_2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

static const char *const part_names[TFM_NPART] = {
	"attn.W_K", "attn.W_Q", "attn.W_V", "attn.W_O", "mlp.W_in", "mlp.b_in", "mlp.W_out", "mlp.b_out",
};

int
tfm_layout(struct tfm *m, const struct tfm_config *c)
{
	size_t off = 0, D, F, M;

	if (c->p < 2 || c->p > 1000000 || c->layers < 1 || c->layers > TFM_MAX_LAYERS ||
	    c->d_model < 1 || c->d_model > TFM_MAX_DIM || c->heads < 1 || c->heads > TFM_MAX_DIM ||
	    c->d_head < 1 || c->d_head > TFM_MAX_DIM || c->d_mlp < 1 || c->d_mlp > 4 * TFM_MAX_DIM ||
	    !(c->alpha >= 0 && c->alpha <= 1) || c->heads * c->d_head > 4 * TFM_MAX_DIM)
		return -1;
	memset(m, 0, sizeof *m);
	m->c = *c;
	m->n_ctx = c->eq_token ? 3 : 2;
	m->d_vocab = c->eq_token ? c->p + 1 : c->p;
	m->ntensors = 3 + TFM_NPART * c->layers;
	D = (size_t)c->d_model, F = (size_t)c->heads * (size_t)c->d_head, M = (size_t)c->d_mlp;
	m->W_E = off;
	off += D * (size_t)m->d_vocab;
	m->W_pos = off;
	off += (size_t)m->n_ctx * D;
	for (int l = 0; l < c->layers; l++) {
		size_t n[TFM_NPART] = {F * D, F * D, F * D, D * F, M * D, M, D * M, D};
		for (int k = 0; k < TFM_NPART; k++) {
			m->blk[l][k] = off;
			off += n[k];
		}
	}
	m->W_U = off;
	off += D * (size_t)c->p;
	m->nparams = off;
	return 0;
}

size_t
tfm_tensor_info(const struct tfm *m, int k, char *buf, size_t n, int *ndim, int64_t shape[3])
{
	int64_t D = m->c.d_model, H = m->c.heads, E = m->c.d_head, M = m->c.d_mlp;

	if (k == 0) {
		snprintf(buf, n, "embed.W_E");
		*ndim = 2, shape[0] = D, shape[1] = m->d_vocab;
		return m->W_E;
	}
	if (k == 1) {
		snprintf(buf, n, "pos_embed.W_pos");
		*ndim = 2, shape[0] = m->n_ctx, shape[1] = D;
		return m->W_pos;
	}
	if (k == m->ntensors - 1) {
		snprintf(buf, n, "unembed.W_U");
		*ndim = 2, shape[0] = D, shape[1] = m->c.p;
		return m->W_U;
	}
	k -= 2;
	snprintf(buf, n, "blocks.%d.%s", k / TFM_NPART, part_names[k % TFM_NPART]);
	switch (k % TFM_NPART) {
	case TFM_WK: case TFM_WQ: case TFM_WV:
		*ndim = 3, shape[0] = H, shape[1] = E, shape[2] = D;
		break;
	case TFM_WO:
		*ndim = 2, shape[0] = D, shape[1] = H * E;
		break;
	case TFM_WIN:
		*ndim = 2, shape[0] = M, shape[1] = D;
		break;
	case TFM_WOUT:
		*ndim = 2, shape[0] = D, shape[1] = M;
		break;
	case TFM_BIN:
		*ndim = 1, shape[0] = M;
		break;
	default:
		*ndim = 1, shape[0] = D;
	}
	return m->blk[k / TFM_NPART][k % TFM_NPART];
}

void
tfm_init_params(const struct tfm *m, float *theta, struct rng *r)
{
	for (int k = 0; k < m->ntensors; k++) {
		char name[64];
		int ndim;
		int64_t shape[3];
		size_t off = tfm_tensor_info(m, k, name, sizeof name, &ndim, shape), n = 1;
		int bias = ndim == 1;
		/* W_U's scale is 1/sqrt(d_vocab), every other weight's 1/sqrt(d_model) */
		double sd = 1.0 / sqrt(k == m->ntensors - 1 ? (double)m->d_vocab : (double)m->c.d_model);

		for (int i = 0; i < ndim; i++)
			n *= (size_t)shape[i];
		for (size_t i = 0; i < n; i++)
			theta[off + i] = bias ? 0.0f : (float)(sd * rng_normal(r));
	}
}

/* Keys query i may attend to: 0..i with the causal mask, every one without. */
static inline int
nallowed(const struct tfm *m, int i)
{
	return m->c.attention == TFM_CAUSAL ? i + 1 : m->n_ctx;
}

/* The activation and its first two derivatives; GELU is the exact x Phi(x), as F.gelu. */
static inline double
act_f(enum tfm_act a, double x)
{
	return a == TFM_RELU ? (x > 0 ? x : 0) : 0.5 * x * erfc(-x * SQRT1_2);
}

static inline double
act_d(enum tfm_act a, double x)
{
	if (a == TFM_RELU)
		return x > 0;
	return 0.5 * erfc(-x * SQRT1_2) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}

static inline double
act_dd(enum tfm_act a, double x)
{
	return a == TFM_RELU ? 0 : INV_SQRT_2PI * exp(-0.5 * x * x) * (2 - x * x);
}

#define REAL float
#define FN(name) tfm_##name
#define GEMM cblas_sgemm
#define TFM_OWN_GEMM   /* float products through gemm.h */
#include "transformer_impl.h"
#undef TFM_OWN_GEMM
#undef REAL
#undef FN
#undef GEMM

#define REAL double
#define FN(name) tfm64_##name
#define GEMM cblas_dgemm
#include "transformer_impl.h"
#undef REAL
#undef FN
#undef GEMM

/*
 * The reference: one example at a time, every sum a written-out loop in
 * the papers' index order (einsum 'ihd,bpd->biph' and so on), masked
 * entries skipped.  It allocates; it is for tests.
 */
struct ref_ex {
	int T, D, H, E, F, M, L;
	double *x;            /* (L+1, T, D) residual into each block, and the output */
	double *q, *k, *v;    /* (L, H, T, E) */
	double *pat, *att;    /* (L, H, T, T) */
	double *z;            /* (L, T, F) */
	double *x1;           /* (L, T, D) */
	double *pre, *post;   /* (L, T, M) */
	double *dx, *dx1, *dz, *dpre, *dq, *dk, *dv, *dsc;   /* one layer's deltas */
	double *logit;        /* (C) */
};

#define RX(r, l, t, d) (r)->x[(((size_t)(l) * (r)->T + (t)) * (r)->D) + (d)]
#define RH(r, a, l, h, t, e) (r)->a[((((size_t)(l) * (r)->H + (h)) * (r)->T + (t)) * (r)->E) + (e)]
#define RA(r, a, l, h, i, j) (r)->a[((((size_t)(l) * (r)->H + (h)) * (r)->T + (i)) * (r)->T) + (j)]
#define RT(r, a, l, t, n, i) (r)->a[(((size_t)(l) * (r)->T + (t)) * (n)) + (i)]

static void
ref_attn(const struct tfm *m, struct ref_ex *r, const double *th, int l)
{
	const double *WK = th + m->blk[l][TFM_WK], *WQ = th + m->blk[l][TFM_WQ];
	const double *WV = th + m->blk[l][TFM_WV], *WO = th + m->blk[l][TFM_WO];
	int T = r->T, D = r->D, H = r->H, E = r->E, F = r->F;
	double alpha = m->c.alpha;

	for (int h = 0; h < H; h++)
		for (int t = 0; t < T; t++)
			for (int e = 0; e < E; e++) {
				double sq = 0, sk = 0, sv = 0;
				for (int d = 0; d < D; d++) {
					size_t w = ((size_t)h * E + e) * D + d;
					sq += WQ[w] * RX(r, l, t, d);
					sk += WK[w] * RX(r, l, t, d);
					sv += WV[w] * RX(r, l, t, d);
				}
				RH(r, q, l, h, t, e) = sq, RH(r, k, l, h, t, e) = sk, RH(r, v, l, h, t, e) = sv;
			}
	for (int h = 0; h < H; h++)
		for (int i = 0; i < T; i++) {
			double s[3], mx = -INFINITY, sum = 0;
			int nj = nallowed(m, i);
			for (int j = 0; j < nj; j++) {
				s[j] = 0;
				for (int e = 0; e < E; e++)
					s[j] += RH(r, k, l, h, j, e) * RH(r, q, l, h, i, e);
				s[j] /= sqrt((double)E);
				mx = fmax(mx, s[j]);
			}
			for (int j = 0; j < nj; j++)
				sum += exp(s[j] - mx);
			for (int j = 0; j < T; j++) {
				RA(r, pat, l, h, i, j) = j < nj ? exp(s[j] - mx) / sum : 0;
				RA(r, att, l, h, i, j) = j < nj ? RA(r, pat, l, h, i, j) * alpha + (1 - alpha) : 0;
			}
			for (int e = 0; e < E; e++) {
				double zz = 0;
				for (int j = 0; j < T; j++)
					zz += RH(r, v, l, h, j, e) * RA(r, att, l, h, i, j);
				RT(r, z, l, i, F, h * E + e) = zz;
			}
		}
	for (int t = 0; t < T; t++)
		for (int d = 0; d < D; d++) {
			double o = 0;
			for (int f = 0; f < F; f++)
				o += WO[(size_t)d * F + f] * RT(r, z, l, t, F, f);
			RT(r, x1, l, t, D, d) = RX(r, l, t, d) + o;
		}
}

static void
ref_mlp(const struct tfm *m, struct ref_ex *r, const double *th, int l)
{
	const double *Win = th + m->blk[l][TFM_WIN], *bin = th + m->blk[l][TFM_BIN];
	const double *Wout = th + m->blk[l][TFM_WOUT], *bout = th + m->blk[l][TFM_BOUT];
	int T = r->T, D = r->D, M = r->M;

	for (int t = 0; t < T; t++) {
		for (int j = 0; j < M; j++) {
			double s = bin[j];
			for (int d = 0; d < D; d++)
				s += Win[(size_t)j * D + d] * RT(r, x1, l, t, D, d);
			RT(r, pre, l, t, M, j) = s;
			RT(r, post, l, t, M, j) = act_f(m->c.act, s);
		}
		for (int d = 0; d < D; d++) {
			double s = bout[d];
			for (int j = 0; j < M; j++)
				s += Wout[(size_t)d * M + j] * RT(r, post, l, t, M, j);
			RX(r, l + 1, t, d) = RT(r, x1, l, t, D, d) + s;
		}
	}
}

/* Backward through block l's MLP: r->dx (d/d output) to r->dx1. */
static void
ref_mlp_back(const struct tfm *m, struct ref_ex *r, const double *th, double *g, int l)
{
	const double *Win = th + m->blk[l][TFM_WIN], *Wout = th + m->blk[l][TFM_WOUT];
	double *gWin = g + m->blk[l][TFM_WIN], *gbin = g + m->blk[l][TFM_BIN];
	double *gWout = g + m->blk[l][TFM_WOUT], *gbout = g + m->blk[l][TFM_BOUT];
	int T = r->T, D = r->D, M = r->M;

	for (int t = 0; t < T; t++) {
		const double *dout = r->dx + (size_t)t * D;
		for (int j = 0; j < M; j++) {
			double s = 0;
			for (int d = 0; d < D; d++) {
				s += dout[d] * Wout[(size_t)d * M + j];
				gWout[(size_t)d * M + j] += dout[d] * RT(r, post, l, t, M, j);
			}
			r->dpre[(size_t)t * M + j] = s * act_d(m->c.act, RT(r, pre, l, t, M, j));
			gbin[j] += r->dpre[(size_t)t * M + j];
		}
		for (int d = 0; d < D; d++) {
			double s = dout[d];
			gbout[d] += dout[d];
			for (int j = 0; j < M; j++) {
				s += r->dpre[(size_t)t * M + j] * Win[(size_t)j * D + d];
				gWin[(size_t)j * D + d] += r->dpre[(size_t)t * M + j] * RT(r, x1, l, t, D, d);
			}
			r->dx1[(size_t)t * D + d] = s;
		}
	}
}

/* Backward through the attention heads' mixing: r->dz to r->dq, dk, dv (H, T, E). */
static void
ref_heads_back(const struct tfm *m, struct ref_ex *r, int l)
{
	int T = r->T, H = r->H, E = r->E, F = r->F;
	double alpha = m->c.alpha, rs = 1 / sqrt((double)E);

	for (int h = 0; h < H; h++) {
		double *dsc = r->dsc + (size_t)h * T * T;
		for (int i = 0; i < T; i++) {
			double datt[3], dot = 0;
			for (int j = 0; j < T; j++) {
				datt[j] = 0;
				for (int e = 0; e < E; e++)
					datt[j] += r->dz[(size_t)i * F + h * E + e] * RH(r, v, l, h, j, e);
				dot += RA(r, pat, l, h, i, j) * alpha * datt[j];
			}
			for (int j = 0; j < T; j++)
				dsc[i * T + j] = RA(r, pat, l, h, i, j) * (alpha * datt[j] - dot) * rs;
		}
		for (int t = 0; t < T; t++)
			for (int e = 0; e < E; e++) {
				double sq = 0, sk = 0, sv = 0;
				for (int j = 0; j < T; j++) {
					sq += dsc[t * T + j] * RH(r, k, l, h, j, e);
					sk += dsc[j * T + t] * RH(r, q, l, h, j, e);
					sv += RA(r, att, l, h, j, t) * r->dz[(size_t)j * F + h * E + e];
				}
				size_t o = ((size_t)h * T + t) * E + e;
				r->dq[o] = sq, r->dk[o] = sk, r->dv[o] = sv;
			}
	}
}

/* Backward through block l's attention: r->dx1 to r->dx (d/d the block's input). */
static void
ref_attn_back(const struct tfm *m, struct ref_ex *r, const double *th, double *g, int l)
{
	size_t o[3] = {m->blk[l][TFM_WQ], m->blk[l][TFM_WK], m->blk[l][TFM_WV]};
	const double *WO = th + m->blk[l][TFM_WO];
	double *gWO = g + m->blk[l][TFM_WO], *dqkv[3] = {r->dq, r->dk, r->dv};
	int T = r->T, D = r->D, H = r->H, E = r->E, F = r->F;

	for (int t = 0; t < T; t++)
		for (int f = 0; f < F; f++) {
			double s = 0;
			for (int d = 0; d < D; d++) {
				s += r->dx1[(size_t)t * D + d] * WO[(size_t)d * F + f];
				gWO[(size_t)d * F + f] += r->dx1[(size_t)t * D + d] * RT(r, z, l, t, F, f);
			}
			r->dz[(size_t)t * F + f] = s;
		}
	ref_heads_back(m, r, l);
	for (int t = 0; t < T; t++)
		for (int d = 0; d < D; d++) {
			double s = r->dx1[(size_t)t * D + d];
			for (int a = 0; a < 3; a++)
				for (int h = 0; h < H; h++)
					for (int e = 0; e < E; e++) {
						size_t w = ((size_t)h * E + e) * D + d;
						double dd = dqkv[a][((size_t)h * T + t) * E + e];
						s += dd * th[o[a] + w];
						g[o[a] + w] += dd * RX(r, l, t, d);
					}
			r->dx[(size_t)t * D + d] = s;
		}
}

static double
ref_example(const struct tfm *m, struct ref_ex *r, const double *th, const int32_t tok[3],
    int label, double *g, double gscale, double *logits)
{
	int T = r->T, D = r->D, C = m->c.p, L = r->L, V = m->d_vocab;
	const double *WU = th + m->W_U;
	double *z = r->logit, mx = -INFINITY, s = 0, lse;

	for (int t = 0; t < T; t++)
		for (int d = 0; d < D; d++)
			RX(r, 0, t, d) = th[m->W_E + (size_t)d * V + tok[t]] + th[m->W_pos + (size_t)t * D + d];
	for (int l = 0; l < L; l++) {
		ref_attn(m, r, th, l);
		ref_mlp(m, r, th, l);
	}
	for (int c = 0; c < C; c++) {
		z[c] = 0;
		for (int d = 0; d < D; d++)
			z[c] += RX(r, L, T - 1, d) * WU[(size_t)d * C + c];
		mx = fmax(mx, z[c]);
	}
	for (int c = 0; c < C; c++)
		s += exp(z[c] - mx);
	lse = mx + log(s);
	if (logits)
		memcpy(logits, z, (size_t)C * sizeof *z);
	if (!g)
		return lse - z[label];
	memset(r->dx, 0, (size_t)T * D * sizeof *r->dx);
	for (int c = 0; c < C; c++) {
		double dl = gscale * (exp(z[c] - lse) - (c == label));
		for (int d = 0; d < D; d++) {
			g[m->W_U + (size_t)d * C + c] += RX(r, L, T - 1, d) * dl;
			r->dx[(size_t)(T - 1) * D + d] += dl * WU[(size_t)d * C + c];
		}
	}
	for (int l = L - 1; l >= 0; l--) {
		ref_mlp_back(m, r, th, g, l);
		ref_attn_back(m, r, th, g, l);
	}
	for (int t = 0; t < T; t++)
		for (int d = 0; d < D; d++) {
			g[m->W_E + (size_t)d * V + tok[t]] += r->dx[(size_t)t * D + d];
			g[m->W_pos + (size_t)t * D + d] += r->dx[(size_t)t * D + d];
		}
	return lse - z[label];
}

double
tfm_ref_loss(const struct tfm *m, const double *theta, const int32_t *x, const int32_t *y, int B,
    double *grad, double *logits)
{
	struct ref_ex r = {.T = m->n_ctx, .D = m->c.d_model, .H = m->c.heads, .E = m->c.d_head,
	    .F = m->c.heads * m->c.d_head, .M = m->c.d_mlp, .L = m->c.layers};
	size_t T = (size_t)r.T, D = (size_t)r.D, HTE = (size_t)r.H * T * (size_t)r.E, L = (size_t)r.L;
	size_t HTT = (size_t)r.H * T * T, TF = T * (size_t)r.F, TM = T * (size_t)r.M;
	double total = 0, *mem, *cur;

	mem = cur = xcalloc((L + 1) * T * D + L * (3 * HTE + 2 * HTT + TF + T * D + 2 * TM) +
	    2 * T * D + TF + TM + 3 * HTE + HTT + (size_t)m->c.p, sizeof *mem);
	r.x = cur, cur += (L + 1) * T * D;
	r.q = cur, cur += L * HTE;
	r.k = cur, cur += L * HTE;
	r.v = cur, cur += L * HTE;
	r.pat = cur, cur += L * HTT;
	r.att = cur, cur += L * HTT;
	r.z = cur, cur += L * TF;
	r.x1 = cur, cur += L * T * D;
	r.pre = cur, cur += L * TM;
	r.post = cur, cur += L * TM;
	r.dx = cur, cur += T * D;
	r.dx1 = cur, cur += T * D;
	r.dz = cur, cur += TF;
	r.dpre = cur, cur += TM;
	r.dq = cur, cur += HTE;
	r.dk = cur, cur += HTE;
	r.dv = cur, cur += HTE;
	r.dsc = cur, cur += HTT;
	r.logit = cur;
	for (int b = 0; b < B; b++) {
		int32_t tok[3] = {x[2 * b], x[2 * b + 1], m->c.p};
		total += ref_example(m, &r, theta, tok, y[b], grad, 1.0 / B,
		    logits ? logits + (size_t)b * m->c.p : NULL);
	}
	free(mem);
	return total / B;
}
