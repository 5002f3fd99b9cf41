/*
 * mlp: a multilayer perceptron for (x, y) -> (x OP y) mod p over one flat
 * parameter vector.
 *
 * Dimension letters: B batch rows, V = p classes, W hidden width,
 * I input width (2p one-hot, or 2 raw integers), D hidden layers,
 * P parameter count.
 *
 * Layers i = 0..D are PyTorch nn.Linear layers, ReLU between them:
 *   layers.0: I -> W, layers.1..D-1: W -> W, layers.D: W -> V
 * (with D = 0 there is one layer, I -> V).  In the flat vector each layer
 * holds its weight (out, in), row-major, then its bias (out), layer by
 * layer: exactly the order and layout of nn.Sequential(Linear, ReLU, ...),
 * so a vector loads into PyTorch as it is.
 *
 * The one-hot first layer is a gather of two weight columns plus the bias
 * (and its weight gradient a scatter-add): the dense product over one-hot
 * rows would spend 2p multiply-adds to pick two numbers.
 *
 * Forward and backward are a pair with llm.c's conventions: outputs first,
 * const inputs after; backward *adds* into the gradient, so zeroing every
 * gradient is one memset of P floats.  Kernels never allocate: all
 * scratch lives in a struct mlp_work made once for a largest batch.
 */
#ifndef MLP_H
#define MLP_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

#define MLP_MAX_DEPTH 16
#define MLP_MAX_WIDTH 8192

enum mlp_encoding { MLP_ONEHOT, MLP_INT };
enum mlp_loss { MLP_CE, MLP_MSE };

extern const char *const mlp_encoding_names[];  /* "onehot", "int", NULL */
extern const char *const mlp_loss_names[];      /* "ce", "mse", NULL */

struct mlp_config {
	int p;                       /* classes and input range */
	int depth;                   /* hidden layers D, 0..MLP_MAX_DEPTH */
	int width;                   /* hidden width W */
	enum mlp_encoding encoding;
	enum mlp_loss loss;
};

struct mlp {
	struct mlp_config c;
	int nlayers;                        /* D + 1 */
	int in[MLP_MAX_DEPTH + 1];          /* fan-in of each layer */
	int out[MLP_MAX_DEPTH + 1];         /* fan-out of each layer */
	size_t woff[MLP_MAX_DEPTH + 1];     /* offset of layers.i.weight in theta */
	size_t boff[MLP_MAX_DEPTH + 1];     /* offset of layers.i.bias */
	size_t nparams;                     /* P */
};

/* Evaluation of a batch: sums over its rows. */
struct mlp_eval {
	double loss_sum;     /* sum of per-example losses */
	long correct;        /* argmax == label */
	long collapsed;      /* float32 softmax max probability == 1 exactly */
};

/* Per-batch scratch: activations kept for backward, and gradient buffers. */
struct mlp_work {
	int maxb;
	float *acts[MLP_MAX_DEPTH];  /* (B, W) post-ReLU output of hidden layer i */
	float *logits;               /* (B, V) */
	float *dlogits;              /* (B, V) d loss / d logits, scaled */
	float *dbuf[2];              /* (B, max(W, V)) ping-pong activation gradients */
	float *xin;                  /* (B, 2) raw integers as floats (int encoding) */
	float *scatter;              /* (I, W) transposed layer-0 weight gradient (one-hot) */
	/* Hessian-vector products only (mlp_work_new(..., 1)): R{.} = d/dt .(theta + t v) */
	float *racts[MLP_MAX_DEPTH]; /* (B, W) R{hidden activations} */
	float *rlogits;              /* (B, V) */
	float *rdlogits;             /* (B, V) R{d loss / d logits} */
	float *rdbuf[2];             /* (B, max(W, V)) R{activation gradients} */
	float *deltas[MLP_MAX_DEPTH + 1]; /* (B, out_i) d loss / d z_i, kept by mlp_hvp_prepare */
	float *probs;                /* (B, V) softmax of the logits */
	int prepared_rows;           /* rows mlp_hvp_prepare last kept */
	struct mlp_eval prepared;    /* their loss and counts, from the same forward pass */
	/* The live view of the prepared rows (mlp_hvp_compact) */
	struct mlp live;             /* the model without its dead hidden units */
	int live_on;                 /* mlp_hvp_apply runs on the live view */
	int *live_idx;               /* (D, W) each hidden layer's live units, ascending */
	float *ltheta, *lv, *lhv;    /* (P) parameters, direction, product: live layout */
	size_t *live_map;            /* (P) each live parameter's index in the full layout */
	float *mem;
};

