/*
 * transformer: the small transformer of the grokking literature (Nanda et
 * al. 2023, "Progress measures for grokking via mechanistic
 * interpretability"; Zhong et al. 2023, "The clock and the pizza", with
 * its attention coefficient alpha) for (x, y) -> (x + y) mod p, over one
 * flat parameter vector.
 *
 * Dimension letters: B batch rows, T = n_ctx positions (x, y and, with
 * the '=' token, p), N = B*T token rows, D d_model, H heads, E d_head,
 * F = H*E, M d_mlp, V d_vocab (p, or p + 1 with '='), C = p classes,
 * L layers, P parameter count.
 *
 * The model, exactly as the papers' modules (no LayerNorm, no attention
 * biases):
 *   x_0[t]   = W_E[:, tok_t] + W_pos[t]
 *   block l: x' = x + attn(x), x'' = x' + mlp(x')
 *   attn:    q, k, v = x W_Q^T, x W_K^T, x W_V^T per head
 *            A = alpha * softmax(q k^T / sqrt(E)) + (1 - alpha)
 *            out = [A v per head] W_O^T
 *   mlp:     W_out act(W_in x + b_in) + b_out, act ReLU or exact GELU
 *   logits   = x_L[T - 1] W_U, the p answers at the last position
 * With causal attention the mask applies to the whole of A: key j > query
 * i gets weight 0 for every alpha (the papers' causal model has no alpha,
 * pizza's alpha model no mask; this keeps a causal model causal at alpha
 * < 1).  W_U has p columns, not d_vocab: '=' is never an answer.
 *
 * The flat vector holds the tensors in the order and shapes of the
 * papers' state_dict(): embed.W_E (D, V), pos_embed.W_pos (T, D), then
 * per block blocks.l.attn.W_K, W_Q, W_V (H, E, D), W_O (D, F),
 * blocks.l.mlp.W_in (M, D), b_in (M), W_out (D, M), b_out (D), and
 * unembed.W_U (D, C); row-major, so W_Q is also the (F, D) matrix of all
 * heads' queries.
 *
 * The kernels come in two precisions from one source (transformer_impl.h):
 * tfm_* in float32, as training runs, and tfm64_* in double, which the
 * PyTorch float64 cross-check compares at 1e-10.  Forward and backward
 * follow llm.c: outputs first, const inputs after; backward adds into
 * the gradient.  Kernels never allocate: a work holds all scratch for a
 * largest batch.  tfm_ref_loss is an independent naive double reference.
 */
#ifndef TRANSFORMER_H
#define TRANSFORMER_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

#define TFM_MAX_LAYERS 8
#define TFM_MAX_DIM 4096
#define TFM_MAX_TENSORS (2 + 8 * TFM_MAX_LAYERS + 1)

enum tfm_attention { TFM_CAUSAL, TFM_FULL };
enum tfm_act { TFM_RELU, TFM_GELU };

extern const char *const tfm_attention_names[];  /* "causal", "full", NULL */
extern const char *const tfm_act_names[];        /* "relu", "gelu", NULL */

struct tfm_config {
	int p;                        /* classes; tokens 0..p-1, '=' is p */
	int layers;                   /* L, 1..TFM_MAX_LAYERS */
	int d_model, heads, d_head, d_mlp;
	enum tfm_attention attention;
	double alpha;                 /* attention coefficient, 0..1 */
	enum tfm_act act;
	int eq_token;                 /* append '=' (T = 3) or not (T = 2) */
};

/* The parts of a block, in state_dict order. */
enum tfm_part { TFM_WK, TFM_WQ, TFM_WV, TFM_WO, TFM_WIN, TFM_BIN, TFM_WOUT, TFM_BOUT, TFM_NPART };

struct tfm {
	struct tfm_config c;
	int n_ctx;                    /* T */
	int d_vocab;                  /* V */
	int ntensors;                 /* 2 + 8 L + 1 */
	size_t W_E, W_pos, W_U;       /* offsets in theta */
	size_t blk[TFM_MAX_LAYERS][TFM_NPART];
	size_t nparams;               /* P */
};

