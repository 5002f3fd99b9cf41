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
 * scratch lives in a struct mlp_work (forward and backward) or a struct
 * mlp_hvp (Hessian-vector products), each made once for a largest batch.
 *
 * The MLP is also the first model family behind model.h (mlp_family):
 * the tools reach it only through that interface.
 */
#ifndef MLP_H
#define MLP_H

#include <stddef.h>
#include <stdint.h>

#include "gram.h"
#include "model.h"
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

/*
 * Forward/backward scratch for batches of up to maxb rows: the activations
 * backward needs, and gradient buffers.  The model interface's
 * struct model_work is its first member (base.m is the family's model).
 */
struct mlp_work {
	struct model_work base;
	const struct mlp *m;
	float *acts[MLP_MAX_DEPTH];  /* (B, W) post-ReLU output of hidden layer i */
	float *logits;               /* (B, V) */
	float *dlogits;              /* (B, V) d loss / d logits, scaled */
	float *dbuf[2];              /* (B, max(W, V)) ping-pong activation gradients */
	float *xin;                  /* (B, 2) raw integers as floats (int encoding) */
	float *scatter;              /* (I, W) transposed layer-0 weight gradient (one-hot) */
	float *wt;                   /* (P) layers 1..D's weights transposed, (in, out) at woff */
	float *rows[2];              /* (MLP_ROWS, max(W, V)) a row block's activation gradients */
	float *mem;
};

/*
 * Rows of the batch that go through every layer together: when gemm's
 * products split without changing a bit (gemm_splittable), the passes run
 * block by block of this many rows, so that each block's activations and
 * gradients stay in cache from one layer to the next instead of a whole
 * batch's going out to memory and back at every layer.
 */
#define MLP_ROWS 96

/*
 * Hessian-vector products: three objects, each only obtainable from the
 * one before, so that no call can come in the wrong order.
 *
 *   struct mlp_hvp    scratch for batches of up to maxb rows (mlp_hvp_new)
 *   struct mlp_point  a prepared point (only from mlp_hvp_prepare): the
 *                     forward pass, the softmax and every layer's
 *                     backward delta, none of which depends on v; its
 *                     loss, gradient, products and Gram terms
 *   struct mlp_view   the point without the hidden units dead on every
 *                     prepared row (only from mlp_point_restrict), with
 *                     its own packed copies of the activations and
 *                     deltas: the point stays whole beside it
 *
 * A new prepare on the same mlp_hvp replaces the point and its view.
 */
struct mlp_point {
	struct model_point base;     /* base.h: the mlp_hvp; base.rows, scale, eval */
	const struct mlp *m;
	const float *theta;
	const int32_t *x, *y;
};

struct mlp_view {
	struct model_view base;      /* base.nparams, base.map: live_map */
	struct mlp live;             /* the model without its dead hidden units */
	int *live_idx;               /* (D, W) each hidden layer's live units, ascending */
	float *acts[MLP_MAX_DEPTH];  /* (B, live_i) the point's activations, packed */
	float *deltas[MLP_MAX_DEPTH + 1]; /* (B, live_i) its deltas packed; the last is the point's */
	float *ltheta;               /* (P) the parameters in the live layout */
	float *wt;                   /* (P) ltheta's weights transposed (as mlp_work's wt) */
	size_t *live_map;            /* (P) each live parameter's index in the full layout */
	float *mem;
};

struct mlp_hvp {
	struct model_hvp base;
	const struct mlp *m;
	struct mlp_work *fw;         /* the prepared forward pass */
	/* R{.} = d/dt .(theta + t v) */
	float *racts[MLP_MAX_DEPTH]; /* (B, W) R{hidden activations} */
	float *rlogits;              /* (B, V) */
	float *rdlogits;             /* (B, V) R{d loss / d logits} */
	float *rdbuf[2];             /* (B, max(W, V)) R{activation gradients} */
	float *deltas[MLP_MAX_DEPTH + 1]; /* (B, out_i) d loss / d z_i of the prepared rows */
	float *probs;                /* (B, V) softmax of the logits */
	float *rd0;                  /* (B, W) R{layer 0's delta}, when the rows go in blocks */
	float *wt;                   /* (P) the point's weights transposed (as mlp_work's wt) */
	float *vt;                   /* (P) v's weights transposed, layer 0's for its gather */
	float *mem;
	struct mlp_point pt;
	struct mlp_view view;
};

