#include "gemm.h"
#include "gram.h"
#include "mlp.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#undef I   /* complex.h, through OpenBLAS's cblas.h */

/*
 * The elementwise passes (bias and ReLU gradients, the first layer's
 * gather and scatter, transposes) compiled twice, for the baseline ISA and
 * for AVX-512, the loader picking by CPU: at width 128 they are a fifth of
 * the training step, and the baseline build's vectors hold four floats.
 * Elementwise float operations and sums that keep their order round the
 * same at any vector width, so both clones give the same bits.
 */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define CLONES __attribute__((target_clones("avx512f", "default")))
#endif
#endif
#ifndef CLONES
#define CLONES
#endif
#ifdef __clang__
/* clang contracts a * b + c into an FMA where the target has one: not in one clone only */
#pragma STDC FP_CONTRACT OFF
#endif

const char *const mlp_encoding_names[] = {"onehot", "int", NULL};
const char *const mlp_loss_names[] = {"ce", "mse", NULL};

int
mlp_layout(struct mlp *m, const struct mlp_config *c)
{
	size_t off = 0;

	if (c->p < 2 || c->depth < 0 || c->depth > MLP_MAX_DEPTH ||
	    c->width < 1 || c->width > MLP_MAX_WIDTH)
		return -1;
	memset(m, 0, sizeof *m);
	m->c = *c;
	m->nlayers = c->depth + 1;
	for (int i = 0; i < m->nlayers; i++) {
		m->in[i] = i == 0 ? (c->encoding == MLP_ONEHOT ? 2 * c->p : 2) : c->width;
		m->out[i] = i == c->depth ? c->p : c->width;
		m->woff[i] = off;
		off += (size_t)m->in[i] * (size_t)m->out[i];
		m->boff[i] = off;
		off += (size_t)m->out[i];
	}
	m->nparams = off;
	return 0;
}

void
mlp_tensor_name(int k, char *buf, size_t n)
{
	snprintf(buf, n, "layers.%d.%s", k / 2, k % 2 ? "bias" : "weight");
}

size_t
mlp_tensor_info(const struct mlp *m, int k, int *ndim, int64_t shape[2])
{
	int i = k / 2;

	shape[0] = m->out[i];
	if (k % 2) {
		*ndim = 1;
		return m->boff[i];
	}
	*ndim = 2;
	shape[1] = m->in[i];
	return m->woff[i];
}

void
mlp_init_params(const struct mlp *m, float *theta, struct rng *r)
{
	/*
	 * nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) gives the
	 * weight bound sqrt(1/3) * sqrt(3/fan_in) = 1/sqrt(fan_in), the
	 * same as the bias's.  Weight before bias, layer by layer, as torch.
	 */
	for (int i = 0; i < m->nlayers; i++) {
		double bound = 1.0 / sqrt((double)m->in[i]);
		size_t nw = (size_t)m->in[i] * (size_t)m->out[i];
		for (size_t k = 0; k < nw; k++)
			theta[m->woff[i] + k] = (float)((2.0 * rng_uniform(r) - 1.0) * bound);
		for (int k = 0; k < m->out[i]; k++)
			theta[m->boff[i] + k] = (float)((2.0 * rng_uniform(r) - 1.0) * bound);
	}
}

struct mlp_work *
mlp_work_new(const struct mlp *m, int maxb)
{
	struct mlp_work *w = xcalloc(1, sizeof *w);
	size_t B = (size_t)maxb, W = (size_t)m->c.width, V = (size_t)m->c.p;
	size_t wide = W > V ? W : V, n, off = 0, acts = xmul(B, W) * (size_t)m->c.depth;
	size_t scatter = (size_t)m->in[0] * (size_t)m->out[0];
	size_t rows = (size_t)(maxb < MLP_ROWS ? maxb : MLP_ROWS);

	w->base.maxb = maxb;
	w->m = m;
	n = acts + 3 * xmul(B, V) + 2 * xmul(B, wide) + scatter + m->nparams + 2 * rows * wide;
	w->mem = xmalloc(xmul(n, sizeof(float)));
	for (int i = 0; i < m->c.depth; i++, off += B * W)
		w->acts[i] = w->mem + off;
	w->logits = w->mem + off;
	off += B * V;
	w->dlogits = w->mem + off;
	off += B * V;
	w->xin = w->mem + off;   /* (B, 2) <= (B, V) since V >= 2 */
	off += B * V;
	w->dbuf[0] = w->mem + off;
	off += B * wide;
	w->dbuf[1] = w->mem + off;
	off += B * wide;
	w->scatter = w->mem + off;
	off += scatter;
	w->wt = w->mem + off;
	off += m->nparams;
	w->rows[0] = w->mem + off;
	w->rows[1] = w->mem + off + rows * wide;
	return w;
}

void
mlp_work_free(struct mlp_work *w)
{
	if (!w)
		return;
	free(w->mem);
	free(w);
}

/* t (cols, rows) = s (rows, cols) transposed, in 16 x 16 blocks that stay in L1. */
static CLONES void
transpose(float *restrict t, const float *restrict s, int rows, int cols)
{
	for (int r0 = 0; r0 < rows; r0 += 16)
		for (int c0 = 0; c0 < cols; c0 += 16) {
			int r1 = r0 + 16 < rows ? r0 + 16 : rows, c1 = c0 + 16 < cols ? c0 + 16 : cols;
			for (int c = c0; c < c1; c++)
				for (int r = r0; r < r1; r++)
					t[(size_t)c * rows + r] = s[(size_t)r * cols + c];
		}
}

/* wt = the weights of layers 1..L-1 of theta transposed, each (in, out) at its woff. */
static void
weights_t(const struct mlp *m, float *wt, const float *theta)
{
	for (int i = 1; i < m->nlayers; i++)
		transpose(wt + m->woff[i], theta + m->woff[i], m->out[i], m->in[i]);
}

/*
 * Whether the passes go in blocks of MLP_ROWS rows, with the layers'
 * products on transposed weights (gemm reads an untransposed B where it
 * lies, where a transposed one is packed at every call): only when that
 * changes no bit (gemm_splittable), and with a hidden layer to go through.
 */
static int
in_blocks(const struct mlp *m)
{
	return m->nlayers > 1 && gemm_splittable(m->c.width > m->c.p ? m->c.width : m->c.p);
}

/*
 * out (n, nout) = the first layer of n rows x (n, 2), through the ReLU if
 * relu: one-hot, a gather from T (nin, nout), layer 0's weight transposed
 * so that each gather reads two contiguous rows; int, from the weight,
 * the rows' integers into xin (n, 2) as floats.
 */
static CLONES void
layer0_rows(const struct mlp *m, const float *T, const float *theta, float *xin, float *out,
    const int32_t *x, int B, int relu)
{
	const float *W0 = theta + m->woff[0], *b0 = theta + m->boff[0];
	int nout = m->out[0], p = m->c.p;

	if (m->c.encoding == MLP_ONEHOT) {
		for (int b = 0; b < B; b++) {
			const float *tx = T + (size_t)x[2 * b] * nout;
			const float *ty = T + (size_t)(p + x[2 * b + 1]) * nout;
			float *o = out + (size_t)b * nout;
			if (relu)
				for (int j = 0; j < nout; j++) {
					float s = tx[j] + ty[j] + b0[j];
					o[j] = s > 0.0f ? s : 0.0f;
				}
			else
				for (int j = 0; j < nout; j++)
					o[j] = tx[j] + ty[j] + b0[j];
		}
		return;
	}
	for (int b = 0; b < B; b++) {
		float xa = (float)x[2 * b], xb = (float)x[2 * b + 1];
		float *o = out + (size_t)b * nout;
		xin[2 * b] = xa;
		xin[2 * b + 1] = xb;
		for (int j = 0; j < nout; j++)
			o[j] = W0[2 * j] * xa + W0[2 * j + 1] * xb + b0[j];
		if (relu)
			for (int j = 0; j < nout; j++)
				o[j] = o[j] > 0.0f ? o[j] : 0.0f;
	}
}

