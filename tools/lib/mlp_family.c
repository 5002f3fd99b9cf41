/*
 * The MLP as a model family (model.h): the glue between the interface and
 * mlp.c's kernels.  Tensors "layers.{i}.weight" (out, in) and
 * "layers.{i}.bias" (out); groups "layers.{i}", one per linear layer.
 * Hyper-parameters p, depth, width, encoding, loss; its diagnostics are
 * the hidden units dead on every row of a set ("dead_units": per hidden
 * layer, how many units never had a positive ReLU output).
 */
#include "mlp.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "gemm.h"
#include "util.h"

struct mlp_model {
	struct model base;
	struct mlp l;
	struct model_tensor tensors[2 * (MLP_MAX_DEPTH + 1)];
	char gnames[MLP_MAX_DEPTH + 1][MODEL_NAME_MAX];
	const char *gptr[MLP_MAX_DEPTH + 1];
};

struct mlp_diag {
	struct model_diag base;
	int *live;                   /* (D, W) */
};

const struct mlp *
mlp_of(const struct model *m)
{
	return &((const struct mlp_model *)model_cast(m, &mlp_family, "mlp_of"))->l;
}

struct model *
mlp_model_new(const struct mlp_config *c)
{
	struct mlp_model *mm = xcalloc(1, sizeof *mm);

	if (mlp_layout(&mm->l, c) < 0) {
		free(mm);
		return NULL;
	}
	for (int k = 0; k < 2 * mm->l.nlayers; k++) {
		char name[MODEL_NAME_MAX];
		int64_t shape[2];
		int ndim;
		size_t off = mlp_tensor_info(&mm->l, k, &ndim, shape);
		mlp_tensor_name(k, name, sizeof name);
		model_tensor_set(&mm->tensors[k], name, ndim, shape, off, k / 2);
	}
	for (int i = 0; i < mm->l.nlayers; i++)
		snprintf(mm->gnames[i], sizeof mm->gnames[i], "layers.%d", i);
	model_base_init(&mm->base, &mlp_family, c->p, mm->tensors, 2 * mm->l.nlayers, mm->gnames,
	    mm->gptr, mm->l.nlayers);
	return &mm->base;
}

static json_t *
hparams_json(const struct model *m)
{
	const struct mlp *l = mlp_of(m);

	return json_pack("{s:i, s:i, s:i, s:s, s:s}", "p", l->c.p, "depth", l->c.depth,
	    "width", l->c.width, "encoding", mlp_encoding_names[l->c.encoding],
	    "loss", mlp_loss_names[l->c.loss]);
}

static struct model *
from_json(const json_t *hp, int p, char *err, size_t errlen)
{
	struct mlp_config c = {p, 0, 0, MLP_ONEHOT, MLP_CE};
	json_t *d = json_object_get(hp, "depth"), *w = json_object_get(hp, "width");
	int enc = name_index(mlp_encoding_names, json_string_value(json_object_get(hp, "encoding")));
	int loss = name_index(mlp_loss_names, json_string_value(json_object_get(hp, "loss")));
	struct model *m;

	if (!json_is_integer(d) || !json_is_integer(w) || enc < 0 || loss < 0) {
		snprintf(err, errlen, "mlp: hyper-parameters need integer depth and width, "
		    "encoding onehot|int and loss ce|mse");
		return NULL;
	}
	c.depth = json_integer_value(d) < 0 || json_integer_value(d) > MLP_MAX_DEPTH ? -1 :
	    (int)json_integer_value(d);
	c.width = json_integer_value(w) < 1 || json_integer_value(w) > MLP_MAX_WIDTH ? -1 :
	    (int)json_integer_value(w);
	c.encoding = (enum mlp_encoding)enc;
	c.loss = (enum mlp_loss)loss;
	if (!(m = mlp_model_new(&c)))
		snprintf(err, errlen, "mlp: depth 0..%d and width 1..%d", MLP_MAX_DEPTH, MLP_MAX_WIDTH);
	return m;
}

/* The integers of the checkpoint metadata; encoding and loss are names. */
static const struct model_meta_int meta_ints[] = {
	{"p", 2, 4096, offsetof(struct mlp_config, p)},
	{"depth", 0, MLP_MAX_DEPTH, offsetof(struct mlp_config, depth)},
	{"width", 1, MLP_MAX_WIDTH, offsetof(struct mlp_config, width)},
};
#define NMETA_INTS ((int)(sizeof meta_ints / sizeof meta_ints[0]))

