/*
 * test_mlp_embed: the embedding MLP (mlp_embed.c).  The double reference
 * against central finite differences of its loss, the float fast path
 * against the reference, the exact Hessian product against finite
 * differences of the reference gradient, the Gauss-Newton product's
 * symmetry and positivity, and the layout and initialisation the source
 * (enerrio/grokking-mlp, net.py) has.
 *
 * --ref IN OUT: for tests/ref/check_embed.py, the loss, gradient and
 * H v of the rows and parameters in IN (tensors by their state_dict names,
 * "v." + name, x, y; metadata p, embed, depth, width), from the double
 * reference and from the float kernels (and G v), into OUT.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"
#include "mlp_embed.h"
#include "model.h"
#include "opts.h"
#include "rng.h"
#include "st.h"
#include "tap.h"
#include "util.h"

static double
rel(const double *a, const double *b, size_t n)
{
	double d = 0, s = 0;

	for (size_t k = 0; k < n; k++) {
		d += (a[k] - b[k]) * (a[k] - b[k]);
		s += b[k] * b[k];
	}
	return sqrt(d) / (sqrt(s) + 1e-300);
}

/* Every pair (x, y) of Z_p, labelled x + y mod p. */
static int
all_pairs(int p, int32_t **x, int32_t **y)
{
	int n = p * p;

	*x = malloc((size_t)n * 2 * sizeof **x);
	*y = malloc((size_t)n * sizeof **y);
	for (int k = 0; k < n; k++) {
		(*x)[2 * k] = k / p;
		(*x)[2 * k + 1] = k % p;
		(*y)[k] = (k / p + k % p) % p;
	}
	return n;
}