/* out (B, nout) = first layer of x (B, 2), through the ReLU if relu (w->scatter: its T). */
static void
layer0_forward(const struct mlp *m, struct mlp_work *w, float *out,
    const float *theta, const int32_t *x, int B, int relu)
{
	if (m->c.encoding == MLP_ONEHOT)
		transpose(w->scatter, theta + m->woff[0], m->out[0], m->in[0]);
	layer0_rows(m, w->scatter, theta, w->xin, out, x, B, relu);
}

/* z (B, nout) = a (B, nin) . W^T + beta z, then e: from Wt (nin, nout) = W^T if not NULL. */
static void
times_wt(float *z, const float *a, const float *W, const float *Wt, int B, int nout, int nin,
    float beta, const struct gemm_epi *e)
{
	if (Wt)
		gemm(0, 0, B, nout, nin, a, nin, Wt, nout, beta, z, nout, e);
	else
		gemm(0, 1, B, nout, nin, a, nin, W, nin, beta, z, nout, e);
}

/*
 * d (n) = d where the ReLU's output a was positive, else 0 (torch:
 * relu'(0) = 0); a branch-free select, so that the compiler vectorises it.
 */
static CLONES void
relu_backward(float *restrict d, const float *restrict a, size_t n)
{
	for (size_t k = 0; k < n; k++)
		d[k] = a[k] > 0.0f ? d[k] : 0.0f;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))

/*
 * add_rows with 64 columns of g at a time held in four registers over all
 * the rows (the plain loop reloads and stores g at every row, a chain
 * through memory): each element's sum in the same row order.
 */
static AVX512 void
add_rows_avx512(float *restrict g, const float *restrict d, int B, int n)
{
	for (int j0 = 0; j0 < n; j0 += 64) {
		__mmask16 m[4];
		__m512 acc[4];
		for (int h = 0; h < 4; h++) {
			int left = n - j0 - 16 * h;
			m[h] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
			acc[h] = _mm512_maskz_loadu_ps(m[h], g + j0 + 16 * h);
		}
		for (int b = 0; b < B; b++) {
			const float *r = d + (size_t)b * (size_t)n + j0;
			for (int h = 0; h < 4; h++)
				acc[h] = _mm512_add_ps(acc[h], _mm512_maskz_loadu_ps(m[h], r + 16 * h));
		}
		for (int h = 0; h < 4; h++)
			_mm512_mask_storeu_ps(g + j0 + 16 * h, m[h], acc[h]);
	}
}
#endif

/* g (n) += each of the B rows of d (B, n). */
static void
add_rows(float *restrict g, const float *restrict d, int B, int n)
{
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();   /* at once if done: a look at a flag */
	if (__builtin_cpu_supports("avx512f")) {
		add_rows_avx512(g, d, B, n);
		return;
	}
#endif
	for (int b = 0; b < B; b++)
		for (int j = 0; j < n; j++)
			g[j] += d[(size_t)b * n + j];
}

/* Layers 1..L-1 of the forward pass for rows r0.. r0 + n (wt: the weights transposed, or NULL). */
static void
forward_block(const struct mlp *m, struct mlp_work *w, const float *theta, const float *wt, int r0,
    int n)
{
	int L = m->nlayers;

	for (int i = 1; i < L; i++) {
		int nout = m->out[i], nin = m->in[i];
		struct gemm_epi e = {theta + m->boff[i], i < L - 1, NULL, 0, {NULL, NULL}, {0, 0}};
		times_wt((i == L - 1 ? w->logits : w->acts[i]) + (size_t)r0 * nout,
		    w->acts[i - 1] + (size_t)r0 * nin, theta + m->woff[i], wt ? wt + m->woff[i] : NULL, n,
		    nout, nin, 0.0f, &e);
	}
}

void
mlp_forward(const struct mlp *m, struct mlp_work *w, const float *theta,
    const int32_t *x, int B)
{
	int L = m->nlayers;
	float *out0 = L == 1 ? w->logits : w->acts[0];

	int blocks = in_blocks(m), rows = blocks ? MLP_ROWS : B;

	layer0_forward(m, w, out0, theta, x, B, L > 1);
	if (L == 1)
		return;
	if (blocks)
		weights_t(m, w->wt, theta);
	for (int r0 = 0; r0 < B; r0 += rows)
		forward_block(m, w, theta, blocks ? w->wt : NULL, r0, B - r0 < rows ? B - r0 : rows);
}

/*
 * One row of the softmax's numerator: e (V) = exp(z - max z), with the
 * first index of the largest logit, the sum of e in double (for the loss)
 * and in float (the float32 softmax's largest probability is 1/fsum).
 */
struct softmax_row {
	float mx, fsum;
	double s;
	int arg;
};

static void
softmax_row_scalar(const float *z, float *e, int V, struct softmax_row *r)
{
	r->mx = z[0];
	r->arg = 0;
	r->s = 0.0;
	r->fsum = 0.0f;
	for (int j = 1; j < V; j++)
		if (z[j] > r->mx) {
			r->mx = z[j];
			r->arg = j;
		}
	for (int j = 0; j < V; j++) {
		e[j] = expf(z[j] - r->mx);
		r->s += e[j];
		r->fsum += e[j];
	}
}

#if defined(__x86_64__) && defined(__GNUC__)
/*
 * expf for x <= 0 (Cephes's: n = round(x log2 e), r = x - n ln 2 in two
 * parts, a degree-7 polynomial, times 2^n), about an ulp from exp; below
 * -104 it is 0 as expf's float is, and NaN stays NaN.
 */
static inline AVX512 __m512
exp_nonpos(__m512 x)
{
	__m512 n, r, r2, p;

	x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);   /* NaN in x stays (second operand) */
	n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
	    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
	r2 = _mm512_mul_ps(r, r);
	p = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r, _mm512_set1_ps(1.3981999507e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
	p = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

/*
 * softmax_row_scalar's results, sixteen logits a vector: the same max and
 * first index (NaN logits are passed over as there, unless z[0] is one),
 * the sums in lanes and then a fixed tree, so not the scalar's last bits.
 */
static AVX512 void
softmax_row_avx512(const float *z, float *e, int V, struct softmax_row *r)
{
	__m512 mx = _mm512_set1_ps(z[0]), fs = _mm512_setzero_ps();
	__m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
	int j;

	for (j = 0; j < V; j += 16) {
		__mmask16 m = V - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (V - j)) - 1);
		mx = _mm512_max_ps(_mm512_mask_loadu_ps(mx, m, z + j), mx);
	}
	r->mx = _mm512_reduce_max_ps(mx);
	r->arg = 0;
	for (j = 0; j < V; j += 16) {
		__mmask16 m = V - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (V - j)) - 1);
		__mmask16 eq = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, z + j),
		    _mm512_set1_ps(r->mx), _CMP_EQ_OQ);
		if (eq) {
			r->arg = j + __builtin_ctz(eq);
			break;
		}
	}
	for (j = 0; j < V; j += 16) {
		__mmask16 m = V - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (V - j)) - 1);
		__m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, z + j), _mm512_set1_ps(r->mx));
		__m512 ex = _mm512_maskz_mov_ps(m, exp_nonpos(x));
		_mm512_mask_storeu_ps(e + j, m, ex);
		fs = _mm512_add_ps(fs, ex);
		s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(ex)));
		s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(
		    _mm512_extractf64x4_pd(_mm512_castps_pd(ex), 1))));
	}
	r->s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
	r->fsum = _mm512_reduce_add_ps(fs);
}

