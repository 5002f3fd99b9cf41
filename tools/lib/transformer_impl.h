/*
 * transformer_impl.h: the transformer's kernels for one precision, included
 * by transformer.c twice, once with REAL float (tfm_*) and once with REAL
 * double (tfm64_*), as LAPACK's s and d routines come from one source.
 * It expects REAL, FN(name) (the prefixed name) and GEMM (cblas_sgemm or
 * cblas_dgemm), and transformer.c's helpers act_*() and nallowed().
 *
 * Shapes in comments use transformer.h's letters.  Token rows are
 * example-major: row b*T + t is position t of example b, so every
 * projection of every position is one matrix product over N rows.
 */

/* What a layer keeps: its forward values, its backward deltas, their R-values. */
struct FN(layer) {
	REAL *q, *k, *v;        /* (N, F) queries, keys, values, all heads */
	REAL *pat;              /* (B, H, T, T) softmax of the scaled scores, 0 where masked */
	REAL *att;              /* (B, H, T, T) alpha * pat + (1 - alpha), 0 where masked */
	REAL *z;                /* (N, F) att v per head, heads side by side */
	REAL *x1;               /* (N, D) residual after attention */
	REAL *pre, *post;       /* (N, M) MLP pre-activation and activation */
	REAL *dx1, *dpost, *dpre, *dz, *dq, *dk, *dv;   /* d loss / d (same shapes) */
	REAL *dA, *dS;          /* (B, H, T, T) d loss / d att, d loss / d scaled scores */
	/* R-forward values (hvp works only) */
	REAL *rq, *rk, *rv, *rpat, *ratt, *rz, *rx1, *rpre, *rpost;
};

struct FN(prepared) {
	const struct tfm *m;
	struct FN(work) *w;
	const REAL *theta;
	int B;
	REAL scale;
	struct tfm_eval ev;
};

struct FN(work) {
	int maxb, hvp;
	int32_t *tok;                          /* (N) token ids */
	REAL *x[TFM_MAX_LAYERS + 1];           /* (N, D) residual into block l; x[L] the output */
	REAL *dres[TFM_MAX_LAYERS + 1];        /* (N, D) d loss / d x[l] */
	REAL *rx[TFM_MAX_LAYERS + 1];          /* (N, D) R{x[l]} */
	struct FN(layer) ly[TFM_MAX_LAYERS];
	REAL *logits, *dlogits, *probs;        /* (B, C) */
	REAL *rlogits, *rdlogits;              /* (B, C) */
	/* R-backward scratch, one layer at a time */
	REAL *rdres, *rdx1;                    /* (N, D) */
	REAL *rdpost, *rdpre;                  /* (N, M) */
	REAL *rdz, *rdq, *rdk, *rdv;           /* (N, F) */
	REAL *rdA, *rdS;                       /* (B, H, T, T) */
	struct FN(prepared) prep;
	REAL *mem;
};

static REAL *
FN(carve)(REAL **cur, size_t n)
{
	REAL *p = *cur;

	*cur += n;
	return p;
}

/* Floats the work needs; must carve exactly what FN(work_carve) does. */
static size_t
FN(work_size)(const struct tfm *m, size_t B, int hvp)
{
	size_t T = (size_t)m->n_ctx, N = B * T, D = (size_t)m->c.d_model;
	size_t F = (size_t)m->c.heads * (size_t)m->c.d_head, M = (size_t)m->c.d_mlp;
	size_t S = B * (size_t)m->c.heads * T * T, C = (size_t)m->c.p, L = (size_t)m->c.layers;
	size_t fwd = 4 * N * F + 2 * S + N * D + 2 * N * M;
	size_t bwd = N * D + 2 * N * M + 4 * N * F + 2 * S;
	size_t n = L * (fwd + bwd) + 2 * (L + 1) * N * D + 3 * B * C;

	if (hvp)
		n += L * fwd + (L + 1) * N * D + 2 * B * C + 2 * N * D + 2 * N * M + 4 * N * F + 2 * S;
	return n;
}