static void
check_config(int p, int E, int depth, int width)
{
	struct mlp_embed_config c = {p, E, depth, width};
	struct model *m = mlp_embed_model_new(&c);
	size_t P = m->nparams;
	int32_t *x, *y;
	int B = all_pairs(p, &x, &y);
	float *th = malloc(P * sizeof *th), *g = calloc(P, sizeof *g), *v = malloc(P * sizeof *v);
	float *hv = calloc(P, sizeof *hv), *gv = calloc(P, sizeof *gv), *gu = calloc(P, sizeof *gu);
	double *td = malloc(P * sizeof *td), *gref = calloc(P, sizeof *gref), *gfd = calloc(P, sizeof *gfd);
	double *a = calloc(P, sizeof *a), *b = calloc(P, sizeof *b), *hfd = calloc(P, sizeof *hfd);
	double *gp = calloc(P, sizeof *gp), *gm = calloc(P, sizeof *gm), l, h = 1e-6, vgu = 0, ugv = 0, vgv = 0;
	struct model_eval ev = {0};
	struct model_work *w = model_work_new(m, B);
	struct model_hvp *hh = model_hvp_new(m, B);
	struct model_point *pt;
	struct rng r;

	rng_init(&r, 7, RNG_INIT);
	m->family->init(m, th, &r);
	/* biases start at zero; give them values so that their derivatives are tested too */
	for (size_t k = 0; k < P; k++) {
		th[k] += 0.05f * (float)rng_normal(&r);
		td[k] = th[k];
		v[k] = (float)rng_normal(&r);
	}
	l = mlp_embed_ref_loss(m, td, x, y, B, gref);
	for (size_t k = 0; k < P; k++) {
		double t = td[k], lp, lm;
		td[k] = t + h;
		lp = mlp_embed_ref_loss(m, td, x, y, B, NULL);
		td[k] = t - h;
		lm = mlp_embed_ref_loss(m, td, x, y, B, NULL);
		td[k] = t;
		gfd[k] = (lp - lm) / (2 * h);
	}
	ok(rel(gref, gfd, P) < 1e-7, "p=%d E=%d depth %d width %d: reference gradient vs "
	    "finite differences, relative %.2e", p, E, depth, width, rel(gref, gfd, P));
	model_loss_grad(w, &ev, g, th, x, y, B, 1.0f / B, NULL);
	for (size_t k = 0; k < P; k++)
		a[k] = g[k];
	ok(fabs(ev.loss_sum / B - l) < 1e-5 * fabs(l) && rel(a, gref, P) < 1e-5,
	    "fast loss %.8f vs reference %.8f, gradient relative %.2e", ev.loss_sum / B, l,
	    rel(a, gref, P));
	/* H v against (g(theta + h v) - g(theta - h v)) / 2h of the reference gradient */
	for (size_t k = 0; k < P; k++)
		td[k] = th[k] + 1e-5 * v[k];
	mlp_embed_ref_loss(m, td, x, y, B, gp);
	for (size_t k = 0; k < P; k++)
		td[k] = th[k] - 1e-5 * v[k];
	mlp_embed_ref_loss(m, td, x, y, B, gm);
	for (size_t k = 0; k < P; k++)
		hfd[k] = (gp[k] - gm[k]) / 2e-5;
	pt = model_hvp_prepare(hh, th, x, y, B, 1.0f / B, NULL);
	model_point_apply(pt, hv, v);
	for (size_t k = 0; k < P; k++)
		a[k] = hv[k];
	ok(rel(a, hfd, P) < 1e-4, "H v vs finite differences of the gradient, relative %.2e",
	    rel(a, hfd, P));
	for (size_t k = 0; k < P; k++) {
		td[k] = th[k];
		b[k] = v[k];
		gp[k] = 0;
	}
	mlp_embed_ref_hvp(m, td, b, x, y, B, gp);
	ok(rel(gp, hfd, P) < 1e-7, "reference H v (double R-operator) vs finite differences, "
	    "relative %.2e", rel(gp, hfd, P));
	memset(g, 0, P * sizeof *g);
	model_point_grad(pt, g);
	for (size_t k = 0; k < P; k++)
		a[k] = g[k];
	ok(rel(a, gref, P) < 1e-5, "the prepared point's gradient, relative %.2e", rel(a, gref, P));
	/* G (u: the gradient direction): symmetric, positive semi-definite, not H; against torch in check_embed.py */
	model_point_product(pt, MODEL_GGN, gv, v);
	model_point_product(pt, MODEL_GGN, gu, g);
	for (size_t k = 0; k < P; k++) {
		vgu += (double)v[k] * gu[k];
		ugv += (double)g[k] * gv[k];
		vgv += (double)v[k] * gv[k];
		b[k] = gv[k];
	}
	ok(fabs(vgu - ugv) < 1e-4 * (fabs(vgu) + 1e-12) && vgv >= 0,
	    "G symmetric (%.6e vs %.6e) and v^T G v = %.4e >= 0", vgu, ugv, vgv);
	ok(rel(b, hfd, P) > 1e-3, "G v differs from H v (relative %.2e)", rel(b, hfd, P));
	model_hvp_free(hh);
	model_work_free(w);
	model_free(m);
	free(x); free(y); free(th); free(g); free(v); free(hv); free(gv); free(gu);
	free(td); free(gref); free(gfd); free(a); free(b); free(hfd); free(gp); free(gm);
}

