/*
 * model: the family table and the interface's own invariants, checked on
 * the MLP through model.h only: layout (tensors tile theta, groups are
 * contiguous), hyper-parameters through JSON and checkpoint metadata (a
 * file without "family" is an MLP's, an unknown family is refused), the
 * batched evaluation against one batch, products over a set against one
 * prepared point, and the generic Gram route's chunking.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "model.h"
#include "rng.h"
#include "st.h"
#include "tap.h"

enum { P_MOD = 7, B = 10 };

/* The frame w writes, read back (through a memory stream, as the tools read files). */
static int
roundtrip(struct st_writer *w, struct st_frame *f, char *err, size_t errlen)
{
	char *mem = NULL;
	size_t size = 0;
	FILE *fp = open_memstream(&mem, &size);
	int rc;

	st_write(w, fp);
	fclose(fp);
	fp = fmemopen(mem, size, "rb");
	rc = st_read(f, fp, "mem", err, errlen);
	fclose(fp);
	free(mem);
	return rc;
}

static void
layout(const struct model *m)
{
	size_t next = 0;
	int tiles = 1, groups = 1, last = 0;

	for (int k = 0; k < m->ntensors; k++) {
		const struct model_tensor *t = &m->tensors[k];
		size_t numel = 1;
		for (int d = 0; d < t->ndim; d++)
			numel *= (size_t)t->shape[d];
		tiles &= t->offset == next && numel == t->numel;
		next = t->offset + t->numel;
		groups &= t->group == last || t->group == last + 1;
		last = t->group;
	}
	ok(tiles && next == m->nparams, "the %d tensors tile theta's %zu parameters in order", m->ntensors,
	    m->nparams);
	ok(groups && last == m->ngroups - 1, "groups are contiguous runs of tensors, %d of them", m->ngroups);
	ok(model_tensor_find(m, "layers.1.bias") == &m->tensors[3] && !model_tensor_find(m, "layers.9.bias"),
	    "tensors are found by name");
}

static void
metadata(const struct model *m, const float *theta)
{
	struct st_writer w;
	struct st_frame f;
	struct model *back;
	char err[ST_ERRLEN] = "";
	json_t *a, *b;

	st_writer_init(&w);
	ckpt_add_params(&w, m, theta);
	ckpt_add_meta(&w, m, "test 0", 5, "digest", "{}");
	roundtrip(&w, &f, err, sizeof err);
	back = ckpt_model(&f, "mem", err, sizeof err);
	a = m->family->hparams_json(m);
	b = back ? back->family->hparams_json(back) : NULL;
	ok(back && strcmp(st_meta(&f, "family"), "mlp") == 0 && json_equal(a, b) && back->nparams == m->nparams,
	    "a checkpoint names its family and its hyper-parameters read back the same (%s)", err);
	json_decref(a);
	json_decref(b);
	model_free(back);
	st_free(&f);
	st_writer_free(&w);

	/* As every checkpoint written before families existed: no "family". */
	st_writer_init(&w);
	ckpt_add_params(&w, m, theta);
	ckpt_add_meta(&w, m, "test 0", 5, "digest", "{}");
	json_object_del(w.meta, "family");
	roundtrip(&w, &f, err, sizeof err);
	back = ckpt_model(&f, "mem", err, sizeof err);
	ok(back && back->family == m->family && back->nparams == m->nparams,
	    "a checkpoint without a family loads as an MLP");
	model_free(back);
	st_free(&f);

	st_writer_meta(&w, "family", "hyena");
	roundtrip(&w, &f, err, sizeof err);
	back = ckpt_model(&f, "mem", err, sizeof err);
	ok(!back && strcmp(err, "mem: metadata family = 'hyena' is unknown") == 0, "an unknown family is refused: %s",
	    err);
	st_free(&f);
	st_writer_free(&w);
}