/* Layout of the model; 0, or -1 if the configuration is out of range. */
int mlp_layout(struct mlp *m, const struct mlp_config *c);
/* The name of parameter tensor k = 0..2*nlayers-1 ("layers.i.weight"/"layers.i.bias"). */
void mlp_tensor_name(int k, char *buf, size_t n);
/* Offset, length and shape (out, in | out) of parameter tensor k. */
size_t mlp_tensor_info(const struct mlp *m, int k, int *ndim, int64_t shape[2]);

/* PyTorch's default nn.Linear init: weight and bias uniform in +-1/sqrt(fan_in). */
void mlp_init_params(const struct mlp *m, float *theta, struct rng *r);

/* Scratch for batches of up to maxb rows; hvp != 0 adds what mlp_hvp needs. */
struct mlp_work *mlp_work_new(const struct mlp *m, int maxb, int hvp);
void mlp_work_free(struct mlp_work *w);

/* logits and activations of B rows; x is (B, 2). */
void mlp_forward(const struct mlp *m, struct mlp_work *w, const float *theta,
    const int32_t *x, int B);
/*
 * The loss of the last forward's rows against labels y: adds the batch's
 * sums into ev and writes dlogits = scale * d(sum of per-example losses).
 * Per-example loss: ce, -log softmax(z)_y (log-sum-exp in double); mse,
 * mean over the V outputs of (z - onehot(y))^2, as torch's MSELoss.
 */
void mlp_loss(const struct mlp *m, struct mlp_work *w, struct mlp_eval *ev,
    const int32_t *y, int B, float scale);
/* Adds d(loss)/d(theta) for the last forward/loss pair into grad. */
void mlp_backward(const struct mlp *m, struct mlp_work *w, float *grad,
    const float *theta, const int32_t *x, int B);

/*
 * Mean loss and accuracy over n rows, in batches of the work's size; adds
 * (1/n) * gradient into grad if grad is not NULL, and marks the hidden
 * units live on some row into live (D, W) as mlp_mark_live does if live
 * is not NULL.
 */
void mlp_eval_set(const struct mlp *m, struct mlp_work *w, struct mlp_eval *ev,
    float *grad, const float *theta, const int32_t *x, const int32_t *y, long n, int *live);

/*
 * Hessian-vector product: adds H v, the Hessian of the loss of the last
 * forward/loss pair (scaled as mlp_loss's scale) times v, into hv.
 * Pearlmutter's R-operator: a forward pass of directional derivatives,
 * then a backward pass of theirs; ReLU's second derivative is zero almost
 * everywhere, so the product is exact.  About three gradients' work.
 */
void mlp_hvp(const struct mlp *m, struct mlp_work *w, float *hv, const float *theta,
    const float *v, const int32_t *x, const int32_t *y, int B, float scale);
/*
 * mlp_hvp in two halves.  prepare runs everything that does not depend on
 * v (forward pass, softmax, backward deltas) and keeps it in the work;
 * apply then costs six of mlp_hvp's eight matrix products per layer.  A
 * caller taking many products at one point over rows that fit one batch
 * prepares once and applies for each v.  prepare also leaves the rows'
 * loss in w->prepared, and mlp_hvp_grad adds their gradient (scaled as
 * prepared) from the kept deltas, one matrix product per layer: a caller
 * that wants the loss and gradient too needs no forward pass of its own.
 * mlp_hvp_grad must come before mlp_hvp_compact.
 */
void mlp_hvp_prepare(const struct mlp *m, struct mlp_work *w, const float *theta,
    const int32_t *x, const int32_t *y, int B, float scale);
