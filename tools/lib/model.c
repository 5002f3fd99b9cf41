/*
 * model: the family table, the calls through the interface, and the
 * generic routes a family gets for free (evaluation of a set in batches,
 * products over a set, per-example gradient Gram terms).
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#undef I   /* complex.h, through OpenBLAS's cblas.h */

#include "ckpt.h"
#include "mlp.h"
#include "mlp_embed.h"
#include "transformer.h"
#include "util.h"

/* The families, found by the name a checkpoint stores.  A new family adds itself here. */
static const struct model_family *const families[] = {
	&mlp_family,
	&mlp_embed_family,
	&transformer_family,
	NULL,
};

const struct model_family *
model_family_find(const char *name)
{
	for (int i = 0; families[i]; i++)
		if (strcmp(families[i]->name, name) == 0)
			return families[i];
	return NULL;
}

const char *const *
model_family_names(void)
{
	static const char *names[sizeof families / sizeof families[0]];

	for (size_t i = 0; families[i]; i++)
		names[i] = families[i]->name;
	return names;
}

struct model *
model_new_json(const char *family, const json_t *hp, int p, char *err, size_t errlen)
{
	const struct model_family *f = model_family_find(family);

	if (!f) {
		snprintf(err, errlen, "no model family '%s'", family);
		return NULL;
	}
	return f->from_json(hp, p, err, errlen);
}

void
model_free(struct model *m)
{
	if (m)
		m->family->free(m);
}

void
model_describe(const struct model *m, json_t *rec)
{
	json_object_set_new(rec, "family", json_string(m->family->name));
	json_object_set_new(rec, "model", m->family->hparams_json(m));
	if (m->family->describe)
		m->family->describe(m, rec);
}

void
model_summary(const struct model *m, char *buf, size_t n)
{
	json_t *hp;
	char *s;

	if (m->family->summary) {
		m->family->summary(m, buf, n);
		return;
	}
	hp = m->family->hparams_json(m);
	s = json_dumps(hp, JSON_COMPACT);
	snprintf(buf, n, "%s %s", m->family->name, s ? s : "?");
	free(s);
	json_decref(hp);
}

const char *
model_kernel(const struct model *m)
{
	return m->family->kernel ? m->family->kernel(m) : "openblas";
}

const struct model_tensor *
model_tensor_find(const struct model *m, const char *name)
{
	for (int k = 0; k < m->ntensors; k++)
		if (strcmp(m->tensors[k].name, name) == 0)
			return &m->tensors[k];
	return NULL;
}

void
model_group_range(const struct model *m, int g, size_t *lo, size_t *hi)
{
	*lo = m->nparams;
	*hi = 0;
	for (int k = 0; k < m->ntensors; k++) {
		const struct model_tensor *t = &m->tensors[k];
		if (t->group != g)
			continue;
		*lo = t->offset < *lo ? t->offset : *lo;
		*hi = t->offset + t->numel > *hi ? t->offset + t->numel : *hi;
	}
	if (*lo > *hi)
		*lo = *hi;
}

double
model_chance_loss(const struct model *m)
{
	return m->family->chance_loss ? m->family->chance_loss(m) : log((double)m->p);
}

struct model_work *
model_work_new(const struct model *m, int maxb)
{
	return m->family->work_new(m, maxb);
}

void
model_work_free(struct model_work *w)
{
	if (w)
		w->m->family->work_free(w);
}

void
model_loss_grad(struct model_work *w, struct model_eval *ev, float *grad, const float *theta,
    const int32_t *x, const int32_t *y, int B, float scale, struct model_diag *diag)
{
	w->m->family->loss_grad(w, ev, grad, theta, x, y, B, scale, diag);
}

void
model_eval_set(struct model_work *w, struct model_eval *ev, float *grad, const float *theta,
    const int32_t *x, const int32_t *y, long n, struct model_diag *diag)
{
	float scale = n > 0 ? (float)(1.0 / (double)n) : 0.0f;

	memset(ev, 0, sizeof *ev);
	for (long off = 0; off < n; off += w->maxb) {
		int B = (int)(n - off < w->maxb ? n - off : w->maxb);
		model_loss_grad(w, ev, grad, theta, x + 2 * off, y + off, B, scale, diag);
	}
}