/* sum_j s[j] t[j] in double, sixteen terms a step (each product exact in double). */
static AVX512 double
dot_row_avx512(const float *s, const float *t, int V)
{
	__m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();

	for (int j = 0; j < V; j += 16) {
		__mmask16 m = V - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (V - j)) - 1);
		__m512 x = _mm512_maskz_loadu_ps(m, s + j), y = _mm512_maskz_loadu_ps(m, t + j);
		a0 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)),
		    _mm512_cvtps_pd(_mm512_castps512_ps256(y)), a0);
		a1 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))),
		    _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(y), 1))), a1);
	}
	return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}
#endif

/*
 * The rows are vectorised exactly when the products run on gemm's AVX-512
 * kernel: one switch (gemm_setup: one thread, the CPU, GROKKIT_GEMM)
 * then chooses between this arithmetic and the scalar one of OpenBLAS's
 * route, which is the previous builds' bit for bit.
 */
static int
have_avx512(void)
{
	return strcmp(gemm_kernel(), "avx512") == 0;
}

static void
softmax_row(const float *z, float *e, int V, struct softmax_row *r)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (have_avx512()) {
		softmax_row_avx512(z, e, V, r);
		return;
	}
#endif
	softmax_row_scalar(z, e, V, r);
}

static double
dot_row(const float *s, const float *t, int V)
{
	double d = 0.0;

#if defined(__x86_64__) && defined(__GNUC__)
	if (have_avx512())
		return dot_row_avx512(s, t, V);
#endif
	for (int j = 0; j < V; j++)
		d += (double)s[j] * t[j];
	return d;
}

/*
 * mlp_loss, and the float32 softmax into probs (B, V) unless it is NULL:
 * the Hessian-vector products need the probabilities themselves, and
 * they come from the same exponentials and sum; over rows r0.. r0 + n
 * (y, logits, dlogits and probs all indexed from row 0).
 */
static CLONES void
loss_block(const struct mlp *m, struct mlp_work *w, struct model_eval *ev,
    const int32_t *y, int r0, int n, float scale, float *probs)
{
	int V = m->c.p;

	for (int b = r0; b < r0 + n; b++) {
		const float *z = w->logits + (size_t)b * V;
		float *dz = w->dlogits + (size_t)b * V;
		struct softmax_row sr;
		double s, lse;
		float mx, fsum;
		int arg, label = y[b];

		/* One float exponential per logit, kept in dz. */
		softmax_row(z, dz, V, &sr);
		s = sr.s;
		mx = sr.mx;
		fsum = sr.fsum;
		arg = sr.arg;
		if (probs)
			for (int j = 0; j < V; j++)
				probs[(size_t)b * V + j] = (float)(dz[j] / s);
		ev->correct += arg == label;
		ev->collapsed += 1.0f / fsum == 1.0f;
		if (m->c.loss == MLP_CE) {
			float inv = (float)(scale / s);
			lse = (double)mx + log(s);
			ev->loss_sum += lse - (double)z[label];
			for (int j = 0; j < V; j++)
				dz[j] *= inv;
			dz[label] -= scale;
		} else {
			double sq = 0.0;
			for (int j = 0; j < V; j++) {
				double d = (double)z[j] - (j == label);
				sq += d * d;
				dz[j] = (float)(scale * 2.0 * d / V);
			}
			ev->loss_sum += sq / V;
		}
	}
}

/* loss_block over all B rows. */
static void
loss_rows(const struct mlp *m, struct mlp_work *w, struct model_eval *ev,
    const int32_t *y, int B, float scale, float *probs)
{
	loss_block(m, w, ev, y, 0, B, scale, probs);
}

void
mlp_loss(const struct mlp *m, struct mlp_work *w, struct model_eval *ev,
    const int32_t *y, int B, float scale)
{
	loss_rows(m, w, ev, y, B, scale, NULL);
}

/* The first layer's weight and bias gradients from dz (B, nout). */
static CLONES void
layer0_backward(const struct mlp *m, struct mlp_work *w, float *grad,
    const float *dz, const int32_t *x, int B)
{
	float *gW = grad + m->woff[0];
	int nout = m->out[0], nin = m->in[0], p = m->c.p;

	if (m->c.encoding == MLP_ONEHOT) {
		/* Scatter-add into contiguous rows of the transpose, then add it back. */
		float *T = w->scatter;   /* (nin, nout) */
		memset(T, 0, (size_t)nin * (size_t)nout * sizeof(float));
		for (int b = 0; b < B; b++) {
			float *tx = T + (size_t)x[2 * b] * nout;
			float *ty = T + (size_t)(p + x[2 * b + 1]) * nout;
			const float *d = dz + (size_t)b * nout;
			for (int j = 0; j < nout; j++) {
				tx[j] += d[j];
				ty[j] += d[j];
			}
		}
		for (int j = 0; j < nout; j++)
			for (int c = 0; c < nin; c++)
				gW[(size_t)j * nin + c] += T[(size_t)c * nout + j];
		return;
	}
	/* gW (nout, 2) += dz^T (nout, B) . xin (B, 2) */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nout, 2, B,
	    1.0f, dz, nout, w->xin, 2, 1.0f, gW, 2);
}

/*
 * The backward pass; with sq, also each row's squared gradient norm (of
 * the loss as scaled in dlogits), added layer by layer from the deltas
 * and inputs the pass holds anyway (mlp_norms.c says how).
 */
/*
 * Layers L-1..1 of the backward pass for rows r0.. r0 + n, from their
 * dlogits; returns their delta at layer 0, in d0 + r0 rows if d0 is not
 * NULL (else in the ping-pong buffers, for a single block of all rows).
 * Every sum keeps its order over the rows: the bias and norm sums go row
 * by row, the weight gradients' products over consecutive blocks of K.
 */
static const float *
backward_rows(const struct mlp *m, struct mlp_work *w, float *grad, double *sq,
    const float *theta, float *const *buf, float *d0, int r0, int n)
{
	const float *dz = w->dlogits + (size_t)r0 * (size_t)m->out[m->nlayers - 1];
	int cur = 0;

	for (int i = m->nlayers - 1; i >= 1; i--) {
		int nout = m->out[i], nin = m->in[i];
		const float *a = w->acts[i - 1] + (size_t)r0 * (size_t)nin;
		float *dprev = i == 1 && d0 ? d0 + (size_t)r0 * (size_t)nin : buf[cur];
		struct gemm_epi through_relu = {NULL, 0, a, nin, {NULL, NULL}, {0, 0}};
		add_rows(grad + m->boff[i], dz, n, nout);
		if (sq)
			mlp_row_norms_add(sq + r0, dz, nout, a, nin, n);
		/* gW (nout, nin) += dz^T (nout, n) . a (n, nin) */
		gemm(1, 0, nout, nin, n, dz, nout, a, nin, 1.0f, grad + m->woff[i], nin, NULL);
		/* dprev (n, nin) = dz (n, nout) . W (nout, nin), through the ReLU */
		gemm(0, 0, n, nin, nout, dz, nout, theta + m->woff[i], nin, 0.0f, dprev, nin, &through_relu);
		dz = dprev;
		cur ^= 1;
	}
	return dz;
}

/*
 * The backward pass, block by block of rows when in_blocks (layer 0's
 * deltas gathered whole in dbuf[0], its gradient taken once from them);
 * with sq, also each row's squared gradient norm (of the loss as scaled in
 * dlogits), added layer by layer from the deltas and inputs the pass
 * holds anyway (mlp_norms.c says how).
 */
