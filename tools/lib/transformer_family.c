/*
 * The transformer as a model family (model.h): the glue between the
 * interface and transformer.c's float32 kernels.  Hyper-parameters travel
 * as JSON (numbers, strings, a boolean eq_token) and as checkpoint
 * metadata (strings); defaults are Nanda's: one layer, d_model 128, 4
 * heads of d_model / heads, d_mlp = 4 d_model, causal attention,
 * attention coefficient 1, ReLU, with '='.  The per-example Gram is left
 * to the interface's generic route: the weights are shared across
 * positions, so (Delta Delta^T) (.) (A A^T + 1) does not hold.
 */
#include "transformer.h"

#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "gemm.h"
#include "jsonl.h"
#include "model.h"
#include "util.h"

#define TFM_MAX_GROUPS (2 + 2 * TFM_MAX_LAYERS)

struct tfm_model {
	struct model base;
	struct tfm t;
	struct model_tensor tensors[TFM_MAX_TENSORS];
	char gnames[TFM_MAX_GROUPS][MODEL_NAME_MAX];
	const char *gptr[TFM_MAX_GROUPS];
};

struct tfm_mwork {
	struct model_work base;
	struct tfm_work *w;
	struct tfm_work *naive;   /* the probes' per-row gradients (transformer_probes.c), made on first use */
};

struct tfm_mpoint {
	struct model_point base;
	struct tfm_prepared *s;
};

struct tfm_diag {
	struct model_diag base;
	double sum[TFM_MAX_LAYERS];   /* attention entropies, summed over rows and heads */
	long rows;
};

struct tfm_mhvp {
	struct model_hvp base;
	struct tfm_work *w;
	struct tfm_mpoint pt;
	/*
	 * The GGN's backward pass runs on a work of its own (a plain one),
	 * forwarded at the point on its first GGN product, so the point's
	 * deltas stay for its Hessian products and gradient.
	 */
	struct tfm_work *gw;
	const float *theta;
	const int32_t *x;
	int gw_ready;
};

/* A transformer work's float32 kernels' work, and (made on first call) its naive one. */
struct tfm_work *
tfm_work_of(struct model_work *mw, int naive)
{
	struct tfm_mwork *w = (struct tfm_mwork *)mw;

	tfm_of(mw->m);   /* dies unless mw is a transformer's */
	if (!naive)
		return w->w;
	if (!w->naive)
		w->naive = tfm_work_new(tfm_of(mw->m), mw->maxb, TFM_WORK_NAIVE);
	return w->naive;
}

const struct tfm *
tfm_of(const struct model *m)
{
	return &((const struct tfm_model *)model_cast(m, &transformer_family, "tfm_of"))->t;
}

/* Group of tensor k: embed 0, blocks.l.attn 1 + 2l, blocks.l.mlp 2 + 2l, unembed last. */
static int
group_of(const struct tfm *t, int k)
{
	if (k < 2)
		return 0;
	if (k == t->ntensors - 1)
		return 1 + 2 * t->c.layers;
	k -= 2;
	return 1 + 2 * (k / TFM_NPART) + (k % TFM_NPART >= TFM_WIN);
}

struct model *
tfm_model_new(const struct tfm_config *c)
{
	struct tfm_model *tm = xcalloc(1, sizeof *tm);
	int ng = 2 + 2 * c->layers;

	if (tfm_layout(&tm->t, c) < 0) {
		free(tm);
		return NULL;
	}
	for (int k = 0; k < tm->t.ntensors; k++) {
		char name[MODEL_NAME_MAX];
		int64_t shape[3];
		int ndim;
		size_t off = tfm_tensor_info(&tm->t, k, name, sizeof name, &ndim, shape);
		model_tensor_set(&tm->tensors[k], name, ndim, shape, off, group_of(&tm->t, k));
	}
	snprintf(tm->gnames[0], sizeof tm->gnames[0], "embed");
	for (int l = 0; l < c->layers; l++) {
		snprintf(tm->gnames[1 + 2 * l], sizeof tm->gnames[0], "blocks.%d.attn", l);
		snprintf(tm->gnames[2 + 2 * l], sizeof tm->gnames[0], "blocks.%d.mlp", l);
	}
	snprintf(tm->gnames[ng - 1], sizeof tm->gnames[0], "unembed");
	model_base_init(&tm->base, &transformer_family, c->p, tm->tensors, tm->t.ntensors,
	    tm->gnames, tm->gptr, ng);
	return &tm->base;
}