static void
FN(work_carve)(const struct tfm *m, struct FN(work) *w, size_t B)
{
	size_t T = (size_t)m->n_ctx, N = B * T, D = (size_t)m->c.d_model;
	size_t F = (size_t)m->c.heads * (size_t)m->c.d_head, M = (size_t)m->c.d_mlp;
	size_t S = B * (size_t)m->c.heads * T * T, C = (size_t)m->c.p;
	REAL *cur = w->mem;

	for (int l = 0; l <= m->c.layers; l++) {
		w->x[l] = FN(carve)(&cur, N * D);
		w->dres[l] = FN(carve)(&cur, N * D);
		if (w->hvp)
			w->rx[l] = FN(carve)(&cur, N * D);
	}
	for (int l = 0; l < m->c.layers; l++) {
		struct FN(layer) *y = &w->ly[l];
		REAL **nf[] = {&y->q, &y->k, &y->v, &y->z, &y->dz, &y->dq, &y->dk, &y->dv,
		    &y->rq, &y->rk, &y->rv, &y->rz};
		REAL **ns[] = {&y->pat, &y->att, &y->dA, &y->dS, &y->rpat, &y->ratt};
		REAL **nm[] = {&y->pre, &y->post, &y->dpost, &y->dpre, &y->rpre, &y->rpost};
		REAL **nd[] = {&y->x1, &y->dx1, &y->rx1};
		int r = w->hvp;   /* the R-values are the last of each list */
		for (size_t i = 0; i < 12 - (r ? 0 : 4); i++)
			*nf[i] = FN(carve)(&cur, N * F);
		for (size_t i = 0; i < 6 - (r ? 0 : 2); i++)
			*ns[i] = FN(carve)(&cur, S);
		for (size_t i = 0; i < 6 - (r ? 0 : 2); i++)
			*nm[i] = FN(carve)(&cur, N * M);
		for (size_t i = 0; i < 3 - (r ? 0 : 1); i++)
			*nd[i] = FN(carve)(&cur, N * D);
	}
	w->logits = FN(carve)(&cur, B * C);
	w->dlogits = FN(carve)(&cur, B * C);
	w->probs = FN(carve)(&cur, B * C);
	if (w->hvp) {
		w->rlogits = FN(carve)(&cur, B * C);
		w->rdlogits = FN(carve)(&cur, B * C);
		w->rdres = FN(carve)(&cur, N * D);
		w->rdx1 = FN(carve)(&cur, N * D);
		w->rdpost = FN(carve)(&cur, N * M);
		w->rdpre = FN(carve)(&cur, N * M);
		w->rdz = FN(carve)(&cur, N * F);
		w->rdq = FN(carve)(&cur, N * F);
		w->rdk = FN(carve)(&cur, N * F);
		w->rdv = FN(carve)(&cur, N * F);
		w->rdA = FN(carve)(&cur, S);
		w->rdS = FN(carve)(&cur, S);
	}
	if ((size_t)(cur - w->mem) != FN(work_size)(m, B, w->hvp))
		die("transformer: work layout mismatch (%zu of %zu)", (size_t)(cur - w->mem),
		    FN(work_size)(m, B, w->hvp));
}

struct FN(work) *
FN(work_new)(const struct tfm *m, int maxb, int hvp)
{
	struct FN(work) *w = xcalloc(1, sizeof *w);

	w->maxb = maxb;
	w->hvp = hvp;
	w->tok = xmalloc(xmul(xmul((size_t)maxb, (size_t)m->n_ctx), sizeof *w->tok));
	w->mem = xmalloc_big(xmul(FN(work_size)(m, (size_t)maxb, hvp), sizeof(REAL)));
	FN(work_carve)(m, w, (size_t)maxb);
	w->prep.w = w;
	return w;
}

void
FN(work_free)(struct FN(work) *w)
{
	if (!w)
		return;
	free(w->tok);
	free(w->mem);
	free(w);
}

const REAL *
FN(logits)(const struct FN(work) *w)
{
	return w->logits;
}

/* Row-major products with PyTorch's Linear shapes: W is (out, in). */

/* Y (n, out) = X (n, in) W^T + beta Y */
static void
FN(lin)(REAL *Y, const REAL *X, const REAL *W, int n, int out, int in, REAL beta)
{
	GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1, X, in, W, in, beta, Y, out);
}

/* dX (n, in) = dY (n, out) W + beta dX */
static void
FN(lin_back)(REAL *dX, const REAL *dY, const REAL *W, int n, int out, int in, REAL beta)
{
	GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1, dY, out, W, in, beta, dX, in);
}

/* gW (out, in) += dY (n, out)^T X (n, in) */
static void
FN(lin_wgrad)(REAL *gW, const REAL *dY, const REAL *X, int n, int out, int in)
{
	GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1, dY, out, X, in, 1, gW, in);
}

/* g (n_cols) += column sums of Y (n, cols) */
static void
FN(colsum)(REAL *g, const REAL *Y, int n, int cols)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < cols; j++)
			g[j] += Y[(size_t)i * cols + j];
}