static void
layout_and_init(void)
{
	struct mlp_embed_config c = {97, 128, 1, 128};
	struct model *m = mlp_embed_model_new(&c);
	float *th = malloc(m->nparams * sizeof *th);
	const struct model_tensor *t0 = model_tensor_find(m, "net.0.weight");
	const struct model_tensor *t2 = model_tensor_find(m, "net.2.weight");
	const struct model_tensor *b4 = model_tensor_find(m, "net.4.bias");
	double s0 = 0, s2 = 0, sb = 0;
	struct rng r;

	ok(m->nparams == 99 * 128 + 512 * 128 + 128 + 128 * 99 + 99,
	    "parameter count of p=97 E=128 depth 1 width 128: %zu", m->nparams);
	ok(t0 && t2 && b4 && t0->shape[0] == 99 && t0->shape[1] == 128 && t2->shape[1] == 512 &&
	    b4->shape[0] == 99, "state_dict names and shapes: net.0.weight (99, 128), "
	    "net.2.weight (128, 512), net.4.bias (99)");
	rng_init(&r, 0, RNG_INIT);
	m->family->init(m, th, &r);
	for (size_t k = 0; k < t0->numel; k++)
		s0 += (double)th[t0->offset + k] * th[t0->offset + k];
	for (size_t k = 0; k < t2->numel; k++)
		s2 += (double)th[t2->offset + k] * th[t2->offset + k];
	for (size_t k = 0; k < b4->numel; k++)
		sb += fabs(th[b4->offset + k]);
	ok(fabs(sqrt(s0 / t0->numel) - 1.0) < 0.02, "embedding N(0, 1): sd %.4f", sqrt(s0 / t0->numel));
	ok(fabs(sqrt(s2 / t2->numel) - sqrt(2.0 / 512)) < 0.002,
	    "net.2.weight Kaiming normal: sd %.5f (want %.5f)", sqrt(s2 / t2->numel), sqrt(2.0 / 512));
	ok(sb == 0.0, "biases zero");
	c.embed = 0;
	ok(mlp_embed_model_new(&c) == NULL, "embed 0 is refused");
	c.embed = MLP_EMBED_MAX + 1;
	ok(mlp_embed_model_new(&c) == NULL, "embed above the limit is refused");
	free(th);
	model_free(m);
}

static const char *
need_meta(const struct st_frame *f, const char *key)
{
	const char *s = st_meta(f, key);

	if (!s)
		die("input has no metadata '%s'", key);
	return s;
}

/* The tensors prefix + name of every parameter, by name and shape, into the flat layout. */
static void
ref_read(const struct st_frame *f, const struct model *m, const char *prefix, double *out)
{
	char full[96], err[ST_ERRLEN];

	for (int k = 0; k < m->ntensors; k++) {
		const struct model_tensor *t = &m->tensors[k];
		const struct st_tensor *s;
		snprintf(full, sizeof full, "%s%s", prefix, t->name);
		if (!(s = st_expect(f, full, ST_F64, t->ndim, t->shape, err, sizeof err)))
			die("%s", err);
		memcpy(out + t->offset, s->data, s->nbytes);
	}
}

/* out[0] loss, out[1..P] gradient, then H v and G v: the float kernels, widened. */
static void
ref_run32(const struct model *m, const double *th, const double *v, const int32_t *x,
    const int32_t *y, int B, double *out)
{
	size_t P = m->nparams;
	float *t32 = calloc(P, sizeof *t32), *v32 = calloc(P, sizeof *v32), *o = calloc(3 * P, sizeof *o);
	struct model_hvp *h = model_hvp_new(m, B);
	struct model_point *pt;

	for (size_t k = 0; k < P; k++) {
		t32[k] = (float)th[k];
		v32[k] = (float)v[k];
	}
	pt = model_hvp_prepare(h, t32, x, y, B, 1.0f / B, NULL);
	model_point_grad(pt, o);
	model_point_apply(pt, o + P, v32);
	model_point_product(pt, MODEL_GGN, o + 2 * P, v32);
	out[0] = pt->eval.loss_sum / B;
	for (size_t k = 0; k < 3 * P; k++)
		out[1 + k] = o[k];
	model_hvp_free(h);
	free(t32); free(v32); free(o);
}

/*
 * The probes' gradients of logit 1 with respect to each row's x and y
 * embedding vectors, widened into gxy (2, B, E), added to wr as
 * "probe.gx" and "probe.gy".
 */