static json_t *
hparams_json(const struct model *m)
{
	const struct tfm_config *c = &tfm_of(m)->c;

	return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:s, s:b}", "p", c->p,
	    "layers", c->layers, "d_model", c->d_model, "heads", c->heads, "d_head", c->d_head,
	    "d_mlp", c->d_mlp, "attention", tfm_attention_names[c->attention], "attn_coeff", c->alpha,
	    "act", tfm_act_names[c->act], "eq_token", c->eq_token);
}

/* Nanda's defaults for p classes; d_head and d_mlp follow d_model unless given. */
static void
defaults(struct tfm_config *c, int p)
{
	*c = (struct tfm_config){.p = p, .layers = 1, .d_model = 128, .heads = 4, .d_head = 0,
	    .d_mlp = 0, .attention = TFM_CAUSAL, .alpha = 1, .act = TFM_RELU, .eq_token = 1};
}

static void
derived(struct tfm_config *c)
{
	if (c->d_head == 0)
		c->d_head = c->heads > 0 && c->d_model % c->heads == 0 ? c->d_model / c->heads : -1;
	if (c->d_mlp == 0)
		c->d_mlp = c->d_model <= TFM_MAX_DIM ? 4 * c->d_model : -1;
}

static int
json_int_field(const json_t *hp, const char *key, int *out)
{
	json_t *v = json_object_get(hp, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 4 * TFM_MAX_DIM)
		return -1;
	*out = (int)json_integer_value(v);
	return 0;
}

static int
json_choice_field(const json_t *hp, const char *key, const char *const *names, int *out)
{
	json_t *v = json_object_get(hp, key);

	if (!v)
		return 0;
	return (*out = name_index(names, json_string_value(v))) < 0 ? -1 : 0;
}

static struct model *
from_json(const json_t *hp, int p, char *err, size_t errlen)
{
	struct tfm_config c;
	int att, act;
	json_t *a = json_object_get(hp, "attn_coeff"), *eq = json_object_get(hp, "eq_token");
	struct model *m;

	defaults(&c, p);
	att = c.attention, act = c.act;
	if (json_int_field(hp, "layers", &c.layers) < 0 || json_int_field(hp, "d_model", &c.d_model) < 0 ||
	    json_int_field(hp, "heads", &c.heads) < 0 || json_int_field(hp, "d_head", &c.d_head) < 0 ||
	    json_int_field(hp, "d_mlp", &c.d_mlp) < 0 ||
	    json_choice_field(hp, "attention", tfm_attention_names, &att) < 0 ||
	    json_choice_field(hp, "act", tfm_act_names, &act) < 0 ||
	    (a && !json_is_number(a)) || (eq && !json_is_boolean(eq))) {
		snprintf(err, errlen, "transformer: hyper-parameters are positive integers layers, d_model, "
		    "heads, d_head, d_mlp, attention causal|full, a number attn_coeff, act relu|gelu, "
		    "a boolean eq_token");
		return NULL;
	}
	c.attention = (enum tfm_attention)att;
	c.act = (enum tfm_act)act;
	if (a)
		c.alpha = json_number_value(a);
	if (eq)
		c.eq_token = json_is_true(eq);
	derived(&c);
	if (!(m = tfm_model_new(&c)))
		snprintf(err, errlen, "transformer: layers 1..%d, d_model, heads, d_head 1..%d "
		    "(d_head given unless heads divides d_model), attn_coeff 0..1", TFM_MAX_LAYERS, TFM_MAX_DIM);
	return m;
}

/* A real metadata value in [0, 1]; 0, or -1 with err. */
static int
meta_unit(const struct st_frame *f, const char *key, double *out, const char *name, char *err,
    size_t errlen)
{
	const char *s = st_meta(f, key);
	char *end;

	if (!s) {
		snprintf(err, errlen, "%s: no '%s' in the metadata", name, key);
		return -1;
	}
	errno = 0;
	*out = strtod(s, &end);
	if (errno || end == s || *end || !(*out >= 0 && *out <= 1)) {
		snprintf(err, errlen, "%s: metadata '%s' is '%s', not a number in 0..1", name, key, s);
		return -1;
	}
	return 0;
}

/* The integers of the checkpoint metadata (eq_token 0 or 1); attention, act and attn_coeff are not. */
static const struct model_meta_int meta_ints[] = {
	{"p", 2, 4096, offsetof(struct tfm_config, p)},
	{"layers", 1, TFM_MAX_LAYERS, offsetof(struct tfm_config, layers)},
	{"d_model", 1, TFM_MAX_DIM, offsetof(struct tfm_config, d_model)},
	{"heads", 1, TFM_MAX_DIM, offsetof(struct tfm_config, heads)},
	{"d_head", 1, TFM_MAX_DIM, offsetof(struct tfm_config, d_head)},
	{"d_mlp", 1, 4 * TFM_MAX_DIM, offsetof(struct tfm_config, d_mlp)},
	{"eq_token", 0, 1, offsetof(struct tfm_config, eq_token)},
};
#define NMETA_INTS ((int)(sizeof meta_ints / sizeof meta_ints[0]))

