/*
 * model: the one interface between a model family (the MLP, a transformer)
 * and everything that trains or analyses models: checkpoints, the training
 * loop, hess-eig, gop-spectrum, llc-estimate.
 *
 * The shape is SQLite's VFS: a struct model_family of function pointers
 * with a version field, one static instance per family, found by name in
 * one table (model.c).  Callers hold a struct model * and the opaque
 * objects below, and never name a family's own types.  A checkpoint names
 * its family in its metadata ("family"); a checkpoint without one is an
 * MLP, so every file written before families existed still loads.
 *
 * Dimension letters: B rows of a batch, n rows of a set, P parameters,
 * V = p classes.  A model's parameters are one flat float vector theta
 * (P): Hessian-vector products, Lanczos, optimisers and per-example
 * gradients all want one float * of length P.  Inputs are token rows: the
 * data set's (x, y) pairs, x (B, 2) int32 in 0..p-1 and labels y (B)
 * int32; a family that wants more tokens (a transformer's '=') appends
 * them itself.
 *
 * Objects and their life (each _new has its _free):
 *
 *   struct model        the family and its hyper-parameters; the layout
 *                       (named tensors, groups, P).  From model_new_json
 *                       or a family's own constructor, or a checkpoint.
 *   struct model_work   forward/backward scratch for batches of up to
 *                       maxb rows: loss, gradient, evaluation.
 *   struct model_hvp    scratch for Hessian-vector products on batches of
 *                       up to maxb rows; holds at most one prepared point.
 *   struct model_point  a prepared point: only model_hvp_prepare returns
 *                       one.  The forward pass and everything else that
 *                       does not depend on v are kept; products at that
 *                       point then cost the R-passes alone.  Its loss
 *                       and gradient come from the same pass.  The next
 *                       prepare on the same model_hvp replaces it.
 *   struct model_view   an optional restriction of a point to the
 *                       parameters that matter there (the MLP drops units
 *                       dead on every prepared row: their rows and
 *                       columns of H are exactly zero).  Products in its
 *                       own, shorter layout; model_view_map gives each of
 *                       its entries' places in the full layout.  It does
 *                       not change its point: the point's gradient, Gram
 *                       terms and products stay valid beside it.
 *   struct model_diag   what a family wants said about a set in records
 *                       (the MLP: dead units per hidden layer), filled
 *                       by the passes that see the rows.
 *
 * A family's kernels (loss_grad, prepare, apply, grad, view_apply,
 * gram_group, gram_combine) never allocate: every buffer they use comes
 * from the object made by a _new.  model.c's generic routes
 * (model_gram_*, the generic J^T u) allocate their own scratch.
 *
 * Adding a family (see also docs/design.md, "Adding a model family"):
 * write tools/lib/<family>.{c,h} with one `const struct model_family
 * <family>_family` filled as below, add it to the table in model.c, and
 * give the family a trainer tool (a thin main over train.h).  Required
 * methods are marked (R); optional ones (O) may be NULL and have the
 * generic fallback named.  Every family's struct model_work, model_hvp,
 * model_point, model_view and model_diag begin with the base structs
 * below as their first member, as SQLite's unixFile begins with
 * sqlite3_file, so the callers' pointers cast to the family's types.
 *
 * History of this interface (model_family.version):
 *   1  first version: layout, init, loss_grad, HVP points and views,
 *      Gram terms per group, diagnostics, checkpoint metadata; then,
 *      before any other family implemented it, the optional summary and
 *      check_frame (messages and extra checks of a checkpoint frame).
 *   2  probes (logits, neurons, embeddings, embedding gradients) for
 *      progress-measures.
 *   3  Gauss-Newton products at a prepared point (ggn_apply,
 *      view_ggn_apply), optional, for hess-eig --matrix ggn; diagonal
 *      block products (block_apply), optional, for hess-eig --blocks.
 *   4  log_json: a family's own fields in the training log's metrics
 *      records (the transformer: per-tensor sums of squares, attention
 *      entropies).
 *   5  example_norms: loss_grad that also returns each row's squared
 *      per-example gradient norm from the same pass, for the training
 *      log's per-example statistics and gradient noise scale.
 *   6  kernel: what runs the family's matrix products, for the outputs'
 *      blas.gemm (it was the process's gemm.h choice, whatever the
 *      family, so a transformer's header named a kernel it never ran).
 *   7  gram_group takes how its term enters out (gram.h's enum
 *      gram_acc), so gop-spectrum sums the groups' terms into K as they
 *      are formed, with no n x n term held apart.
 */