static void
evaluation_and_products(const struct model *m, const float *theta, const int32_t *x, const int32_t *y,
    struct rng *r)
{
	size_t P = m->nparams;
	struct model_work *w3 = model_work_new(m, 3), *w10 = model_work_new(m, B);
	struct model_hvp *h3 = model_hvp_new(m, 3), *h10 = model_hvp_new(m, B);
	struct model_eval e3, e10;
	struct model_point *pt;
	float *g3 = calloc(P, sizeof *g3), *g10 = calloc(P, sizeof *g10), *v = calloc(P, sizeof *v);
	float *hs = calloc(P, sizeof *hs), *hp = calloc(P, sizeof *hp), *tmp = calloc(2 * P, sizeof *tmp);
	double dg = 0, dh = 0, hmax = 0;

	model_eval_set(w3, &e3, g3, theta, x, y, B, NULL);
	model_eval_set(w10, &e10, g10, theta, x, y, B, NULL);
	for (size_t k = 0; k < P; k++)
		dg = fmax(dg, fabs((double)g3[k] - g10[k]));
	ok(fabs(e3.loss_sum - e10.loss_sum) < 1e-5 && e3.correct == e10.correct && dg < 1e-6,
	    "model_eval_set in batches of 3 = one batch of %d (gradient diff %.2e)", B, dg);
	for (size_t k = 0; k < P; k++)
		v[k] = (float)rng_normal(r);
	model_hvp_set(h3, hs, theta, v, x, y, B, 1.0 / B, tmp);
	pt = model_hvp_prepare(h10, theta, x, y, B, 1.0f / B, NULL);
	model_point_apply(pt, hp, v);
	for (size_t k = 0; k < P; k++) {
		dh = fmax(dh, fabs((double)hs[k] - hp[k]));
		hmax = fmax(hmax, fabs((double)hp[k]));
	}
	ok(dh < 1e-5 * hmax && hmax > 0, "model_hvp_set in batches of 3 = one prepared point, max diff %.2e (max %.2e)",
	    dh, hmax);
	ok(fabs(pt->eval.loss_sum - e10.loss_sum) < 1e-9 && pt->rows == B,
	    "the point's loss is the evaluation's (%.9f)", pt->eval.loss_sum);
	free(g3); free(g10); free(v); free(hs); free(hp); free(tmp);
	model_work_free(w3);
	model_work_free(w10);
	model_hvp_free(h3);
	model_hvp_free(h10);
}

/*
 * A block's quadratic form (the MLP's R-forward alone) is v . (its block
 * product), for H and G (the same block of a ReLU MLP), every group.
 */
static void
block_quads(const struct model *m, const float *theta, const int32_t *x, const int32_t *y, struct rng *r)
{
	size_t P = m->nparams;
	struct model_hvp *h = model_hvp_new(m, B);
	struct model_point *pt = model_hvp_prepare(h, theta, x, y, B, 1.0f / B, NULL);
	float *v = calloc(P, sizeof *v), *hv = calloc(P, sizeof *hv), *tmp = calloc(2 * P, sizeof *tmp);
	double worst = 0, qmin = INFINITY;

	for (int mat = MODEL_HESSIAN; mat <= MODEL_GGN; mat++)
		for (int g = 0; g < m->ngroups; g++) {
			size_t lo, hi;
			double q, ref = 0;
			model_group_range(m, g, &lo, &hi);
			memset(v, 0, P * sizeof *v);
			memset(hv, 0, P * sizeof *hv);
			for (size_t k = lo; k < hi; k++)
				v[k] = (float)rng_normal(r);
			model_block_product(pt, NULL, (enum model_matrix)mat, g, hv, v, tmp);
			for (size_t k = lo; k < hi; k++)
				ref += (double)v[k] * hv[k];
			q = model_block_quad(pt, NULL, (enum model_matrix)mat, g, v, tmp);
			worst = fmax(worst, fabs(q - ref) / fabs(ref));
			qmin = fmin(qmin, q);
		}
	ok(worst < 1e-5 && qmin > 0, "model_block_quad = v . block product, H and G, every group: rel diff %.2e", worst);
	free(v);
	free(hv);
	free(tmp);
	model_hvp_free(h);
}

