#include "ckpt.h"
#include "jsonl.h"
#include "optim.h"
#include "opts.h"
#include "sha256.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
ckpt_add_params(struct st_writer *w, const struct model *m, const float *theta)
{
	for (int k = 0; k < m->ntensors; k++) {
		const struct model_tensor *t = &m->tensors[k];
		st_writer_add(w, t->name, ST_F32, t->ndim, t->shape, theta + t->offset);
	}
}

void
ckpt_add_meta(struct st_writer *w, const struct model *m, const char *tool, long step,
    const char *data_digest, const char *config_json)
{
	st_writer_meta(w, "format", "grokkit-ckpt-v1");
	st_writer_meta(w, "tool", tool);
	st_writer_meta_long(w, "step", step);
	st_writer_meta(w, "family", m->family->name);
	m->family->to_meta(m, w);
	st_writer_meta(w, "data_sha256", data_digest);
	st_writer_meta(w, "config", config_json);
}

int
ckpt_write_file(const struct st_writer *w, const char *path)
{
	struct afile af;

	if (afile_open(&af, path) < 0)
		return -1;
	if (st_write(w, af.fp) < 0) {
		int saved = errno;
		afile_abort(&af);
		errno = saved;
		return -1;
	}
	return afile_commit(&af);
}

void
ckpt_write_side(struct st_writer *w, const char *path, const char *format, const char *tool,
    long long step, const char *digest)
{
	st_writer_meta(w, "format", format);
	st_writer_meta(w, "tool", tool);
	st_writer_meta_long(w, "step", step);
	st_writer_meta(w, "checkpoint_sha256", digest);
	if (ckpt_write_file(w, path) < 0)
		die("error writing %s:", path);
	st_writer_free(w);
}

int
ckpt_meta_long(const struct st_frame *f, const char *key, long long min,
    long long max, long long *out, const char *name, char *err, size_t errlen)
{
	const char *s = st_meta(f, key);
	char *end;

	if (!s) {
		snprintf(err, errlen, "%s: no '%s' in the metadata (not a train-mlp or train-transformer checkpoint?)", name, key);
		return -1;
	}
	errno = 0;
	*out = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno || *out < min || *out > max) {
		snprintf(err, errlen, "%s: metadata %s = '%s' is not an integer in %lld..%lld",
		    name, key, s, min, max);
		return -1;
	}
	return 0;
}

int
ckpt_meta_choice(const struct st_frame *f, const char *key, const char *const *names,
    int *out, const char *name, char *err, size_t errlen)
{
	const char *s = st_meta(f, key);

	if (!s) {
		snprintf(err, errlen, "%s: no '%s' in the metadata (not a train-mlp or train-transformer checkpoint?)", name, key);
		return -1;
	}
	if ((*out = name_index(names, s)) >= 0)
		return 0;
	snprintf(err, errlen, "%s: metadata %s = '%s' is unknown", name, key, s);
	return -1;
}

struct model *
ckpt_model(const struct st_frame *f, const char *name, char *err, size_t errlen)
{
	const char *fam = st_meta(f, "family");
	const struct model_family *family = model_family_find(fam ? fam : "mlp");
	struct model *m;

	if (!family) {
		snprintf(err, errlen, "%s: metadata family = '%s' is unknown", name, fam);
		return NULL;
	}
	if (!(m = family->from_meta(f, name, err, errlen)))
		return NULL;
	/*
	 * The parameters must be in the file: a hostile header claiming a
	 * huge model must not make anyone allocate gigabytes for it.
	 */
	if (m->nparams > f->nbuf / sizeof(float)) {
		snprintf(err, errlen, "%s: a model of %zu parameters, but the file holds only %zu bytes of tensor data",
		    name, m->nparams, f->nbuf);
		model_free(m);
		return NULL;
	}
	return m;
}

int
ckpt_params(const struct st_frame *f, const struct model *m, float *theta,
    const char *name, char *err, size_t errlen)
{
	char e[ST_ERRLEN], what[128];

	if (m->family->check_frame && m->family->check_frame(m, f, name, err, errlen) < 0)
		return -1;
	for (int k = 0; k < m->ntensors; k++) {
		const struct model_tensor *mt = &m->tensors[k];
		const struct st_tensor *t;
		if (!(t = st_expect(f, mt->name, ST_F32, mt->ndim, mt->shape, e, sizeof e))) {
			model_summary(m, what, sizeof what);
			snprintf(err, errlen, "%s: %s (model: %s)", name, e, what);
			return -1;
		}
		memcpy(theta + mt->offset, t->data, t->nbytes);
		for (size_t i = 0; i < t->numel; i++)
			if (!isfinite(theta[mt->offset + i])) {
				snprintf(err, errlen, "%s: tensor '%s' holds a non-finite value at index %zu",
				    name, mt->name, i);
				return -1;
			}
	}
	return 0;
}