/* Y (n, cols) += b (cols) on every row */
static void
FN(addbias)(REAL *Y, const REAL *b, int n, int cols)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < cols; j++)
			Y[(size_t)i * cols + j] += b[j];
}

/* out (N, D) = W_E[:, tok] + W_pos[t], from the embedding tensors of th (theta or v). */
static void
FN(embed)(const struct tfm *m, REAL *out, const REAL *th, const int32_t *tok, int B)
{
	int T = m->n_ctx, D = m->c.d_model, V = m->d_vocab;
	const REAL *WE = th + m->W_E, *Wpos = th + m->W_pos;

	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			size_t row = (size_t)b * T + t;
			for (int d = 0; d < D; d++)
				out[row * D + d] = WE[(size_t)d * V + tok[row]] + Wpos[(size_t)t * D + d];
		}
}

/* The embedding's gradient: g's W_E and W_pos += the scatter of dx0 (N, D). */
static void
FN(embed_back)(const struct tfm *m, REAL *g, const REAL *dx0, const int32_t *tok, int B)
{
	int T = m->n_ctx, D = m->c.d_model, V = m->d_vocab;
	REAL *gE = g + m->W_E, *gpos = g + m->W_pos;

	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			size_t row = (size_t)b * T + t;
			for (int d = 0; d < D; d++) {
				gE[(size_t)d * V + tok[row]] += dx0[row * D + d];
				gpos[(size_t)t * D + d] += dx0[row * D + d];
			}
		}
}

static double
FN(dot)(const REAL *a, const REAL *b, int n)
{
	double s = 0;

	for (int i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* y (n) += a x (n) */
static void
FN(axpy)(REAL *y, double a, const REAL *x, int n)
{
	for (int i = 0; i < n; i++)
		y[i] += (REAL)(a * x[i]);
}

/*
 * Attention within each (example, head): T x T scores, masked softmax,
 * alpha-mixing, and z = att v.  T <= 3, so plain loops; the products
 * around it are the matrix products.
 */
static void
FN(attn_core)(const struct tfm *m, struct FN(layer) *y, int B)
{
	int T = m->n_ctx, H = m->c.heads, E = m->c.d_head, F = H * E;
	double alpha = m->c.alpha, scl = 1.0 / sqrt((double)E);

	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++) {
			size_t base = (size_t)b * T * F + (size_t)h * E, s0 = ((size_t)b * H + h) * T * T;
			REAL *pat = y->pat + s0, *att = y->att + s0;
			for (int i = 0; i < T; i++) {
				int nj = nallowed(m, i);
				double sc[3], mx = -INFINITY, sum = 0;
				REAL *zi = y->z + base + (size_t)i * F;
				for (int j = 0; j < nj; j++) {
					sc[j] = scl * FN(dot)(y->q + base + (size_t)i * F, y->k + base + (size_t)j * F, E);
					mx = sc[j] > mx ? sc[j] : mx;
				}
				for (int j = 0; j < nj; j++)
					sum += sc[j] = exp(sc[j] - mx);
				memset(zi, 0, (size_t)E * sizeof *zi);
				for (int j = 0; j < T; j++) {
					double pj = j < nj ? sc[j] / sum : 0;
					pat[i * T + j] = (REAL)pj;
					att[i * T + j] = j < nj ? (REAL)(alpha * pj + (1 - alpha)) : 0;
					FN(axpy)(zi, att[i * T + j], y->v + base + (size_t)j * F, E);
				}
			}
		}
}

/*
 * Backward through attn_core: from dz to dA (d/d att), dS (d/d scaled
 * scores), and dq, dk, dv (the scale 1/sqrt(E) folded into dq and dk).
 * The softmax's Jacobian: dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik), dP = alpha dA.
 */
static void
FN(attn_core_back)(const struct tfm *m, struct FN(layer) *y, int B)
{
	int T = m->n_ctx, H = m->c.heads, E = m->c.d_head, F = H * E;
	double alpha = m->c.alpha, scl = 1.0 / sqrt((double)E);

	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++) {
			size_t base = (size_t)b * T * F + (size_t)h * E, s0 = ((size_t)b * H + h) * T * T;
			const REAL *pat = y->pat + s0, *att = y->att + s0;
			REAL *dA = y->dA + s0, *dS = y->dS + s0;
			for (int t = 0; t < T; t++) {
				memset(y->dq + base + (size_t)t * F, 0, (size_t)E * sizeof(REAL));
				memset(y->dk + base + (size_t)t * F, 0, (size_t)E * sizeof(REAL));
				memset(y->dv + base + (size_t)t * F, 0, (size_t)E * sizeof(REAL));
			}
			for (int i = 0; i < T; i++) {
				int nj = nallowed(m, i);
				const REAL *dzi = y->dz + base + (size_t)i * F;
				double r = 0;
				for (int j = 0; j < T; j++) {
					dA[i * T + j] = j < nj ? (REAL)FN(dot)(dzi, y->v + base + (size_t)j * F, E) : 0;
					r += alpha * pat[i * T + j] * dA[i * T + j];
					FN(axpy)(y->dv + base + (size_t)j * F, att[i * T + j], dzi, E);
				}
				for (int j = 0; j < T; j++) {
					dS[i * T + j] = (REAL)(pat[i * T + j] * (alpha * dA[i * T + j] - r));
					FN(axpy)(y->dq + base + (size_t)i * F, scl * dS[i * T + j],
					    y->k + base + (size_t)j * F, E);
					FN(axpy)(y->dk + base + (size_t)j * F, scl * dS[i * T + j],
					    y->q + base + (size_t)i * F, E);
				}
			}
		}
}