static struct model *
from_meta(const struct st_frame *f, const char *name, char *err, size_t errlen)
{
	struct mlp_config c;
	struct model *m;
	int enc, loss;

	if (model_meta_read_ints(f, meta_ints, NMETA_INTS, &c, name, err, errlen) < 0 ||
	    ckpt_meta_choice(f, "encoding", mlp_encoding_names, &enc, name, err, errlen) < 0 ||
	    ckpt_meta_choice(f, "loss", mlp_loss_names, &loss, name, err, errlen) < 0)
		return NULL;
	c.encoding = (enum mlp_encoding)enc;
	c.loss = (enum mlp_loss)loss;
	if (!(m = mlp_model_new(&c)))
		snprintf(err, errlen, "%s: the metadata describe no model this suite builds", name);
	return m;
}

static void
to_meta(const struct model *m, struct st_writer *w)
{
	const struct mlp *l = mlp_of(m);

	model_meta_write_ints(w, meta_ints, NMETA_INTS, &l->c);
	st_writer_meta(w, "encoding", mlp_encoding_names[l->c.encoding]);
	st_writer_meta(w, "loss", mlp_loss_names[l->c.loss]);
}

static void
describe(const struct model *m, json_t *rec)
{
	model_record_shape(rec, mlp_of(m)->c.depth, mlp_of(m)->c.width);
}

static void
summary(const struct model *m, char *buf, size_t n)
{
	const struct mlp *l = mlp_of(m);
	size_t len;

	model_meta_words(buf, n, meta_ints, NMETA_INTS, &l->c);
	len = strlen(buf);
	snprintf(buf + len, n - len, " %s", mlp_encoding_names[l->c.encoding]);
}

/* A tensor of another depth (layers.{D+1}.weight) means a different model. */
static int
check_frame(const struct model *m, const struct st_frame *f, const char *name, char *err,
    size_t errlen)
{
	const struct mlp *l = mlp_of(m);
	char tname[MODEL_NAME_MAX];

	mlp_tensor_name(2 * l->nlayers, tname, sizeof tname);
	return model_frame_deeper(f, tname, "layers than depth", l->c.depth, name, err, errlen);
}

static void
init(const struct model *m, float *theta, struct rng *r)
{
	mlp_init_params(mlp_of(m), theta, r);
}

/* Uniform logits for ce (ln p); zero outputs for mse (mean of one 1 over p outputs). */
static double
chance_loss(const struct model *m)
{
	const struct mlp *l = mlp_of(m);

	return l->c.loss == MLP_CE ? log((double)l->c.p) : 1.0 / l->c.p;
}

/* The products go through gemm(): its own kernel or OpenBLAS, as gemm_setup chose. */
static const char *
kernel(const struct model *m)
{
	(void)m;
	return gemm_kernel();
}

static struct model_work *
work_new(const struct model *m, int maxb)
{
	struct mlp_work *w = mlp_work_new(mlp_of(m), maxb);

	w->base.m = m;
	return &w->base;
}

static void
work_free(struct model_work *w)
{
	mlp_work_free((struct mlp_work *)w);
}

static void
loss_grad(struct model_work *mw, struct model_eval *ev, float *grad, const float *theta,
    const int32_t *x, const int32_t *y, int B, float scale, struct model_diag *diag)
{
	struct mlp_work *w = (struct mlp_work *)mw;

	mlp_loss_grad(w->m, w, ev, grad, NULL, theta, x, y, B, scale,
	    diag ? ((struct mlp_diag *)diag)->live : NULL);
}

/* loss_grad with the rows' squared per-example gradient norms (mlp_norms.c). */
static void
example_norms(struct model_work *mw, struct model_eval *ev, float *grad, double *sq,
    const float *theta, const int32_t *x, const int32_t *y, int B, float scale,
    struct model_diag *diag)
{
	struct mlp_work *w = (struct mlp_work *)mw;

	mlp_loss_grad(w->m, w, ev, grad, sq, theta, x, y, B, scale,
	    diag ? ((struct mlp_diag *)diag)->live : NULL);
}

static struct model_hvp *
hvp_new(const struct model *m, int maxb)
{
	struct mlp_hvp *h = mlp_hvp_new(mlp_of(m), maxb);

	h->base.m = m;
	return &h->base;
}

static void
hvp_free(struct model_hvp *h)
{
	mlp_hvp_free((struct mlp_hvp *)h);
}