int
ckpt_open(const char *path, const struct dataset *d, const char *data_name,
    int any_data, struct model **mp, float **theta, long long *step, char digest[65],
    char run_id[17], char *err, size_t errlen)
{
	struct model *m = NULL;
	struct st_frame f;
	const char *ds, *rid;
	int rc = -1;

	*theta = NULL;
	if (st_load(&f, path, err, errlen) < 0)
		return -1;
	if (!(m = ckpt_model(&f, path, err, errlen)))
		goto out;
	if (m->p != d->p) {
		snprintf(err, errlen, "%s: a model for p = %d, but the data set has p = %d", path, m->p, d->p);
		goto out;
	}
	if (!any_data && (ds = st_meta(&f, "data_sha256")) && strcmp(ds, d->digest) != 0) {
		snprintf(err, errlen, "%s: trained on data %.12s..., not on %s (%.12s...); --any-data to analyse anyway",
		    path, ds, data_name, d->digest);
		goto out;
	}
	if (ckpt_meta_long(&f, "step", 0, 1LL << 53, step, path, err, errlen) < 0)
		goto out;
	*theta = xmalloc(xmul(m->nparams, sizeof(float)));
	if (ckpt_params(&f, m, *theta, path, err, errlen) < 0) {
		free(*theta);
		*theta = NULL;
		goto out;
	}
	sha256_hex(f.digest, digest);
	rid = st_meta(&f, "run_id");
	snprintf(run_id, 17, "%s", rid ? rid : "");
	rc = 0;
out:
	st_free(&f);
	if (rc < 0)
		model_free(m);
	else
		*mp = m;
	return rc;
}

char **
ckpt_paths(int argc, char **argv, int first, size_t max, size_t *n, int *owned)
{
	char **paths;

	*owned = 0;
	if (first < argc) {
		*n = (size_t)(argc - first);
		return argv + first;
	}
	if (isatty(STDIN_FILENO))
		usage_error("no checkpoints: give them as arguments or one per line on standard input");
	paths = read_lines(stdin, "<stdin>", max, n);
	if (*n == 0)
		die("no checkpoint paths on standard input");
	*owned = 1;
	return paths;
}

char *
ckpt_step_path(const char *pattern, long long step)
{
	const char *at = strstr(pattern, "{step}");
	size_t n = strlen(pattern) + 24;
	char *p = xmalloc(n);

	if (at)
		snprintf(p, n, "%.*s%08lld%s", (int)(at - pattern), pattern, step, at + 6);
	else
		snprintf(p, n, "%s", pattern);
	return p;
}

void
ckpt_write_eigvecs(const char *path, const struct model *m, const double *vecs,
    const double *eigenvalues, int k, const char *tool, long long step, const char *digest)
{
	size_t P = m->nparams;
	float *buf = xmalloc(xmul(xmul(P, (size_t)k), sizeof(float)));
	struct st_writer w;
	json_t *ev = json_array();
	char *vals;

	st_writer_init(&w);
	for (int t = 0; t < m->ntensors; t++) {
		const struct model_tensor *mt = &m->tensors[t];
		int64_t shape[MODEL_MAX_DIMS + 1];
		size_t off = mt->offset, len = mt->numel;
		float *dst = buf + (size_t)k * off;
		for (int e = 0; e < k; e++)
			for (size_t q = 0; q < len; q++)
				dst[(size_t)e * len + q] = (float)vecs[(size_t)e * P + off + q];
		shape[0] = k;
		memcpy(shape + 1, mt->shape, (size_t)mt->ndim * sizeof *shape);
		st_writer_add(&w, mt->name, ST_F32, mt->ndim + 1, shape, dst);
	}
	for (int e = 0; e < k; e++)
		json_array_append_new(ev, jnum(eigenvalues[e]));
	vals = jsonl_string(ev);
	st_writer_meta(&w, "eigenvalues", vals);
	ckpt_write_side(&w, path, "grokkit-eigvecs-v1", tool, step, digest);
	json_decref(ev);
	free(vals);
	free(buf);
}

