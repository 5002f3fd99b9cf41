#define _POSIX_C_SOURCE 200809L
#include "jsonl.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

json_t *
jnum(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

void
format_real(char *buf, size_t n, double v)
{
	int prec = 1;

	for (; prec < 17; prec++) {
		snprintf(buf, n, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	/* Whole numbers below 1e17 in positional form: 100.0, not 1e+02. */
	if (isfinite(v) && fabs(v) >= 1 && fabs(v) < 1e17) {
		int digits = (int)floor(log10(fabs(v))) + 1;
		if (digits > prec)
			prec = digits;
	}
	snprintf(buf, n, "%.*g", prec, v);
	/* Keep reals recognisable as reals to strict readers. */
	if (!strpbrk(buf, ".eEn"))
		strncat(buf, ".0", n - strlen(buf) - 1);
}

static int
dump(FILE *fp, json_t *v)
{
	char num[40];
	const char *k;
	json_t *x;
	size_t i;
	int first = 1;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (putc('{', fp) == EOF)
			return -1;
		json_object_foreach(v, k, x) {
			json_t *key = json_string(k);
			int rc = (!first && putc(',', fp) == EOF) ||
			    dump(fp, key) < 0 || putc(':', fp) == EOF || dump(fp, x) < 0;
			json_decref(key);
			if (rc)
				return -1;
			first = 0;
		}
		return putc('}', fp) == EOF ? -1 : 0;
	case JSON_ARRAY:
		if (putc('[', fp) == EOF)
			return -1;
		json_array_foreach(v, i, x)
			if ((i && putc(',', fp) == EOF) || dump(fp, x) < 0)
				return -1;
		return putc(']', fp) == EOF ? -1 : 0;
	case JSON_REAL:
		if (!isfinite(json_real_value(v)))
			return fputs("null", fp) == EOF ? -1 : 0;
		format_real(num, sizeof num, json_real_value(v));
		return fputs(num, fp) == EOF ? -1 : 0;
	default:
		return json_dumpf(v, fp, JSON_ENCODE_ANY | JSON_COMPACT);
	}
}

char *
jsonl_string(json_t *v)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *fp = open_memstream(&buf, &n);

	if (!fp || dump(fp, v) < 0 || fclose(fp) != 0)
		die("out of memory encoding JSON");
	return buf;
}

int
jsonl_write(FILE *fp, json_t *rec)
{
	if (dump(fp, rec) < 0 || putc('\n', fp) == EOF || fflush(fp) != 0)
		return -1;
	return 0;
}

void
jsonl_emit(FILE *fp, json_t *rec)
{
	int rc = jsonl_write(fp, rec);

	json_decref(rec);
	if (rc < 0)
		die("error writing %s:", fp == stdout ? "standard output" : "log");
}

json_t *
jsonl_header(const char *tool, int argc, char **argv, uint64_t seed, json_t *config)
{
	json_t *a = json_array();

	for (int i = 0; i < argc; i++)
		json_array_append_new(a, json_string(argv[i]));
	return json_pack("{s:s, s:s, s:s, s:o, s:I, s:o, s:o}",
	    "record", "header", "tool", tool, "version", GROK_VERSION,
	    "argv", a, "seed", (json_int_t)seed, "config", config,
	    "inputs", json_object());
}

json_t *
jarray(const double *v, long n)
{
	json_t *a = json_array();

	for (long i = 0; i < n; i++)
		json_array_append_new(a, jnum(v[i]));
	return a;
}