static void
backward(const struct mlp *m, struct mlp_work *w, float *grad, double *sq,
    const float *theta, const int32_t *x, int B)
{
	const float *d0 = w->dlogits;

	if (in_blocks(m))
		for (int r0 = 0; r0 < B; r0 += MLP_ROWS) {
			backward_rows(m, w, grad, sq, theta, w->rows, w->dbuf[0], r0,
			    B - r0 < MLP_ROWS ? B - r0 : MLP_ROWS);
			d0 = w->dbuf[0];
		}
	else if (m->nlayers > 1)
		d0 = backward_rows(m, w, grad, sq, theta, w->dbuf, NULL, 0, B);
	add_rows(grad + m->boff[0], d0, B, m->out[0]);
	if (sq)
		mlp_row_norms_first(m, w, sq, d0, B);
	layer0_backward(m, w, grad, d0, x, B);
}

void
mlp_backward(const struct mlp *m, struct mlp_work *w, float *grad,
    const float *theta, const int32_t *x, int B)
{
	backward(m, w, grad, NULL, theta, x, B);
}

void
mlp_backward_norms(const struct mlp *m, struct mlp_work *w, float *grad, double *sq,
    const float *theta, const int32_t *x, int B, float scale)
{
	memset(sq, 0, (size_t)B * sizeof *sq);
	backward(m, w, grad, sq, theta, x, B);
	/* the deltas carried the loss's scale: undo it, so that sq is of each row's own loss */
	if (scale != 0.0f)
		for (int b = 0; b < B; b++)
			sq[b] /= (double)scale * (double)scale;
}

void
mlp_eval_set(const struct mlp *m, struct mlp_work *w, struct model_eval *ev,
    float *grad, const float *theta, const int32_t *x, const int32_t *y, long n, int *live)
{
	float scale = n > 0 ? (float)(1.0 / (double)n) : 0.0f;

	memset(ev, 0, sizeof *ev);
	for (long off = 0; off < n; off += w->base.maxb) {
		int B = (int)(n - off < w->base.maxb ? n - off : w->base.maxb);
		mlp_forward(m, w, theta, x + 2 * off, B);
		if (live)
			mlp_mark_live(m, w, B, live);
		mlp_loss(m, w, ev, y + off, B, scale);
		if (grad)
			mlp_backward(m, w, grad, theta, x + 2 * off, B);
	}
}

/* mlp_mark_live over rows r0.. r0 + n. */
static void
mark_block(const struct mlp *m, const struct mlp_work *w, int r0, int n, int *live)
{
	int W = m->c.width;

	for (int i = 0; i < m->nlayers - 1; i++) {
		int *f = live + (size_t)i * (size_t)W;
		const float *a = w->acts[i];
		for (int b = r0; b < r0 + n; b++)
			for (int j = 0; j < W; j++)
				f[j] |= a[(size_t)b * W + j] > 0.0f;
	}
}

void
mlp_mark_live(const struct mlp *m, const struct mlp_work *w, int B, int *live)
{
	mark_block(m, w, 0, B, live);
}

/*
 * The forward pass, the loss and the backward pass, one block of rows
 * through all three before the next when in_blocks: a block's activations
 * are still in cache when its backward pass reads them.  The same bits as
 * the three calls in turn (in_blocks's reasons; the loss and the live
 * marks go row by row).
 */
void
mlp_loss_grad(const struct mlp *m, struct mlp_work *w, struct model_eval *ev, float *grad,
    double *sq, const float *theta, const int32_t *x, const int32_t *y, int B, float scale,
    int *live)
{
	if (!grad || !in_blocks(m)) {
		mlp_forward(m, w, theta, x, B);
		if (live)
			mlp_mark_live(m, w, B, live);
		mlp_loss(m, w, ev, y, B, scale);
		if (grad && sq)
			mlp_backward_norms(m, w, grad, sq, theta, x, B, scale);
		else if (grad)
			mlp_backward(m, w, grad, theta, x, B);
		return;
	}
	if (sq)
		memset(sq, 0, (size_t)B * sizeof *sq);
	layer0_forward(m, w, w->acts[0], theta, x, B, 1);
	weights_t(m, w->wt, theta);
	for (int r0 = 0; r0 < B; r0 += MLP_ROWS) {
		int n = B - r0 < MLP_ROWS ? B - r0 : MLP_ROWS;
		forward_block(m, w, theta, w->wt, r0, n);
		if (live)
			mark_block(m, w, r0, n, live);
		loss_block(m, w, ev, y, r0, n, scale, NULL);
		backward_rows(m, w, grad, sq, theta, w->rows, w->dbuf[0], r0, n);
	}
	add_rows(grad + m->boff[0], w->dbuf[0], B, m->out[0]);
	if (sq)
		mlp_row_norms_first(m, w, sq, w->dbuf[0], B);
	layer0_backward(m, w, grad, w->dbuf[0], x, B);
	if (sq && scale != 0.0f)
		for (int b = 0; b < B; b++)
			sq[b] /= (double)scale * (double)scale;
}

struct mlp_hvp *
mlp_hvp_new(const struct mlp *m, int maxb)
{
	struct mlp_hvp *h = xcalloc(1, sizeof *h);
	struct mlp_view *vw = &h->view;
	size_t B = (size_t)maxb, W = (size_t)m->c.width, V = (size_t)m->c.p, D = (size_t)m->c.depth;
	size_t wide = W > V ? W : V, off = 0, acts = xmul(B, W) * D;

	h->base.maxb = maxb;
	h->m = m;
	h->fw = mlp_work_new(m, maxb);
	/* R-activations, R-logits, R-dlogits, R-ping-pong; deltas, probabilities */
	h->mem = xmalloc(xmul(acts + 2 * xmul(B, V) + 2 * xmul(B, wide) + acts + 2 * xmul(B, V) +
	    xmul(B, W) + 2 * m->nparams, sizeof(float)));
	for (size_t i = 0; i < D; i++, off += B * W)
		h->racts[i] = h->mem + off;
	h->rlogits = h->mem + off;
	off += B * V;
	h->rdlogits = h->mem + off;
	off += B * V;
	h->rdbuf[0] = h->mem + off;
	off += B * wide;
	h->rdbuf[1] = h->mem + off;
	off += B * wide;
	for (size_t i = 0; i < D; i++, off += B * W)
		h->deltas[i] = h->mem + off;
	h->deltas[D] = h->mem + off;
	off += B * V;
	h->probs = h->mem + off;
	off += B * V;
	h->rd0 = h->mem + off;
	off += B * W;
	h->wt = h->mem + off;
	h->vt = h->mem + off + m->nparams;
	/* The view's packed activations and deltas, its parameters and its map. */
	vw->mem = xmalloc(xmul(2 * acts + 2 * m->nparams, sizeof(float)));
	for (size_t i = 0; i < D; i++) {
		vw->acts[i] = vw->mem + i * B * W;
		vw->deltas[i] = vw->mem + acts + i * B * W;
	}
	vw->ltheta = vw->mem + 2 * acts;
	vw->wt = vw->ltheta + m->nparams;
	vw->live_idx = xmalloc(xmul(xmul(D, W) + 1, sizeof(int)));
	vw->live_map = xmalloc(xmul(m->nparams, sizeof *vw->live_map));
	return h;
}

void
mlp_hvp_free(struct mlp_hvp *h)
{
	if (!h)
		return;
	mlp_work_free(h->fw);
	free(h->mem);
	free(h->view.mem);
	free(h->view.live_idx);
	free(h->view.live_map);
	free(h);
}