int
ckpt_state_read(const struct st_frame *f, const struct model *m, long n_train,
    long long max_step, long long max_optim_t, struct ckpt_state *s, const char *name,
    char *err, size_t errlen)
{
	const struct st_tensor *t;
	const char *v;
	char e[ST_ERRLEN];
	int64_t shp[1];
	unsigned long long st, inc;

	if (ckpt_params(f, m, s->theta, name, err, errlen) < 0)
		return -1;
	shp[0] = (int64_t)m->nparams;
	if (!(t = st_expect(f, "optim.m", ST_F32, 1, shp, e, sizeof e)))
		goto bad;
	memcpy(s->m, t->data, t->nbytes);
	if (!(t = st_expect(f, "optim.v", ST_F32, 1, shp, e, sizeof e)))
		goto bad;
	memcpy(s->v, t->data, t->nbytes);
	shp[0] = n_train;
	if (!(t = st_expect(f, "train.perm", ST_I32, 1, shp, e, sizeof e)))
		goto bad;
	memcpy(s->perm, t->data, t->nbytes);
	for (long i = 0; i < n_train; i++)
		if (s->perm[i] < 0 || s->perm[i] >= n_train) {
			snprintf(err, errlen, "%s: train.perm[%ld] = %d is out of range", name, i, s->perm[i]);
			return -1;
		}
	if (ckpt_meta_long(f, "step", 0, max_step, &s->step, name, err, errlen) < 0 ||
	    ckpt_meta_long(f, "optim_t", 0, max_optim_t, &s->optim_t, name, err, errlen) < 0 ||
	    ckpt_meta_long(f, "batch_pos", 0, n_train - 1, &s->batch_pos, name, err, errlen) < 0)
		return -1;
	if (!(v = st_meta(f, "rng_state")) || sscanf(v, "%llu", &st) != 1 ||
	    !(v = st_meta(f, "rng_inc")) || sscanf(v, "%llu", &inc) != 1 || !(inc & 1)) {
		snprintf(err, errlen, "%s: missing or malformed rng_state/rng_inc", name);
		return -1;
	}
	s->rng_state = st;
	s->rng_inc = inc;
	s->elapsed = (v = st_meta(f, "elapsed")) ? strtod(v, NULL) : 0;
	if (!isfinite(s->elapsed) || s->elapsed < 0)
		s->elapsed = 0;
	return 0;
bad:
	snprintf(err, errlen, "%s: %s", name, e);
	return -1;
}

/* A number in the config's optim object; 0, or -1 if absent or not finite. */
static int
optim_number(const json_t *opt, const char *key, double *out)
{
	const json_t *j = json_object_get(opt, key);

	if (!json_is_number(j) || !isfinite(json_number_value(j)))
		return -1;
	*out = json_number_value(j);
	return 0;
}

/* The optimiser's name and hyper-parameters from the config metadata; 0, or -1 with err. */
static int
optim_config_read(const struct st_frame *f, struct ckpt_optim *o, const char *name,
    char *err, size_t errlen)
{
	const char *cfg = st_meta(f, "config");
	json_t *root = cfg ? json_loads(cfg, 0, NULL) : NULL;
	const json_t *opt = json_object_get(root, "optim"), *jn = json_object_get(opt, "name");
	int ok = 0;

	o->kind = name_index(optim_names, json_string_value(jn));
	if (o->kind == OPT_SGD)
		ok = optim_number(opt, "momentum", &o->momentum) == 0;
	else if (o->kind >= 0)
		ok = optim_number(opt, "beta1", &o->beta1) == 0 && optim_number(opt, "beta2", &o->beta2) == 0 &&
		    optim_number(opt, "eps", &o->eps) == 0 && o->eps >= 0;
	json_decref(root);
	if (!ok)
		snprintf(err, errlen, "%s: no optimiser settings in its config", name);
	return ok ? 0 : -1;
}

int
ckpt_optim_read(const char *path, const struct model *m, struct ckpt_optim *o,
    char *err, size_t errlen)
{
	struct st_frame f;
	const struct st_tensor *t;
	const char *s;
	char e[ST_ERRLEN], *end;
	int64_t shp[1] = {(int64_t)m->nparams};
	int rc = -1;

	if (st_load(&f, path, err, errlen) != 0)
		return -1;
	if (optim_config_read(&f, o, path, err, errlen) < 0)
		goto out;
	if (!(s = st_meta(&f, "optim_lr"))) {
		snprintf(err, errlen, "%s: no optimiser state (train with --ckpt-optim)", path);
		goto out;
	}
	o->lr = strtod(s, &end);
	/* 0 at the first step of a warm-up from zero (train-transformer's LambdaLR) */
	if (end == s || *end || !isfinite(o->lr) || o->lr < 0) {
		snprintf(err, errlen, "%s: optim_lr '%s' is not a number >= 0", path, s);
		goto out;
	}
	if (ckpt_meta_long(&f, "optim_t", 0, LLONG_MAX, &o->t, path, err, errlen) < 0)
		goto out;
	if (o->kind != OPT_SGD && o->t > 0) {   /* before its first step Adam has none */
		if (!(t = st_expect(&f, "optim.v", ST_F32, 1, shp, e, sizeof e))) {
			snprintf(err, errlen, "%s: %s", path, e);
			goto out;
		}
		memcpy(o->v, t->data, t->nbytes);
		for (size_t k = 0; k < m->nparams; k++)
			if (!isfinite(o->v[k]) || o->v[k] < 0) {
				snprintf(err, errlen, "%s: optim.v[%zu] = %g is not a second moment", path, k,
				    (double)o->v[k]);
				goto out;
			}
	}
	rc = 0;
out:
	st_free(&f);
	return rc;
}