void mlp_hvp_grad(const struct mlp *m, struct mlp_work *w, float *grad, const int32_t *x);
/*
 * After mlp_hvp_prepare (same theta): drop the hidden units that are dead (ReLU output
 * zero) on every prepared row, so that mlp_hvp_apply multiplies smaller
 * matrices.  Exact, not an approximation: a dead unit's ReLU mask is zero
 * on every row, so the Hessian's rows and columns for its incoming
 * weights, its bias and its outgoing weights are all zero, and the
 * product there is zero, as without the view.  Deep ReLU nets lose many
 * units this way (a third of a depth-7 net's within 300 steps), and the
 * matrix products shrink with the square of the live fraction.  Returns
 * the number of units dropped; with none, nothing changes.  The prepared
 * activations and deltas are then kept packed: mlp_gram_layer reads them
 * so (a dead unit adds zero to every dot product, so its Gram term is
 * unchanged, with smaller products), but mlp_gram_combine, which writes
 * the full layout, needs a prepare of its own.
 */
int mlp_hvp_compact(const struct mlp *m, struct mlp_work *w, const float *theta);
/*
 * live (D, W) |= whether each hidden unit's ReLU output is positive on
 * some of the B rows whose forward pass the work holds (mlp_forward or
 * mlp_hvp_prepare, before mlp_hvp_compact).  A unit still 0 after every
 * batch of a set is dead on that set.
 */
void mlp_mark_live(const struct mlp *m, const struct mlp_work *w, int B, int *live);
void mlp_hvp_apply(const struct mlp *m, struct mlp_work *w, float *hv, const float *theta,
    const float *v, const int32_t *x, int B, float scale);
/*
 * mlp_hvp_apply with v and hv in the live view's own layout (w->live,
 * w->live.nparams long; w->live_map[k] is entry k's place in the full
 * layout), or in the full layout when nothing was dropped (!w->live_on).
 * A caller that works in the live layout throughout, as hess-eig's
 * eigensolver does, skips the gather and the scatter of every product.
 */
void mlp_hvp_apply_live(const struct mlp *m, struct mlp_work *w, float *hv, const float *theta,
    const float *v, const int32_t *x, int B, float scale);
/* H v of the mean loss over n rows, in batches of the work's size (each compacted), added into hv. */
void mlp_hvp_set(const struct mlp *m, struct mlp_work *w, float *hv, const float *theta,
    const float *v, const int32_t *x, const int32_t *y, long n, double scale);

/*
 * The per-example gradient Gram matrix K = J J^T of B rows, J's row b the
 * gradient of row b's own loss (unscaled), without forming J: for a linear
 * layer the gradient of row b is d_b a_b^T (plus d_b for the bias), so
 * <g_b, g_c> = (d_b . d_c)(a_b . a_c + 1), summed over layers; for the
 * one-hot first layer a_b . a_c counts the equal input digits.  Matrices
 * are (B, B) row-major with the lower triangle and diagonal filled.  The
 * work must hold all B rows (mlp_work_new(m, B, 1)).
 *
 * mlp_gram: the whole K; scratch is two B x B doubles.
 * mlp_gram_layer: layer i's own term, after mlp_hvp_prepare(..., scale 1)
 * of the same rows, compacted or not; scratch is one B x B double.
 */
void mlp_gram(const struct mlp *m, struct mlp_work *w, double *K, const float *theta,
    const int32_t *x, const int32_t *y, int B, double *scratch);
void mlp_gram_layer(const struct mlp *m, struct mlp_work *w, int i, double *out,
    const int32_t *x, int B, double *scratch);
/*
 * J^T u for the rows of the last mlp_gram: sum over rows of u_b times row
 * b's gradient, added into out (P), in the parameter layout.
 */
void mlp_gram_combine(const struct mlp *m, struct mlp_work *w, double *out,
    const double *u, const int32_t *x, int B);

/*
 * Reference model in double precision: naive loops, the first layer as a
 * dense product over explicit one-hot rows.  Independent of the fast path
 * above; the tests compare the two and check this one against finite
 * differences.  Returns the mean loss over B rows; adds its gradient into
 * grad if not NULL; writes logits (B, V) if not NULL.
 */
double mlp_ref_loss(const struct mlp *m, const double *theta, const int32_t *x,
    const int32_t *y, int B, double *grad, double *logits);

#endif