/*
 * What a product is taken at: the point's or a view's layout m, its
 * activations, deltas, parameters and their weights transposed (wt), and
 * the prepared rows.
 */
struct hvp_at {
	const struct mlp *m;
	float *const *acts, *const *deltas;
	const float *theta, *wt;
	const int32_t *x;
	int B;
	float scale;
};

/*
 * R-forward of rows r0.. r0 + n: R{z} of every layer along v into the
 * first n rows of racts and rlogits, given the forward pass's
 * activations.  With blk >= 0, v is zero outside layer blk: R{z} is zero
 * below it, starts there as the forward pass with v's weights, and above
 * it is R{a} W^T alone.  vt: v's weights transposed (hvp_vt), or NULL
 * for the products on v and theta as they are.
 */
static void
rop_forward(struct mlp_hvp *h, const struct hvp_at *at, const float *v, const float *vt, int r0,
    int n, int blk)
{
	const struct mlp *m = at->m;
	int L = m->nlayers, g0 = blk < 0 ? 0 : blk;
	float *rz0 = g0 == L - 1 ? h->rlogits : h->racts[g0];

	/* Layer 0's input is data: R{z0} = V0 a0 + c0, the forward pass with v's weights. */
	if (g0 == 0) {
		layer0_rows(m, h->vt + m->woff[0], v, h->fw->xin + 2 * (size_t)r0, rz0, at->x + 2 * (size_t)r0,
		    n, 0);
	} else {
		struct gemm_epi e = {v + m->boff[g0], 0, NULL, 0, {NULL, NULL}, {0, 0}};
		times_wt(rz0, at->acts[g0 - 1] + (size_t)r0 * (size_t)m->in[g0], v + m->woff[g0],
		    vt ? vt + m->woff[g0] : NULL, n, m->out[g0], m->in[g0], 0.0f, &e);
	}
	if (g0 == L - 1)
		return;
	relu_backward(rz0, at->acts[g0] + (size_t)r0 * (size_t)m->out[g0], (size_t)n * (size_t)m->out[g0]);
	for (int i = g0 + 1; i < L; i++) {
		int nout = m->out[i], nin = m->in[i];
		const float *a = at->acts[i - 1] + (size_t)r0 * (size_t)nin, *ra = h->racts[i - 1];
		float *rz = i == L - 1 ? h->rlogits : h->racts[i];
		struct gemm_epi c = {v + m->boff[i], 0, NULL, 0, {NULL, NULL}, {0, 0}};
		struct gemm_epi through_relu = {NULL, 0,
		    i < L - 1 ? at->acts[i] + (size_t)r0 * (size_t)nout : NULL, nout, {NULL, NULL}, {0, 0}};
		/*
		 * In blocks (vt), each product fetches the next one's cold
		 * operands: R{a} W^T's weights and mask, the next layer's v.
		 */
		if (vt) {
			c.next[0] = at->wt + m->woff[i];
			c.next_bytes[0] = (size_t)nin * (size_t)nout * sizeof(float);
			c.next[1] = through_relu.mask;
			c.next_bytes[1] = through_relu.mask ? (size_t)n * (size_t)nout * sizeof(float) : 0;
		}
		if (vt && i + 1 < L) {
			through_relu.next[0] = (blk < 0 ? vt : at->wt) + m->woff[i + 1];
			through_relu.next_bytes[0] = (size_t)m->in[i + 1] * (size_t)m->out[i + 1] * sizeof(float);
		}
		/* R{z} = a . V^T + c + R{a} . W^T */
		if (blk < 0)
			times_wt(rz, a, v + m->woff[i], vt ? vt + m->woff[i] : NULL, n, nout, nin, 0.0f, &c);
		times_wt(rz, ra, at->theta + m->woff[i], vt ? at->wt + m->woff[i] : NULL, n, nout, nin,
		    blk < 0 ? 1.0f : 0.0f, &through_relu);
	}
}

/* R{d loss / d logits} of rows r0.. r0 + n: ce, scale (s * Rz - s (s . Rz)); mse, scale 2 Rz / V. */
static CLONES void
rop_loss(const struct mlp *m, struct mlp_hvp *h, int r0, int n, float scale)
{
	int V = m->c.p;

	for (int b = 0; b < n; b++) {
		const float *s = h->probs + (size_t)(r0 + b) * V, *rz = h->rlogits + (size_t)b * V;
		float *rd = h->rdlogits + (size_t)b * V;
		double srz;
		if (m->c.loss == MLP_MSE) {
			for (int j = 0; j < V; j++)
				rd[j] = scale * 2.0f * rz[j] / (float)V;
			continue;
		}
		srz = dot_row(s, rz, V);
		for (int j = 0; j < V; j++)
			rd[j] = scale * s[j] * (rz[j] - (float)srz);
	}
}

struct mlp_point *
mlp_hvp_prepare(struct mlp_hvp *h, const float *theta, const int32_t *x, const int32_t *y,
    int B, float scale)
{
	const struct mlp *m = h->m;
	struct mlp_work *w = h->fw;
	struct mlp_point *pt = &h->pt;
	int L = m->nlayers, V = m->c.p;

	memset(pt, 0, sizeof *pt);
	pt->base.h = &h->base;
	pt->base.rows = B;
	pt->base.scale = scale;
	pt->m = m;
	pt->theta = theta;
	pt->x = x;
	pt->y = y;
	mlp_forward(m, w, theta, x, B);
	loss_rows(m, w, &pt->base.eval, y, B, scale, h->probs);
	/* The backward pass's deltas do not depend on v: keep them all. */
	memcpy(h->deltas[L - 1], w->dlogits, (size_t)B * (size_t)V * sizeof(float));
	for (int i = L - 1; i >= 1; i--) {
		int nout = m->out[i], nin = m->in[i];
		struct gemm_epi through_relu = {NULL, 0, w->acts[i - 1], nin, {NULL, NULL}, {0, 0}};
		gemm(0, 0, B, nin, nout, h->deltas[i], nout, theta + m->woff[i], nin, 0.0f,
		    h->deltas[i - 1], nin, &through_relu);
	}
	weights_t(m, h->wt, theta);
	h->view.base.pt = NULL;   /* a view of the last point is gone */
	return pt;
}

static struct mlp_hvp *
hvp_of(const struct mlp_point *pt)
{
	return (struct mlp_hvp *)pt->base.h;
}

void
mlp_point_grad(const struct mlp_point *pt, float *grad)
{
	const struct mlp *m = pt->m;
	struct mlp_hvp *h = hvp_of(pt);
	int B = pt->base.rows;

	for (int i = m->nlayers - 1; i >= 0; i--) {
		int nout = m->out[i], nin = m->in[i];
		add_rows(grad + m->boff[i], h->deltas[i], B, nout);
		if (i == 0)
			layer0_backward(m, h->fw, grad, h->deltas[0], pt->x, B);
		else   /* gW (nout, nin) += d^T (nout, B) . a (B, nin) */
			gemm(1, 0, nout, nin, B, h->deltas[i], nout, h->fw->acts[i - 1], nin, 1.0f,
			    grad + m->woff[i], nin, NULL);
	}
}

void
mlp_point_mark_live(const struct mlp_point *pt, int *live)
{
	mlp_mark_live(pt->m, hvp_of(pt)->fw, pt->base.rows, live);
}

/*
 * The vector's side of the products, once per product: layer 0's weight
 * transposed for the gather (one-hot), and with the rows in blocks the
 * other layers' from g0 up (NULL: not in blocks, no transposes).
 */