static void
FN(block_forward)(const struct tfm *m, struct FN(work) *w, int l, const REAL *theta, int B)
{
	int N = B * m->n_ctx, D = m->c.d_model, F = m->c.heads * m->c.d_head, M = m->c.d_mlp;
	const size_t *o = m->blk[l];
	struct FN(layer) *y = &w->ly[l];
	const REAL *x = w->x[l];
	size_t nM = (size_t)N * M;

	FN(lin)(y->q, x, theta + o[TFM_WQ], N, F, D, 0);
	FN(lin)(y->k, x, theta + o[TFM_WK], N, F, D, 0);
	FN(lin)(y->v, x, theta + o[TFM_WV], N, F, D, 0);
	FN(attn_core)(m, y, B);
	memcpy(y->x1, x, (size_t)N * D * sizeof(REAL));
	FN(lin)(y->x1, y->z, theta + o[TFM_WO], N, D, F, 1);
	FN(lin)(y->pre, y->x1, theta + o[TFM_WIN], N, M, D, 0);
	FN(addbias)(y->pre, theta + o[TFM_BIN], N, M);
	for (size_t i = 0; i < nM; i++)
		y->post[i] = (REAL)act_f(m->c.act, y->pre[i]);
	memcpy(w->x[l + 1], y->x1, (size_t)N * D * sizeof(REAL));
	FN(lin)(w->x[l + 1], y->post, theta + o[TFM_WOUT], N, D, M, 1);
	FN(addbias)(w->x[l + 1], theta + o[TFM_BOUT], N, D);
}

void
FN(forward)(const struct tfm *m, struct FN(work) *w, const REAL *theta, const int32_t *x, int B)
{
	int T = m->n_ctx, D = m->c.d_model, C = m->c.p, L = m->c.layers;

	if (B > w->maxb)
		die("transformer: batch of %d rows in a work for %d", B, w->maxb);
	for (int b = 0; b < B; b++) {
		w->tok[(size_t)b * T] = x[2 * b];
		w->tok[(size_t)b * T + 1] = x[2 * b + 1];
		if (T == 3)
			w->tok[(size_t)b * T + 2] = m->c.p;
	}
	FN(embed)(m, w->x[0], theta, w->tok, B);
	for (int l = 0; l < L; l++)
		FN(block_forward)(m, w, l, theta, B);
	/* The last position of each example: rows T-1, 2T-1, ... (stride T*D). */
	GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, D, 1, w->x[L] + (size_t)(T - 1) * D,
	    T * D, theta + m->W_U, C, 0, w->logits, C);
}

void
FN(loss)(const struct tfm *m, struct FN(work) *w, struct tfm_eval *ev, const int32_t *y, int B,
    REAL scale)
{
	int C = m->c.p;

	for (int b = 0; b < B; b++) {
		const REAL *z = w->logits + (size_t)b * C;
		REAL *p = w->probs + (size_t)b * C, *dz = w->dlogits + (size_t)b * C;
		double mx = z[0], s = 0, lse;
		int arg = 0;
		REAL pmax;
		for (int j = 1; j < C; j++)
			if (z[j] > mx)
				mx = z[j], arg = j;
		for (int j = 0; j < C; j++)
			s += exp((double)z[j] - mx);
		lse = mx + log(s);
		pmax = (REAL)(1 / s);   /* exp(mx - lse) */
		ev->loss_sum += lse - z[y[b]];
		ev->correct += arg == y[b];
		ev->collapsed += pmax == 1;
		for (int j = 0; j < C; j++) {
			double pj = exp((double)z[j] - lse);
			p[j] = (REAL)pj;
			dz[j] = (REAL)(scale * (pj - (j == y[b])));
		}
	}
}