struct tfm_eval {
	double loss_sum;              /* sum of per-example losses */
	long correct;                 /* argmax == label */
	long collapsed;               /* the softmax's largest probability == 1 exactly, in REAL */
};

/* Layout of the model; 0, or -1 if the configuration is out of range. */
int tfm_layout(struct tfm *m, const struct tfm_config *c);
/*
 * Parameter tensor k = 0..ntensors-1: its state_dict name into buf, its
 * rank and shape; returns its offset in theta.
 */
size_t tfm_tensor_info(const struct tfm *m, int k, char *buf, size_t n, int *ndim, int64_t shape[3]);
/*
 * Nanda's initialisation: randn / sqrt(D) for W_E, W_pos, W_K, W_Q, W_V,
 * W_O, W_in and W_out, randn / sqrt(V) for W_U, zero biases, drawn in the
 * flat vector's order.
 */
void tfm_init_params(const struct tfm *m, float *theta, struct rng *r);

/*
 * Forward/backward scratch for up to maxb rows.  flags: TFM_WORK_HVP adds
 * the R-operator's; TFM_WORK_NAIVE computes as the papers' modules do
 * (every position through every layer, every token row through block
 * 0's projections), without the exact shortcuts of transformer_impl.h,
 * for the tests to compare against.
 */
enum { TFM_WORK_HVP = 1, TFM_WORK_NAIVE = 2 };
struct tfm_work *tfm_work_new(const struct tfm *m, int maxb, int flags);
void tfm_work_free(struct tfm_work *w);
/* logits (B, C) of the last forward. */
const float *tfm_logits(const struct tfm_work *w);

/* Every activation of B rows of x (B, 2); the work keeps them for backward. */
void tfm_forward(const struct tfm *m, struct tfm_work *w, const float *theta,
    const int32_t *x, int B);
/*
 * The cross-entropy of the last forward's rows against y, log-softmax in
 * double: adds the batch's sums into ev and keeps dlogits = scale * d(sum
 * of per-example losses) / d logits.
 */
void tfm_loss(const struct tfm *m, struct tfm_work *w, struct tfm_eval *ev,
    const int32_t *y, int B, float scale);
/* Adds d(loss)/d(theta) of the last forward/loss pair into grad (P). */
void tfm_backward(const struct tfm *m, struct tfm_work *w, float *grad, const float *theta, int B);

/*
 * Hessian-vector products by Pearlmutter's R-operator.  prepare runs the
 * forward pass, the loss and the backward pass (everything independent of
 * v) and keeps them in the work, which must have been made with hvp; it
 * returns the session that apply takes, valid until the work's next
 * forward or prepare.  apply adds H v into hv (P): an R-forward pass of
 * directional derivatives and an R-backward pass of theirs, through the
 * embedding, attention, its softmax, the MLP and the unembedding.  GELU's
 * second derivative enters; ReLU's is zero almost everywhere.
 */
struct tfm_prepared;
struct tfm_prepared *tfm_hvp_prepare(const struct tfm *m, struct tfm_work *w,
    const float *theta, const int32_t *x, const int32_t *y, int B, float scale);
void tfm_hvp_apply(struct tfm_prepared *s, float *hv, const float *v);
/*
 * gv (P) += G v, the Gauss-Newton matrix J^T H_out J at s's point: the
 * R-forward on s's work, the backward pass on gw, a work (no HVP needed)
 * whose last forward was at s's point (s's theta and rows).
 */
void tfm_ggn_apply(struct tfm_prepared *s, struct tfm_work *gw, float *gv, const float *v);
/* The prepared rows' loss sums, and their gradient (scaled as prepared) added into grad. */
struct tfm_eval tfm_hvp_eval(const struct tfm_prepared *s);
void tfm_hvp_grad(struct tfm_prepared *s, float *grad);
/*
 * sum[l] (L) += the entropy in nats of block l's attention pattern (the
 * softmax, before alpha mixes it) at the last position, over the rows of
 * the work's last forward and every head: the attention's sharpness, as
 * the transformer literature watches it (ln T when uniform).
 */