int
model_eval_set_norms(struct model_work *w, struct model_eval *ev, float *grad, double *sq,
    const float *theta, const int32_t *x, const int32_t *y, long n, struct model_diag *diag)
{
	const struct model_family *f = w->m->family;
	float scale = n > 0 ? (float)(1.0 / (double)n) : 0.0f;

	if (!f->example_norms)
		return -1;
	memset(ev, 0, sizeof *ev);
	for (long off = 0; off < n; off += w->maxb) {
		int B = (int)(n - off < w->maxb ? n - off : w->maxb);
		f->example_norms(w, ev, grad, sq + off, theta, x + 2 * off, y + off, B, scale, diag);
	}
	return 0;
}

struct model_hvp *
model_hvp_new(const struct model *m, int maxb)
{
	return m->family->hvp_new(m, maxb);
}

void
model_hvp_free(struct model_hvp *h)
{
	if (h)
		h->m->family->hvp_free(h);
}

struct model_point *
model_hvp_prepare(struct model_hvp *h, const float *theta, const int32_t *x, const int32_t *y,
    int B, float scale, struct model_diag *diag)
{
	if (B > h->maxb)
		die("model_hvp_prepare: %d rows, but the session holds %d", B, h->maxb);
	return h->m->family->prepare(h, theta, x, y, B, scale, diag);
}

void
model_point_apply(struct model_point *pt, float *hv, const float *v)
{
	pt->h->m->family->apply(pt, hv, v);
}

void
model_point_grad(const struct model_point *pt, float *grad)
{
	pt->h->m->family->grad(pt, grad);
}

struct model_view *
model_point_restrict(struct model_point *pt)
{
	const struct model_family *f = pt->h->m->family;

	return f->restrict_view ? f->restrict_view(pt) : NULL;
}

void
model_view_apply(struct model_view *view, float *hv, const float *v)
{
	view->pt->h->m->family->view_apply(view, hv, v);
}

void
model_view_apply_full(struct model_view *view, float *hv, const float *v, float *tmp)
{
	float *lv = tmp, *lhv = tmp + view->nparams;

	for (size_t k = 0; k < view->nparams; k++) {
		lv[k] = v[view->map[k]];
		lhv[k] = 0.0f;
	}
	model_view_apply(view, lhv, lv);
	/* the dropped entries get nothing: their products are zero */
	for (size_t k = 0; k < view->nparams; k++)
		hv[view->map[k]] += lhv[k];
}

void
model_hvp_set(struct model_hvp *h, float *hv, const float *theta, const float *v,
    const int32_t *x, const int32_t *y, long n, double scale, float *tmp)
{
	for (long off = 0; off < n; off += h->maxb) {
		int B = (int)(n - off < h->maxb ? n - off : h->maxb);
		struct model_point *pt = model_hvp_prepare(h, theta, x + 2 * off, y + off, B,
		    (float)scale, NULL);
		struct model_view *view = model_point_restrict(pt);
		if (view)
			model_view_apply_full(view, hv, v, tmp);
		else
			model_point_apply(pt, hv, v);
	}
}

const char *const model_matrix_names[] = {"hessian", "ggn", NULL};

int
model_has_matrix(const struct model *m, enum model_matrix mat)
{
	return mat == MODEL_HESSIAN || m->family->ggn_apply != NULL;
}

void
model_point_product(struct model_point *pt, enum model_matrix mat, float *hv, const float *v)
{
	if (mat == MODEL_GGN)
		pt->h->m->family->ggn_apply(pt, hv, v);
	else
		model_point_apply(pt, hv, v);
}

void
model_view_product(struct model_view *view, enum model_matrix mat, float *hv, const float *v)
{
	if (mat == MODEL_GGN)
		view->pt->h->m->family->view_ggn_apply(view, hv, v);
	else
		model_view_apply(view, hv, v);
}