static struct model *
from_meta(const struct st_frame *f, const char *name, char *err, size_t errlen)
{
	struct tfm_config c;
	struct model *m;
	int att, act;

	if (model_meta_read_ints(f, meta_ints, NMETA_INTS, &c, name, err, errlen) < 0 ||
	    ckpt_meta_choice(f, "attention", tfm_attention_names, &att, name, err, errlen) < 0 ||
	    ckpt_meta_choice(f, "act", tfm_act_names, &act, name, err, errlen) < 0 ||
	    meta_unit(f, "attn_coeff", &c.alpha, name, err, errlen) < 0)
		return NULL;
	c.attention = (enum tfm_attention)att;
	c.act = (enum tfm_act)act;
	if (!(m = tfm_model_new(&c)))
		snprintf(err, errlen, "%s: the metadata describe no transformer this suite builds", name);
	return m;
}

static void
to_meta(const struct model *m, struct st_writer *w)
{
	const struct tfm_config *c = &tfm_of(m)->c;
	char buf[32];

	model_meta_write_ints(w, meta_ints, NMETA_INTS, c);
	st_writer_meta(w, "attention", tfm_attention_names[c->attention]);
	snprintf(buf, sizeof buf, "%.17g", c->alpha);
	st_writer_meta(w, "attn_coeff", buf);
	st_writer_meta(w, "act", tfm_act_names[c->act]);
}

static void
describe(const struct model *m, json_t *rec)
{
	model_record_shape(rec, tfm_of(m)->c.layers, 0);
}

static void
summary(const struct model *m, char *buf, size_t n)
{
	const struct tfm_config *c = &tfm_of(m)->c;

	snprintf(buf, n, "p=%d layers=%d d_model=%d heads=%dx%d d_mlp=%d %s attn_coeff=%g %s%s", c->p,
	    c->layers, c->d_model, c->heads, c->d_head, c->d_mlp, tfm_attention_names[c->attention],
	    c->alpha, tfm_act_names[c->act], c->eq_token ? " '='" : "");
}

/* A block past the last (blocks.L.*) means a deeper model than the metadata say. */
static int
check_frame(const struct model *m, const struct st_frame *f, const char *name, char *err,
    size_t errlen)
{
	char tname[MODEL_NAME_MAX];

	snprintf(tname, sizeof tname, "blocks.%d.attn.W_K", tfm_of(m)->c.layers);
	return model_frame_deeper(f, tname, "blocks than layers", tfm_of(m)->c.layers, name, err,
	    errlen);
}

static void
init(const struct model *m, float *theta, struct rng *r)
{
	tfm_init_params(tfm_of(m), theta, r);
}

static struct model_work *
work_new(const struct model *m, int maxb)
{
	struct tfm_mwork *w = xcalloc(1, sizeof *w);

	w->base.m = m;
	w->base.maxb = maxb;
	w->w = tfm_work_new(tfm_of(m), maxb, 0);
	return &w->base;
}

static void
work_free(struct model_work *mw)
{
	struct tfm_mwork *w = (struct tfm_mwork *)mw;

	tfm_work_free(w->w);
	tfm_work_free(w->naive);
	free(w);
}

static void
add_eval(struct model_eval *ev, const struct tfm_eval *e)
{
	ev->loss_sum += e->loss_sum;
	ev->correct += e->correct;
	ev->collapsed += e->collapsed;
}

static void
loss_grad(struct model_work *mw, struct model_eval *ev, float *grad, const float *theta,
    const int32_t *x, const int32_t *y, int B, float scale, struct model_diag *diag)
{
	struct tfm_mwork *w = (struct tfm_mwork *)mw;
	const struct tfm *t = tfm_of(mw->m);
	struct tfm_eval e = {0};

	tfm_forward(t, w->w, theta, x, B);
	if (diag) {
		tfm_attn_entropy(t, w->w, B, ((struct tfm_diag *)diag)->sum);
		((struct tfm_diag *)diag)->rows += B;
	}
	tfm_loss(t, w->w, &e, y, B, scale);
	add_eval(ev, &e);
	if (grad)
		tfm_backward(t, w->w, grad, theta, B);
}

static struct model_hvp *
hvp_new(const struct model *m, int maxb)
{
	struct tfm_mhvp *h = xcalloc(1, sizeof *h);

	h->base.m = m;
	h->base.maxb = maxb;
	h->w = tfm_work_new(tfm_of(m), maxb, TFM_WORK_HVP);
	h->gw = tfm_work_new(tfm_of(m), maxb, 0);
	return &h->base;
}