void tfm_attn_entropy(const struct tfm *m, const struct tfm_work *w, int B, double *sum);

/* acts (B, M) = the last block's MLP activations (after act) at the last position, of the last forward. */
void tfm_mlp_acts(const struct tfm *m, const struct tfm_work *w, int B, float *acts);
/*
 * gx, gy (B, D) = d logit c / d (the input rows at positions 0 and 1) of
 * each row of the last forward: the gradients with respect to the
 * embedding vectors x and y looked up, before W_pos is added.  Only a
 * TFM_WORK_NAIVE work keeps per-row deltas at every position (block 0's
 * tables merge rows that share a token); overwrites the work's dlogits.
 */
void tfm_logit_input_grad(const struct tfm *m, struct tfm_work *w, const float *theta, int B, int c,
    float *gx, float *gy);

/* The same kernels in double precision. */
struct tfm64_work *tfm64_work_new(const struct tfm *m, int maxb, int flags);
void tfm64_work_free(struct tfm64_work *w);
const double *tfm64_logits(const struct tfm64_work *w);
void tfm64_forward(const struct tfm *m, struct tfm64_work *w, const double *theta,
    const int32_t *x, int B);
void tfm64_loss(const struct tfm *m, struct tfm64_work *w, struct tfm_eval *ev,
    const int32_t *y, int B, double scale);
void tfm64_backward(const struct tfm *m, struct tfm64_work *w, double *grad, const double *theta, int B);
struct tfm64_prepared;
struct tfm64_prepared *tfm64_hvp_prepare(const struct tfm *m, struct tfm64_work *w,
    const double *theta, const int32_t *x, const int32_t *y, int B, double scale);
void tfm64_hvp_apply(struct tfm64_prepared *s, double *hv, const double *v);
void tfm64_ggn_apply(struct tfm64_prepared *s, struct tfm64_work *gw, double *gv, const double *v);
struct tfm_eval tfm64_hvp_eval(const struct tfm64_prepared *s);
void tfm64_hvp_grad(struct tfm64_prepared *s, double *grad);
void tfm64_attn_entropy(const struct tfm *m, const struct tfm64_work *w, int B, double *sum);
void tfm64_mlp_acts(const struct tfm *m, const struct tfm64_work *w, int B, double *acts);
void tfm64_logit_input_grad(const struct tfm *m, struct tfm64_work *w, const double *theta, int B,
    int c, double *gx, double *gy);

/*
 * The transformer as a model family (model.h), in transformer_family.c:
 * tensors by their state_dict names, groups "embed" (W_E, W_pos),
 * "blocks.l.attn", "blocks.l.mlp" and "unembed"; hyper-parameters p,
 * layers, d_model, heads, d_head, d_mlp, attention, attn_coeff, act,
 * eq_token.  Its diagnostic is "attn_entropy": per block, the mean over
 * rows and heads of tfm_attn_entropy.  tfm_model_new makes one from a
 * configuration (NULL if out of range); tfm_of gives a transformer
 * model's layout.
 */
struct model;
struct model_probes;
extern const struct model_family transformer_family;
/* Its probes for progress-measures (transformer_probes.c). */
extern const struct model_probes tfm_probes;
struct model *tfm_model_new(const struct tfm_config *c);
const struct tfm *tfm_of(const struct model *m);
/*
 * The kernels' work inside a transformer's model work; with naive, a
 * TFM_WORK_NAIVE one of the same size, made on the first such call and
 * freed with the model work (only the probes want one).
 */
struct model_work;
struct tfm_work *tfm_work_of(struct model_work *mw, int naive);

/*
 * Reference model in double precision: naive loops over one example at a
 * time, attention as written in the papers (scores, mask, softmax, mix),
 * shared with nothing above.  Returns the mean cross-entropy over B rows;
 * adds its gradient into grad if not NULL; writes logits (B, C) if not NULL.
 */
double tfm_ref_loss(const struct tfm *m, const double *theta, const int32_t *x,
    const int32_t *y, int B, double *grad, double *logits);

#endif
