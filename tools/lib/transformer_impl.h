/*
 * transformer_impl.h: the transformer's kernels for one precision, included
 * by transformer.c twice, once with REAL float (tfm_*) and once with REAL
 * double (tfm64_*), as LAPACK's s and d routines come from one source.
 * It expects REAL, FN(name) (the prefixed name) and GEMM (cblas_sgemm or
 * cblas_dgemm), and transformer.c's helpers act_*() and nallowed();
 * with TFM_OWN_GEMM defined (float) its products go through gemm.h.
 *
 * Shapes in comments use transformer.h's letters.  Token rows are
 * example-major: row b*T + t is position t of example b, so every
 * projection of every position is one matrix product over N rows.
 *
 * Exact shortcuts, all switched off by TFM_WORK_NAIVE (which
 * computes as the papers' modules do, for the tests to compare):
 *
 * - Query rows.  The loss reads the last position only, so the last
 *   block needs its query, attention output, MLP and residual at that
 *   position alone (keys and values still at every position).  A layer
 *   computes queries from position q0 on: 0, or T-1 in the last block.
 *   Its query-row buffers (q, z, x1, pre, post and their deltas) hold
 *   nq = B (T - q0) rows, row b (T - q0) + (i - q0) for query i; in x[l]
 *   those rows start at q0 D with a stride of T D (q0 > 0) or D.
 * - Tables.  Block 0's input row is W_E[:, tok] + W_pos[t], one of T V
 *   values (table row t V + tok), so its queries, keys and values are
 *   rows of three T V x F tables computed once per pass.  Its attention
 *   reads queries, keys and values from the tables through each token's
 *   table row (krow) and its backward adds dq, dk, dv there; its residual
 *   rows are gathered, and their gradients scattered back.  Block 0 then
 *   has no (N, .) buffer of inputs, keys or values, and with one layer no
 *   matrix product runs over all N token rows.
 * - Position 0 of block 0 (causal attention, two or more blocks, works
 *   without the R-operator).  Query 0 attends to key 0 alone (weight
 *   alpha + (1 - alpha) = 1), so block 0's output there is a function of
 *   the token alone: V rows (struct first) computed once per pass instead
 *   of B, gathered into x[1] and their deltas summed back per token.
 *   Block 0's query rows then start at q0 = 1; its output rows are
 *   written packed at the head of x[1] and spread in place to their
 *   positions, and its deltas packed in place at the head of dres[1].
 *
 * - Folded keys and values (the last block of two or more, works without
 *   the R-operator).  Its one query per example scores key j as
 *   q_h . (W_K_h x_j) = (W_K_h^T q_h) . x_j and mixes the values as
 *   sum_j att_hj W_V_h x_j = W_V_h (sum_j att_hj x_j), so per example and
 *   head qk = W_K_h^T q_h and u = sum_j att_hj x_j (D each) stand in for
 *   the keys and values of all T positions: two products over its B
 *   query rows instead of 2 T over every token row.  The backward
 *   overwrites qk and u with their deltas (W_V's gradient is taken
 *   first, in the deltas pass).
 *
 * A plain work (no R-operator) keeps no MLP delta per row: its backward
 * runs the MLP's in chunks of TFM_CHUNK rows, each adding its share of
 * W_in's and b_in's gradient while its d/d pre is in a chunk-sized
 * scratch (the R-backward needs every row's, so an HVP work keeps them).
 *
 * With ReLU the pre-activation is not kept: the activation overwrites it
 * (pre == post), since pre > 0 exactly where post > 0 and ReLU's second
 * derivative is zero, so every use of pre reads the same mask from post.
 */

#ifndef TFM_CHUNK   /* once for both precisions */
#define TFM_CHUNK 256   /* rows of the plain backward's MLP chunk: d/d pre in 512 KiB at M = 512, float */
#endif

/* What a layer keeps: its forward values, its backward deltas, their R-values. */
struct FN(layer) {
	int q0;                 /* first query position: 0, or T-1 */
	int fold;               /* keys and values folded into the query rows (see above): qk, u, no k, v */
	REAL *q;                /* (nq, F) queries, all heads; block 0's table rows (krow) */
	REAL *k, *v;            /* (nk, F) keys, values: rows b T + t, or block 0's table rows */
	const int32_t *krow;    /* (N) each token row's key row (block 0: its table row), or NULL */
	size_t nk;              /* key rows: N, or T V */
	REAL *pat;              /* (B, H, T-q0, T) softmax of the scaled scores, 0 where masked */
	REAL *att;              /* (B, H, T-q0, T) alpha * pat + (1 - alpha), 0 where masked */
	REAL *z;                /* (nq, F) att v per head, heads side by side */
	REAL *x1;               /* (nq, D) residual after attention */
	REAL *pre, *post;       /* (nq, M) MLP pre-activation and activation (the same with ReLU) */
	REAL *out, *dout;       /* (nq, D) the block's output and d/d it: x[l+1], dres[l+1] (packed: see above) */
	REAL *dx1, *dpost, *dpre, *dz, *dq;   /* d loss / d (same shapes); no dpost, dpre in a plain work */
	REAL *dk, *dv;          /* (nk, F) */
	REAL *qk, *u;           /* folded: (nq, H, D) W_K_h^T q_h and sum_j att_hj x_j; backward: their deltas */
	REAL *dA, *dS;          /* (B, H, T-q0, T) d loss / d att, d loss / d scaled scores */
	/* R-forward values (hvp works only) */
	REAL *rq, *rk, *rv, *rpat, *ratt, *rz, *rx1, *rpre, *rpost;
	REAL *rdq, *rdk, *rdv;  /* where the R-backward puts R{dq} (as q), R{dk}, R{dv} (nk, F) */
};

/* Block 0 at position 0 (V rows, row = token), the first shortcut: out doubles as d/d out. */
struct FN(first) {
	REAL *x1, *z, *dx1, *dz, *out;          /* (V, D), (V, F) */
	REAL *pre, *post, *dpre;                /* (V, M); pre == post with ReLU */
};