#ifndef MODEL_H
#define MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "gram.h"
#include "rng.h"
#include "st.h"

#define MODEL_FAMILY_VERSION 7
#define MODEL_NAME_MAX 64          /* tensor and group names, with the NUL */
#define MODEL_MAX_DIMS 4

struct model_family;
struct model_probes;

/* One named parameter tensor: a slice of theta. */
struct model_tensor {
	char name[MODEL_NAME_MAX];       /* as PyTorch names it: "layers.0.weight" */
	int ndim;                        /* 1..MODEL_MAX_DIMS */
	int64_t shape[MODEL_MAX_DIMS];   /* row-major */
	size_t offset, numel;            /* theta[offset .. offset + numel) */
	int group;                       /* index of its group, 0..ngroups-1 */
};

/*
 * A model: the family, the layout and the hyper-parameters.  A family's
 * own model struct begins with this one.  tensors are in theta's order
 * and tile it: tensors[0].offset = 0, each next one starts where the
 * last ended, the last ends at nparams.  Groups are what per-layer
 * analyses are per: the MLP's layers ("layers.i": its weight and bias), a
 * transformer's blocks or components; a group's tensors are contiguous.
 */
struct model {
	const struct model_family *family;
	int p;                           /* classes and token range */
	size_t nparams;                  /* P */
	int ntensors, ngroups;
	const struct model_tensor *tensors;   /* (ntensors), owned by the family's model */
	const char *const *group_names;       /* (ngroups): "layers.0", "blocks.1.attn", ... */
};

/* Sums over the rows of a batch or a set. */
struct model_eval {
	double loss_sum;     /* sum of per-example losses */
	long correct;        /* argmax == label */
	long collapsed;      /* float32 softmax's largest probability == 1 exactly */
};

/* Base structs of the family's objects (first members). */
struct model_work { const struct model *m; int maxb; };
struct model_hvp { const struct model *m; int maxb; };
struct model_point { struct model_hvp *h; int rows; float scale; struct model_eval eval; };
struct model_view { struct model_point *pt; size_t nparams; const size_t *map; };
struct model_diag { const struct model *m; };

struct model_family {
	int version;                     /* MODEL_FAMILY_VERSION it was written for */
	const char *name;                /* "mlp": the checkpoint's family */

	/* --- identity, layout, hyper-parameters --- */
	/*
	 * (R) A model from its hyper-parameters as JSON (the object
	 * hparams_json writes), for data of p classes; NULL with err.
	 */
	struct model *(*from_json)(const json_t *hp, int p, char *err, size_t errlen);
	/* (R) The hyper-parameters as JSON ("p" and the family's own). */
	json_t *(*hparams_json)(const struct model *m);
	/*
	 * (R) A model from a checkpoint's metadata (name labels messages);
	 * NULL with err.  The metadata's bounds are the family's to check.
	 */
	struct model *(*from_meta)(const struct st_frame *f, const char *name, char *err, size_t errlen);
	/* (R) Write the hyper-parameters into a checkpoint's metadata. */
	void (*to_meta)(const struct model *m, struct st_writer *w);
	/* (O) Extra top-level fields of records (the MLP: depth, width). */
	void (*describe)(const struct model *m, json_t *rec);
	/*
	 * (O) The model in a few words for messages ("p=11 depth=2 width=128
	 * onehot").  NULL: the hyper-parameters' JSON.
	 */
	void (*summary)(const struct model *m, char *buf, size_t n);
	/*
	 * (O) Family-specific checks of a checkpoint frame beyond the named
	 * tensors' dtypes and shapes (the MLP: no tensor of a deeper net).
	 * 0, or -1 with err.  NULL: none.
	 */
	int (*check_frame)(const struct model *m, const struct st_frame *f, const char *name,
	    char *err, size_t errlen);
	void (*free)(struct model *m);   /* (R) */
	/* (R) The family's default initialisation of theta (P) from r. */
	void (*init)(const struct model *m, float *theta, struct rng *r);
	/*
	 * (O) The mean loss of a model that knows nothing (uniform
	 * predictions): llc-estimate's default explosion margin.  NULL: ln p,
	 * cross-entropy's.
	 */
	double (*chance_loss)(const struct model *m);