static void
ref_probes(const struct model *m, const double *th, const int32_t *x, int B,
    struct st_writer *wr, double *gxy)
{
	const struct model_probes *pr = model_probes(m);
	const struct model_tensor *t0 = model_tensor_find(m, "net.0.weight");
	int cls = 1;
	size_t n = (size_t)B * (size_t)t0->shape[1];
	int64_t shape[2] = {B, t0->shape[1]};
	float *t32 = calloc(m->nparams, sizeof *t32), *g = calloc(2 * n, sizeof *g);
	struct model_work *w = model_work_new(m, B);

	for (size_t k = 0; k < m->nparams; k++)
		t32[k] = (float)th[k];
	pr->embed_grad(w, t32, x, B, &cls, 1, g, g + n);
	for (size_t k = 0; k < 2 * n; k++)
		gxy[k] = g[k];
	st_writer_add(wr, "probe.gx", ST_F64, 2, shape, gxy);
	st_writer_add(wr, "probe.gy", ST_F64, 2, shape, gxy + n);
	model_work_free(w);
	free(t32);
	free(g);
}

static int
ref_main(const char *in, const char *outpath)
{
	struct st_frame f;
	struct st_writer wr;
	struct mlp_embed_config c;
	struct model *m;
	char err[ST_ERRLEN];
	const struct st_tensor *tx, *ty;
	int64_t one = 1, np;
	double *th, *v, *o32, *oref, *gxy;
	int32_t *x, *y;
	int B;
	size_t P;
	FILE *fp;

	if (st_load(&f, in, err, sizeof err) != 0)
		die("%s", err);
	c.p = (int)opt_int("p", need_meta(&f, "p"), 2, 4096);
	c.embed = (int)opt_int("embed", need_meta(&f, "embed"), 1, MLP_EMBED_MAX);
	c.depth = (int)opt_int("depth", need_meta(&f, "depth"), 0, MLP_MAX_DEPTH);
	c.width = (int)opt_int("width", need_meta(&f, "width"), 1, MLP_MAX_WIDTH);
	if (!(m = mlp_embed_model_new(&c)))
		die("%s: configuration out of range", in);
	P = m->nparams;
	np = (int64_t)P;
	if (!(tx = st_expect(&f, "x", ST_I32, 2, (int64_t[]){-1, 2}, err, sizeof err)) ||
	    !(ty = st_expect(&f, "y", ST_I32, 1, (int64_t[]){tx->shape[0]}, err, sizeof err)))
		die("%s", err);
	B = (int)tx->shape[0];
	x = calloc(2 * (size_t)B, sizeof *x), y = calloc((size_t)B, sizeof *y);
	memcpy(x, tx->data, tx->nbytes);
	memcpy(y, ty->data, ty->nbytes);
	for (int b = 0; b < B; b++)
		if (x[2 * b] < 0 || x[2 * b] >= c.p || x[2 * b + 1] < 0 || x[2 * b + 1] >= c.p ||
		    y[b] < 0 || y[b] >= c.p)
			die("%s: row %d out of range", in, b);
	th = calloc(P, sizeof *th), v = calloc(P, sizeof *v);
	o32 = calloc(3 * P + 1, sizeof *o32), oref = calloc(2 * P + 1, sizeof *oref);
	gxy = calloc(2 * (size_t)B * (size_t)c.embed, sizeof *gxy);
	ref_read(&f, m, "", th);
	ref_read(&f, m, "v.", v);
	oref[0] = mlp_embed_ref_loss(m, th, x, y, B, oref + 1);
	mlp_embed_ref_hvp(m, th, v, x, y, B, oref + 1 + P);
	ref_run32(m, th, v, x, y, B, o32);
	st_writer_init(&wr);
	st_writer_add(&wr, "ref.loss", ST_F64, 1, &one, oref);
	st_writer_add(&wr, "ref.grad", ST_F64, 1, &np, oref + 1);
	st_writer_add(&wr, "ref.hv", ST_F64, 1, &np, oref + 1 + P);
	st_writer_add(&wr, "loss32", ST_F64, 1, &one, o32);
	st_writer_add(&wr, "grad32", ST_F64, 1, &np, o32 + 1);
	st_writer_add(&wr, "hv32", ST_F64, 1, &np, o32 + 1 + P);
	st_writer_add(&wr, "gv32", ST_F64, 1, &np, o32 + 1 + 2 * P);
	ref_probes(m, th, x, B, &wr, gxy);
	if (!(fp = fopen(outpath, "wb")) || st_write(&wr, fp) != 0 || fclose(fp) != 0)
		die("%s:", outpath);
	st_writer_free(&wr);
	st_free(&f);
	model_free(m);
	free(x); free(y); free(th); free(v); free(o32); free(oref); free(gxy);
	return 0;
}