static const float *
hvp_vt(struct mlp_hvp *h, const struct mlp *m, const float *v, int g0)
{
	if (g0 == 0 && m->c.encoding == MLP_ONEHOT)
		transpose(h->vt + m->woff[0], v + m->woff[0], m->out[0], m->in[0]);
	if (!in_blocks(m))
		return NULL;
	for (int i = g0 > 1 ? g0 : 1; i < m->nlayers; i++)
		transpose(h->vt + m->woff[i], v + m->woff[i], m->out[i], m->in[i]);
	return h->vt;
}

/*
 * What each of layer i's R-backward products (R{d}^T a, d^T R{a}, d V,
 * R{d} W, in e's order) fetches for the ones after it, with the rows in
 * blocks (r0 >= 0; else nothing): the operands that a block reads first
 * there and that no product before it brought to cache: V or W and d for
 * this layer, the layer below's weight gradient, activations and deltas.
 * Hints alone: the results do not depend on them.
 */
static void
backward_hints(struct gemm_epi e[4], const struct hvp_at *at, const float *hv, const float *v,
    int r0, int n, int i, int dv, int blk)
{
	const struct mlp *m = at->m;
	int nout = m->out[i], nin = m->in[i], below = r0 >= 0 && i - 1 >= 1 && i - 1 >= blk;
	size_t w = (size_t)nin * (size_t)nout * sizeof(float), rows = (size_t)n * sizeof(float);
	const float *W = at->theta + m->woff[i], *V = v + m->woff[i];

	memset(e, 0, 4 * sizeof *e);
	if (r0 < 0)
		return;
	e[0].next[0] = dv ? V : W;
	e[0].next_bytes[0] = w;
	if (dv) {
		e[0].next[1] = at->deltas[i] + (size_t)r0 * (size_t)nout;
		e[0].next_bytes[1] = rows * (size_t)nout;
	}
	e[1].next[0] = W;
	e[1].next_bytes[0] = w;
	if (!below)
		return;
	/* the layer below: R{d}^T a's C and B, d^T R{a}'s A */
	e[2].next[0] = hv + m->woff[i - 1];
	e[2].next_bytes[0] = (size_t)m->in[i - 1] * (size_t)nin * sizeof(float);
	e[2].next[1] = at->acts[i - 2] + (size_t)r0 * (size_t)m->in[i - 1];
	e[2].next_bytes[1] = rows * (size_t)m->in[i - 1];
	if (dv) {
		e[3].next[0] = at->deltas[i - 1] + (size_t)r0 * (size_t)nin;
		e[3].next_bytes[0] = rows * (size_t)nin;
	} else {   /* no d V: the last product fetches what it would have */
		e[3].next[0] = e[2].next[0];
		e[3].next_bytes[0] = e[2].next_bytes[0];
		e[3].next[1] = e[2].next[1];
		e[3].next_bytes[1] = e[2].next_bytes[1];
	}
}

/*
 * The R-backward of rows r0.. r0 + n down to layer 1 (or to blk), from
 * R{dlogits} in rdlogits; returns R{layer 0's delta}, in rd0 + r0 rows if
 * rd0 is not NULL, else in the ping-pong buffers.  As backward_rows,
 * every sum keeps its order over the rows.
 */
static const float *
hvp_backward_rows(struct mlp_hvp *h, const struct hvp_at *at, float *hv, const float *v,
    float *rd0, int r0, int n, int ggn, int blk)
{
	const struct mlp *m = at->m;
	const float *rd = h->rdlogits;
	int cur = 0, dv = !ggn && blk < 0;

	for (int i = m->nlayers - 1; i >= 1 && i >= blk; i--) {
		int nout = m->out[i], nin = m->in[i], want = blk < 0 || i == blk;
		const float *a = at->acts[i - 1] + (size_t)r0 * (size_t)nin, *ra = h->racts[i - 1];
		const float *d = at->deltas[i] + (size_t)r0 * (size_t)nout;
		const float *Wi = at->theta + m->woff[i], *Vi = v + m->woff[i];
		float *rdprev = i == 1 && rd0 ? rd0 + (size_t)r0 * (size_t)nin : h->rdbuf[cur];
		struct gemm_epi e[4];   /* the four products' hints; the last's mask: the ReLU's */

		backward_hints(e, at, hv, v, rd0 ? r0 : -1, n, i, dv, blk);
		e[3].mask = a;
		e[3].ldm = nin;
		if (want)
			add_rows(hv + m->boff[i], rd, n, nout);
		/* R{gW} = R{d}^T a + d^T R{a} (R{a} = 0 below a block) */
		if (want)
			gemm(1, 0, nout, nin, n, rd, nout, a, nin, 1.0f, hv + m->woff[i], nin, &e[0]);
		if (want && dv)
			gemm(1, 0, nout, nin, n, d, nout, ra, nin, 1.0f, hv + m->woff[i], nin, &e[1]);
		if (i == blk)
			break;   /* nothing below a block is read */
		/* R{d_prev} = mask (d V + R{d} W); V = 0 above a block */
		if (dv)
			gemm(0, 0, n, nin, nout, d, nout, Vi, nin, 0.0f, rdprev, nin, &e[2]);
		gemm(0, 0, n, nin, nout, rd, nout, Wi, nin, dv ? 1.0f : 0.0f, rdprev, nin, &e[3]);
		rd = rdprev;
		cur ^= 1;
	}
	return rd;
}

/*
 * hv += H v at at, from its kept activations and deltas.  With ggn, the
 * Gauss-Newton product J^T H_out J v instead: the same R-forward and
 * R{dlogits} = H_out R{z}, then the backward pass that is linear in
 * R{dlogits} alone.  The terms dropped are exactly those with a delta d
 * (the loss's gradient reaching a hidden layer times the network's second
 * derivative): d^T R{a} in R{gW} and d V in R{d_prev}.  Every row goes
 * through the layers independently but for the weight gradients' sums,
 * so in blocks (in_blocks) the whole product runs a block of rows at a
 * time, its R-activations and R-deltas never leaving cache; R{layer 0's
 * delta} is gathered whole for its scatter.
 */
static void
hvp_apply(struct mlp_hvp *h, const struct hvp_at *at, float *hv, const float *v, int ggn, int blk)
{
	const struct mlp *m = at->m;
	const float *vt = hvp_vt(h, m, v, blk < 0 ? 0 : blk), *rd = h->rdlogits;
	int B = at->B, rows = vt ? MLP_ROWS : B;

	for (int r0 = 0; r0 < B; r0 += rows) {
		int n = B - r0 < rows ? B - r0 : rows;
		rop_forward(h, at, v, vt, r0, n, blk);
		rop_loss(m, h, r0, n, at->scale);
		rd = hvp_backward_rows(h, at, hv, v, vt ? h->rd0 : NULL, r0, n, ggn, blk);
	}
	if (blk > 0 || B <= 0)
		return;
	/* R{gW0} = R{d0} a0^T: the input is data, R{a0} = 0 */
	if (vt)
		rd = h->rd0;
	add_rows(hv + m->boff[0], rd, B, m->out[0]);
	layer0_backward(m, h->fw, hv, rd, at->x, B);
}

/*
 * v . B v for B layer blk's diagonal block (of H and G alike: the
 * network is affine in one layer's parameters on each ReLU pattern, the
 * reason hvp_apply drops no term there with ggn): R{z} = J v by the
 * R-forward from the block, then the scaled R{z} . H_out R{z} per row.
 */