	/* --- loss and gradient --- */
	struct model_work *(*work_new)(const struct model *m, int maxb);   /* (R) */
	void (*work_free)(struct model_work *w);                          /* (R) */
	/*
	 * (R) The loss of B <= maxb rows: adds the batch's sums into ev, and
	 * scale * d(sum of per-example losses)/d(theta) into grad unless grad
	 * is NULL (then only the forward pass runs).  diag, if not NULL,
	 * accumulates the family's diagnostics over these rows.
	 */
	void (*loss_grad)(struct model_work *w, struct model_eval *ev, float *grad,
	    const float *theta, const int32_t *x, const int32_t *y, int B, float scale,
	    struct model_diag *diag);

	/* --- Hessian-vector products --- */
	struct model_hvp *(*hvp_new)(const struct model *m, int maxb);     /* (R) */
	void (*hvp_free)(struct model_hvp *h);                            /* (R) */
	/*
	 * (R) Prepare the point theta for the loss of B rows, scaled by
	 * scale (as loss_grad's): forward pass, loss into pt->eval, and what
	 * the products need; diag as loss_grad's.  theta, x and y must stay
	 * as they are while the point is used.
	 */
	struct model_point *(*prepare)(struct model_hvp *h, const float *theta,
	    const int32_t *x, const int32_t *y, int B, float scale, struct model_diag *diag);
	/* (R) hv (P) += H v at the point (v: P). */
	void (*apply)(struct model_point *pt, float *hv, const float *v);
	/* (R) grad (P) += the point's gradient, scaled as prepared. */
	void (*grad)(const struct model_point *pt, float *grad);
	/*
	 * (O) The point restricted to the parameters that matter there, or
	 * NULL when nothing can be dropped (then use the point).  The view
	 * lives in the point's model_hvp until the next prepare.  NULL
	 * method: no restriction, ever.
	 */
	struct model_view *(*restrict_view)(struct model_point *pt);
	/* (O, with restrict_view) hv (view->nparams) += H v in the view's layout. */
	void (*view_apply)(struct model_view *view, float *hv, const float *v);
	/*
	 * (O) gv (P) += G v, G = J^T H_out J the generalised Gauss-Newton
	 * matrix of the prepared loss (J: the logits' Jacobian in theta;
	 * H_out: the loss's Hessian in the logits, per row, scaled as
	 * prepared), positive semi-definite for a convex loss: one R-forward
	 * to the logits, H_out, one backward.  NULL: the family has no GGN.
	 */
	void (*ggn_apply)(struct model_point *pt, float *gv, const float *v);
	/* (O, with ggn_apply and restrict_view) gv (view->nparams) += G v in the view's layout. */
	void (*view_ggn_apply)(struct model_view *view, float *gv, const float *v);
	/*
	 * (O) Group g's diagonal block of H (or G, with ggn; then only if the
	 * family has ggn_apply): v (P, or view->nparams in the layout of view
	 * when it is not NULL) is zero outside group g, and hv gets group g's
	 * entries only, cheaper than a whole product (the MLP: the passes
	 * start and stop at the group's layer).  NULL: the whole product,
	 * masked (model_block_product).
	 */
	void (*block_apply)(struct model_point *pt, struct model_view *view, int ggn, int g,
	    float *hv, const float *v);
	/*
	 * (O) v . B v for the same block B and v, where the family has it
	 * cheaper than the product: the MLP's output is affine in one
	 * layer's parameters on each ReLU pattern, so its diagonal blocks of
	 * H and G are both J_g^T H_out J_g and v . B v = (J_g v) . H_out
	 * (J_g v) from the R-forward alone, no backward pass.
	 */
	double (*block_quad)(struct model_point *pt, struct model_view *view, int ggn, int g,
	    const float *v);