static void
hvp_free(struct model_hvp *mh)
{
	struct tfm_mhvp *h = (struct tfm_mhvp *)mh;

	tfm_work_free(h->w);
	tfm_work_free(h->gw);
	free(h);
}

static struct model_point *
prepare(struct model_hvp *mh, const float *theta, const int32_t *x, const int32_t *y, int B,
    float scale, struct model_diag *diag)
{
	struct tfm_mhvp *h = (struct tfm_mhvp *)mh;
	struct tfm_eval e;

	h->pt.s = tfm_hvp_prepare(tfm_of(mh->m), h->w, theta, x, y, B, scale);
	h->theta = theta;
	h->x = x;
	h->gw_ready = 0;
	if (diag) {
		tfm_attn_entropy(tfm_of(mh->m), h->w, B, ((struct tfm_diag *)diag)->sum);
		((struct tfm_diag *)diag)->rows += B;
	}
	e = tfm_hvp_eval(h->pt.s);
	model_point_init(&h->pt.base, mh, B, scale);
	add_eval(&h->pt.base.eval, &e);
	return &h->pt.base;
}

static void
apply(struct model_point *pt, float *hv, const float *v)
{
	tfm_hvp_apply(((struct tfm_mpoint *)pt)->s, hv, v);
}

static void
ggn_apply(struct model_point *pt, float *gv, const float *v)
{
	struct tfm_mhvp *h = (struct tfm_mhvp *)pt->h;

	if (!h->gw_ready) {
		tfm_forward(tfm_of(pt->h->m), h->gw, h->theta, h->x, pt->rows);
		h->gw_ready = 1;
	}
	tfm_ggn_apply(((struct tfm_mpoint *)pt)->s, h->gw, gv, v);
}

static void
grad(const struct model_point *pt, float *g)
{
	tfm_hvp_grad(((const struct tfm_mpoint *)pt)->s, g);
}

static struct model_diag *
diag_new(const struct model *m)
{
	struct tfm_diag *d = xcalloc(1, sizeof *d);

	d->base.m = m;
	return &d->base;
}

static void
diag_free(struct model_diag *d)
{
	free(d);
}

/* attn_entropy: per block, the last position's mean attention entropy (nats) over the rows seen. */
static void
diag_json(const struct model_diag *md, json_t *rec)
{
	const struct tfm_diag *d = (const struct tfm_diag *)md;
	const struct tfm *t = tfm_of(md->m);
	json_t *a = json_array();

	for (int l = 0; l < t->c.layers; l++)
		json_array_append_new(a, d->rows ? json_real(d->sum[l] / ((double)d->rows * t->c.heads)) :
		    json_null());
	json_object_set_new(rec, "attn_entropy", a);
}

/*
 * The training log's fields of the transformer literature: every tensor's
 * sum of squared entries by name (Nanda et al.'s per-parameter weight
 * norms), and the attention entropies of the training set's pass.
 */
static void
log_json(const struct model *m, const float *theta, const struct model_diag *d, json_t *rec)
{
	json_t *o = json_object();

	for (int k = 0; k < m->ntensors; k++) {
		const float *t = theta + m->tensors[k].offset;
		double s = 0;
		for (size_t i = 0; i < m->tensors[k].numel; i++)
			s += (double)t[i] * (double)t[i];
		json_object_set_new(o, m->tensors[k].name, jnum(s));
	}
	json_object_set_new(rec, "weight_sq_norms", o);
	if (d)
		diag_json(d, rec);
}

/* The float products (training, the analyses' float kernels) go through
 * gemm(): its own kernel or OpenBLAS, as gemm_setup chose.  The double
 * route (the reference checks') is OpenBLAS's. */
static const char *
kernel(const struct model *m)
{
	(void)m;
	return gemm_kernel();
}

const struct model_family transformer_family = {
	.version = MODEL_FAMILY_VERSION,
	.name = "transformer",
	.from_json = from_json,
	.hparams_json = hparams_json,
	.from_meta = from_meta,
	.to_meta = to_meta,
	.describe = describe,
	.kernel = kernel,
	.summary = summary,
	.check_frame = check_frame,
	.free = model_free_one,
	.init = init,
	.work_new = work_new,
	.work_free = work_free,
	.loss_grad = loss_grad,
	.hvp_new = hvp_new,
	.hvp_free = hvp_free,
	.prepare = prepare,
	.apply = apply,
	.ggn_apply = ggn_apply,
	.grad = grad,
	.diag_new = diag_new,
	.diag_free = diag_free,
	.diag_json = diag_json,
	.probes = &tfm_probes,
	.log_json = log_json,
};