/* Deltas of block l: from dres[l+1] (d/d its output) to dres[l] (d/d its input). */
static void
FN(block_deltas)(const struct tfm *m, struct FN(work) *w, int l, const REAL *theta, int B)
{
	int N = B * m->n_ctx, D = m->c.d_model, F = m->c.heads * m->c.d_head, M = m->c.d_mlp;
	const size_t *o = m->blk[l];
	struct FN(layer) *y = &w->ly[l];
	const REAL *dout = w->dres[l + 1];
	size_t nM = (size_t)N * M;

	FN(lin_back)(y->dpost, dout, theta + o[TFM_WOUT], N, D, M, 0);
	for (size_t i = 0; i < nM; i++)
		y->dpre[i] = (REAL)(y->dpost[i] * act_d(m->c.act, y->pre[i]));
	memcpy(y->dx1, dout, (size_t)N * D * sizeof(REAL));
	FN(lin_back)(y->dx1, y->dpre, theta + o[TFM_WIN], N, M, D, 1);
	FN(lin_back)(y->dz, y->dx1, theta + o[TFM_WO], N, D, F, 0);
	FN(attn_core_back)(m, y, B);
	memcpy(w->dres[l], y->dx1, (size_t)N * D * sizeof(REAL));
	FN(lin_back)(w->dres[l], y->dq, theta + o[TFM_WQ], N, F, D, 1);
	FN(lin_back)(w->dres[l], y->dk, theta + o[TFM_WK], N, F, D, 1);
	FN(lin_back)(w->dres[l], y->dv, theta + o[TFM_WV], N, F, D, 1);
}

/* Every delta of the last forward/loss pair, kept in the work. */
static void
FN(deltas)(const struct tfm *m, struct FN(work) *w, const REAL *theta, int B)
{
	int T = m->n_ctx, D = m->c.d_model, C = m->c.p, L = m->c.layers;

	memset(w->dres[L], 0, (size_t)B * T * D * sizeof(REAL));
	GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, B, D, C, 1, w->dlogits, C, theta + m->W_U, C,
	    0, w->dres[L] + (size_t)(T - 1) * D, T * D);
	for (int l = L - 1; l >= 0; l--)
		FN(block_deltas)(m, w, l, theta, B);
}

/* grad += the parameter gradient from the kept activations and deltas. */
static void
FN(param_grads)(const struct tfm *m, struct FN(work) *w, REAL *grad, int B)
{
	int T = m->n_ctx, N = B * T, D = m->c.d_model, C = m->c.p, L = m->c.layers;
	int F = m->c.heads * m->c.d_head, M = m->c.d_mlp;

	GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, D, C, B, 1, w->x[L] + (size_t)(T - 1) * D, T * D,
	    w->dlogits, C, 1, grad + m->W_U, C);
	for (int l = 0; l < L; l++) {
		const size_t *o = m->blk[l];
		struct FN(layer) *y = &w->ly[l];
		FN(colsum)(grad + o[TFM_BOUT], w->dres[l + 1], N, D);
		FN(lin_wgrad)(grad + o[TFM_WOUT], w->dres[l + 1], y->post, N, D, M);
		FN(colsum)(grad + o[TFM_BIN], y->dpre, N, M);
		FN(lin_wgrad)(grad + o[TFM_WIN], y->dpre, y->x1, N, M, D);
		FN(lin_wgrad)(grad + o[TFM_WO], y->dx1, y->z, N, D, F);
		FN(lin_wgrad)(grad + o[TFM_WQ], y->dq, w->x[l], N, F, D);
		FN(lin_wgrad)(grad + o[TFM_WK], y->dk, w->x[l], N, F, D);
		FN(lin_wgrad)(grad + o[TFM_WV], y->dv, w->x[l], N, F, D);
	}
	FN(embed_back)(m, grad, w->dres[0], w->tok, B);
}

void
FN(backward)(const struct tfm *m, struct FN(work) *w, REAL *grad, const REAL *theta, int B)
{
	FN(deltas)(m, w, theta, B);
	FN(param_grads)(m, w, grad, B);
}

/*
 * R-forward through attn_core: from rq, rk, rv to rpat, ratt, rz.
 * R{P_ij} = P_ij (R{S_ij} - sum_k P_ik R{S_ik}), R{att} = alpha R{P}.
 */