void
model_view_product_full(struct model_view *view, enum model_matrix mat, float *hv,
    const float *v, float *tmp)
{
	float *lv = tmp, *lhv = tmp + view->nparams;

	for (size_t k = 0; k < view->nparams; k++) {
		lv[k] = v[view->map[k]];
		lhv[k] = 0.0f;
	}
	model_view_product(view, mat, lhv, lv);
	for (size_t k = 0; k < view->nparams; k++)
		hv[view->map[k]] += lhv[k];
}

/*
 * A family with a GGN but no view GGN cannot use its views for it: the
 * whole point then (a view drops only parameters whose products are zero).
 */
void
model_product_set(struct model_hvp *h, enum model_matrix mat, float *hv, const float *theta,
    const float *v, const int32_t *x, const int32_t *y, long n, double scale, float *tmp)
{
	int views = mat == MODEL_HESSIAN || h->m->family->view_ggn_apply;

	for (long off = 0; off < n; off += h->maxb) {
		int B = (int)(n - off < h->maxb ? n - off : h->maxb);
		struct model_point *pt = model_hvp_prepare(h, theta, x + 2 * off, y + off, B,
		    (float)scale, NULL);
		struct model_view *view = views ? model_point_restrict(pt) : NULL;
		if (view)
			model_view_product_full(view, mat, hv, v, tmp);
		else
			model_point_product(pt, mat, hv, v);
	}
}

double
model_block_quad(struct model_point *pt, struct model_view *view, enum model_matrix mat, int g,
    const float *v, float *tmp)
{
	const struct model_family *f = pt->h->m->family;

	if (!f->block_quad)
		return NAN;
	if (!view)
		return f->block_quad(pt, NULL, mat == MODEL_GGN, g, v);
	for (size_t k = 0; k < view->nparams; k++)
		tmp[k] = v[view->map[k]];
	return f->block_quad(pt, view, mat == MODEL_GGN, g, tmp);
}

void
model_block_product(struct model_point *pt, struct model_view *view, enum model_matrix mat,
    int g, float *hv, const float *v, float *tmp)
{
	const struct model_family *f = pt->h->m->family;

	if (!f->block_apply) {
		if (view)
			model_view_product_full(view, mat, hv, v, tmp);
		else
			model_point_product(pt, mat, hv, v);
		return;
	}
	if (view) {
		float *lv = tmp, *lhv = tmp + view->nparams;
		for (size_t k = 0; k < view->nparams; k++) {
			lv[k] = v[view->map[k]];
			lhv[k] = 0.0f;
		}
		f->block_apply(pt, view, mat == MODEL_GGN, g, lhv, lv);
		for (size_t k = 0; k < view->nparams; k++)
			hv[view->map[k]] += lhv[k];
	} else {
		f->block_apply(pt, NULL, mat == MODEL_GGN, g, hv, v);
	}
}

struct model_diag *
model_diag_new(const struct model *m)
{
	return m->family->diag_new ? m->family->diag_new(m) : NULL;
}

void
model_diag_free(struct model_diag *d)
{
	if (d)
		d->m->family->diag_free(d);
}

void
model_diag_json(const struct model_diag *d, json_t *rec)
{
	if (d)
		d->m->family->diag_json(d, rec);
}

/*
 * The generic Gram route.  Row b's own gradient comes from one loss_grad
 * of that row alone (scale 1); a chunk of parameter columns [lo, hi) of
 * all n rows' gradients, J[:, lo:hi], is held in double and added into
 * out with one dsyrk.  Chunks are as wide as budget allows (at least one
 * column), so memory stays at n * chunk doubles, and every row's gradient
 * is recomputed once per chunk: J whole is never held unless it fits.
 */
struct model_gram {
	const struct model *m;
	const float *theta;
	const int32_t *x, *y;
	long n;
	size_t budget;
	struct model_eval eval;
	struct model_hvp *h;         /* the fast path's point of all n rows */
	struct model_point *pt;
	struct model_view *view;
	double *scratch;
};