/* The generic route is the same whatever its chunk: one column, a few, all at once. */
static void
generic_gram_chunks(const struct model *m, const float *theta, const int32_t *x, const int32_t *y)
{
	double *one = calloc(B * B, sizeof *one), *few = calloc(B * B, sizeof *few);
	double *all = calloc(B * B, sizeof *all), d = 0, mx = 0;

	for (int g = 0; g < m->ngroups; g++) {
		model_gram_generic(m, theta, x, y, B, g, 1, one);
		model_gram_generic(m, theta, x, y, B, g, 7 * B * sizeof(double), few);
		model_gram_generic(m, theta, x, y, B, g, (size_t)1 << 30, all);
		for (int b = 0; b < B; b++)
			for (int c = 0; c <= b; c++) {
				d = fmax(d, fabs(one[b * B + c] - all[b * B + c]));
				d = fmax(d, fabs(few[b * B + c] - all[b * B + c]));
				mx = fmax(mx, fabs(all[b * B + c]));
			}
	}
	ok(d <= 1e-12 * mx && mx > 0, "generic Gram terms: chunks of 1 and 7 columns = all at once, max diff %.2e", d);
	free(one);
	free(few);
	free(all);
}

int
main(void)
{
	const char *const *names = model_family_names();
	json_t *hp = json_pack("{s:i, s:i, s:s, s:s}", "depth", 2, "width", 6, "encoding", "onehot", "loss", "ce");
	json_t *bad = json_pack("{s:i, s:i, s:s, s:s}", "depth", 99, "width", 6, "encoding", "onehot", "loss", "ce");
	char err[256] = "";
	struct model *m;
	struct rng r;
	int32_t x[2 * B], y[B];
	float *theta;

	ok(names[0] && strcmp(names[0], "mlp") == 0 && model_family_find("mlp") == model_family_find(names[0]) &&
	    !model_family_find("nope"), "the family table finds mlp by name, and nothing else by a wrong one");
	ok(model_family_find("mlp")->version == MODEL_FAMILY_VERSION, "mlp is written for interface version %d",
	    MODEL_FAMILY_VERSION);
	ok(!model_new_json("mlp", bad, P_MOD, err, sizeof err) && strstr(err, "depth 0..16"),
	    "hyper-parameters out of range are refused: %s", err);
	ok(!model_new_json("nope", hp, P_MOD, err, sizeof err) && strcmp(err, "no model family 'nope'") == 0,
	    "an unknown family by name is refused: %s", err);
	m = model_new_json("mlp", hp, P_MOD, err, sizeof err);
	ok(m && m->p == P_MOD && m->ngroups == 3 && m->ntensors == 6, "a depth-2 MLP from JSON: %d groups, %d tensors",
	    m ? m->ngroups : -1, m ? m->ntensors : -1);
	if (!m)
		return tap_done();
	layout(m);
	theta = calloc(m->nparams, sizeof *theta);
	rng_init(&r, 3, RNG_INIT);
	m->family->init(m, theta, &r);
	for (int b = 0; b < B; b++) {
		x[2 * b] = (int32_t)rng_below(&r, P_MOD);
		x[2 * b + 1] = (int32_t)rng_below(&r, P_MOD);
		y[b] = (x[2 * b] + x[2 * b + 1]) % P_MOD;
	}
	metadata(m, theta);
	evaluation_and_products(m, theta, x, y, &r);
	generic_gram_chunks(m, theta, x, y);
	block_quads(m, theta, x, y, &r);
	ok(fabs(model_chance_loss(m) - log(P_MOD)) < 1e-15, "a know-nothing cross-entropy model's loss is ln p");
	free(theta);
	model_free(m);
	json_decref(hp);
	json_decref(bad);
	return tap_done();
}
