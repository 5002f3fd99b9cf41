#include "ckpt.h"
#include "jsonl.h"
#include "opts.h"
#include "sha256.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
ckpt_add_params(struct st_writer *w, const struct mlp *m, const float *theta)
{
	char name[64];
	int64_t shape[2];
	int ndim;

	for (int k = 0; k < 2 * m->nlayers; k++) {
		size_t off = mlp_tensor_info(m, k, &ndim, shape);
		mlp_tensor_name(k, name, sizeof name);
		st_writer_add(w, name, ST_F32, ndim, shape, theta + off);
	}
}

void
ckpt_add_meta(struct st_writer *w, const struct mlp *m, long step,
    const char *data_digest, const char *config_json)
{
	char buf[64];

	st_writer_meta(w, "format", "grokkit-ckpt-v1");
	st_writer_meta(w, "tool", "train-mlp " GROK_VERSION);
	snprintf(buf, sizeof buf, "%ld", step);
	st_writer_meta(w, "step", buf);
	snprintf(buf, sizeof buf, "%d", m->c.p);
	st_writer_meta(w, "p", buf);
	snprintf(buf, sizeof buf, "%d", m->c.depth);
	st_writer_meta(w, "depth", buf);
	snprintf(buf, sizeof buf, "%d", m->c.width);
	st_writer_meta(w, "width", buf);
	st_writer_meta(w, "encoding", mlp_encoding_names[m->c.encoding]);
	st_writer_meta(w, "loss", mlp_loss_names[m->c.loss]);
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

int
ckpt_meta_long(const struct st_frame *f, const char *key, long long min,
    long long max, long long *out, const char *name, char *err, size_t errlen)
{
	const char *s = st_meta(f, key);
	char *end;

	if (!s) {
		snprintf(err, errlen, "%s: no '%s' in the metadata (not a train-mlp checkpoint?)", name, key);
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

static int
meta_choice(const struct st_frame *f, const char *key, const char *const *names,
    int *out, const char *name, char *err, size_t errlen)
{
	const char *s = st_meta(f, key);

	if (!s) {
		snprintf(err, errlen, "%s: no '%s' in the metadata (not a train-mlp checkpoint?)", name, key);
		return -1;
	}
	for (int i = 0; names[i]; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	snprintf(err, errlen, "%s: metadata %s = '%s' is unknown", name, key, s);
	return -1;
}

int
ckpt_model(const struct st_frame *f, struct mlp *m, const char *name,
    char *err, size_t errlen)
{
	struct mlp_config c;
	long long p, depth, width;
	int enc, loss;

	if (ckpt_meta_long(f, "p", 2, 4096, &p, name, err, errlen) < 0 ||
	    ckpt_meta_long(f, "depth", 0, MLP_MAX_DEPTH, &depth, name, err, errlen) < 0 ||
	    ckpt_meta_long(f, "width", 1, MLP_MAX_WIDTH, &width, name, err, errlen) < 0 ||
	    meta_choice(f, "encoding", mlp_encoding_names, &enc, name, err, errlen) < 0 ||
	    meta_choice(f, "loss", mlp_loss_names, &loss, name, err, errlen) < 0)
		return -1;
	c.p = (int)p;
	c.depth = (int)depth;
	c.width = (int)width;
	c.encoding = (enum mlp_encoding)enc;
	c.loss = (enum mlp_loss)loss;
	if (mlp_layout(m, &c) < 0) {
		snprintf(err, errlen, "%s: the metadata describe no model this suite builds", name);
		return -1;
	}
	/*
	 * The parameters must be in the file: a hostile header claiming depth
	 * 16 and width 8192 must not make anyone allocate 4 GiB for them.
	 */
	if (m->nparams > f->nbuf / sizeof(float)) {
		snprintf(err, errlen, "%s: a model of %zu parameters, but the file holds only %zu bytes of tensor data",
		    name, m->nparams, f->nbuf);
		return -1;
	}
	return 0;
}

int
ckpt_params(const struct st_frame *f, const struct mlp *m, float *theta,
    const char *name, char *err, size_t errlen)
{
	char tname[64], e[ST_ERRLEN];
	int64_t shape[2];
	int ndim;

	/* A tensor of another depth (layers.{D+1}.weight) means a different model. */
	mlp_tensor_name(2 * m->nlayers, tname, sizeof tname);
	if (st_find(f, tname)) {
		snprintf(err, errlen, "%s: has '%s', so more layers than depth %d", name, tname, m->c.depth);
		return -1;
	}
	for (int k = 0; k < 2 * m->nlayers; k++) {
		size_t off = mlp_tensor_info(m, k, &ndim, shape);
		const struct st_tensor *t;
		mlp_tensor_name(k, tname, sizeof tname);
		if (!(t = st_expect(f, tname, ST_F32, ndim, shape, e, sizeof e))) {
			snprintf(err, errlen, "%s: %s (model: p=%d depth=%d width=%d %s)", name, e,
			    m->c.p, m->c.depth, m->c.width, mlp_encoding_names[m->c.encoding]);
			return -1;
		}
		memcpy(theta + off, t->data, t->nbytes);
		for (size_t i = 0; i < t->numel; i++)
			if (!isfinite(theta[off + i])) {
				snprintf(err, errlen, "%s: tensor '%s' holds a non-finite value at index %zu",
				    name, tname, i);
				return -1;
			}
	}
	return 0;
}

int
ckpt_open(const char *path, const struct dataset *d, const char *data_name,
    int any_data, struct mlp *m, float **theta, long long *step, char digest[65],
    char run_id[17], char *err, size_t errlen)
{
	struct st_frame f;
	const char *ds, *rid;
	int rc = -1;

	*theta = NULL;
	if (st_load(&f, path, err, errlen) < 0)
		return -1;
	if (ckpt_model(&f, m, path, err, errlen) < 0)
		goto out;
	if (m->c.p != d->p) {
		snprintf(err, errlen, "%s: a model for p = %d, but the data set has p = %d", path, m->c.p, d->p);
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
ckpt_write_eigvecs(const char *path, const struct mlp *m, const double *vecs,
    const double *eigenvalues, int k, const char *tool, long long step, const char *digest)
{
	size_t P = m->nparams;
	float *buf = xmalloc(xmul(xmul(P, (size_t)k), sizeof(float)));
	struct st_writer w;
	json_t *ev = json_array();
	char name[64], *vals;

	st_writer_init(&w);
	for (int t = 0; t < 2 * m->nlayers; t++) {
		int64_t shape[3], s2[2];
		int ndim;
		size_t off = mlp_tensor_info(m, t, &ndim, s2), len = (size_t)s2[0] * (ndim == 2 ? (size_t)s2[1] : 1);
		float *dst = buf + (size_t)k * off;
		for (int e = 0; e < k; e++)
			for (size_t q = 0; q < len; q++)
				dst[(size_t)e * len + q] = (float)vecs[(size_t)e * P + off + q];
		shape[0] = k;
		shape[1] = s2[0];
		shape[2] = s2[1];
		mlp_tensor_name(t, name, sizeof name);
		st_writer_add(&w, name, ST_F32, ndim + 1, shape, dst);
	}
	for (int e = 0; e < k; e++)
		json_array_append_new(ev, jnum(eigenvalues[e]));
	vals = jsonl_string(ev);
	st_writer_meta(&w, "format", "grokkit-eigvecs-v1");
	st_writer_meta(&w, "tool", tool);
	st_writer_meta(&w, "eigenvalues", vals);
	snprintf(name, sizeof name, "%lld", step);
	st_writer_meta(&w, "step", name);
	st_writer_meta(&w, "checkpoint_sha256", digest);
	if (ckpt_write_file(&w, path) < 0)
		die("error writing %s:", path);
	st_writer_free(&w);
	json_decref(ev);
	free(vals);
	free(buf);
}

int
ckpt_state_read(const struct st_frame *f, const struct mlp *m, long n_train,
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