static void
FN(attn_core_r)(const struct tfm *m, struct FN(layer) *y, int B)
{
	int T = m->n_ctx, H = m->c.heads, E = m->c.d_head, F = H * E;
	double alpha = m->c.alpha, scl = 1.0 / sqrt((double)E);

	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++) {
			size_t base = (size_t)b * T * F + (size_t)h * E, s0 = ((size_t)b * H + h) * T * T;
			const REAL *pat = y->pat + s0, *att = y->att + s0;
			REAL *rpat = y->rpat + s0, *ratt = y->ratt + s0;
			for (int i = 0; i < T; i++) {
				int nj = nallowed(m, i);
				double rs[3], mean = 0;
				REAL *rzi = y->rz + base + (size_t)i * F;
				for (int j = 0; j < nj; j++) {
					rs[j] = scl * (FN(dot)(y->rq + base + (size_t)i * F, y->k + base + (size_t)j * F, E) +
					    FN(dot)(y->q + base + (size_t)i * F, y->rk + base + (size_t)j * F, E));
					mean += pat[i * T + j] * rs[j];
				}
				memset(rzi, 0, (size_t)E * sizeof *rzi);
				for (int j = 0; j < T; j++) {
					double rp = j < nj ? pat[i * T + j] * (rs[j] - mean) : 0;
					rpat[i * T + j] = (REAL)rp;
					ratt[i * T + j] = (REAL)(alpha * rp);
					FN(axpy)(rzi, ratt[i * T + j], y->v + base + (size_t)j * F, E);
					FN(axpy)(rzi, att[i * T + j], y->rv + base + (size_t)j * F, E);
				}
			}
		}
}

/*
 * R-backward through attn_core: from rdz (in w) and the kept deltas to
 * rdq, rdk, rdv (in w).  Each backward formula differentiated once more:
 * R{dS} = R{P} (dP - r) + P (R{dP} - R{r}), r_i = sum_k P_ik dP_ik.
 */
static void
FN(attn_core_rback)(const struct tfm *m, struct FN(work) *w, const struct FN(layer) *y, int B)
{
	int T = m->n_ctx, H = m->c.heads, E = m->c.d_head, F = H * E;
	double alpha = m->c.alpha, scl = 1.0 / sqrt((double)E);

	memset(w->rdq, 0, (size_t)B * T * F * sizeof(REAL));
	memset(w->rdk, 0, (size_t)B * T * F * sizeof(REAL));
	memset(w->rdv, 0, (size_t)B * T * F * sizeof(REAL));
	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++) {
			size_t base = (size_t)b * T * F + (size_t)h * E, s0 = ((size_t)b * H + h) * T * T;
			const REAL *pat = y->pat + s0, *att = y->att + s0, *rpat = y->rpat + s0;
			const REAL *ratt = y->ratt + s0, *dA = y->dA + s0, *dS = y->dS + s0;
			for (int i = 0; i < T; i++) {
				int nj = nallowed(m, i);
				size_t ri = base + (size_t)i * F;
				double rdA[3], r = 0, rr = 0;
				for (int j = 0; j < nj; j++) {
					size_t rj = base + (size_t)j * F;
					rdA[j] = FN(dot)(w->rdz + ri, y->v + rj, E) + FN(dot)(y->dz + ri, y->rv + rj, E);
					r += pat[i * T + j] * alpha * dA[i * T + j];
					rr += rpat[i * T + j] * alpha * dA[i * T + j] + pat[i * T + j] * alpha * rdA[j];
					FN(axpy)(w->rdv + rj, ratt[i * T + j], y->dz + ri, E);
					FN(axpy)(w->rdv + rj, att[i * T + j], w->rdz + ri, E);
				}
				for (int j = 0; j < nj; j++) {
					size_t rj = base + (size_t)j * F;
					double rdS = rpat[i * T + j] * (alpha * dA[i * T + j] - r) +
					    pat[i * T + j] * (alpha * rdA[j] - rr);
					FN(axpy)(w->rdq + ri, scl * rdS, y->k + rj, E);
					FN(axpy)(w->rdq + ri, scl * dS[i * T + j], y->rk + rj, E);
					FN(axpy)(w->rdk + rj, scl * rdS, y->q + ri, E);
					FN(axpy)(w->rdk + rj, scl * dS[i * T + j], y->rq + ri, E);
				}
			}
		}
}