/* Block 0's tables (T V rows): inputs, projections, their deltas and R-values. */
struct FN(tables) {
	REAL *x, *rx, *dx, *rdx;                 /* (TV, D) */
	REAL *p[3], *dp[3], *rp[3], *rdp[3];     /* (TV, F) for q, k, v */
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
	int maxb, hvp, naive;
	int first;                             /* block 0's position 0 on its own V-row table */
	REAL *dpre_chunk;                      /* (TFM_CHUNK, M) a plain work's MLP deltas */
	int32_t *tok;                          /* (N) token ids */
	int32_t *trow;                         /* (N) block 0's table row of each token row */
	REAL *x[TFM_MAX_LAYERS + 1];           /* (N, D) residual into block l; x[L] the output (nq rows) */
	REAL *dres[TFM_MAX_LAYERS + 1];        /* d loss / d x[l] */
	REAL *rx[TFM_MAX_LAYERS + 1];          /* R{x[l]} */
	struct FN(layer) ly[TFM_MAX_LAYERS];
	struct FN(tables) tb;
	struct FN(first) f0;
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

/* Whether a work computes block 0's position 0 on its own table (the first shortcut). */
static int
FN(first_on)(const struct tfm *m, int hvp, int naive)
{
	return !hvp && !naive && m->c.attention == TFM_CAUSAL && m->c.layers > 1;
}

/* Whether block l folds its keys and values into its query rows: the last of two or more, plain work. */
static int
FN(fold_on)(const struct tfm *m, int hvp, int naive, int l)
{
	return !hvp && !naive && l > 0 && l == m->c.layers - 1;
}

/* Block l's first query position: 0; T-1 in the last block, 1 in block 0 with the first shortcut. */
static int
FN(layer_q0)(const struct tfm *m, int hvp, int naive, int l)
{
	if (naive)
		return 0;
	if (l == m->c.layers - 1)
		return m->n_ctx - 1;
	return l == 0 && FN(first_on)(m, hvp, naive);
}

/* Rows per example of x[l], block l's input: T, or 1 for the output x[L] with the shortcuts. */
static int
FN(x_rows)(const struct tfm *m, int naive, int l)
{
	return !naive && l == m->c.layers ? 1 : m->n_ctx;
}

/* Pre-activation floats per activation float: ReLU's is overwritten by the activation. */
static size_t
FN(npre)(const struct tfm *m)
{
	return m->c.act == TFM_RELU ? 0 : 1;
}

/* Floats block l keeps: query-row buffers for nqp positions, key rows for all T. */
static size_t
FN(layer_size)(const struct tfm *m, size_t B, size_t nqp, int hvp, int table, int fold)
{
	size_t T = (size_t)m->n_ctx, N = table || fold ? 0 : B * T, nq = B * nqp, D = (size_t)m->c.d_model;
	size_t F = (size_t)m->c.heads * (size_t)m->c.d_head, M = (size_t)m->c.d_mlp;
	size_t HD = fold ? (size_t)m->c.heads * D : 0;   /* N: per-row keys and values, none folded */
	size_t S = B * (size_t)m->c.heads * nqp * T;   /* N: per-row keys and values, none on tables */
	size_t Q = table ? 0 : nq * F;   /* queries and their deltas: per row, none on tables */
	size_t fwd = Q + 2 * N * F + nq * F + 2 * S + nq * D + (1 + FN(npre)(m)) * nq * M;
	size_t bwd = nq * D + (hvp ? 2 : 0) * nq * M + Q + nq * F + 2 * N * F + 2 * S;

	size_t rvals = fwd + (1 - FN(npre)(m)) * nq * M;   /* R{pre} is kept beside R{post} */

	return fwd + bwd + (hvp ? rvals : 0) + 2 * nq * HD;
}

/* Floats of the first shortcut's table. */
static size_t
FN(first_size)(const struct tfm *m)
{
	size_t V = (size_t)m->d_vocab, D = (size_t)m->c.d_model;
	size_t F = (size_t)m->c.heads * (size_t)m->c.d_head, M = (size_t)m->c.d_mlp;

	return V * (3 * D + 2 * F + (2 + FN(npre)(m)) * M);
}

/* Floats the work needs; must carve exactly what FN(work_carve) does. */
static size_t
FN(work_size)(const struct tfm *m, size_t B, int hvp, int naive)
{
	size_t T = (size_t)m->n_ctx, N = B * T, D = (size_t)m->c.d_model;
	size_t F = (size_t)m->c.heads * (size_t)m->c.d_head, M = (size_t)m->c.d_mlp;
	size_t S = B * (size_t)m->c.heads * T * T, C = (size_t)m->c.p;
	size_t TV = T * (size_t)m->d_vocab, n = 3 * B * C + 2 * TV * D + 6 * TV * F;

	for (int l = !naive; l <= m->c.layers; l++)   /* x, dres, rx: block l's input rows */
		n += (hvp ? 3 : 2) * B * (size_t)FN(x_rows)(m, naive, l) * D;
	for (int l = 0; l < m->c.layers; l++) {
		int q0 = FN(layer_q0)(m, hvp, naive, l);
		n += FN(layer_size)(m, B, T - (size_t)q0, hvp, l == 0 && !naive, FN(fold_on)(m, hvp, naive, l));
	}
	if (FN(first_on)(m, hvp, naive))
		n += FN(first_size)(m);
	if (!hvp)
		n += (size_t)TFM_CHUNK * M;
	if (hvp)
		n += 2 * B * C + 2 * N * D + 2 * N * M + 4 * N * F + 2 * S + 2 * TV * D + 6 * TV * F;
	return n;
}

static void
FN(tables_carve)(const struct tfm *m, struct FN(work) *w, REAL **cur)
{
	size_t TV = (size_t)m->n_ctx * (size_t)m->d_vocab, D = (size_t)m->c.d_model;
	size_t F = (size_t)m->c.heads * (size_t)m->c.d_head;
	struct FN(tables) *t = &w->tb;

	t->x = FN(carve)(cur, TV * D);
	t->dx = FN(carve)(cur, TV * D);
	for (int i = 0; i < 3; i++) {
		t->p[i] = FN(carve)(cur, TV * F);
		t->dp[i] = FN(carve)(cur, TV * F);
	}
	if (!w->hvp)
		return;
	t->rx = FN(carve)(cur, TV * D);
	t->rdx = FN(carve)(cur, TV * D);
	for (int i = 0; i < 3; i++) {
		t->rp[i] = FN(carve)(cur, TV * F);
		t->rdp[i] = FN(carve)(cur, TV * F);
	}
}

static void
FN(layer_carve)(const struct tfm *m, struct FN(layer) *y, size_t B, int hvp, int table, REAL **cur)
{
	size_t T = (size_t)m->n_ctx, N = B * T, nq = B * (T - (size_t)y->q0), D = (size_t)m->c.d_model;
	size_t F = (size_t)m->c.heads * (size_t)m->c.d_head, M = (size_t)m->c.d_mlp;
	size_t S = B * (size_t)m->c.heads * (T - (size_t)y->q0) * T;
	REAL **nf[] = {&y->q, &y->z, &y->dz, &y->dq, &y->rq, &y->rz};
	REAL **kf[] = {&y->k, &y->v, &y->dk, &y->dv, &y->rk, &y->rv};
	REAL **ns[] = {&y->pat, &y->att, &y->dA, &y->dS, &y->rpat, &y->ratt};
	REAL **nm[] = {&y->pre, &y->post, &y->dpre, &y->dpost, &y->rpre, &y->rpost};
	REAL **nd[] = {&y->x1, &y->dx1, &y->rx1};
	size_t r = hvp ? 0 : 2;   /* the R-values are the last of each list */

	for (size_t i = 0; i < 6 - r; i++)   /* on tables, no q, dq, rq */
		if (!table || (i != 0 && i != 3 && i != 4))
			*nf[i] = FN(carve)(cur, nq * F);
	y->nk = N;
	for (size_t i = 0; !table && !y->fold && i < 6 - r; i++)
		*kf[i] = FN(carve)(cur, N * F);
	if (y->fold) {
		y->nk = 0;
		y->qk = FN(carve)(cur, nq * (size_t)m->c.heads * D);
		y->u = FN(carve)(cur, nq * (size_t)m->c.heads * D);
	}
	for (size_t i = 0; i < 6 - r; i++)
		*ns[i] = FN(carve)(cur, S);
	for (size_t i = FN(npre)(m) ? 0 : 1; i < (hvp ? 6 : 2); i++)
		*nm[i] = FN(carve)(cur, nq * M);
	if (!FN(npre)(m))
		y->pre = y->post;
	if (!hvp)   /* chunks in the work's scratch instead */
		y->dpre = y->dpost = NULL;
	for (size_t i = 0; i < 3 - r / 2; i++)
		*nd[i] = FN(carve)(cur, nq * D);
}

static void
FN(first_carve)(const struct tfm *m, struct FN(first) *f, REAL **cur)
{
	size_t V = (size_t)m->d_vocab, D = (size_t)m->c.d_model;
	size_t F = (size_t)m->c.heads * (size_t)m->c.d_head, M = (size_t)m->c.d_mlp;

	f->x1 = FN(carve)(cur, V * D);
	f->dx1 = FN(carve)(cur, V * D);
	f->out = FN(carve)(cur, V * D);
	f->z = FN(carve)(cur, V * F);
	f->dz = FN(carve)(cur, V * F);
	f->post = FN(carve)(cur, V * M);
	f->dpre = FN(carve)(cur, V * M);
	f->pre = FN(npre)(m) ? FN(carve)(cur, V * M) : f->post;
}

/* Where each layer's keys and values live: its own rows, or block 0's tables. */
static void
FN(keys_on)(const struct tfm *m, struct FN(work) *w)
{
	for (int l = 0; l < m->c.layers; l++) {
		struct FN(layer) *y = &w->ly[l];
		if (l > 0 || w->naive) {
			y->krow = NULL;
			y->rdq = w->rdq, y->rdk = w->rdk, y->rdv = w->rdv;
			continue;
		}
		y->krow = w->trow;
		y->nk = (size_t)m->n_ctx * (size_t)m->d_vocab;
		y->q = w->tb.p[0], y->dq = w->tb.dp[0], y->rq = w->tb.rp[0], y->rdq = w->tb.rdp[0];
		y->k = w->tb.p[1], y->v = w->tb.p[2];
		y->dk = w->tb.dp[1], y->dv = w->tb.dp[2];
		y->rk = w->tb.rp[1], y->rv = w->tb.rp[2];
		y->rdk = w->tb.rdp[1], y->rdv = w->tb.rdp[2];
	}
}

static void
FN(work_carve)(const struct tfm *m, struct FN(work) *w, size_t B)
{
	size_t T = (size_t)m->n_ctx, N = B * T, D = (size_t)m->c.d_model;
	size_t F = (size_t)m->c.heads * (size_t)m->c.d_head, M = (size_t)m->c.d_mlp;
	size_t S = B * (size_t)m->c.heads * T * T, C = (size_t)m->c.p;
	REAL *cur = w->mem;

	for (int l = !w->naive; l <= m->c.layers; l++) {   /* block 0's input: tables, unless naive */
		size_t rows = B * (size_t)FN(x_rows)(m, w->naive, l);
		w->x[l] = FN(carve)(&cur, rows * D);
		w->dres[l] = FN(carve)(&cur, rows * D);
		if (w->hvp)
			w->rx[l] = FN(carve)(&cur, rows * D);
	}
	for (int l = 0; l < m->c.layers; l++) {
		struct FN(layer) *y = &w->ly[l];
		y->q0 = FN(layer_q0)(m, w->hvp, w->naive, l);
		y->fold = FN(fold_on)(m, w->hvp, w->naive, l);
		y->out = w->x[l + 1], y->dout = w->dres[l + 1];
		FN(layer_carve)(m, y, B, w->hvp, l == 0 && !w->naive, &cur);
	}
	if (w->first)
		FN(first_carve)(m, &w->f0, &cur);
	w->dpre_chunk = w->hvp ? NULL : FN(carve)(&cur, (size_t)TFM_CHUNK * M);
	w->logits = FN(carve)(&cur, B * C);
	w->dlogits = FN(carve)(&cur, B * C);
	w->probs = FN(carve)(&cur, B * C);
	FN(tables_carve)(m, w, &cur);
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
	FN(keys_on)(m, w);
	if ((size_t)(cur - w->mem) != FN(work_size)(m, B, w->hvp, w->naive))
		die("transformer: work layout mismatch (%zu of %zu)", (size_t)(cur - w->mem),
		    FN(work_size)(m, B, w->hvp, w->naive));
}

struct FN(work) *
FN(work_new)(const struct tfm *m, int maxb, int flags)
{
	struct FN(work) *w = xcalloc(1, sizeof *w);
	size_t N = xmul((size_t)maxb, (size_t)m->n_ctx);

	w->maxb = maxb;
	w->hvp = !!(flags & TFM_WORK_HVP);
	w->naive = !!(flags & TFM_WORK_NAIVE);
	w->first = FN(first_on)(m, w->hvp, w->naive);
	w->tok = xmalloc(xmul(N, sizeof *w->tok));
	w->trow = xmalloc(xmul(N, sizeof *w->trow));
	w->mem = xmalloc_big(xmul(FN(work_size)(m, (size_t)maxb, w->hvp, w->naive), sizeof(REAL)));
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
	free(w->trow);
	free(w->mem);
	free(w);
}

const REAL *
FN(logits)(const struct FN(work) *w)
{
	return w->logits;
}

/* What follows a product, element by element, as gemm.h's epilogue. */
struct FN(epi) {
	const REAL *bias;    /* (N): C = bias + op(A) op(B) (beta 0), or NULL */
	int relu;            /* C = max(C, 0) */
	const REAL *mask;    /* (M, N), leading dimension ldm: C = 0 where mask <= 0, or NULL */
	int ldm;
};

/*
 * C (M, N) = op(A) op(B) + beta C, row-major, beta 0 or 1, then e (NULL
 * for none).  In float, gemm.h's gemm: its own AVX-512 kernel on one
 * thread, made for shapes like these (N and K of 32 to 512, M the rows),
 * with the bias, ReLU or mask applied as C is stored; in double (the
 * cross-check's precision) GEMM and the same passes after it.  Either
 * way the bias comes first and the products add into it.
 */
static void
FN(prod)(int ta, int tb, int M, int N, int K, const REAL *A, int lda, const REAL *B, int ldb,
    REAL beta, REAL *C, int ldc, const struct FN(epi) *e)
{
#ifdef TFM_OWN_GEMM
	struct gemm_epi ge = {0};

	if (e)
		ge = (struct gemm_epi){.bias = e->bias, .relu = e->relu, .mask = e->mask, .ldm = e->ldm};
	gemm(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, e ? &ge : NULL);
#else
	if (e && e->bias) {
		for (int i = 0; i < M; i++)
			memcpy(C + (size_t)i * ldc, e->bias, (size_t)N * sizeof(REAL));
		beta = 1;
	}
	GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1,
	    A, lda, B, ldb, beta, C, ldc);
	for (int i = 0; e && (e->relu || e->mask) && i < M; i++)
		for (int j = 0; j < N; j++) {
			REAL *c = C + (size_t)i * ldc + j;
			if (e->relu)
				*c = *c > 0 ? *c : 0;
			if (e->mask && !(e->mask[(size_t)i * e->ldm + j] > 0))
				*c = 0;
		}
#endif
}

