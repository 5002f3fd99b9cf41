#include "dataset.h"
#include "sha256.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *const dataset_set_names[] = {"train", "test", "all", NULL};

void
dataset_rows(const struct dataset *d, enum dataset_set s, const int32_t **x,
    const int32_t **y, long *n, int *owned)
{
	int32_t *cx, *cy;

	*owned = 0;
	if (s != SET_ALL) {
		*x = s == SET_TRAIN ? d->train_x : d->test_x;
		*y = s == SET_TRAIN ? d->train_y : d->test_y;
		*n = s == SET_TRAIN ? d->n_train : d->n_test;
		return;
	}
	*n = (long)d->n_train + d->n_test;
	cx = xmalloc(xmul((size_t)*n, 2 * sizeof(int32_t)) + 1);
	cy = xmalloc(xmul((size_t)*n, sizeof(int32_t)) + 1);
	memcpy(cx, d->train_x, (size_t)d->n_train * 2 * sizeof(int32_t));
	memcpy(cx + 2 * (size_t)d->n_train, d->test_x, (size_t)d->n_test * 2 * sizeof(int32_t));
	memcpy(cy, d->train_y, (size_t)d->n_train * sizeof(int32_t));
	memcpy(cy + d->n_train, d->test_y, (size_t)d->n_test * sizeof(int32_t));
	*x = cx;
	*y = cy;
	*owned = 1;
}

/* Copy one split's tensors out, checking every value against p. */
static int
load_split(struct dataset *d, const struct st_frame *f, const char *split,
    int32_t **x, int32_t **y, int *n, const char *name, char *err, size_t errlen)
{
	char xn[32], yn[32], e[ST_ERRLEN];
	const struct st_tensor *tx, *ty;
	int64_t sx[2] = {-1, 2}, sy[1];

	snprintf(xn, sizeof xn, "%s.x", split);
	snprintf(yn, sizeof yn, "%s.y", split);
	if (!(tx = st_expect(f, xn, ST_I32, 2, sx, e, sizeof e)) ||
	    (sy[0] = tx->shape[0], !(ty = st_expect(f, yn, ST_I32, 1, sy, e, sizeof e)))) {
		snprintf(err, errlen, "%s: %s", name, e);
		return -1;
	}
	if (tx->shape[0] > (int64_t)DATASET_P_MAX * DATASET_P_MAX) {
		snprintf(err, errlen, "%s: %s has %lld rows, more than p^2 can give",
		    name, xn, (long long)tx->shape[0]);
		return -1;
	}
	*n = (int)tx->shape[0];
	*x = xmalloc(tx->nbytes + 1);
	*y = xmalloc(ty->nbytes + 1);
	memcpy(*x, tx->data, tx->nbytes);
	memcpy(*y, ty->data, ty->nbytes);
	for (int i = 0; i < *n; i++) {
		int32_t a = (*x)[2 * i], b = (*x)[2 * i + 1], c = (*y)[i];
		if (a < 0 || a >= d->p || b < 0 || b >= d->p || c < 0 || c >= d->p) {
			snprintf(err, errlen, "%s: %s row %d is (%d, %d) -> %d, outside 0..%d for p = %d",
			    name, split, i, a, b, c, d->p - 1, d->p);
			return -1;
		}
	}
	return 0;
}

int
dataset_from_frame(struct dataset *d, const struct st_frame *f, const char *name,
    char *err, size_t errlen)
{
	const char *ps = st_meta(f, "p");
	char *end;
	long p;

	memset(d, 0, sizeof *d);
	if (!ps) {
		snprintf(err, errlen, "%s: no 'p' in the metadata (not a gen-modadd data set?)", name);
		return -1;
	}
	errno = 0;
	p = strtol(ps, &end, 10);
	if (*ps == '\0' || *end != '\0' || errno || p < DATASET_P_MIN || p > DATASET_P_MAX) {
		snprintf(err, errlen, "%s: metadata p = '%s' is not an integer in %d..%d",
		    name, ps, DATASET_P_MIN, DATASET_P_MAX);
		return -1;
	}
	d->p = (int)p;
	if (load_split(d, f, "train", &d->train_x, &d->train_y, &d->n_train, name, err, errlen) < 0 ||
	    load_split(d, f, "test", &d->test_x, &d->test_y, &d->n_test, name, err, errlen) < 0) {
		dataset_free(d);
		return -1;
	}
	if (d->n_train == 0) {
		snprintf(err, errlen, "%s: the training split is empty", name);
		dataset_free(d);
		return -1;
	}
	d->meta = json_incref(f->meta);
	sha256_hex(f->digest, d->digest);
	return 0;
}

int
dataset_load(struct dataset *d, const char *path, char *err, size_t errlen)
{
	struct st_frame f;
	int rc;

	memset(d, 0, sizeof *d);
	if (st_load(&f, path, err, errlen) < 0)
		return -1;
	rc = dataset_from_frame(d, &f, strcmp(path, "-") ? path : "<stdin>", err, errlen);
	st_free(&f);
	return rc;
}

void
dataset_free(struct dataset *d)
{
	free(d->train_x);
	free(d->train_y);
	free(d->test_x);
	free(d->test_y);
	json_decref(d->meta);
	memset(d, 0, sizeof *d);
}

void
dataset_gather(const struct dataset *d, const int32_t *idx, int B, int32_t *bx, int32_t *by)
{
	for (int i = 0; i < B; i++) {
		int32_t r = idx[i];
		bx[2 * i] = d->train_x[2 * r];
		bx[2 * i + 1] = d->train_x[2 * r + 1];
		by[i] = d->train_y[r];
	}
}