static double
block_quad(struct mlp_hvp *h, const struct hvp_at *at, const float *v, int blk)
{
	const struct mlp *m = at->m;
	const float *vt = hvp_vt(h, m, v, blk);
	int V = m->c.p, rows = vt ? MLP_ROWS : at->B;
	double q = 0.0;

	for (int r0 = 0; r0 < at->B; r0 += rows) {
		int n = at->B - r0 < rows ? at->B - r0 : rows;
		rop_forward(h, at, v, vt, r0, n, blk);
		for (int b = 0; b < n; b++) {
			const float *s = h->probs + (size_t)(r0 + b) * V, *rz = h->rlogits + (size_t)b * V;
			double srz = 0.0, s2 = 0.0;
			if (m->c.loss == MLP_MSE) {
				for (int j = 0; j < V; j++)
					s2 += (double)rz[j] * rz[j];
				q += 2.0 * s2 / V;
				continue;
			}
			/* R{z} . (diag(s) - s s^T) R{z} */
			for (int j = 0; j < V; j++) {
				srz += (double)s[j] * rz[j];
				s2 += (double)s[j] * rz[j] * rz[j];
			}
			q += s2 - srz * srz;
		}
	}
	return at->scale * q;
}

/* A product at the prepared point, or at its view. */
static struct hvp_at
at_point(const struct mlp_point *pt)
{
	struct mlp_hvp *h = hvp_of(pt);
	struct hvp_at at = {pt->m, h->fw->acts, h->deltas, pt->theta, h->wt, pt->x, pt->base.rows,
	    pt->base.scale};

	return at;
}

static struct hvp_at
at_view(const struct mlp_view *view, const char *who)
{
	const struct mlp_point *pt = (const struct mlp_point *)view->base.pt;
	struct hvp_at at;

	if (!pt)
		die("%s: the view's point was prepared again", who);
	at = at_point(pt);
	at.m = &view->live;
	at.acts = view->acts;
	at.deltas = view->deltas;
	at.theta = view->ltheta;
	at.wt = view->wt;
	return at;
}

double
mlp_point_block_quad(struct mlp_point *pt, int blk, const float *v)
{
	struct hvp_at at = at_point(pt);

	return block_quad(hvp_of(pt), &at, v, blk);
}

double
mlp_view_block_quad(struct mlp_view *view, int blk, const float *v)
{
	struct hvp_at at = at_view(view, "mlp_view_block_quad");

	return block_quad(hvp_of((const struct mlp_point *)view->base.pt), &at, v, blk);
}

void
mlp_point_apply(struct mlp_point *pt, float *hv, const float *v)
{
	struct hvp_at at = at_point(pt);

	hvp_apply(hvp_of(pt), &at, hv, v, 0, -1);
}

void
mlp_point_ggn(struct mlp_point *pt, float *gv, const float *v)
{
	struct hvp_at at = at_point(pt);

	hvp_apply(hvp_of(pt), &at, gv, v, 1, -1);
}

/* Hidden layer i's live units in the full model, or NULL for all (input and output side). */
static const int *
live_units(const struct mlp *m, const struct mlp_view *vw, int i)
{
	return i >= 0 && i < m->nlayers - 1 ? vw->live_idx + (size_t)i * (size_t)m->c.width : NULL;
}

/*
 * live_map[k]: where parameter k of the live view sits in the full
 * layout, so that moving a vector between the layouts is one indexed pass.
 */
static void
live_map_build(const struct mlp *m, struct mlp_view *vw)
{
	const struct mlp *l = &vw->live;

	for (int i = 0; i < m->nlayers; i++) {
		const int *rows = live_units(m, vw, i), *cols = live_units(m, vw, i - 1);
		for (int r = 0; r < l->out[i]; r++) {
			int fr = rows ? rows[r] : r;
			size_t full = m->woff[i] + (size_t)fr * (size_t)m->in[i];
			size_t live = l->woff[i] + (size_t)r * (size_t)l->in[i];
			for (int c = 0; c < l->in[i]; c++)
				vw->live_map[live + c] = full + (size_t)(cols ? cols[c] : c);
			vw->live_map[l->boff[i] + r] = m->boff[i] + (size_t)fr;
		}
	}
}

/* dst (B, k) = columns idx (k of them) of each of the B rows of src (B, n). */
static void
pack_columns(float *dst, const float *src, int B, int n, const int *idx, int k)
{
	for (int b = 0; b < B; b++)
		for (int j = 0; j < k; j++)
			dst[(size_t)b * (size_t)k + j] = src[(size_t)b * (size_t)n + idx[j]];
}

/* The live units of each hidden layer into vw->live_idx (ascending); how many in live[]. */
static int
find_live(const struct mlp_point *pt, struct mlp_view *vw, int *live)
{
	const struct mlp *m = pt->m;
	int W = m->c.width, dropped = 0;

	memset(vw->live_idx, 0, (size_t)(m->nlayers - 1) * (size_t)W * sizeof *vw->live_idx);
	mlp_point_mark_live(pt, vw->live_idx);
	for (int i = 0; i < m->nlayers - 1; i++) {
		int *idx = vw->live_idx + (size_t)i * (size_t)W, k = 0;
		/* flags to indices, in place: index k is written after flag k is read */
		for (int j = 0; j < W; j++)
			if (idx[j])
				idx[k++] = j;
		if (k == 0)
			idx[k++] = 0;
		live[i] = k;
		dropped += W - k;
	}
	return dropped;
}

struct mlp_view *
mlp_point_restrict(struct mlp_point *pt)
{
	const struct mlp *m = pt->m;
	struct mlp_hvp *h = hvp_of(pt);
	struct mlp_view *vw = &h->view;
	struct mlp *l = &vw->live;
	int L = m->nlayers, W = m->c.width, B = pt->base.rows, live[MLP_MAX_DEPTH];
	size_t off = 0;

	vw->base.pt = NULL;
	if (B <= 0 || find_live(pt, vw, live) == 0)
		return NULL;
	l->c = m->c;
	l->nlayers = L;
	for (int i = 0; i < L; i++) {
		l->in[i] = i == 0 ? m->in[0] : live[i - 1];
		l->out[i] = i == L - 1 ? m->out[i] : live[i];
		l->woff[i] = off;
		off += (size_t)l->in[i] * (size_t)l->out[i];
		l->boff[i] = off;
		off += (size_t)l->out[i];
	}
	l->nparams = off;
	for (int i = 0; i < L - 1; i++) {
		pack_columns(vw->acts[i], h->fw->acts[i], B, W, live_units(m, vw, i), live[i]);
		pack_columns(vw->deltas[i], h->deltas[i], B, W, live_units(m, vw, i), live[i]);
	}
	vw->deltas[L - 1] = h->deltas[L - 1];
	live_map_build(m, vw);
	for (size_t k = 0; k < l->nparams; k++)
		vw->ltheta[k] = pt->theta[vw->live_map[k]];
	weights_t(l, vw->wt, vw->ltheta);
	vw->base.pt = &pt->base;
	vw->base.nparams = l->nparams;
	vw->base.map = vw->live_map;
	return vw;
}

int
mlp_view_dropped(const struct mlp_view *view)
{
	const struct mlp *l = &view->live;
	int n = 0;

	for (int i = 0; i < l->nlayers - 1; i++)
		n += l->c.width - l->out[i];
	return n;
}

void
mlp_view_apply(struct mlp_view *view, float *hv, const float *v)
{
	struct hvp_at at = at_view(view, "mlp_view_apply");

	hvp_apply(hvp_of((const struct mlp_point *)view->base.pt), &at, hv, v, 0, -1);
}

void
mlp_view_ggn(struct mlp_view *view, float *gv, const float *v)
{
	struct hvp_at at = at_view(view, "mlp_view_ggn");

	hvp_apply(hvp_of((const struct mlp_point *)view->base.pt), &at, gv, v, 1, -1);
}