	/* --- per-example gradient Gram terms, per group --- */
	/*
	 * (O) The fast path: out (B, B), lower triangle and diagonal, =
	 * sum over group g's parameters of g_b g_c, g_b the gradient of row
	 * b's own loss, for a point prepared with scale 1 (view: the same
	 * point's restriction, or NULL).  scratch holds gram_scratch(m, B)
	 * doubles.  NULL: model_gram's generic route (per-example gradients
	 * in chunks of parameters, accumulated with dsyrk).  The term enters
	 * out as how says (gram.h).
	 */
	void (*gram_group)(const struct model_point *pt, const struct model_view *view, int g,
	    double *out, enum gram_acc how, double *scratch);
	size_t (*gram_scratch)(const struct model *m, int B);   /* (O, with gram_group) */
	/*
	 * (O) out (P, double) += J^T u = sum over the point's rows of u_b g_b
	 * (scale 1).  NULL: the generic route, one row's gradient at a time.
	 */
	void (*gram_combine)(const struct model_point *pt, double *out, const double *u);

	/* --- diagnostics --- */
	struct model_diag *(*diag_new)(const struct model *m);   /* (O) NULL: the family has none */
	void (*diag_free)(struct model_diag *d);                  /* (O, with diag_new) */
	/* (O, with diag_new) Add what was accumulated to a record (the MLP: dead_units). */
	void (*diag_json)(const struct model_diag *d, json_t *rec);

	/* --- probes for the mechanistic measures (progress-measures) --- */
	/* (O) NULL: the family cannot be probed. */
	const struct model_probes *probes;

	/* --- the training log (version 3) --- */
	/*
	 * (O) The family's own fields of a training log's metrics record, for
	 * the parameters theta (P).  d holds the diagnostics (diag_new's) of
	 * that point's evaluation of the training set, or is NULL when the
	 * family has none.  NULL: no fields of its own (then the loop runs no
	 * diagnostics for the log).
	 */
	void (*log_json)(const struct model *m, const float *theta, const struct model_diag *d,
	    json_t *rec);

	/* --- per-example gradient norms (version 5) --- */
	/*
	 * (O) loss_grad with grad (not NULL), and in the same pass sq (B) =
	 * each row's squared gradient norm |d loss_b / d theta|^2, loss_b the
	 * row's own unscaled loss: the per-example Gram matrix's diagonal.
	 * For families whose per-example norms fall out of the backward pass
	 * at the cost of dot products (the MLP: a layer's term is
	 * |delta|^2 (|a|^2 + 1)).  NULL where they would need a pass per row
	 * or per-example gradients formed (the transformer: its embedding
	 * and attention weights are shared across positions, so a row's
	 * gradient is a sum of outer products whose norm needs their cross
	 * terms); the training log then omits the fields.
	 */
	void (*example_norms)(struct model_work *w, struct model_eval *ev, float *grad, double *sq,
	    const float *theta, const int32_t *x, const int32_t *y, int B, float scale,
	    struct model_diag *diag);