/* out (n, n) lower += J[:, lo:hi] J[:, lo:hi]^T; w: a one-row work; g: P floats. */
static void
gram_columns(const struct model *m, struct model_work *w, const float *theta, const int32_t *x,
    const int32_t *y, long n, size_t lo, size_t hi, double *J, float *g, double *out)
{
	size_t c = hi - lo;

	for (long b = 0; b < n; b++) {
		struct model_eval ev = {0};
		memset(g, 0, m->nparams * sizeof *g);
		model_loss_grad(w, &ev, g, theta, x + 2 * b, y + b, 1, 1.0f, NULL);
		for (size_t k = 0; k < c; k++)
			J[(size_t)b * c + k] = g[lo + k];
	}
	cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)n, (int)c, 1.0, J, (int)c,
	    1.0, out, (int)n);
}

void
model_gram_generic(const struct model *m, const float *theta, const int32_t *x,
    const int32_t *y, long n, int g, size_t budget, double *out)
{
	size_t lo, hi, chunk;
	struct model_work *w = model_work_new(m, 1);
	float *grad = xmalloc(xmul(m->nparams, sizeof(float)));
	double *J;

	model_group_range(m, g, &lo, &hi);
	chunk = budget / xmul((size_t)n, sizeof(double));
	chunk = chunk < 1 ? 1 : chunk > hi - lo ? hi - lo : chunk;
	J = xmalloc(xmul(xmul((size_t)n, chunk > 0 ? chunk : 1), sizeof(double)));
	for (long b = 0; b < n; b++)
		memset(out + (size_t)b * (size_t)n, 0, (size_t)(b + 1) * sizeof(double));
	for (size_t c = lo; c < hi; c += chunk)
		gram_columns(m, w, theta, x, y, n, c, c + chunk < hi ? c + chunk : hi, J, grad, out);
	free(J);
	free(grad);
	model_work_free(w);
}

struct model_gram *
model_gram_new(const struct model *m, const float *theta, const int32_t *x, const int32_t *y,
    long n, size_t budget, struct model_diag *diag)
{
	struct model_gram *G = xcalloc(1, sizeof *G);

	G->m = m;
	G->theta = theta;
	G->x = x;
	G->y = y;
	G->n = n;
	G->budget = budget;
	if (m->family->gram_group) {
		/*
		 * One forward and backward pass of all n rows (which gives the
		 * loss too), restricted when the family can: what it drops adds
		 * nothing to any dot product, and the Gram products shrink.
		 */
		G->h = model_hvp_new(m, (int)n);
		G->pt = model_hvp_prepare(G->h, theta, x, y, (int)n, 1.0f, diag);
		G->eval = G->pt->eval;
		G->view = model_point_restrict(G->pt);
		G->scratch = xmalloc_big(xmul(m->family->gram_scratch(m, (int)n), sizeof(double)));
	} else {
		struct model_work *w = model_work_new(m, n < 4096 ? (int)n : 4096);
		for (long off = 0; off < n; off += w->maxb) {
			int B = (int)(n - off < w->maxb ? n - off : w->maxb);
			model_loss_grad(w, &G->eval, NULL, theta, x + 2 * off, y + off, B, 1.0f, diag);
		}
		model_work_free(w);
	}
	return G;
}

struct model_eval
model_gram_eval(const struct model_gram *G)
{
	return G->eval;
}

void
model_gram_group(struct model_gram *G, int g, double *out, enum gram_acc how)
{
	double *term;

	if (G->pt) {
		G->m->family->gram_group(G->pt, G->view, g, out, how, G->scratch);
		return;
	}
	if (how == GRAM_RAW) {
		model_gram_generic(G->m, G->theta, G->x, G->y, G->n, g, G->budget, out);
		return;
	}
	/* the generic route's dsyrk adds into its own term */
	term = xmalloc_big(xmul(xmul((size_t)G->n, (size_t)G->n), sizeof(double)));
	model_gram_generic(G->m, G->theta, G->x, G->y, G->n, g, G->budget, term);
	gram_accumulate(out, term, (int)G->n, how, NULL, NULL, NULL);
	free(term);
}