/* Layout of the model; 0, or -1 if the configuration is out of range. */
int mlp_layout(struct mlp *m, const struct mlp_config *c);
/* The name of parameter tensor k = 0..2*nlayers-1 ("layers.i.weight"/"layers.i.bias"). */
void mlp_tensor_name(int k, char *buf, size_t n);
/* Offset, length and shape (out, in | out) of parameter tensor k. */
size_t mlp_tensor_info(const struct mlp *m, int k, int *ndim, int64_t shape[2]);

/* PyTorch's default nn.Linear init: weight and bias uniform in +-1/sqrt(fan_in). */
void mlp_init_params(const struct mlp *m, float *theta, struct rng *r);

/* The MLP as a model family (model.h): "mlp". */
extern const struct model_family mlp_family;
/* Its probes (mlp_probes.c): the last hidden layer's neurons, layers.0's columns as embeddings. */
extern const struct model_probes mlp_probes;
/* The model of configuration c (a struct model of family mlp), or NULL if out of range. */
struct model *mlp_model_new(const struct mlp_config *c);
/* The layout of a model of family mlp. */
const struct mlp *mlp_of(const struct model *m);

struct mlp_work *mlp_work_new(const struct mlp *m, int maxb);
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
void mlp_loss(const struct mlp *m, struct mlp_work *w, struct model_eval *ev,
    const int32_t *y, int B, float scale);
/* Adds d(loss)/d(theta) for the last forward/loss pair into grad. */
void mlp_backward(const struct mlp *m, struct mlp_work *w, float *grad,
    const float *theta, const int32_t *x, int B);
/*
 * mlp_backward (the same gradient into grad) that also writes sq (B):
 * each row's squared gradient norm |d loss_b / d theta|^2 of its own
 * unscaled loss (the deltas carry scale; it is divided out), from the
 * deltas and activations the pass has (mlp_norms.c).
 */
void mlp_backward_norms(const struct mlp *m, struct mlp_work *w, float *grad, double *sq,
    const float *theta, const int32_t *x, int B, float scale);
/* The backward pass's pieces of sq (mlp_norms.c): a hidden or output layer's, and the first layer's. */
void mlp_row_norms_add(double *sq, const float *d, int n, const float *a, int nin, int B);
void mlp_row_norms_first(const struct mlp *m, const struct mlp_work *w, double *sq,
    const float *dz, int B);
/*
 * mlp_forward, mlp_mark_live into live if not NULL, mlp_loss, and when
 * grad is not NULL mlp_backward, or mlp_backward_norms when sq is not
 * NULL: the same results, but a block of MLP_ROWS rows goes through all
 * of them before the next when the products allow (the training step).
 */
void mlp_loss_grad(const struct mlp *m, struct mlp_work *w, struct model_eval *ev, float *grad,
    double *sq, const float *theta, const int32_t *x, const int32_t *y, int B, float scale,
    int *live);
/*
 * live (D, W) |= whether each hidden unit's ReLU output is positive on
 * some of the B rows of the work's last forward pass.  A unit still 0
 * after every batch of a set is dead on that set.
 */
void mlp_mark_live(const struct mlp *m, const struct mlp_work *w, int B, int *live);

/*
 * Mean loss and accuracy over n rows, in batches of the work's size; adds
 * (1/n) * gradient into grad if grad is not NULL, and marks the hidden
 * units live on some row into live (D, W) as mlp_mark_live does if live
 * is not NULL.
 */
void mlp_eval_set(const struct mlp *m, struct mlp_work *w, struct model_eval *ev,
    float *grad, const float *theta, const int32_t *x, const int32_t *y, long n, int *live);

struct mlp_hvp *mlp_hvp_new(const struct mlp *m, int maxb);
void mlp_hvp_free(struct mlp_hvp *h);
/*
 * Prepare the point theta for the loss of B rows scaled by scale (as
 * mlp_loss's): forward pass, loss (pt->base.eval), softmax and every
 * layer's delta.  theta, x and y are kept by pointer.
 */