	/* --- what runs the products (version 6) --- */
	/*
	 * (O) What runs the family's matrix products: "avx512" (gemm.h's own
	 * kernel) or "openblas".  A family whose products go through gemm()
	 * returns gemm_kernel() (the MLP); NULL: every product is a cblas
	 * call, "openblas", and results are reproducible within OpenBLAS's
	 * kernel family (blas_core()).
	 */
	const char *(*kernel)(const struct model *m);
};

/*
 * What a model computes on given rows beyond its loss, for the progress
 * measures (tools/lib/progress.h): logits, the neurons the algorithm is
 * read from, the input embeddings and the gradients of a logit with
 * respect to them.  Each method runs its own forward pass, so none
 * depends on another's having run.
 */
struct model_probes {
	/*
	 * (R) How many neurons forward reports and what they are, for
	 * records ("layers.1 after its ReLU"); 0 when the model has none.
	 */
	int (*neurons)(const struct model *m, const char **what);
	/* (R) logits (B, p) of B <= maxb rows, and their neurons' activations (B, neurons) unless acts is NULL. */
	void (*forward)(struct model_work *w, const float *theta, const int32_t *x, int B,
	    float *logits, float *acts);
	/*
	 * (R) The embedding operand i (0: x, 1: y) is looked up in: E (d, ld),
	 * residue r's vector in column col0 + r (a view into theta).  0, or
	 * -1 when the model embeds no token (raw integer inputs).
	 */
	int (*embedding)(const struct model *m, const float *theta, int i, const float **E,
	    int *d, int *ld, int *col0);
	/*
	 * (R, with embedding) For each of the nc classes cls[k] and each of B
	 * rows: the gradient of logit cls[k] of the row with respect to the
	 * embedding vectors its x and its y looked up (before positions are
	 * added), into gx and gy (nc, B, d).  One forward pass and nc
	 * backward passes.
	 */
	void (*embed_grad)(struct model_work *w, const float *theta, const int32_t *x, int B,
	    const int *cls, int nc, float *gx, float *gy);
	/*
	 * (O) Nonzero when x's and y's gradients are one vector by
	 * construction (the one-hot MLP: both columns enter the first
	 * pre-activation as a sum): embed_grad then writes gx alone (gy may
	 * be NULL), and the cosine of a non-zero gradient is 1.
	 */
	int tied_grads;
};

/* --- The family table --- */
/* The family called name, or NULL. */
const struct model_family *model_family_find(const char *name);
/* The families' names, NULL-terminated, for messages and --help. */
const char *const *model_family_names(void);

/* --- Calls through the interface (model.c); each checks what is optional --- */
struct model *model_new_json(const char *family, const json_t *hp, int p, char *err, size_t errlen);
void model_free(struct model *m);
/* The family name and hyper-parameters as record fields: family, model, and describe's. */
void model_describe(const struct model *m, json_t *rec);
/* summary's words, or the hyper-parameters' JSON. */
void model_summary(const struct model *m, char *buf, size_t n);
/* What runs m's matrix products (kernel's words): "avx512" or "openblas". */
const char *model_kernel(const struct model *m);
/* The tensor called name, or NULL. */
const struct model_tensor *model_tensor_find(const struct model *m, const char *name);
/* theta[lo, hi) of group g. */
void model_group_range(const struct model *m, int g, size_t *lo, size_t *hi);
double model_chance_loss(const struct model *m);

struct model_work *model_work_new(const struct model *m, int maxb);
void model_work_free(struct model_work *w);
void model_loss_grad(struct model_work *w, struct model_eval *ev, float *grad,
    const float *theta, const int32_t *x, const int32_t *y, int B, float scale,
    struct model_diag *diag);
/*
 * Loss and accuracy over n rows, in batches of the work's size: ev holds
 * the sums; (1/n) * the gradient of the mean loss is added into grad
 * unless it is NULL; diag as loss_grad's.
 */
void model_eval_set(struct model_work *w, struct model_eval *ev, float *grad,
    const float *theta, const int32_t *x, const int32_t *y, long n, struct model_diag *diag);