/* R-forward of block l: from rx[l] to rx[l+1]; v is the direction. */
static void
FN(block_rforward)(const struct tfm *m, struct FN(work) *w, int l, const REAL *theta,
    const REAL *v, int B)
{
	int N = B * m->n_ctx, D = m->c.d_model, F = m->c.heads * m->c.d_head, M = m->c.d_mlp;
	const size_t *o = m->blk[l];
	struct FN(layer) *y = &w->ly[l];
	const REAL *x = w->x[l], *rx = w->rx[l];
	REAL *rq[3] = {y->rq, y->rk, y->rv};
	enum tfm_part part[3] = {TFM_WQ, TFM_WK, TFM_WV};
	size_t nM = (size_t)N * M;

	for (int i = 0; i < 3; i++) {   /* R{x W^T} = R{x} W^T + x V^T */
		FN(lin)(rq[i], rx, theta + o[part[i]], N, F, D, 0);
		FN(lin)(rq[i], x, v + o[part[i]], N, F, D, 1);
	}
	FN(attn_core_r)(m, y, B);
	memcpy(y->rx1, rx, (size_t)N * D * sizeof(REAL));
	FN(lin)(y->rx1, y->rz, theta + o[TFM_WO], N, D, F, 1);
	FN(lin)(y->rx1, y->z, v + o[TFM_WO], N, D, F, 1);
	FN(lin)(y->rpre, y->rx1, theta + o[TFM_WIN], N, M, D, 0);
	FN(lin)(y->rpre, y->x1, v + o[TFM_WIN], N, M, D, 1);
	FN(addbias)(y->rpre, v + o[TFM_BIN], N, M);
	for (size_t i = 0; i < nM; i++)
		y->rpost[i] = (REAL)(act_d(m->c.act, y->pre[i]) * y->rpre[i]);
	memcpy(w->rx[l + 1], y->rx1, (size_t)N * D * sizeof(REAL));
	FN(lin)(w->rx[l + 1], y->rpost, theta + o[TFM_WOUT], N, D, M, 1);
	FN(lin)(w->rx[l + 1], y->post, v + o[TFM_WOUT], N, D, M, 1);
	FN(addbias)(w->rx[l + 1], v + o[TFM_BOUT], N, D);
}

/* The MLP half of block l's R-backward: from rdres (d/d output) to rdx1. */
static void
FN(mlp_rback)(const struct tfm *m, struct FN(work) *w, int l, REAL *hv, const REAL *theta,
    const REAL *v, int B)
{
	int N = B * m->n_ctx, D = m->c.d_model, M = m->c.d_mlp;
	const size_t *o = m->blk[l];
	const struct FN(layer) *y = &w->ly[l];
	const REAL *dout = w->dres[l + 1], *rdout = w->rdres;
	size_t nM = (size_t)N * M;

	FN(colsum)(hv + o[TFM_BOUT], rdout, N, D);
	FN(lin_wgrad)(hv + o[TFM_WOUT], rdout, y->post, N, D, M);
	FN(lin_wgrad)(hv + o[TFM_WOUT], dout, y->rpost, N, D, M);
	FN(lin_back)(w->rdpost, rdout, theta + o[TFM_WOUT], N, D, M, 0);
	FN(lin_back)(w->rdpost, dout, v + o[TFM_WOUT], N, D, M, 1);
	for (size_t i = 0; i < nM; i++)
		w->rdpre[i] = (REAL)(w->rdpost[i] * act_d(m->c.act, y->pre[i]) +
		    y->dpost[i] * act_dd(m->c.act, y->pre[i]) * y->rpre[i]);
	FN(colsum)(hv + o[TFM_BIN], w->rdpre, N, M);
	FN(lin_wgrad)(hv + o[TFM_WIN], w->rdpre, y->x1, N, M, D);
	FN(lin_wgrad)(hv + o[TFM_WIN], y->dpre, y->rx1, N, M, D);
	memcpy(w->rdx1, rdout, (size_t)N * D * sizeof(REAL));
	FN(lin_back)(w->rdx1, w->rdpre, theta + o[TFM_WIN], N, M, D, 1);
	FN(lin_back)(w->rdx1, y->dpre, v + o[TFM_WIN], N, M, D, 1);
}