/* Row-major products with PyTorch's Linear shapes: W is (out, in); ld* are row strides. */

/* Y (n, out) = X (n, in) W^T + beta Y, then e */
static void
FN(lin_epi)(REAL *Y, int ldy, const REAL *X, int ldx, const REAL *W, int n, int out, int in, REAL beta,
    const struct FN(epi) *e)
{
	FN(prod)(0, 1, n, out, in, X, ldx, W, in, beta, Y, ldy, e);
}

static void
FN(lin_ld)(REAL *Y, int ldy, const REAL *X, int ldx, const REAL *W, int n, int out, int in, REAL beta)
{
	FN(lin_epi)(Y, ldy, X, ldx, W, n, out, in, beta, NULL);
}

static void
FN(lin)(REAL *Y, const REAL *X, const REAL *W, int n, int out, int in, REAL beta)
{
	FN(lin_ld)(Y, out, X, in, W, n, out, in, beta);
}

/* dX (n, in) = dY (n, out) W + beta dX */
static void
FN(lin_back_ld)(REAL *dX, int lddx, const REAL *dY, const REAL *W, int n, int out, int in, REAL beta)
{
	FN(prod)(0, 0, n, in, out, dY, out, W, in, beta, dX, lddx, NULL);
}

static void
FN(lin_back)(REAL *dX, const REAL *dY, const REAL *W, int n, int out, int in, REAL beta)
{
	FN(lin_back_ld)(dX, in, dY, W, n, out, in, beta);
}

/* gW (out, in) += dY (n, out)^T X (n, in) */
static void
FN(lin_wgrad_ld)(REAL *gW, const REAL *dY, const REAL *X, int ldx, int n, int out, int in)
{
	FN(prod)(1, 0, out, in, n, dY, out, X, ldx, 1, gW, in, NULL);
}