/*
 * model_eval_set with grad, and sq (n) = each row's squared per-example
 * gradient norm (example_norms) from the same pass.  -1, having done
 * nothing, when the family has no example_norms; else 0.
 */
int model_eval_set_norms(struct model_work *w, struct model_eval *ev, float *grad, double *sq,
    const float *theta, const int32_t *x, const int32_t *y, long n, struct model_diag *diag);

struct model_hvp *model_hvp_new(const struct model *m, int maxb);
void model_hvp_free(struct model_hvp *h);
struct model_point *model_hvp_prepare(struct model_hvp *h, const float *theta,
    const int32_t *x, const int32_t *y, int B, float scale, struct model_diag *diag);
void model_point_apply(struct model_point *pt, float *hv, const float *v);
void model_point_grad(const struct model_point *pt, float *grad);
/* The point's restriction, or NULL (nothing to drop, or no such method). */
struct model_view *model_point_restrict(struct model_point *pt);
/* hv (view->nparams) += H v, in the view's layout. */
void model_view_apply(struct model_view *view, float *hv, const float *v);
/*
 * hv (P) += H v in the full layout through the view: gathered, applied,
 * scattered (the dropped entries' products are zero).  tmp: 2 *
 * view->nparams floats.
 */
void model_view_apply_full(struct model_view *view, float *hv, const float *v, float *tmp);
/*
 * hv (P) += H v of the loss over n rows scaled by scale, in batches of
 * h's size, each prepared, restricted when it can be, and applied.
 */
void model_hvp_set(struct model_hvp *h, float *hv, const float *theta, const float *v,
    const int32_t *x, const int32_t *y, long n, double scale, float *tmp);

/*
 * Which curvature matrix a product is with: the Hessian, or the
 * Gauss-Newton matrix J^T H_out J (families with ggn_apply).
 */
enum model_matrix { MODEL_HESSIAN, MODEL_GGN };
extern const char *const model_matrix_names[];   /* "hessian", "ggn", NULL */
/* Whether m's family computes products with mat. */
int model_has_matrix(const struct model *m, enum model_matrix mat);
/* As model_point_apply, model_view_apply, model_view_apply_full and model_hvp_set, with mat. */
void model_point_product(struct model_point *pt, enum model_matrix mat, float *hv, const float *v);
void model_view_product(struct model_view *view, enum model_matrix mat, float *hv, const float *v);
void model_view_product_full(struct model_view *view, enum model_matrix mat, float *hv,
    const float *v, float *tmp);
void model_product_set(struct model_hvp *h, enum model_matrix mat, float *hv, const float *theta,
    const float *v, const int32_t *x, const int32_t *y, long n, double scale, float *tmp);
/*
 * hv (P) += group g's diagonal block of mat times v (P, zero outside group
 * g) at the point, through its view when view is not NULL (tmp: 2 *
 * view->nparams floats): by the family's block_apply when it has one,
 * else the whole product (whose entries outside group g the caller
 * ignores).
 */
/*
 * v . (group g's diagonal block of mat) v, v as model_block_product's,
 * by the family's block_quad (tmp: view->nparams floats with a view);
 * NAN when it has none.
 */
double model_block_quad(struct model_point *pt, struct model_view *view, enum model_matrix mat,
    int g, const float *v, float *tmp);
void model_block_product(struct model_point *pt, struct model_view *view, enum model_matrix mat,
    int g, float *hv, const float *v, float *tmp);

/*
 * Per-example gradient Gram terms of n rows at theta, per group: a
 * session that takes the family's fast path when it has one (a point of
 * all n rows, restricted when it can be) and the generic route when not.
 * The generic route holds per-example gradients for at most budget bytes
 * of parameters at a time (columns of J), recomputing the rows' gradients
 * for each chunk, and accumulates each chunk with dsyrk.
 */
struct model_gram;
struct model_gram *model_gram_new(const struct model *m, const float *theta, const int32_t *x,
    const int32_t *y, long n, size_t budget, struct model_diag *diag);