static struct model_point *
prepare(struct model_hvp *h, const float *theta, const int32_t *x, const int32_t *y, int B,
    float scale, struct model_diag *diag)
{
	struct mlp_point *pt = mlp_hvp_prepare((struct mlp_hvp *)h, theta, x, y, B, scale);

	if (diag)
		mlp_point_mark_live(pt, ((struct mlp_diag *)diag)->live);
	return &pt->base;
}

static void
apply(struct model_point *pt, float *hv, const float *v)
{
	mlp_point_apply((struct mlp_point *)pt, hv, v);
}

static void
ggn_apply(struct model_point *pt, float *gv, const float *v)
{
	mlp_point_ggn((struct mlp_point *)pt, gv, v);
}

static void
view_ggn_apply(struct model_view *view, float *gv, const float *v)
{
	mlp_view_ggn((struct mlp_view *)view, gv, v);
}

static void
block_apply(struct model_point *pt, struct model_view *view, int ggn, int g, float *hv,
    const float *v)
{
	if (view)
		mlp_view_block((struct mlp_view *)view, ggn, g, hv, v);
	else
		mlp_point_block((struct mlp_point *)pt, ggn, g, hv, v);
}

static double
block_quad(struct model_point *pt, struct model_view *view, int ggn, int g, const float *v)
{
	(void)ggn;   /* the same block */
	return view ? mlp_view_block_quad((struct mlp_view *)view, g, v) :
	    mlp_point_block_quad((struct mlp_point *)pt, g, v);
}

static void
grad(const struct model_point *pt, float *g)
{
	mlp_point_grad((const struct mlp_point *)pt, g);
}

static struct model_view *
restrict_view(struct model_point *pt)
{
	struct mlp_view *v = mlp_point_restrict((struct mlp_point *)pt);

	return v ? &v->base : NULL;
}

static void
view_apply(struct model_view *view, float *hv, const float *v)
{
	mlp_view_apply((struct mlp_view *)view, hv, v);
}

static void
gram_group(const struct model_point *pt, const struct model_view *view, int g, double *out,
    enum gram_acc how, double *scratch)
{
	mlp_gram_layer((const struct mlp_point *)pt, (const struct mlp_view *)view, g, out, how, scratch);
}

static size_t
gram_scratch(const struct model *m, int B)
{
	return mlp_gram_scratch(mlp_of(m), B);
}

static void
gram_combine(const struct model_point *pt, double *out, const double *u)
{
	mlp_gram_combine((const struct mlp_point *)pt, out, u);
}

static struct model_diag *
diag_new(const struct model *m)
{
	const struct mlp *l = mlp_of(m);
	struct mlp_diag *d = xcalloc(1, sizeof *d);

	d->base.m = m;
	d->live = xcalloc(xmul((size_t)l->c.depth + 1, (size_t)l->c.width), sizeof *d->live);
	return &d->base;
}

static void
diag_free(struct model_diag *d)
{
	free(((struct mlp_diag *)d)->live);
	free(d);
}

/* dead_units: per hidden layer, how many units no row made positive. */
static void
diag_json(const struct model_diag *d, json_t *rec)
{
	const struct mlp *l = mlp_of(d->m);
	const int *live = ((const struct mlp_diag *)d)->live;
	json_t *dead = json_array();

	for (int i = 0; i < l->c.depth; i++) {
		int count = 0;
		for (int j = 0; j < l->c.width; j++)
			count += !live[(size_t)i * (size_t)l->c.width + j];
		json_array_append_new(dead, json_integer(count));
	}
	json_object_set_new(rec, "dead_units", dead);
}

const struct model_family mlp_family = {
	.version = MODEL_FAMILY_VERSION,
	.name = "mlp",
	.from_json = from_json,
	.hparams_json = hparams_json,
	.from_meta = from_meta,
	.to_meta = to_meta,
	.describe = describe,
	.summary = summary,
	.check_frame = check_frame,
	.free = model_free_one,
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
	.restrict_view = restrict_view,
	.view_apply = view_apply,
	.ggn_apply = ggn_apply,
	.view_ggn_apply = view_ggn_apply,
	.block_apply = block_apply,
	.block_quad = block_quad,
	.gram_group = gram_group,
	.gram_scratch = gram_scratch,
	.gram_combine = gram_combine,
	.diag_new = diag_new,
	.diag_free = diag_free,
	.diag_json = diag_json,
	.probes = &mlp_probes,
	.example_norms = example_norms,
	.kernel = kernel,
};