struct mlp_point *mlp_hvp_prepare(struct mlp_hvp *h, const float *theta,
    const int32_t *x, const int32_t *y, int B, float scale);
/* grad += the point's gradient (scaled as prepared): one product per layer from the deltas. */
void mlp_point_grad(const struct mlp_point *pt, float *grad);
/*
 * hv += H v, the Hessian of the prepared loss times v.  Pearlmutter's
 * R-operator: a forward pass of directional derivatives, then a backward
 * pass of theirs; ReLU's second derivative is zero almost everywhere, so
 * the product is exact.  Six matrix products per layer.
 */
void mlp_point_apply(struct mlp_point *pt, float *hv, const float *v);
/* gv += G v, the Gauss-Newton matrix J^T H_out J of the prepared loss (scaled as it). */
void mlp_point_ggn(struct mlp_point *pt, float *gv, const float *v);
/* live (D, W) |= the hidden units positive on some prepared row. */
void mlp_point_mark_live(const struct mlp_point *pt, int *live);
/*
 * The point without the hidden units that are dead (ReLU output zero) on
 * every prepared row, or NULL when none is.  Exact, not an approximation:
 * a dead unit's ReLU mask is zero on every row, so the Hessian's rows and
 * columns for its incoming weights, its bias and its outgoing weights are
 * all zero.  Deep ReLU nets lose many units this way (a third of a
 * depth-7 net's within 300 steps), and the matrix products shrink with
 * the square of the live fraction.  A hidden layer with no live unit
 * keeps one, so that no matrix is empty.
 */
struct mlp_view *mlp_point_restrict(struct mlp_point *pt);
/* Units the view dropped. */
int mlp_view_dropped(const struct mlp_view *view);
/*
 * hv += H v with v and hv in the view's own layout (view->live,
 * base.nparams long; live_map[k] is entry k's place in the full layout).
 * A caller that works in the live layout throughout, as hess-eig's
 * eigensolver does, skips the gather and the scatter of every product.
 */
void mlp_view_apply(struct mlp_view *view, float *hv, const float *v);
/* gv += G v in the view's layout (G is zero on the dropped units too). */
void mlp_view_ggn(struct mlp_view *view, float *gv, const float *v);
/*
 * Layer blk's diagonal block, H (or G, with ggn) restricted to layer
 * blk's parameters: v must be zero outside them, and hv gets only their
 * entries.  The R-forward starts at layer blk and the R-backward stops
 * there, so a block costs about (L - blk) / L of a whole product.  At the
 * point, or in a view's layout.
 */
void mlp_point_block(struct mlp_point *pt, int ggn, int blk, float *hv, const float *v);
void mlp_view_block(struct mlp_view *view, int ggn, int blk, float *hv, const float *v);
/* v . (layer blk's diagonal block of H, = G's) v, v as mlp_point_block's: the R-forward alone. */
double mlp_point_block_quad(struct mlp_point *pt, int blk, const float *v);
double mlp_view_block_quad(struct mlp_view *view, int blk, const float *v);

/*
 * The per-example gradient Gram term of layer i over the point's B rows
 * (prepared with scale 1): out (B, B), lower triangle and diagonal, =
 * <g_b, g_c> restricted to layer i, g_b the gradient of row b's own loss,
 * without forming J: for a linear layer the gradient of row b is d_b a_b^T
 * (plus d_b for the bias), so the term is (d_b . d_c)(a_b . a_c + 1); for
 * the one-hot first layer a_b . a_c counts the equal input digits.  With a
 * view, from its packed rows (a dead unit adds zero to every dot product:
 * the same term from smaller products).  scratch: mlp_gram_scratch doubles.
 */
void mlp_gram_layer(const struct mlp_point *pt, const struct mlp_view *view, int i,
    double *out, enum gram_acc how, double *scratch);
size_t mlp_gram_scratch(const struct mlp *m, int B);
/* out (P) += J^T u = sum over the point's rows of u_b times row b's gradient (scale 1). */
void mlp_gram_combine(const struct mlp_point *pt, double *out, const double *u);

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