/* The n rows' loss sums (from the session's own forward pass). */
struct model_eval model_gram_eval(const struct model_gram *G);
/*
 * out (n, n), lower triangle and diagonal: group g's Gram term, entering
 * out as how says (gram.h; GRAM_RAW: the term itself), so terms sum over
 * n without an n x n term held apart.
 */
void model_gram_group(struct model_gram *G, int g, double *out, enum gram_acc how);
/* out (P, double) += J^T u. */
void model_gram_combine(struct model_gram *G, double *out, const double *u);
void model_gram_free(struct model_gram *G);
/* The generic route alone, whatever the family has (for tests and as the fallback). */
void model_gram_generic(const struct model *m, const float *theta, const int32_t *x,
    const int32_t *y, long n, int g, size_t budget, double *out);

/* The family's probes, or NULL. */
const struct model_probes *model_probes(const struct model *m);

struct model_diag *model_diag_new(const struct model *m);   /* NULL if the family has none */
void model_diag_free(struct model_diag *d);
void model_diag_json(const struct model_diag *d, json_t *rec);

/*
 * --- Helpers for a family's own code (model.c) ---
 * What every family's constructor and methods do alike, so that a
 * family's file holds only what is its own.
 */
/* m, checked to be of family f: a model of another family is a bug (fatal), named by who. */
const struct model *model_cast(const struct model *m, const struct model_family *f,
    const char *who);
/* Tensor t: its name, shape (ndim dims), place in theta and group; numel from the shape. */
void model_tensor_set(struct model_tensor *t, const char *name, int ndim, const int64_t *shape,
    size_t offset, int group);
/*
 * The base of a family's new model: family f, p, the tensors, and the
 * groups named in gnames (gptr, ngroups entries, is pointed at them).
 * nparams is where the last tensor ends; tensors that do not tile theta
 * in order are a bug in the family (fatal).
 */
void model_base_init(struct model *m, const struct model_family *f, int p,
    const struct model_tensor *tensors, int ntensors, char (*gnames)[MODEL_NAME_MAX],
    const char **gptr, int ngroups);
/*
 * An integer hyper-parameter a family keeps in its checkpoints' metadata:
 * the key, its bounds, and where it lies in the family's config struct
 * (an int, offsetof).  One table per family serves from_meta and to_meta.
 */
struct model_meta_int {
	const char *key;
	long long lo, hi;
	size_t off;
};
/* Each of the n keys from f's metadata into the config at cfg, within bounds; 0, or -1 with err. */
int model_meta_read_ints(const struct st_frame *f, const struct model_meta_int *k, int n,
    void *cfg, const char *name, char *err, size_t errlen);
/* Each of the n keys into the metadata, from the config at cfg, in the table's order. */
void model_meta_write_ints(struct st_writer *w, const struct model_meta_int *k, int n,
    const void *cfg);
/*
 * check_frame's test: -1 with err when f holds tensor tname, which only a
 * deeper model than the metadata say has ("%s: has 'tname', so more
 * <what> %d", e.g. what "layers than depth", n the depth), else 0.
 */
int model_frame_deeper(const struct st_frame *f, const char *tname, const char *what, int n,
    const char *name, char *err, size_t errlen);
/*
 * summary's words for the integers of a meta table: "p=11 depth=2
 * width=128", from the config at cfg, into buf (n bytes).
 */
void model_meta_words(char *buf, size_t n, const struct model_meta_int *k, int cnt,
    const void *cfg);
/* A family's free for a model that is one allocation. */
void model_free_one(struct model *m);
/*
 * describe's shape fields: depth, and width when it is positive, at the
 * top level of records, where summarize and the plots read them for
 * every family (a transformer's depth is its layers; it has no width).
 */
void model_record_shape(json_t *rec, int depth, int width);
/* A prepared point's base: its session, rows and scale, and no loss yet. */
void model_point_init(struct model_point *pt, struct model_hvp *h, int rows, float scale);

#endif