void
model_gram_combine(struct model_gram *G, double *out, const double *u)
{
	const struct model *m = G->m;
	struct model_work *w;
	float *g;

	if (G->pt && m->family->gram_combine) {
		m->family->gram_combine(G->pt, out, u);
		return;
	}
	w = model_work_new(m, 1);
	g = xmalloc(xmul(m->nparams, sizeof(float)));
	for (long b = 0; b < G->n; b++) {
		struct model_eval ev = {0};
		memset(g, 0, m->nparams * sizeof *g);
		model_loss_grad(w, &ev, g, G->theta, G->x + 2 * b, G->y + b, 1, 1.0f, NULL);
		for (size_t k = 0; k < m->nparams; k++)
			out[k] += u[b] * g[k];
	}
	free(g);
	model_work_free(w);
}

void
model_gram_free(struct model_gram *G)
{
	if (!G)
		return;
	model_hvp_free(G->h);
	free(G->scratch);
	free(G);
}

const struct model_probes *
model_probes(const struct model *m)
{
	return m->family->probes;
}

const struct model *
model_cast(const struct model *m, const struct model_family *f, const char *who)
{
	if (m->family != f)
		die("%s: a model of family '%s', not %s", who, m->family->name, f->name);
	return m;
}

void
model_tensor_set(struct model_tensor *t, const char *name, int ndim, const int64_t *shape,
    size_t offset, int group)
{
	memset(t, 0, sizeof *t);
	snprintf(t->name, sizeof t->name, "%s", name);
	t->ndim = ndim;
	t->numel = 1;
	for (int i = 0; i < ndim; i++)
		t->numel *= (size_t)(t->shape[i] = shape[i]);
	t->offset = offset;
	t->group = group;
}

void
model_base_init(struct model *m, const struct model_family *f, int p,
    const struct model_tensor *tensors, int ntensors, char (*gnames)[MODEL_NAME_MAX],
    const char **gptr, int ngroups)
{
	size_t end = 0;

	for (int k = 0; k < ntensors; k++) {
		if (tensors[k].offset != end || tensors[k].group < 0 || tensors[k].group >= ngroups)
			die("%s: tensor '%s' at %zu (group %d): the tensors do not tile theta in order",
			    f->name, tensors[k].name, tensors[k].offset, tensors[k].group);
		end += tensors[k].numel;
	}
	for (int g = 0; g < ngroups; g++)
		gptr[g] = gnames[g];
	m->family = f;
	m->p = p;
	m->nparams = end;
	m->ntensors = ntensors;
	m->ngroups = ngroups;
	m->tensors = tensors;
	m->group_names = gptr;
}

int
model_meta_read_ints(const struct st_frame *f, const struct model_meta_int *k, int n, void *cfg,
    const char *name, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++) {
		long long v;
		if (ckpt_meta_long(f, k[i].key, k[i].lo, k[i].hi, &v, name, err, errlen) < 0)
			return -1;
		*(int *)((char *)cfg + k[i].off) = (int)v;
	}
	return 0;
}

void
model_meta_write_ints(struct st_writer *w, const struct model_meta_int *k, int n, const void *cfg)
{
	for (int i = 0; i < n; i++)
		st_writer_meta_long(w, k[i].key, *(const int *)((const char *)cfg + k[i].off));
}

int
model_frame_deeper(const struct st_frame *f, const char *tname, const char *what, int n,
    const char *name, char *err, size_t errlen)
{
	if (!st_find(f, tname))
		return 0;
	snprintf(err, errlen, "%s: has '%s', so more %s %d", name, tname, what, n);
	return -1;
}

void
model_meta_words(char *buf, size_t n, const struct model_meta_int *k, int cnt, const void *cfg)
{
	size_t len = 0;

	if (n)
		buf[0] = '\0';
	for (int i = 0; i < cnt && len < n; i++) {
		int w = snprintf(buf + len, n - len, "%s%s=%d", i ? " " : "", k[i].key,
		    *(const int *)((const char *)cfg + k[i].off));
		if (w < 0)
			break;
		len += (size_t)w;
	}
}

void
model_free_one(struct model *m)
{
	free(m);
}

void
model_record_shape(json_t *rec, int depth, int width)
{
	json_object_set_new(rec, "depth", json_integer(depth));
	if (width > 0)
		json_object_set_new(rec, "width", json_integer(width));
}

void
model_point_init(struct model_point *pt, struct model_hvp *h, int rows, float scale)
{
	*pt = (struct model_point){.h = h, .rows = rows, .scale = scale};
}