size_t
mlp_gram_scratch(const struct mlp *m, int B)
{
	int wide = m->c.width > m->c.p ? m->c.width : m->c.p;

	return gram_layer_scratch(B, wide, wide);
}

/* The first layer's input products a_b . a_c from the encoded pairs (gram_inner_fn). */
static void
input_products(const void *ctx, int r0, int r1, double *S, int lds)
{
	const struct mlp_point *pt = ctx;
	const int32_t *x = pt->x;
	int onehot = pt->m->c.encoding == MLP_ONEHOT;

	for (int b = r0; b < r1; b++) {
		const int32_t *xb = x + 2 * b;
		double *s = S + (size_t)(b - r0) * lds;
		for (int c = 0; c <= b; c++) {
			const int32_t *xc = x + 2 * c;
			s[c] = onehot ? (double)(xb[0] == xc[0]) + (double)(xb[1] == xc[1]) :
			    (double)xb[0] * xc[0] + (double)xb[1] * xc[1];
		}
	}
}

void
mlp_gram_layer(const struct mlp_point *pt, const struct mlp_view *view, int i,
    double *out, enum gram_acc how, double *scratch)
{
	const struct mlp_hvp *h = hvp_of(pt);
	/* a view: rows packed to the live widths (the dropped columns were zero) */
	const struct mlp *k = view ? &view->live : pt->m;
	float *const *acts = view ? view->acts : h->fw->acts;
	float *const *deltas = view ? view->deltas : h->deltas;

	/* a_b . a_c of the layer's inputs, plus 1 for the bias, times d_b . d_c */
	gram_layer(out, pt->base.rows, deltas[i], k->out[i], i > 0 ? acts[i - 1] : NULL,
	    i > 0 ? k->in[i] : 0, input_products, pt, how, scratch);
}

void
mlp_gram_combine(const struct mlp_point *pt, double *out, const double *u)
{
	const struct mlp *m = pt->m;
	const struct mlp_hvp *h = hvp_of(pt);
	const int32_t *x = pt->x;
	int p = m->c.p, B = pt->base.rows;

	for (int i = 0; i < m->nlayers; i++) {
		int nout = m->out[i], nin = m->in[i];
		const float *d = h->deltas[i];
		double *gW = out + m->woff[i], *gb = out + m->boff[i];
		for (int b = 0; b < B; b++) {
			const float *db = d + (size_t)b * nout;
			for (int j = 0; j < nout; j++) {
				double s = u[b] * db[j];
				gb[j] += s;
				if (i > 0) {
					const float *a = h->fw->acts[i - 1] + (size_t)b * nin;
					for (int q = 0; q < nin; q++)
						gW[(size_t)j * nin + q] += s * a[q];
				} else if (m->c.encoding == MLP_ONEHOT) {
					gW[(size_t)j * nin + x[2 * b]] += s;
					gW[(size_t)j * nin + p + x[2 * b + 1]] += s;
				} else {
					gW[(size_t)j * nin] += s * x[2 * b];
					gW[(size_t)j * nin + 1] += s * x[2 * b + 1];
				}
			}
		}
	}
}

/* The reference's loss of one example from its logits z, and the loss's
 * gradient with respect to them (already divided by the batch B). */
static double
ref_head(const struct mlp *m, const double *z, int label, int B, double *delta)
{
	int V = m->c.p;
	double mx = z[0], s = 0.0, lse, loss = 0.0;

	if (m->c.loss != MLP_CE) {
		for (int j = 0; j < V; j++) {
			double d = z[j] - (j == label);
			loss += d * d / V;
			delta[j] = 2.0 * d / V / B;
		}
		return loss;
	}
	for (int j = 1; j < V; j++)
		mx = z[j] > mx ? z[j] : mx;
	for (int j = 0; j < V; j++)
		s += exp(z[j] - mx);
	lse = mx + log(s);
	for (int j = 0; j < V; j++)
		delta[j] = (exp(z[j] - lse) - (j == label)) / B;
	return lse - z[label];
}

/* One example's backward pass of the reference: delta enters as the
 * logits' gradient and is overwritten layer by layer; dprev is scratch. */
static void
ref_backward(const struct mlp *m, const double *theta, double *const *a,
    double *delta, double *dprev, double *grad)
{
	for (int i = m->nlayers - 1; i >= 0; i--) {
		const double *Wi = theta + m->woff[i];
		double *gW = grad + m->woff[i], *gb = grad + m->boff[i];
		for (int j = 0; j < m->out[i]; j++) {
			gb[j] += delta[j];
			for (int k = 0; k < m->in[i]; k++)
				gW[(size_t)j * m->in[i] + k] += delta[j] * a[i][k];
		}
		if (i == 0)
			break;
		for (int k = 0; k < m->in[i]; k++) {
			double d = 0.0;
			for (int j = 0; j < m->out[i]; j++)
				d += delta[j] * Wi[(size_t)j * m->in[i] + k];
			dprev[k] = a[i][k] > 0.0 ? d : 0.0;
		}
		memcpy(delta, dprev, (size_t)m->in[i] * sizeof(double));
	}
}

double
mlp_ref_loss(const struct mlp *m, const double *theta, const int32_t *x,
    const int32_t *y, int B, double *grad, double *logits)
{
	int L = m->nlayers, V = m->c.p, maxw = m->in[0];
	double total = 0.0;
	double **a, *delta, *dprev;

	for (int i = 0; i < L; i++)
		maxw = m->out[i] > maxw ? m->out[i] : maxw;
	a = xcalloc((size_t)L + 1, sizeof *a);   /* a[0] input, a[i+1] output of layer i */
	for (int i = 0; i <= L; i++)
		a[i] = xcalloc((size_t)maxw, sizeof(double));
	delta = xcalloc((size_t)maxw, sizeof(double));
	dprev = xcalloc((size_t)maxw, sizeof(double));

	for (int b = 0; b < B; b++) {
		/* The input row, explicitly: one-hot(x) ++ one-hot(y), or (x, y). */
		memset(a[0], 0, (size_t)maxw * sizeof(double));
		if (m->c.encoding == MLP_ONEHOT) {
			a[0][x[2 * b]] = 1.0;
			a[0][V + x[2 * b + 1]] = 1.0;
		} else {
			a[0][0] = x[2 * b];
			a[0][1] = x[2 * b + 1];
		}
		for (int i = 0; i < L; i++) {
			const double *Wi = theta + m->woff[i], *bi = theta + m->boff[i];
			for (int j = 0; j < m->out[i]; j++) {
				double z = bi[j];
				for (int k = 0; k < m->in[i]; k++)
					z += Wi[(size_t)j * m->in[i] + k] * a[i][k];
				a[i + 1][j] = i < L - 1 && z < 0.0 ? 0.0 : z;
			}
		}
		if (logits)
			memcpy(logits + (size_t)b * V, a[L], (size_t)V * sizeof(double));
		total += ref_head(m, a[L], y[b], B, delta);
		if (grad)
			ref_backward(m, theta, a, delta, dprev, grad);
	}
	for (int i = 0; i <= L; i++)
		free(a[i]);
	free(a);
	free(delta);
	free(dprev);
	return total / B;
}

void
mlp_point_block(struct mlp_point *pt, int ggn, int blk, float *hv, const float *v)
{
	struct hvp_at at = at_point(pt);

	hvp_apply(hvp_of(pt), &at, hv, v, ggn, blk);
}

void
mlp_view_block(struct mlp_view *view, int ggn, int blk, float *hv, const float *v)
{
	struct hvp_at at = at_view(view, "mlp_view_block");

	hvp_apply(hvp_of((const struct mlp_point *)view->base.pt), &at, hv, v, ggn, blk);
}