static void
FN(lin_wgrad)(REAL *gW, const REAL *dY, const REAL *X, int n, int out, int in)
{
	FN(lin_wgrad_ld)(gW, dY, X, in, n, out, in);
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

/* Query rows of layer y: nq, the first's offset in an (N, D) matrix, and the row stride there. */
static int
FN(nq)(const struct tfm *m, const struct FN(layer) *y, int B)
{
	return B * (m->n_ctx - y->q0);
}

static size_t
FN(qoff)(const struct tfm *m, const struct FN(layer) *y)
{
	return (size_t)y->q0 * (size_t)m->c.d_model;
}

static int
FN(qld)(const struct tfm *m, const struct FN(layer) *y)
{
	return y->q0 ? m->n_ctx * m->c.d_model : m->c.d_model;
}

/* dst (n, D) = src's rows with stride ld; or back (dst strided) when scatter. */
static void
FN(copy_rows)(REAL *dst, int ldd, const REAL *src, int lds, int n, int D)
{
	for (int i = 0; i < n; i++)
		memcpy(dst + (size_t)i * ldd, src + (size_t)i * lds, (size_t)D * sizeof(REAL));
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

/* The embedding's gradient: g's W_E and W_pos += the scatter of dx0 (n rows of tokens tok). */
static void
FN(embed_back)(const struct tfm *m, REAL *g, const REAL *dx0, const int32_t *tok, int n)
{
	int T = m->n_ctx, D = m->c.d_model, V = m->d_vocab;
	REAL *gE = g + m->W_E, *gpos = g + m->W_pos;

	for (int row = 0; row < n; row++) {
		int t = row % T;
		for (int d = 0; d < D; d++) {
			gE[(size_t)d * V + tok[row]] += dx0[(size_t)row * D + d];
			gpos[(size_t)t * D + d] += dx0[(size_t)row * D + d];
		}
	}
}

/* out (TV, D) = the table of block 0's inputs from th's embedding tensors. */
static void
FN(embed_table)(const struct tfm *m, REAL *out, const REAL *th)
{
	int T = m->n_ctx, D = m->c.d_model, V = m->d_vocab;
	const REAL *WE = th + m->W_E, *Wpos = th + m->W_pos;

	for (int t = 0; t < T; t++)
		for (int i = 0; i < V; i++)
			for (int d = 0; d < D; d++)
				out[((size_t)t * V + i) * D + d] = WE[(size_t)d * V + i] + Wpos[(size_t)t * D + d];
}

/* g's W_E and W_pos += the table's gradient dxt (TV, D). */
static void
FN(embed_table_back)(const struct tfm *m, REAL *g, const REAL *dxt)
{
	int T = m->n_ctx, D = m->c.d_model, V = m->d_vocab;
	REAL *gE = g + m->W_E, *gpos = g + m->W_pos;

	for (int t = 0; t < T; t++)
		for (int i = 0; i < V; i++)
			for (int d = 0; d < D; d++) {
				REAL e = dxt[((size_t)t * V + i) * D + d];
				gE[(size_t)d * V + i] += e;
				gpos[(size_t)t * D + d] += e;
			}
}

/* dst (nq, n) = the table rows (width n) of layer y's query rows. */
static void
FN(gather)(const struct tfm *m, const struct FN(work) *w, const struct FN(layer) *y, REAL *dst,
    const REAL *table, int n, int B)
{
	int T = m->n_ctx;

	for (int b = 0, r = 0; b < B; b++)
		for (int t = y->q0; t < T; t++, r++)
			memcpy(dst + (size_t)r * n, table + (size_t)w->trow[(size_t)b * T + t] * n,
			    (size_t)n * sizeof(REAL));
}

/* table (TV, n) += layer y's query rows src (nq, n), each into its table row. */
static void
FN(scatter_add)(const struct tfm *m, const struct FN(work) *w, const struct FN(layer) *y, REAL *table,
    const REAL *src, int n, int B)
{
	int T = m->n_ctx;

	for (int b = 0, r = 0; b < B; b++)
		for (int t = y->q0; t < T; t++, r++) {
			REAL *dst = table + (size_t)w->trow[(size_t)b * T + t] * n;
			for (int f = 0; f < n; f++)
				dst[f] += src[(size_t)r * n + f];
		}
}


/* sum a_i b_i accumulated in double (over the classes: one per example) */
static double
FN(dotd)(const REAL *a, const REAL *b, int n)
{
	double s = 0;

	for (int i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/*
 * sum a_i b_i in REAL, over a head (E) or a row (D): sixteen partial sums
 * the compiler keeps in vector registers, then the rest, then their sum.
 * The attention's loops are made of these and axpy; one double sum (a
 * conversion and a dependent add per term) is not vectorised.
 */
static double
FN(dot)(const REAL *a, const REAL *b, int n)
{
	REAL s[16] = {0}, t = 0;
	int i = 0;

	for (; i + 16 <= n; i += 16)
#pragma GCC unroll 16
		for (int k = 0; k < 16; k++)
			s[k] += a[i + k] * b[i + k];
	for (; i < n; i++)
		t += a[i] * b[i];
	for (int k = 0; k < 16; k++)
		t += s[k];
	return t;
}

/* y (n) += a x (n), a rounded to REAL once */
static void
FN(axpy)(REAL *y, double a, const REAL *x, int n)
{
	REAL ar = (REAL)a;

	for (int i = 0; i < n; i++)
		y[i] += ar * x[i];
}

/* Offset of key j of example b, head h, in layer y's key-row buffers. */
static size_t
FN(koff)(const struct tfm *m, const struct FN(layer) *y, int b, int j, int h)
{
	size_t row = (size_t)b * m->n_ctx + j;

	return (y->krow ? (size_t)y->krow[row] : row) * (size_t)m->c.heads * m->c.d_head +
	    (size_t)h * m->c.d_head;
}

/* Offset of query i of example b, head h, in layer y's q, dq, rq, rdq: its query row, or its table row. */
static size_t
FN(qpos)(const struct tfm *m, const struct FN(layer) *y, int b, int i, int h)
{
	size_t F = (size_t)m->c.heads * m->c.d_head, nqp = (size_t)(m->n_ctx - y->q0);

	if (y->krow)
		return (size_t)y->krow[(size_t)b * m->n_ctx + i] * F + (size_t)h * m->c.d_head;
	return ((size_t)b * nqp + (size_t)(i - y->q0)) * F + (size_t)h * m->c.d_head;
}

/* Floats of layer y's query buffers: nq rows, or block 0's table. */
static size_t
FN(qsize)(const struct tfm *m, const struct FN(layer) *y, int B)
{
	size_t F = (size_t)m->c.heads * m->c.d_head;

	return (y->krow ? y->nk : (size_t)B * (size_t)(m->n_ctx - y->q0)) * F;
}

/*
 * pat (T) = the softmax of the scaled scores sc (nj of them, overwritten),
 * 0 past them; att (T) = alpha pat + (1 - alpha) where allowed, else 0.
 */
static void
FN(softmax_mix)(const struct tfm *m, double *sc, int nj, REAL *pat, REAL *att)
{
	double alpha = m->c.alpha, mx = -INFINITY, sum = 0;

	for (int j = 0; j < nj; j++)
		mx = sc[j] > mx ? sc[j] : mx;
	for (int j = 0; j < nj; j++)
		sum += sc[j] = exp(sc[j] - mx);
	for (int j = 0; j < m->n_ctx; j++) {
		double pj = j < nj ? sc[j] / sum : 0;
		pat[j] = (REAL)pj;
		att[j] = j < nj ? (REAL)(alpha * pj + (1 - alpha)) : 0;
	}
}

/*
 * One (example b, head h, query i) of layer y's attention: query i of
 * example b is query row b (T - q0) + i - q0 (its z, dz, rz at qr), its
 * query at qp (qpos), key j at k[j] (koff), and the pattern's entry (i,
 * j) at s + j, pattern row (b H + h) (T - q0) + i - q0.  Slot n counts
 * them in that order: i fastest, then h, then b.
 */
struct FN(slot) {
	int nj;                 /* keys query i may attend to */
	size_t qr, qp, s, k[3];
};

static struct FN(slot)
FN(slot_at)(const struct tfm *m, const struct FN(layer) *y, size_t n)
{
	int T = m->n_ctx, H = m->c.heads, E = m->c.d_head, nqp = T - y->q0;
	int i = y->q0 + (int)(n % (size_t)nqp), h = (int)(n / (size_t)nqp % (size_t)H);
	int b = (int)(n / (size_t)nqp / (size_t)H);
	struct FN(slot) a = {.nj = nallowed(m, i), .s = n * (size_t)T};

	a.qr = ((size_t)b * nqp + (size_t)(i - y->q0)) * (size_t)H * E + (size_t)h * E;
	a.qp = FN(qpos)(m, y, b, i, h);
	for (int j = 0; j < T; j++)
		a.k[j] = FN(koff)(m, y, b, j, h);
	return a;
}

/* The slots of layer y's attention over B examples. */
static size_t
FN(nslots)(const struct tfm *m, const struct FN(layer) *y, int B)
{
	return (size_t)B * (size_t)m->c.heads * (size_t)(m->n_ctx - y->q0);
}

/*
 * Attention within each (example, head): T x T scores (queries from q0
 * on), masked softmax, alpha-mixing, and z = att v.  T <= 3, so plain
 * loops; the products around it are the matrix products.
 */
static void
FN(attn_core)(const struct tfm *m, struct FN(layer) *y, int B)
{
	int T = m->n_ctx, E = m->c.d_head;
	double scl = 1.0 / sqrt((double)E);

	for (size_t n = 0; n < FN(nslots)(m, y, B); n++) {
		struct FN(slot) a = FN(slot_at)(m, y, n);
		double sc[3];
		for (int j = 0; j < a.nj; j++)
			sc[j] = scl * FN(dot)(y->q + a.qp, y->k + a.k[j], E);
		FN(softmax_mix)(m, sc, a.nj, y->pat + a.s, y->att + a.s);
		memset(y->z + a.qr, 0, (size_t)E * sizeof(REAL));
		for (int j = 0; j < T; j++)
			FN(axpy)(y->z + a.qr, y->att[a.s + j], y->v + a.k[j], E);
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
	int T = m->n_ctx, E = m->c.d_head, F = m->c.heads * E;
	double alpha = m->c.alpha, scl = 1.0 / sqrt((double)E);

	memset(y->dk, 0, y->nk * F * sizeof(REAL));
	memset(y->dv, 0, y->nk * F * sizeof(REAL));
	memset(y->dq, 0, FN(qsize)(m, y, B) * sizeof(REAL));
	for (size_t n = 0; n < FN(nslots)(m, y, B); n++) {
		struct FN(slot) a = FN(slot_at)(m, y, n);
		REAL *dA = y->dA + a.s, *dS = y->dS + a.s;
		const REAL *pat = y->pat + a.s;
		double r = 0;
		for (int j = 0; j < T; j++) {
			dA[j] = j < a.nj ? (REAL)FN(dot)(y->dz + a.qr, y->v + a.k[j], E) : 0;
			r += alpha * pat[j] * dA[j];
			FN(axpy)(y->dv + a.k[j], y->att[a.s + j], y->dz + a.qr, E);
		}
		for (int j = 0; j < T; j++) {
			dS[j] = (REAL)(pat[j] * (alpha * dA[j] - r));
			FN(axpy)(y->dq + a.qp, scl * dS[j], y->k + a.k[j], E);
			FN(axpy)(y->dk + a.k[j], scl * dS[j], y->q + a.qp, E);
		}
	}
}

/*
 * R-forward through attn_core: from rq, rk, rv to rpat, ratt, rz.
 * R{P_ij} = P_ij (R{S_ij} - sum_k P_ik R{S_ik}), R{att} = alpha R{P}.
 */
static void
FN(attn_core_r)(const struct tfm *m, struct FN(layer) *y, int B)
{
	int T = m->n_ctx, E = m->c.d_head;
	double alpha = m->c.alpha, scl = 1.0 / sqrt((double)E);

	for (size_t n = 0; n < FN(nslots)(m, y, B); n++) {
		struct FN(slot) a = FN(slot_at)(m, y, n);
		const REAL *pat = y->pat + a.s;
		double rs[3], mean = 0;
		for (int j = 0; j < a.nj; j++) {
			rs[j] = scl * (FN(dot)(y->rq + a.qp, y->k + a.k[j], E) + FN(dot)(y->q + a.qp, y->rk + a.k[j], E));
			mean += pat[j] * rs[j];
		}
		memset(y->rz + a.qr, 0, (size_t)E * sizeof(REAL));
		for (int j = 0; j < T; j++) {
			double rp = j < a.nj ? pat[j] * (rs[j] - mean) : 0;
			y->rpat[a.s + j] = (REAL)rp;
			y->ratt[a.s + j] = (REAL)(alpha * rp);
			FN(axpy)(y->rz + a.qr, y->ratt[a.s + j], y->v + a.k[j], E);
			FN(axpy)(y->rz + a.qr, y->att[a.s + j], y->rv + a.k[j], E);
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
	int E = m->c.d_head, F = m->c.heads * E;
	double alpha = m->c.alpha, scl = 1.0 / sqrt((double)E);

	memset(y->rdq, 0, FN(qsize)(m, y, B) * sizeof(REAL));
	memset(y->rdk, 0, y->nk * F * sizeof(REAL));
	memset(y->rdv, 0, y->nk * F * sizeof(REAL));
	for (size_t n = 0; n < FN(nslots)(m, y, B); n++) {
		struct FN(slot) a = FN(slot_at)(m, y, n);
		const REAL *pat = y->pat + a.s, *rpat = y->rpat + a.s, *dA = y->dA + a.s, *dS = y->dS + a.s;
		double rdA[3], r = 0, rr = 0;
		for (int j = 0; j < a.nj; j++) {
			size_t kj = a.k[j];
			rdA[j] = FN(dot)(w->rdz + a.qr, y->v + kj, E) + FN(dot)(y->dz + a.qr, y->rv + kj, E);
			r += pat[j] * alpha * dA[j];
			rr += rpat[j] * alpha * dA[j] + pat[j] * alpha * rdA[j];
			FN(axpy)(y->rdv + kj, y->ratt[a.s + j], y->dz + a.qr, E);
			FN(axpy)(y->rdv + kj, y->att[a.s + j], w->rdz + a.qr, E);
		}
		for (int j = 0; j < a.nj; j++) {
			size_t kj = a.k[j];
			double rdS = rpat[j] * (alpha * dA[j] - r) + pat[j] * (alpha * rdA[j] - rr);
			FN(axpy)(y->rdq + a.qp, scl * rdS, y->k + kj, E);
			FN(axpy)(y->rdq + a.qp, scl * dS[j], y->rk + kj, E);
			FN(axpy)(y->rdk + kj, scl * rdS, y->q + a.qp, E);
			FN(axpy)(y->rdk + kj, scl * dS[j], y->rq + a.qp, E);
		}
	}
}

static const enum tfm_part FN(qkv)[3] = {TFM_WQ, TFM_WK, TFM_WV};

/* Block l's queries, keys and values: from the tables (block 0) or by products. */
static void
FN(project)(const struct tfm *m, struct FN(work) *w, int l, const REAL *theta, int B)
{
	int N = B * m->n_ctx, D = m->c.d_model, F = m->c.heads * m->c.d_head, TV = m->n_ctx * m->d_vocab;
	struct FN(layer) *y = &w->ly[l];

	if (l == 0 && !w->naive) {   /* keys and values are read from the tables themselves */
		for (int i = 0; i < 3; i++)
			FN(lin)(w->tb.p[i], w->tb.x, theta + m->blk[0][FN(qkv)[i]], TV, F, D, 0);
		return;
	}
	FN(lin_ld)(y->q, F, w->x[l] + FN(qoff)(m, y), FN(qld)(m, y), theta + m->blk[l][TFM_WQ],
	    FN(nq)(m, y, B), F, D, 0);
	FN(lin)(y->k, w->x[l], theta + m->blk[l][TFM_WK], N, F, D, 0);
	FN(lin)(y->v, w->x[l], theta + m->blk[l][TFM_WV], N, F, D, 0);
}

/* dst (N, D) = the query rows src (nq, D) in their places, zero elsewhere. */
static void
FN(place_rows)(const struct tfm *m, const struct FN(layer) *y, REAL *dst, const REAL *src, int B)
{
	int D = m->c.d_model, N = B * m->n_ctx;

	if (!y->q0) {
		memcpy(dst, src, (size_t)N * D * sizeof(REAL));
		return;
	}
	memset(dst, 0, (size_t)N * D * sizeof(REAL));
	FN(copy_rows)(dst + FN(qoff)(m, y), FN(qld)(m, y), src, D, FN(nq)(m, y, B), D);
}

/*
 * The folded attention of block l (the last of two or more in a plain
 * work): one query per example, at position T-1, and its scores
 * q_h k_hj = (W_K_h^T q_h) x_j and mix sum_j att_hj v_hj = W_V_h (sum_j
 * att_hj x_j), so that the keys and values of the T positions are never
 * formed: per example and head, qk = W_K_h^T q_h and u = sum_j att_hj
 * x_j (D each), the T scores dots of qk with the rows x_j, and z_h =
 * W_V_h u_h; two products of the query rows in place of 2 T of every
 * token row.  The same sums as attn_core's in another order.
 */
static void
FN(fold_forward)(const struct tfm *m, struct FN(work) *w, int l, const REAL *theta, int B)
{
	int T = m->n_ctx, D = m->c.d_model, H = m->c.heads, E = m->c.d_head, F = H * E, HD = H * D;
	int nj = nallowed(m, T - 1);
	struct FN(layer) *y = &w->ly[l];
	const REAL *x = w->x[l], *WK = theta + m->blk[l][TFM_WK], *WV = theta + m->blk[l][TFM_WV];
	double scl = 1.0 / sqrt((double)E);

	FN(lin_ld)(y->q, F, x + FN(qoff)(m, y), FN(qld)(m, y), theta + m->blk[l][TFM_WQ], B, F, D, 0);
	for (int h = 0; h < H; h++)   /* qk_h (B, D) = q_h (B, E) W_K_h (E, D) */
		FN(prod)(0, 0, B, D, E, y->q + h * E, F, WK + (size_t)h * E * D, D, 0, y->qk + h * D, HD, NULL);
	for (size_t bh = 0; bh < (size_t)B * H; bh++) {
		const REAL *xb = x + bh / H * T * D, *qk = y->qk + bh * D;
		REAL *u = y->u + bh * D;
		double sc[3];
		for (int j = 0; j < nj; j++)
			sc[j] = scl * FN(dot)(qk, xb + (size_t)j * D, D);
		FN(softmax_mix)(m, sc, nj, y->pat + bh * T, y->att + bh * T);
		memset(u, 0, (size_t)D * sizeof(REAL));
		for (int j = 0; j < nj; j++)
			FN(axpy)(u, y->att[bh * T + j], xb + (size_t)j * D, D);
	}
	for (int h = 0; h < H; h++)   /* z_h (B, E) = u_h (B, D) W_V_h^T */
		FN(prod)(0, 1, B, E, D, y->u + h * D, HD, WV + (size_t)h * E * D, D, 0, y->z + h * E, F, NULL);
}

/*
 * Backward through the folded attention, from dz: W_V's gradient into
 * grad (if not NULL) while u is there, then du_h = W_V_h^T dz_h over u,
 * d/d the scores, the rows' deltas into dres[l] (with dx1 at the query
 * rows), dqk over qk, dq = W_K_h dqk_h, and d/d the query rows' input.
 */
static void
FN(fold_back)(const struct tfm *m, struct FN(work) *w, int l, const REAL *theta, REAL *grad, int B)
{
	int T = m->n_ctx, D = m->c.d_model, H = m->c.heads, E = m->c.d_head, F = H * E, HD = H * D;
	int nj = nallowed(m, T - 1);
	const size_t *o = m->blk[l];
	struct FN(layer) *y = &w->ly[l];
	const REAL *x = w->x[l];
	double alpha = m->c.alpha, scl = 1.0 / sqrt((double)E);

	for (int h = 0; grad && h < H; h++)   /* gW_V_h (E, D) += dz_h^T u_h */
		FN(prod)(1, 0, E, D, B, y->dz + h * E, F, y->u + h * D, HD, 1, grad + o[TFM_WV] + (size_t)h * E * D,
		    D, NULL);
	for (int h = 0; h < H; h++)
		FN(prod)(0, 0, B, D, E, y->dz + h * E, F, theta + o[TFM_WV] + (size_t)h * E * D, D, 0, y->u + h * D,
		    HD, NULL);
	FN(place_rows)(m, y, w->dres[l], y->dx1, B);
	for (size_t bh = 0; bh < (size_t)B * H; bh++) {
		const REAL *xb = x + bh / H * T * D, *du = y->u + bh * D, *pat = y->pat + bh * T;
		REAL *dx = w->dres[l] + bh / H * T * D, *qk = y->qk + bh * D, *dA = y->dA + bh * T, *dS = y->dS + bh * T;
		double r = 0;
		for (int j = 0; j < T; j++) {
			dA[j] = j < nj ? (REAL)FN(dot)(du, xb + (size_t)j * D, D) : 0;
			r += alpha * pat[j] * dA[j];
		}
		for (int j = 0; j < T; j++) {
			dS[j] = (REAL)(pat[j] * (alpha * dA[j] - r));
			FN(axpy)(dx + (size_t)j * D, y->att[bh * T + j], du, D);
			FN(axpy)(dx + (size_t)j * D, scl * dS[j], qk, D);
		}
		memset(qk, 0, (size_t)D * sizeof(REAL));   /* now d/d qk */
		for (int j = 0; j < nj; j++)
			FN(axpy)(qk, scl * dS[j], xb + (size_t)j * D, D);
	}
	for (int h = 0; h < H; h++)   /* dq_h (B, E) = dqk_h W_K_h^T */
		FN(prod)(0, 1, B, E, D, y->qk + h * D, HD, theta + o[TFM_WK] + (size_t)h * E * D, D, 0, y->dq + h * E,
		    F, NULL);
	FN(lin_back_ld)(w->dres[l] + FN(qoff)(m, y), FN(qld)(m, y), y->dq, theta + o[TFM_WQ], B, F, D, 1);
}

/* grad's W_Q and W_K += the folded attention's share (W_V's came with the deltas). */
static void
FN(fold_grads)(const struct tfm *m, struct FN(work) *w, int l, REAL *grad, int B)
{
	int D = m->c.d_model, H = m->c.heads, E = m->c.d_head, F = H * E;
	const size_t *o = m->blk[l];
	const struct FN(layer) *y = &w->ly[l];

	FN(lin_wgrad_ld)(grad + o[TFM_WQ], y->dq, w->x[l] + FN(qoff)(m, y), FN(qld)(m, y), B, F, D);
	for (int h = 0; h < H; h++)   /* gW_K_h (E, D) += q_h^T dqk_h */
		FN(prod)(1, 0, E, D, B, y->q + h * E, F, y->qk + h * D, H * D, 1, grad + o[TFM_WK] + (size_t)h * E * D,
		    D, NULL);
}

/*
 * In place in x (N, D): spread the packed query rows at its head (nq rows,
 * positions q0.. of each example) to their rows b T + t, or pack them
 * back.  Each row moves to a later row (spread, from the last) or an
 * earlier one (pack, from the first), so none is overwritten before it
 * moves.
 */
static void
FN(spread_rows)(const struct tfm *m, const struct FN(layer) *y, REAL *x, int B, int pack)
{
	int T = m->n_ctx, D = m->c.d_model, n = T - y->q0;
	size_t sz = (size_t)D * sizeof(REAL);

	for (long k = 0; k < (long)B * n; k++) {
		long r = pack ? k : (long)B * n - 1 - k, b = r / n, t = y->q0 + r % n;
		REAL *packed = x + (size_t)r * D, *spread = x + ((size_t)b * T + (size_t)t) * D;
		memmove(pack ? packed : spread, pack ? spread : packed, sz);
	}
}

/*
 * post (n) = act(pre), act_f's values exactly.  (The forward pass has
 * its ReLU applied by the product; this is GELU's, and ReLU's for any
 * other caller, in a loop of its own: with the choice inside the loop
 * the compiler neither vectorises it nor keeps the pointers in registers.)
 */
static void
FN(act_fwd)(enum tfm_act a, REAL *post, const REAL *pre, size_t n)
{
	if (a == TFM_RELU) {
		for (size_t i = 0; i < n; i++)
			post[i] = pre[i] > 0 ? pre[i] : 0;
		return;
	}
	for (size_t i = 0; i < n; i++)
		post[i] = (REAL)act_f(a, pre[i]);
}

/*
 * out (n) = d (n) act'(pre), out == d allowed.  ReLU's is PyTorch's
 * threshold_backward: d where pre > 0, else +0 (a NaN or infinite d of a
 * unit that is off does not pass).  A select, not d times 0 or 1: the
 * product's exceptions keep the compiler from if-converting it, and the
 * branch it leaves is mispredicted on half the units.
 */
static void
FN(act_back)(enum tfm_act a, REAL *out, const REAL *d, const REAL *pre, size_t n)
{
	if (a == TFM_RELU) {
		for (size_t i = 0; i < n; i++) {
			REAL g = d[i];   /* loaded on both arms, so the select needs no branch */
			out[i] = pre[i] > 0 ? g : 0;
		}
		return;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = (REAL)(d[i] * act_d(a, pre[i]));
}

/*
 * A block's MLP on n rows x1 (n, D): pre (n, M) = x1 W_in^T + b_in, post
 * = act(pre) (the same array with ReLU, which the product applies as it
 * stores), out (n, D) = x1 + b_out + post W_out^T.
 */
static void
FN(mlp_forward)(const struct tfm *m, const size_t *o, const REAL *theta, REAL *pre, REAL *post,
    REAL *out, const REAL *x1, int n)
{
	int D = m->c.d_model, M = m->c.d_mlp;
	const REAL *bout = theta + o[TFM_BOUT];
	struct FN(epi) e = {.bias = theta + o[TFM_BIN], .relu = m->c.act == TFM_RELU};

	FN(lin_epi)(pre, M, x1, D, theta + o[TFM_WIN], n, M, D, 0, &e);
	if (m->c.act != TFM_RELU)
		FN(act_fwd)(m->c.act, post, pre, (size_t)n * M);
	for (size_t i = 0; i < (size_t)n; i++)
		for (int d = 0; d < D; d++)
			out[i * D + d] = x1[i * D + d] + bout[d];
	FN(lin)(out, post, theta + o[TFM_WOUT], n, D, M, 1);
}

/*
 * dpost (n, M) = dout (n, D) W_out, dpre = dpost act'(pre).  With ReLU
 * and dpre == dpost (a plain work keeps no dpost) the product applies
 * act_back's select as it stores.
 */
static void
FN(dpre_of)(const struct tfm *m, REAL *dpost, REAL *dpre, const REAL *dout, const REAL *Wout,
    const REAL *pre, int n)
{
	int D = m->c.d_model, M = m->c.d_mlp;
	struct FN(epi) e = {.mask = pre, .ldm = M};

	if (m->c.act == TFM_RELU && dpre == dpost) {
		FN(prod)(0, 0, n, M, D, dout, D, Wout, M, 0, dpre, M, &e);
		return;
	}
	FN(lin_back)(dpost, dout, Wout, n, D, M, 0);
	FN(act_back)(m->c.act, dpre, dpost, pre, (size_t)n * M);
}

static void
FN(block_forward)(const struct tfm *m, struct FN(work) *w, int l, const REAL *theta, int B)
{
	int D = m->c.d_model, F = m->c.heads * m->c.d_head;
	const size_t *o = m->blk[l];
	struct FN(layer) *y = &w->ly[l];
	int nq = FN(nq)(m, y, B);

	if (y->fold) {
		FN(fold_forward)(m, w, l, theta, B);
	} else {
		FN(project)(m, w, l, theta, B);
		FN(attn_core)(m, y, B);
	}
	if (y->krow)   /* block 0 on tables: its input rows are table rows */
		FN(gather)(m, w, y, y->x1, w->tb.x, D, B);
	else
		FN(copy_rows)(y->x1, D, w->x[l] + FN(qoff)(m, y), FN(qld)(m, y), nq, D);
	FN(lin)(y->x1, y->z, theta + o[TFM_WO], nq, D, F, 1);
	FN(mlp_forward)(m, o, theta, y->pre, y->post, y->out, y->x1, nq);
	if (l == 0 && w->first)   /* rows 1.. of x[1]; first_forward writes rows 0 */
		FN(spread_rows)(m, y, w->x[1], B, 0);
}

/*
 * Block 0 at position 0 for each token (the first shortcut), from the
 * tables: z = att v with att = alpha + (1 - alpha) as attn_core computes
 * it for a lone key, then W_O, the MLP, and rows 0 of x[1] gathered.
 */
static void
FN(first_forward)(const struct tfm *m, struct FN(work) *w, const REAL *theta, int B)
{
	int T = m->n_ctx, V = m->d_vocab, D = m->c.d_model, F = m->c.heads * m->c.d_head;
	const size_t *o = m->blk[0];
	struct FN(first) *f = &w->f0;
	REAL att = (REAL)(m->c.alpha * 1.0 + (1 - m->c.alpha));

	memset(f->z, 0, (size_t)V * F * sizeof(REAL));
	for (int i = 0; i < V; i++)   /* table row i: token i at position 0 */
		FN(axpy)(f->z + (size_t)i * F, att, w->tb.p[2] + (size_t)i * F, F);
	memcpy(f->x1, w->tb.x, (size_t)V * D * sizeof(REAL));
	FN(lin)(f->x1, f->z, theta + o[TFM_WO], V, D, F, 1);
	FN(mlp_forward)(m, o, theta, f->pre, f->post, f->out, f->x1, V);
	for (int b = 0; b < B; b++)
		memcpy(w->x[1] + (size_t)b * T * D, f->out + (size_t)w->tok[(size_t)b * T] * D,
		    (size_t)D * sizeof(REAL));
}

/* The first shortcut's d/d out per token: the sum of rows 0 of dres[1] over the rows with that token. */
static void
FN(first_dout)(const struct tfm *m, struct FN(work) *w, int B)
{
	int T = m->n_ctx, V = m->d_vocab, D = m->c.d_model;
	struct FN(first) *f = &w->f0;

	memset(f->out, 0, (size_t)V * D * sizeof(REAL));
	for (int b = 0; b < B; b++) {
		REAL *dst = f->out + (size_t)w->tok[(size_t)b * T] * D;
		const REAL *src = w->dres[1] + (size_t)b * T * D;
		for (int d = 0; d < D; d++)
			dst[d] += src[d];
	}
}

/*
 * The first shortcut's deltas from first_dout's, back through the MLP
 * and W_O to dz, whose share att dz goes to the token's value row; the
 * share of the scores is zero (a lone key's softmax is constant).
 */
static void
FN(first_deltas)(const struct tfm *m, struct FN(work) *w, const REAL *theta)
{
	int V = m->d_vocab, D = m->c.d_model, F = m->c.heads * m->c.d_head, M = m->c.d_mlp;
	const size_t *o = m->blk[0];
	struct FN(first) *f = &w->f0;
	REAL att = (REAL)(m->c.alpha * 1.0 + (1 - m->c.alpha));

	FN(dpre_of)(m, f->dpre, f->dpre, f->out, theta + o[TFM_WOUT], f->pre, V);
	memcpy(f->dx1, f->out, (size_t)V * D * sizeof(REAL));
	FN(lin_back)(f->dx1, f->dpre, theta + o[TFM_WIN], V, M, D, 1);
	FN(lin_back)(f->dz, f->dx1, theta + o[TFM_WO], V, D, F, 0);
	for (int i = 0; i < V; i++)
		FN(axpy)(w->tb.dp[2] + (size_t)i * F, att, f->dz + (size_t)i * F, F);
}

/* grad += the first shortcut's share of block 0's W_O and MLP gradients. */
static void
FN(first_grads)(const struct tfm *m, struct FN(work) *w, REAL *grad)
{
	int V = m->d_vocab, D = m->c.d_model, F = m->c.heads * m->c.d_head, M = m->c.d_mlp;
	const size_t *o = m->blk[0];
	const struct FN(first) *f = &w->f0;

	FN(colsum)(grad + o[TFM_BOUT], f->out, V, D);
	FN(lin_wgrad)(grad + o[TFM_WOUT], f->out, f->post, V, D, M);
	FN(colsum)(grad + o[TFM_BIN], f->dpre, V, M);
	FN(lin_wgrad)(grad + o[TFM_WIN], f->dpre, f->x1, V, M, D);
	FN(lin_wgrad)(grad + o[TFM_WO], f->dx1, f->z, V, D, F);
}

/* Rows per example in the output x[L] (1, or T without the query-row shortcut). */
static int
FN(out_rows)(const struct tfm *m, const struct FN(work) *w)
{
	return m->n_ctx - w->ly[m->c.layers - 1].q0;
}

void
FN(forward)(const struct tfm *m, struct FN(work) *w, const REAL *theta, const int32_t *x, int B)
{
	int T = m->n_ctx, D = m->c.d_model, C = m->c.p, L = m->c.layers, r = FN(out_rows)(m, w);

	if (B > w->maxb)
		die("transformer: batch of %d rows in a work for %d", B, w->maxb);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			int32_t tok = t < 2 ? x[2 * b + t] : m->c.p;
			w->tok[(size_t)b * T + t] = tok;
			w->trow[(size_t)b * T + t] = t * m->d_vocab + tok;
		}
	if (w->naive)
		FN(embed)(m, w->x[0], theta, w->tok, B);
	else
		FN(embed_table)(m, w->tb.x, theta);
	for (int l = 0; l < L; l++) {
		FN(block_forward)(m, w, l, theta, B);
		if (l == 0 && w->first)
			FN(first_forward)(m, w, theta, B);
	}
	/* The last position of each example: rows r-1, 2r-1, ... of x[L]. */
	FN(prod)(0, 0, B, C, D, w->x[L] + (size_t)(r - 1) * D,
	    r * D, theta + m->W_U, C, 0, w->logits, C, NULL);
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
		for (int j = 0; j < C; j++) {   /* one exp per class: exp(z - mx) kept in dz, in REAL */
			double e = exp((double)z[j] - mx);
			s += e;
			dz[j] = (REAL)e;
		}
		lse = mx + log(s);
		pmax = (REAL)(1 / s);   /* exp(mx - lse) */
		ev->loss_sum += lse - z[y[b]];
		ev->correct += arg == y[b];
		ev->collapsed += pmax == 1;
		for (int j = 0; j < C; j++) {
			double pj = dz[j] / s;
			p[j] = (REAL)pj;
			dz[j] = (REAL)(scale * (pj - (j == y[b])));
		}
	}
}

/*
 * The MLP's deltas from d/d out to dx1 on rows r0..r0+n, with d/d pre in
 * dpre (n, M); with grad, W_in's and b_in's gradient from them too.
 */
static void
FN(mlp_deltas)(const struct tfm *m, struct FN(layer) *y, const size_t *o, const REAL *theta, REAL *grad,
    REAL *dpost, REAL *dpre, int r0, int n)
{
	int D = m->c.d_model, M = m->c.d_mlp;
	size_t rD = (size_t)r0 * D, rM = (size_t)r0 * M;

	FN(dpre_of)(m, dpost, dpre, y->dout + rD, theta + o[TFM_WOUT], y->pre + rM, n);
	memcpy(y->dx1 + rD, y->dout + rD, (size_t)n * D * sizeof(REAL));
	FN(lin_back)(y->dx1 + rD, dpre, theta + o[TFM_WIN], n, M, D, 1);
	if (!grad)
		return;
	FN(colsum)(grad + o[TFM_BIN], dpre, n, M);
	FN(lin_wgrad)(grad + o[TFM_WIN], dpre, y->x1 + rD, n, M, D);
}

/*
 * Deltas of block l: from dres[l+1] (d/d its output) to dres[l] (d/d its
 * input).  A plain work's MLP runs in chunks and adds W_in's and b_in's
 * gradient into grad (if not NULL) on the way; an HVP work keeps its.
 */
static void
FN(block_deltas)(const struct tfm *m, struct FN(work) *w, int l, const REAL *theta, REAL *grad, int B)
{
	int N = B * m->n_ctx, D = m->c.d_model, F = m->c.heads * m->c.d_head;
	int TV = m->n_ctx * m->d_vocab;
	const size_t *o = m->blk[l];
	struct FN(layer) *y = &w->ly[l];
	int nq = FN(nq)(m, y, B);

	if (l == 0 && w->first) {   /* rows 0 of dres[1] to the first shortcut, rows 1.. packed */
		FN(first_dout)(m, w, B);
		FN(spread_rows)(m, y, w->dres[1], B, 1);
	}
	if (w->hvp)
		FN(mlp_deltas)(m, y, o, theta, NULL, y->dpost, y->dpre, 0, nq);
	else
		for (int r0 = 0; r0 < nq; r0 += TFM_CHUNK) {
			int n = nq - r0 < TFM_CHUNK ? nq - r0 : TFM_CHUNK;
			FN(mlp_deltas)(m, y, o, theta, grad, w->dpre_chunk, w->dpre_chunk, r0, n);
		}
	FN(lin_back)(y->dz, y->dx1, theta + o[TFM_WO], nq, D, F, 0);
	if (y->fold) {
		FN(fold_back)(m, w, l, theta, grad, B);
		return;
	}
	FN(attn_core_back)(m, y, B);
	if (y->krow) {   /* dk, dv are on the tables already; dq and the residual's dx1 join them */
		if (w->first)
			FN(first_deltas)(m, w, theta);
		for (int i = 0; i < 3; i++)
			FN(lin_back)(w->tb.dx, w->tb.dp[i], theta + o[FN(qkv)[i]], TV, F, D, i ? 1 : 0);
		FN(scatter_add)(m, w, y, w->tb.dx, y->dx1, D, B);
		if (w->first)   /* the residual of position 0: table rows 0..V-1 */
			for (size_t i = 0; i < (size_t)m->d_vocab * D; i++)
				w->tb.dx[i] += w->f0.dx1[i];
		return;
	}
	FN(place_rows)(m, y, w->dres[l], y->dx1, B);
	FN(lin_back_ld)(w->dres[l] + FN(qoff)(m, y), FN(qld)(m, y), y->dq, theta + o[TFM_WQ], nq, F, D, 1);
	FN(lin_back)(w->dres[l], y->dk, theta + o[TFM_WK], N, F, D, 1);
	FN(lin_back)(w->dres[l], y->dv, theta + o[TFM_WV], N, F, D, 1);
}

/*
 * Every delta of the last forward/loss pair, kept in the work (but a
 * plain work's MLP deltas, whose share of the gradient goes into grad if
 * not NULL).
 */
static void
FN(deltas)(const struct tfm *m, struct FN(work) *w, const REAL *theta, REAL *grad, int B)
{
	int D = m->c.d_model, C = m->c.p, L = m->c.layers, r = FN(out_rows)(m, w);

	memset(w->dres[L], 0, (size_t)B * r * D * sizeof(REAL));
	FN(prod)(0, 1, B, D, C, w->dlogits, C, theta + m->W_U, C,
	    0, w->dres[L] + (size_t)(r - 1) * D, r * D, NULL);
	for (int l = L - 1; l >= 0; l--)
		FN(block_deltas)(m, w, l, theta, grad, B);
}

/* grad += the parameter gradient from the kept activations and deltas. */
static void
FN(param_grads)(const struct tfm *m, struct FN(work) *w, REAL *grad, int B)
{
	int N = B * m->n_ctx, D = m->c.d_model, C = m->c.p, L = m->c.layers, r = FN(out_rows)(m, w);
	int F = m->c.heads * m->c.d_head, M = m->c.d_mlp, TV = m->n_ctx * m->d_vocab;

	FN(prod)(1, 0, D, C, B, w->x[L] + (size_t)(r - 1) * D, r * D,
	    w->dlogits, C, 1, grad + m->W_U, C, NULL);
	for (int l = 0; l < L; l++) {
		const size_t *o = m->blk[l];
		struct FN(layer) *y = &w->ly[l];
		int nq = FN(nq)(m, y, B);
		FN(colsum)(grad + o[TFM_BOUT], y->dout, nq, D);
		FN(lin_wgrad)(grad + o[TFM_WOUT], y->dout, y->post, nq, D, M);
		if (w->hvp) {   /* a plain work's deltas added these */
			FN(colsum)(grad + o[TFM_BIN], y->dpre, nq, M);
			FN(lin_wgrad)(grad + o[TFM_WIN], y->dpre, y->x1, nq, M, D);
		}
		FN(lin_wgrad)(grad + o[TFM_WO], y->dx1, y->z, nq, D, F);
		if (l == 0 && !w->naive) {
			for (int i = 0; i < 3; i++)
				FN(lin_wgrad)(grad + o[FN(qkv)[i]], w->tb.dp[i], w->tb.x, TV, F, D);
			if (w->first)
				FN(first_grads)(m, w, grad);
			continue;
		}
		if (y->fold) {
			FN(fold_grads)(m, w, l, grad, B);
			continue;
		}
		FN(lin_wgrad_ld)(grad + o[TFM_WQ], y->dq, w->x[l] + FN(qoff)(m, y), FN(qld)(m, y), nq, F, D);
		FN(lin_wgrad)(grad + o[TFM_WK], y->dk, w->x[l], N, F, D);
		FN(lin_wgrad)(grad + o[TFM_WV], y->dv, w->x[l], N, F, D);
	}
	if (w->naive)
		FN(embed_back)(m, grad, w->dres[0], w->tok, N);
	else
		FN(embed_table_back)(m, grad, w->tb.dx);
}

void
FN(backward)(const struct tfm *m, struct FN(work) *w, REAL *grad, const REAL *theta, int B)
{
	FN(deltas)(m, w, theta, grad, B);
	FN(param_grads)(m, w, grad, B);
}

/* R{q}, R{k}, R{v} of block l: R{x W^T} = R{x} W^T + x V^T, on the tables for block 0. */
static void
FN(rproject)(const struct tfm *m, struct FN(work) *w, int l, const REAL *theta, const REAL *v, int B)
{
	int N = B * m->n_ctx, D = m->c.d_model, F = m->c.heads * m->c.d_head, TV = m->n_ctx * m->d_vocab;
	struct FN(layer) *y = &w->ly[l];
	REAL *dst[3] = {y->rq, y->rk, y->rv};
	int nq = FN(nq)(m, y, B), qld = FN(qld)(m, y);
	size_t qoff = FN(qoff)(m, y);

	for (int i = 0; i < 3; i++) {
		size_t o = m->blk[l][FN(qkv)[i]];
		if (l == 0 && !w->naive) {
			FN(lin)(w->tb.rp[i], w->tb.rx, theta + o, TV, F, D, 0);
			FN(lin)(w->tb.rp[i], w->tb.x, v + o, TV, F, D, 1);
		} else if (i == 0) {
			FN(lin_ld)(dst[i], F, w->rx[l] + qoff, qld, theta + o, nq, F, D, 0);
			FN(lin_ld)(dst[i], F, w->x[l] + qoff, qld, v + o, nq, F, D, 1);
		} else {
			FN(lin)(dst[i], w->rx[l], theta + o, N, F, D, 0);
			FN(lin)(dst[i], w->x[l], v + o, N, F, D, 1);
		}
	}
}

/* R-forward of block l: from rx[l] to rx[l+1]; v is the direction. */
static void
FN(block_rforward)(const struct tfm *m, struct FN(work) *w, int l, const REAL *theta,
    const REAL *v, int B)
{
	int D = m->c.d_model, F = m->c.heads * m->c.d_head, M = m->c.d_mlp;
	const size_t *o = m->blk[l];
	struct FN(layer) *y = &w->ly[l];
	int nq = FN(nq)(m, y, B);
	size_t nM = (size_t)nq * M;

	FN(rproject)(m, w, l, theta, v, B);
	FN(attn_core_r)(m, y, B);
	if (y->krow)
		FN(gather)(m, w, y, y->rx1, w->tb.rx, D, B);
	else
		FN(copy_rows)(y->rx1, D, w->rx[l] + FN(qoff)(m, y), FN(qld)(m, y), nq, D);
	FN(lin)(y->rx1, y->rz, theta + o[TFM_WO], nq, D, F, 1);
	FN(lin)(y->rx1, y->z, v + o[TFM_WO], nq, D, F, 1);
	FN(lin)(y->rpre, y->rx1, theta + o[TFM_WIN], nq, M, D, 0);
	FN(lin)(y->rpre, y->x1, v + o[TFM_WIN], nq, M, D, 1);
	FN(addbias)(y->rpre, v + o[TFM_BIN], nq, M);
	FN(act_back)(m->c.act, y->rpost, y->rpre, y->pre, nM);   /* products commute exactly */
	memcpy(w->rx[l + 1], y->rx1, (size_t)nq * D * sizeof(REAL));
	FN(lin)(w->rx[l + 1], y->rpost, theta + o[TFM_WOUT], nq, D, M, 1);
	FN(lin)(w->rx[l + 1], y->post, v + o[TFM_WOUT], nq, D, M, 1);
	FN(addbias)(w->rx[l + 1], v + o[TFM_BOUT], nq, D);
}

/* The MLP half of block l's R-backward: from rdres (d/d output) to rdx1. */
static void
FN(mlp_rback)(const struct tfm *m, struct FN(work) *w, int l, REAL *hv, const REAL *theta,
    const REAL *v, int B)
{
	int D = m->c.d_model, M = m->c.d_mlp;
	const size_t *o = m->blk[l];
	const struct FN(layer) *y = &w->ly[l];
	const REAL *dout = w->dres[l + 1], *rdout = w->rdres;
	int nq = FN(nq)(m, y, B);
	size_t nM = (size_t)nq * M;

	FN(colsum)(hv + o[TFM_BOUT], rdout, nq, D);
	FN(lin_wgrad)(hv + o[TFM_WOUT], rdout, y->post, nq, D, M);
	FN(lin_wgrad)(hv + o[TFM_WOUT], dout, y->rpost, nq, D, M);
	FN(lin_back)(w->rdpost, rdout, theta + o[TFM_WOUT], nq, D, M, 0);
	FN(lin_back)(w->rdpost, dout, v + o[TFM_WOUT], nq, D, M, 1);
	for (size_t i = 0; i < nM; i++)
		w->rdpre[i] = (REAL)(w->rdpost[i] * act_d(m->c.act, y->pre[i]) +
		    y->dpost[i] * act_dd(m->c.act, y->pre[i]) * y->rpre[i]);
	FN(colsum)(hv + o[TFM_BIN], w->rdpre, nq, M);
	FN(lin_wgrad)(hv + o[TFM_WIN], w->rdpre, y->x1, nq, M, D);
	FN(lin_wgrad)(hv + o[TFM_WIN], y->dpre, y->rx1, nq, M, D);
	memcpy(w->rdx1, rdout, (size_t)nq * D * sizeof(REAL));
	FN(lin_back)(w->rdx1, w->rdpre, theta + o[TFM_WIN], nq, M, D, 1);
	FN(lin_back)(w->rdx1, y->dpre, v + o[TFM_WIN], nq, M, D, 1);
}

/* Block 0's projections' R-backward on the tables: hv's W_Q, W_K, W_V and R{d table}. */
static void
FN(table_rback)(const struct tfm *m, struct FN(work) *w, REAL *hv, const REAL *theta, const REAL *v, int B)
{
	int D = m->c.d_model, F = m->c.heads * m->c.d_head, TV = m->n_ctx * m->d_vocab;
	struct FN(tables) *t = &w->tb;

	/* R{dq}, R{dk}, R{dv} are there already */
	for (int i = 0; i < 3; i++) {
		size_t o = m->blk[0][FN(qkv)[i]];
		FN(lin_wgrad)(hv + o, t->rdp[i], t->x, TV, F, D);
		FN(lin_wgrad)(hv + o, t->dp[i], t->rx, TV, F, D);
		FN(lin_back)(t->rdx, t->rdp[i], theta + o, TV, F, D, i ? 1 : 0);
		FN(lin_back)(t->rdx, t->dp[i], v + o, TV, F, D, 1);
	}
	FN(scatter_add)(m, w, &w->ly[0], t->rdx, w->rdx1, D, B);
}

/* The attention half of block l's R-backward: from rdx1 to rdres (d/d input). */
static void
FN(attn_rback)(const struct tfm *m, struct FN(work) *w, int l, REAL *hv, const REAL *theta,
    const REAL *v, int B)
{
	int N = B * m->n_ctx, D = m->c.d_model, F = m->c.heads * m->c.d_head;
	const size_t *o = m->blk[l];
	const struct FN(layer) *y = &w->ly[l];
	const REAL *d[3] = {y->dq, y->dk, y->dv}, *rd[3] = {w->rdq, y->rdk, y->rdv};
	int nq = FN(nq)(m, y, B), qld = FN(qld)(m, y);
	size_t qoff = FN(qoff)(m, y);

	FN(lin_wgrad)(hv + o[TFM_WO], w->rdx1, y->z, nq, D, F);
	FN(lin_wgrad)(hv + o[TFM_WO], y->dx1, y->rz, nq, D, F);
	FN(lin_back)(w->rdz, w->rdx1, theta + o[TFM_WO], nq, D, F, 0);
	FN(lin_back)(w->rdz, y->dx1, v + o[TFM_WO], nq, D, F, 1);
	FN(attn_core_rback)(m, w, y, B);
	if (y->krow) {
		FN(table_rback)(m, w, hv, theta, v, B);
		return;
	}
	FN(place_rows)(m, y, w->rdres, w->rdx1, B);
	FN(lin_wgrad_ld)(hv + o[TFM_WQ], w->rdq, w->x[l] + qoff, qld, nq, F, D);
	FN(lin_wgrad_ld)(hv + o[TFM_WQ], y->dq, w->rx[l] + qoff, qld, nq, F, D);
	FN(lin_back_ld)(w->rdres + qoff, qld, w->rdq, theta + o[TFM_WQ], nq, F, D, 1);
	FN(lin_back_ld)(w->rdres + qoff, qld, y->dq, v + o[TFM_WQ], nq, F, D, 1);
	for (int i = 1; i < 3; i++) {
		size_t op = o[FN(qkv)[i]];
		FN(lin_wgrad)(hv + op, rd[i], w->x[l], N, F, D);
		FN(lin_wgrad)(hv + op, d[i], w->rx[l], N, F, D);
		FN(lin_back)(w->rdres, rd[i], theta + op, N, F, D, 1);
		FN(lin_back)(w->rdres, d[i], v + op, N, F, D, 1);
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
	FN(deltas)(m, w, theta, NULL, B);
	s->m = m;
	s->theta = theta;
	s->B = B;
	s->scale = scale;
	return s;
}

/* R{logits} of the last positions, then R{dlogits} = scale R{p}. */
static void
FN(rlogits)(const struct tfm *m, struct FN(work) *w, const REAL *theta, const REAL *v, int B,
    REAL scale)
{
	int D = m->c.d_model, C = m->c.p, L = m->c.layers, r = FN(out_rows)(m, w);
	size_t last = (size_t)(r - 1) * D;

	FN(prod)(0, 0, B, C, D, w->rx[L] + last, r * D, theta + m->W_U, C, 0, w->rlogits, C, NULL);
	FN(prod)(0, 0, B, C, D, w->x[L] + last, r * D, v + m->W_U, C, 1, w->rlogits, C, NULL);
	for (int b = 0; b < B; b++) {
		const REAL *p = w->probs + (size_t)b * C, *rz = w->rlogits + (size_t)b * C;
		double mean = FN(dotd)(p, rz, C);
		for (int j = 0; j < C; j++)
			w->rdlogits[(size_t)b * C + j] = (REAL)(scale * p[j] * (rz[j] - mean));
	}
}

/* The unembedding's R-backward: hv's W_U, and rdres = R{d loss / d x[L]}. */
static void
FN(unembed_rback)(const struct tfm *m, struct FN(work) *w, REAL *hv, const REAL *theta,
    const REAL *v, int B)
{
	int D = m->c.d_model, C = m->c.p, L = m->c.layers, r = FN(out_rows)(m, w);
	size_t last = (size_t)(r - 1) * D;

	FN(prod)(1, 0, D, C, B, w->rx[L] + last, r * D, w->dlogits, C, 1, hv + m->W_U, C, NULL);
	FN(prod)(1, 0, D, C, B, w->x[L] + last, r * D, w->rdlogits, C, 1, hv + m->W_U, C, NULL);
	memset(w->rdres, 0, (size_t)B * r * D * sizeof(REAL));
	FN(prod)(0, 1, B, D, C, w->rdlogits, C, theta + m->W_U, C, 0, w->rdres + last, r * D, NULL);
	FN(prod)(0, 1, B, D, C, w->dlogits, C, v + m->W_U, C, 1, w->rdres + last, r * D, NULL);
}

/* The R-forward pass along v to R{logits}, and R{dlogits} = H_out R{logits}. */
static void
FN(rforward)(struct FN(prepared) *s, const REAL *v)
{
	const struct tfm *m = s->m;
	struct FN(work) *w = s->w;
	int B = s->B, L = m->c.layers;

	if (w->naive)
		FN(embed)(m, w->rx[0], v, w->tok, B);
	else
		FN(embed_table)(m, w->tb.rx, v);
	for (int l = 0; l < L; l++)
		FN(block_rforward)(m, w, l, s->theta, v, B);
	FN(rlogits)(m, w, s->theta, v, B, s->scale);
}

void
FN(hvp_apply)(struct FN(prepared) *s, REAL *hv, const REAL *v)
{
	const struct tfm *m = s->m;
	struct FN(work) *w = s->w;
	const REAL *theta = s->theta;
	int B = s->B, L = m->c.layers;

	FN(rforward)(s, v);
	FN(unembed_rback)(m, w, hv, theta, v, B);
	for (int l = L - 1; l >= 0; l--) {
		FN(mlp_rback)(m, w, l, hv, theta, v, B);
		FN(attn_rback)(m, w, l, hv, theta, v, B);
	}
	if (w->naive)
		FN(embed_back)(m, hv, w->rdres, w->tok, B * m->n_ctx);
	else
		FN(embed_table_back)(m, hv, w->tb.rdx);
}

/*
 * G v = J^T H_out J v: R{dlogits} = H_out J v from the R-forward on s's
 * work, then the plain backward pass of it as if it were dlogits, on gw:
 * a work whose last forward ran at s's point, so that s's own deltas
 * stay as prepared (gw's are overwritten).
 */
void
FN(ggn_apply)(struct FN(prepared) *s, struct FN(work) *gw, REAL *gv, const REAL *v)
{
	const struct tfm *m = s->m;

	FN(rforward)(s, v);
	memcpy(gw->dlogits, s->w->rdlogits, (size_t)s->B * (size_t)m->c.p * sizeof(REAL));
	FN(deltas)(m, gw, s->theta, gv, s->B);
	FN(param_grads)(m, gw, gv, s->B);
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

/*
 * sum[l] += the entropy (nats) of block l's softmax pattern at the last
 * position, summed over the B rows of the last forward and the heads.
 */
void
FN(attn_entropy)(const struct tfm *m, const struct FN(work) *w, int B, double *sum)
{
	int T = m->n_ctx, H = m->c.heads, nj = nallowed(m, T - 1);

	for (int l = 0; l < m->c.layers; l++) {
		const struct FN(layer) *y = &w->ly[l];
		int nqp = T - y->q0;
		double e = 0;
		for (int b = 0; b < B; b++)
			for (int h = 0; h < H; h++) {
				const REAL *p = y->pat + (((size_t)b * H + h) * nqp + (nqp - 1)) * T;
				for (int j = 0; j < nj; j++)
					e -= p[j] > 0 ? p[j] * log((double)p[j]) : 0;
			}
		sum[l] += e;
	}
}

/* acts (B, M) = the last block's MLP activations at the last position, from the last forward. */
void
FN(mlp_acts)(const struct tfm *m, const struct FN(work) *w, int B, REAL *acts)
{
	const struct FN(layer) *y = &w->ly[m->c.layers - 1];
	int M = m->c.d_mlp, nqp = m->n_ctx - y->q0;

	for (int b = 0; b < B; b++)
		memcpy(acts + (size_t)b * M, y->post + ((size_t)b * nqp + (size_t)(nqp - 1)) * M,
		    (size_t)M * sizeof(REAL));
}

/*
 * gx, gy (B, D) = the gradient of logit c of each of the last forward's
 * rows with respect to its input rows at positions 0 and 1 (the embedding
 * vectors of x and y; W_pos is added to them, so this is also d logit /
 * d W_pos[t] of the row alone).  The deltas of every position are per
 * row only without the tables, which merge the rows that share a token:
 * the work must be naive.
 */
void
FN(logit_input_grad)(const struct tfm *m, struct FN(work) *w, const REAL *theta, int B, int c,
    REAL *gx, REAL *gy)
{
	int C = m->c.p, D = m->c.d_model, T = m->n_ctx;

	if (!w->naive)
		die("transformer: logit_input_grad needs a naive work");
	memset(w->dlogits, 0, (size_t)B * C * sizeof(REAL));
	for (int b = 0; b < B; b++)
		w->dlogits[(size_t)b * C + c] = 1;
	FN(deltas)(m, w, theta, NULL, B);
	for (int b = 0; b < B; b++) {
		memcpy(gx + (size_t)b * D, w->dres[0] + (size_t)b * T * D, (size_t)D * sizeof(REAL));
		memcpy(gy + (size_t)b * D, w->dres[0] + ((size_t)b * T + 1) * D, (size_t)D * sizeof(REAL));
	}
}
