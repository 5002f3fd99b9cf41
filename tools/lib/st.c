#include "st.h"
#include "sha256.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this build assumes a little-endian host"
#endif

static const struct {
	const char *name;
	size_t size;
} dtypes[ST_NDTYPES] = {
	[ST_F32] = {"F32", 4}, [ST_F64] = {"F64", 8}, [ST_I32] = {"I32", 4},
	[ST_I64] = {"I64", 8}, [ST_U8] = {"U8", 1},
};

const char *
st_dtype_name(enum st_dtype t)
{
	return (unsigned)t < ST_NDTYPES ? dtypes[t].name : "?";
}

size_t
st_dtype_size(enum st_dtype t)
{
	return (unsigned)t < ST_NDTYPES ? dtypes[t].size : 0;
}

static int
fail(char *err, size_t errlen, const char *name, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, errlen, "%s: ", name);

	if (n < 0 || (size_t)n >= errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Read exactly n bytes into a buffer grown as data arrives, so a header
 * that claims gigabytes for a short stream fails at its end instead of
 * allocating what it claims up front.
 */
static size_t
read_grow(FILE *fp, unsigned char **out, size_t n)
{
	const size_t chunk = 64u << 20;
	unsigned char *b = NULL;
	size_t got = 0;

	while (got < n) {
		size_t want = n - got < chunk ? n - got : chunk;
		size_t r;
		b = xrealloc(b, got + want);
		r = fread(b + got, 1, want, fp);
		got += r;
		if (r < want)
			break;
	}
	*out = b;
	return got;
}

static int
parse_dtype(const char *s)
{
	for (int i = 0; i < ST_NDTYPES; i++)
		if (strcmp(s, dtypes[i].name) == 0)
			return i;
	return -1;
}

static int
u64_value(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* One tensor entry of the header; offsets go to begin/end. */
static int
parse_entry(struct st_tensor *t, const char *key, json_t *v, uint64_t *begin,
    uint64_t *end, const char *name, char *err, size_t errlen)
{
	json_t *dt, *shape, *off, *x;
	const char *k;
	uint64_t numel = 1;
	size_t i;
	int d;

	if (key[0] == '\0')
		return fail(err, errlen, name, "header: empty tensor name");
	if (!json_is_object(v))
		return fail(err, errlen, name, "header: tensor '%s' is not an object", key);
	json_object_foreach(v, k, x)
		if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
			return fail(err, errlen, name, "header: tensor '%s': unknown key '%s'", key, k);
	dt = json_object_get(v, "dtype");
	shape = json_object_get(v, "shape");
	off = json_object_get(v, "data_offsets");
	if (!json_is_string(dt))
		return fail(err, errlen, name, "header: tensor '%s': missing or non-string dtype", key);
	if ((d = parse_dtype(json_string_value(dt))) < 0)
		return fail(err, errlen, name, "header: tensor '%s': unsupported dtype '%s' (supported: F32, F64, I32, I64, U8)",
		    key, json_string_value(dt));
	if (!json_is_array(shape))
		return fail(err, errlen, name, "header: tensor '%s': missing or non-array shape", key);
	if (json_array_size(shape) > ST_MAX_DIMS)
		return fail(err, errlen, name, "header: tensor '%s': %zu dimensions (at most %d)",
		    key, json_array_size(shape), ST_MAX_DIMS);
	t->dtype = (enum st_dtype)d;
	t->ndim = (int)json_array_size(shape);
	json_array_foreach(shape, i, x) {
		uint64_t e;
		if (u64_value(x, &e) < 0)
			return fail(err, errlen, name, "header: tensor '%s': shape[%zu] is not a non-negative integer", key, i);
		/* Overflow only; the size limit is checked on the whole data section. */
		if (e != 0 && numel > (SIZE_MAX / 8) / e)
			return fail(err, errlen, name, "header: tensor '%s': shape is too large (its size overflows)", key);
		numel *= e;
		t->shape[i] = (int64_t)e;
	}
	if (!json_is_array(off) || json_array_size(off) != 2 ||
	    u64_value(json_array_get(off, 0), begin) < 0 ||
	    u64_value(json_array_get(off, 1), end) < 0)
		return fail(err, errlen, name, "header: tensor '%s': data_offsets must be [begin, end] of non-negative integers", key);
	if (*begin > *end)
		return fail(err, errlen, name, "header: tensor '%s': data_offsets [%llu, %llu] end before they begin",
		    key, (unsigned long long)*begin, (unsigned long long)*end);
	t->numel = (size_t)numel;
	t->nbytes = (size_t)numel * dtypes[d].size;
	if (*end - *begin != t->nbytes)
		return fail(err, errlen, name, "header: tensor '%s': data_offsets span %llu bytes but %s shape needs %zu",
		    key, (unsigned long long)(*end - *begin), dtypes[d].name, t->nbytes);
	t->name = xstrdup(key);
	return 0;
}

static int
parse_meta(struct st_frame *f, json_t *v, const char *name, char *err, size_t errlen)
{
	const char *k;
	json_t *x;

	if (!json_is_object(v))
		return fail(err, errlen, name, "header: __metadata__ is not an object");
	json_object_foreach(v, k, x)
		if (!json_is_string(x))
			return fail(err, errlen, name, "header: __metadata__ value of '%s' is not a string", k);
	json_decref(f->meta);
	f->meta = json_incref(v);
	return 0;
}

struct span {
	uint64_t begin, end;
	size_t idx;
};

static int
span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return 0;
}

/* Parse the header JSON into f; returns the data section's length via total. */
static int
parse_header(struct st_frame *f, const unsigned char *h, size_t n, uint64_t *total,
    const char *name, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root, *v;
	const char *k;
	struct span *sp;
	struct st_tensor *tt;
	size_t nt = 0, len = n;
	int rc = -1;

	if (n == 0 || h[0] != '{')
		return fail(err, errlen, name, "header: does not start with '{' (not a safetensors file?)");
	while (len > 0 && h[len - 1] == ' ')
		len--;
	root = json_loadb((const char *)h, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return fail(err, errlen, name, "header: invalid JSON at byte %d: %s", je.position, je.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return fail(err, errlen, name, "header: not a JSON object");
	}
	if (json_object_size(root) > ST_MAX_TENSORS + 1) {
		json_decref(root);
		return fail(err, errlen, name, "header: more than %d tensors", ST_MAX_TENSORS);
	}
	sp = xcalloc(json_object_size(root) + 1, sizeof *sp);
	tt = xcalloc(json_object_size(root) + 1, sizeof *tt);
	f->t = tt;
	json_object_foreach(root, k, v) {
		if (strcmp(k, "__metadata__") == 0) {
			if (parse_meta(f, v, name, err, errlen) < 0)
				goto out;
			continue;
		}
		if (parse_entry(&tt[nt], k, v, &sp[nt].begin, &sp[nt].end, name, err, errlen) < 0)
			goto out;
		sp[nt].idx = nt;
		f->ntensors = ++nt;
	}
	/* The data section must be covered exactly: no holes, no overlaps. */
	qsort(sp, nt, sizeof *sp, span_cmp);
	*total = 0;
	for (size_t i = 0; i < nt; i++) {
		if (sp[i].begin != *total) {
			fail(err, errlen, name, "header: tensor '%s' starts at byte %llu, expected %llu (data must be contiguous)",
			    tt[sp[i].idx].name, (unsigned long long)sp[i].begin, (unsigned long long)*total);
			goto out;
		}
		*total = sp[i].end;
	}
	if (*total > ST_MAX_DATA) {
		fail(err, errlen, name, "header: %llu bytes of data exceed the limit of %llu",
		    (unsigned long long)*total, (unsigned long long)ST_MAX_DATA);
		goto out;
	}
	/* Keep the tensors in data order, which is also the order they were written. */
	{
		struct st_tensor *sorted = xcalloc(nt + 1, sizeof *sorted);
		for (size_t i = 0; i < nt; i++) {
			sorted[i] = tt[sp[i].idx];
			sorted[i].data = (const unsigned char *)(uintptr_t)sp[i].begin;
		}
		free(tt);
		f->t = sorted;
	}
	rc = 0;
out:
	free(sp);
	json_decref(root);
	return rc;
}

int
st_read(struct st_frame *f, FILE *fp, const char *name, char *err, size_t errlen)
{
	unsigned char lenbuf[8], *h = NULL;
	struct sha256 sh;
	uint64_t n = 0, total = 0;
	size_t got;

	memset(f, 0, sizeof *f);
	got = fread(lenbuf, 1, 8, fp);
	if (got == 0 && !ferror(fp))
		return 1;
	if (got < 8) {
		if (ferror(fp))
			return fail(err, errlen, name, "read error: %s", strerror(errno));
		return fail(err, errlen, name, "truncated: %zu of the 8 bytes of header length", got);
	}
	for (int i = 7; i >= 0; i--)
		n = n << 8 | lenbuf[i];
	if (n > ST_MAX_HEADER)
		return fail(err, errlen, name, "header length %llu exceeds the limit of %llu bytes (not a safetensors file?)",
		    (unsigned long long)n, ST_MAX_HEADER);
	got = read_grow(fp, &h, (size_t)n);
	if (got < n) {
		free(h);
		if (ferror(fp))
			return fail(err, errlen, name, "read error: %s", strerror(errno));
		return fail(err, errlen, name, "truncated header: %zu of %llu bytes", got, (unsigned long long)n);
	}
	if (parse_header(f, h, (size_t)n, &total, name, err, errlen) < 0) {
		free(h);
		st_free(f);
		return -1;
	}
	if (!f->meta)
		f->meta = json_object();
	got = read_grow(fp, &f->buf, (size_t)total);
	f->nbuf = got;
	if (!f->buf)
		f->buf = xmalloc(1);	/* tensors of no bytes still point somewhere */
	if (got < total) {
		int rerr = ferror(fp);
		free(h);
		st_free(f);
		if (rerr)
			return fail(err, errlen, name, "read error: %s", strerror(errno));
		return fail(err, errlen, name, "truncated data: %zu of %llu bytes", got, (unsigned long long)total);
	}
	for (size_t i = 0; i < f->ntensors; i++)
		f->t[i].data = f->buf + (uintptr_t)f->t[i].data;
	sha256_init(&sh);
	sha256_update(&sh, lenbuf, 8);
	sha256_update(&sh, h, (size_t)n);
	sha256_update(&sh, f->buf, f->nbuf);
	sha256_final(&sh, f->digest);
	free(h);
	return 0;
}

int
st_load(struct st_frame *f, const char *path, char *err, size_t errlen)
{
	int is_stdin = strcmp(path, "-") == 0;
	const char *name = is_stdin ? "<stdin>" : path;
	FILE *fp = is_stdin ? stdin : fopen(path, "rb");
	int rc, c;

	memset(f, 0, sizeof *f);
	if (!fp)
		return fail(err, errlen, name, "%s", strerror(errno));
	rc = st_read(f, fp, name, err, errlen);
	if (rc == 1) {
		rc = fail(err, errlen, name, "empty input (no safetensors frame)");
	} else if (rc == 0 && (c = getc(fp)) != EOF) {
		st_free(f);
		rc = fail(err, errlen, name, "trailing bytes after the safetensors frame");
	}
	if (!is_stdin)
		fclose(fp);
	return rc;
}

void
st_free(struct st_frame *f)
{
	for (size_t i = 0; i < f->ntensors; i++)
		free(f->t[i].name);
	free(f->t);
	free(f->buf);
	json_decref(f->meta);
	memset(f, 0, sizeof *f);
}

const struct st_tensor *
st_find(const struct st_frame *f, const char *name)
{
	for (size_t i = 0; i < f->ntensors; i++)
		if (strcmp(f->t[i].name, name) == 0)
			return &f->t[i];
	return NULL;
}

const char *
st_meta(const struct st_frame *f, const char *key)
{
	return json_string_value(json_object_get(f->meta, key));
}

static void
shape_str(char *s, size_t n, int ndim, const int64_t *shape)
{
	size_t k = (size_t)snprintf(s, n, "[");

	for (int i = 0; i < ndim && k < n; i++)
		k += (size_t)snprintf(s + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
	if (k < n)
		snprintf(s + k, n - k, "]");
}

const struct st_tensor *
st_expect(const struct st_frame *f, const char *name, enum st_dtype dtype,
    int ndim, const int64_t *shape, char *err, size_t errlen)
{
	const struct st_tensor *t = st_find(f, name);
	char want[128], got[128];
	int ok;

	if (!t) {
		snprintf(err, errlen, "missing tensor '%s'", name);
		return NULL;
	}
	if (t->dtype != dtype) {
		snprintf(err, errlen, "tensor '%s' has dtype %s, expected %s",
		    name, st_dtype_name(t->dtype), st_dtype_name(dtype));
		return NULL;
	}
	ok = t->ndim == ndim;
	for (int i = 0; ok && i < ndim; i++)
		ok = shape[i] < 0 || shape[i] == t->shape[i];
	if (!ok) {
		shape_str(want, sizeof want, ndim, shape);
		shape_str(got, sizeof got, t->ndim, t->shape);
		snprintf(err, errlen, "tensor '%s' has shape %s, expected %s (-1: any)",
		    name, got, want);
		return NULL;
	}
	return t;
}

void
st_writer_init(struct st_writer *w)
{
	memset(w, 0, sizeof *w);
	w->meta = json_object();
}

void
st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype,
    int ndim, const int64_t *shape, const void *data)
{
	struct st_wtensor *t;

	if (ndim < 0 || ndim > ST_MAX_DIMS)
		die("internal error: tensor '%s' has %d dimensions", name, ndim);
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 16;
		w->t = xrealloc(w->t, xmul(w->cap, sizeof *w->t));
	}
	t = &w->t[w->n++];
	t->name = xstrdup(name);
	t->dtype = dtype;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
	t->data = data;
}

void
st_writer_meta(struct st_writer *w, const char *key, const char *value)
{
	json_object_set_new(w->meta, key, json_string(value));
}

void
st_writer_meta_long(struct st_writer *w, const char *key, long long value)
{
	char buf[32];

	snprintf(buf, sizeof buf, "%lld", value);
	st_writer_meta(w, key, buf);
}

static size_t
wt_bytes(const struct st_wtensor *t)
{
	size_t n = st_dtype_size(t->dtype);

	for (int i = 0; i < t->ndim; i++)
		n = xmul(n, (size_t)t->shape[i]);
	return n;
}

int
st_write(const struct st_writer *w, FILE *fp)
{
	json_t *root = json_object();
	unsigned char lenbuf[8];
	size_t off = 0, hlen, padded;
	char *h;
	int rc = 0;

	if (json_object_size(w->meta) > 0)
		json_object_set(root, "__metadata__", w->meta);
	for (size_t i = 0; i < w->n; i++) {
		const struct st_wtensor *t = &w->t[i];
		json_t *e = json_object(), *shape = json_array();
		size_t nb = wt_bytes(t);
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(shape, json_integer(t->shape[d]));
		json_object_set_new(e, "dtype", json_string(st_dtype_name(t->dtype)));
		json_object_set_new(e, "shape", shape);
		json_object_set_new(e, "data_offsets",
		    json_pack("[II]", (json_int_t)off, (json_int_t)(off + nb)));
		json_object_set_new(root, t->name, e);
		off += nb;
	}
	h = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!h)
		die("out of memory encoding a safetensors header");
	hlen = strlen(h);
	padded = (hlen + 7) / 8 * 8;
	for (int i = 0; i < 8; i++)
		lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
	if (fwrite(lenbuf, 1, 8, fp) != 8 || fwrite(h, 1, hlen, fp) != hlen)
		rc = -1;
	for (size_t i = hlen; rc == 0 && i < padded; i++)
		if (putc(' ', fp) == EOF)
			rc = -1;
	for (size_t i = 0; rc == 0 && i < w->n; i++) {
		size_t nb = wt_bytes(&w->t[i]);
		if (nb && fwrite(w->t[i].data, 1, nb, fp) != nb)
			rc = -1;
	}
	free(h);
	return rc;
}

void
st_writer_free(struct st_writer *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->t[i].name);
	free(w->t);
	json_decref(w->meta);
	memset(w, 0, sizeof *w);
}