/*
 * The metadata a family's to_meta writes, read back by its from_meta (the
 * meta tables in model.c); its summary's words; and check_frame's refusal
 * of a frame that holds the tensor of a deeper model (deeper), with the
 * message msg.
 */
static void
meta_round_trip(const char *family, const char *hp_json, const char *words, const char *deeper,
    const char *msg)
{
	char err[ST_ERRLEN] = "", buf[128];
	json_t *hp = json_loads(hp_json, 0, NULL), *a, *b = NULL;
	struct model *m = model_new_json(family, hp, 11, err, sizeof err), *m2 = NULL;
	struct st_writer w;
	struct st_frame f;
	FILE *fp = tmpfile();
	const float z = 0.0f;
	const int64_t one = 1;

	if (!m || !fp)
		die("%s: %s", family, m ? "no temporary file" : err);
	st_writer_init(&w);
	m->family->to_meta(m, &w);
	st_writer_add(&w, deeper, ST_F32, 1, &one, &z);
	if (st_write(&w, fp) < 0 || fseek(fp, 0, SEEK_SET) < 0 || st_read(&f, fp, "t.st", err, sizeof err) < 0)
		die("%s: the frame does not read back: %s", family, err);
	a = m->family->hparams_json(m);
	if ((m2 = m->family->from_meta(&f, "t.st", err, sizeof err)))
		b = m2->family->hparams_json(m2);
	ok(b && json_equal(a, b), "%s: to_meta's metadata read back by from_meta", family);
	model_summary(m, buf, sizeof buf);
	ok(strcmp(buf, words) == 0, "%s: summary '%s'", family, buf);
	ok(m->family->check_frame(m, &f, "t.st", err, sizeof err) < 0 && strcmp(err, msg) == 0,
	    "%s: a frame with '%s' refused: %s", family, deeper, err);
	json_decref(a);
	json_decref(b);
	json_decref(hp);
	model_free(m2);
	model_free(m);
	st_free(&f);
	st_writer_free(&w);
	fclose(fp);
}

int
main(int argc, char **argv)
{
	setprogname(argv[0]);
	if (argc == 4 && strcmp(argv[1], "--ref") == 0)
		return ref_main(argv[2], argv[3]);
	if (argc != 1)
		usage_error("usage: test_mlp_embed [--ref IN.safetensors OUT.safetensors]");

	check_config(5, 3, 1, 6);
	check_config(5, 2, 2, 4);
	check_config(7, 3, 0, 1);
	layout_and_init();
	meta_round_trip("mlp-embed", "{\"embed\": 4, \"depth\": 1, \"width\": 8}",
	    "p=11 embed=4 depth=1 width=8", "net.6.weight", "t.st: has 'net.6.weight', so more layers than depth 1");
	meta_round_trip("mlp", "{\"depth\": 2, \"width\": 8, \"encoding\": \"int\", \"loss\": \"mse\"}",
	    "p=11 depth=2 width=8 int", "layers.3.weight", "t.st: has 'layers.3.weight', so more layers than depth 2");
	return tap_done();
}