/* The attention half of block l's R-backward: from rdx1 to rdres (d/d input). */
static void
FN(attn_rback)(const struct tfm *m, struct FN(work) *w, int l, REAL *hv, const REAL *theta,
    const REAL *v, int B)
{
	int N = B * m->n_ctx, D = m->c.d_model, F = m->c.heads * m->c.d_head;
	const size_t *o = m->blk[l];
	const struct FN(layer) *y = &w->ly[l];
	const REAL *d[3] = {y->dq, y->dk, y->dv}, *rd[3] = {w->rdq, w->rdk, w->rdv};
	enum tfm_part part[3] = {TFM_WQ, TFM_WK, TFM_WV};

	FN(lin_wgrad)(hv + o[TFM_WO], w->rdx1, y->z, N, D, F);
	FN(lin_wgrad)(hv + o[TFM_WO], y->dx1, y->rz, N, D, F);
	FN(lin_back)(w->rdz, w->rdx1, theta + o[TFM_WO], N, D, F, 0);
	FN(lin_back)(w->rdz, y->dx1, v + o[TFM_WO], N, D, F, 1);
	FN(attn_core_rback)(m, w, y, B);
	memcpy(w->rdres, w->rdx1, (size_t)N * D * sizeof(REAL));
	for (int i = 0; i < 3; i++) {
		FN(lin_wgrad)(hv + o[part[i]], rd[i], w->x[l], N, F, D);
		FN(lin_wgrad)(hv + o[part[i]], d[i], w->rx[l], N, F, D);
		FN(lin_back)(w->rdres, rd[i], theta + o[part[i]], N, F, D, 1);
		FN(lin_back)(w->rdres, d[i], v + o[part[i]], N, F, D, 1);
	}
}

struct FN(prepared) *
FN(hvp_prepare)(const struct tfm *m, struct FN(work) *w, const REAL *theta, const int32_t *x,
    const int32_t *y, int B, REAL scale)
{
	struct FN(prepared) *s = &w->prep;

	if (!w->hvp)
		die("transformer: an HVP needs a work made for it");
	FN(forward)(m, w, theta, x, B);
	s->ev = (struct tfm_eval){0};
	FN(loss)(m, w, &s->ev, y, B, scale);
	FN(deltas)(m, w, theta, B);
	s->m = m;
	s->theta = theta;
	s->B = B;
	s->scale = scale;
	return s;
}

/* R{logits} of the last positions, then R{dlogits} = scale (R{p} - 0). */
static void
FN(rlogits)(const struct tfm *m, struct FN(work) *w, const REAL *theta, const REAL *v, int B,
    REAL scale)
{
	int T = m->n_ctx, D = m->c.d_model, C = m->c.p, L = m->c.layers;
	size_t last = (size_t)(T - 1) * D;

	GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, D, 1, w->rx[L] + last, T * D,
	    theta + m->W_U, C, 0, w->rlogits, C);
	GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, D, 1, w->x[L] + last, T * D,
	    v + m->W_U, C, 1, w->rlogits, C);
	for (int b = 0; b < B; b++) {
		const REAL *p = w->probs + (size_t)b * C, *rz = w->rlogits + (size_t)b * C;
		double mean = FN(dot)(p, rz, C);
		for (int j = 0; j < C; j++)
			w->rdlogits[(size_t)b * C + j] = (REAL)(scale * p[j] * (rz[j] - mean));
	}
}

void
FN(hvp_apply)(struct FN(prepared) *s, REAL *hv, const REAL *v)
{
	const struct tfm *m = s->m;
	struct FN(work) *w = s->w;
	const REAL *theta = s->theta;
	int B = s->B, T = m->n_ctx, D = m->c.d_model, C = m->c.p, L = m->c.layers;
	size_t last = (size_t)(T - 1) * D;

	FN(embed)(m, w->rx[0], v, w->tok, B);
	for (int l = 0; l < L; l++)
		FN(block_rforward)(m, w, l, theta, v, B);
	FN(rlogits)(m, w, theta, v, B, s->scale);
	GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, D, C, B, 1, w->rx[L] + last, T * D,
	    w->dlogits, C, 1, hv + m->W_U, C);
	GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, D, C, B, 1, w->x[L] + last, T * D,
	    w->rdlogits, C, 1, hv + m->W_U, C);
	memset(w->rdres, 0, (size_t)B * T * D * sizeof(REAL));
	GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, B, D, C, 1, w->rdlogits, C, theta + m->W_U, C,
	    0, w->rdres + last, T * D);
	GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, B, D, C, 1, w->dlogits, C, v + m->W_U, C,
	    1, w->rdres + last, T * D);
	for (int l = L - 1; l >= 0; l--) {
		FN(mlp_rback)(m, w, l, hv, theta, v, B);
		FN(attn_rback)(m, w, l, hv, theta, v, B);
	}
	FN(embed_back)(m, hv, w->rdres, w->tok, B);
}

struct tfm_eval
FN(hvp_eval)(const struct FN(prepared) *s)
{
	return s->ev;
}

void
FN(hvp_grad)(struct FN(prepared) *s, REAL *grad)
{
	FN(param_grads)(s->m, s->w, grad, s->B);
}
