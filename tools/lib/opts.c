#define _POSIX_C_SOURCE 200809L
#include "opts.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", progname);
	quit(EXIT_USAGE);
}

long long
opt_int(const char *opt, const char *s, long long min, long long max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || end == s)
		usage_error("%s: '%s' is not an integer (allowed: %lld..%lld)",
		    opt, s, min, max);
	if (errno == ERANGE || v < min || v > max)
		usage_error("%s: %s is out of range (allowed: %lld..%lld)",
		    opt, s, min, max);
	return v;
}

static double
parse_real(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || end == s)
		usage_error("%s: '%s' is not a number", opt, s);
	if (!isfinite(v) || errno == ERANGE)
		usage_error("%s: '%s' is not a finite number", opt, s);
	return v;
}

double
opt_real(const char *opt, const char *s, double min, double max)
{
	double v = parse_real(opt, s);

	if (v < min || v > max)
		usage_error("%s: %s is out of range (allowed: %g..%g)",
		    opt, s, min, max);
	return v;
}

double
opt_real_open(const char *opt, const char *s, double lo, double hi)
{
	double v = parse_real(opt, s);

	if (!(v > lo && v < hi))
		usage_error("%s: %s is out of range (allowed: strictly between %g and %g)",
		    opt, s, lo, hi);
	return v;
}

uint64_t
opt_seed(const char *opt, const char *s)
{
	/* Seeds stay below 2^53 so that every JSON reader (jq included) reads them exactly. */
	return (uint64_t)opt_int(opt, s, 0, OPT_SEED_MAX);
}

int
opt_choice(const char *opt, const char *s, const char *const *names)
{
	char list[512] = "";
	int k = name_index(names, s);

	if (k >= 0)
		return k;
	for (int i = 0; names[i]; i++) {
		if (i)
			strncat(list, ", ", sizeof list - strlen(list) - 1);
		strncat(list, names[i], sizeof list - strlen(list) - 1);
	}
	usage_error("%s: unknown value '%s' (allowed: %s)", opt, s, list);
}

int
opt_int_list(const char *opt, const char *s, long long min, long long max,
    long long *out, int maxn)
{
	char *copy = xstrdup(s), *save = NULL, *tok;
	int n = 0;

	if (*s == '\0')
		usage_error("%s: empty list (example: %s 1,2)", opt, opt);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		long long v = opt_int(opt, tok, min, max);
		for (int i = 0; i < n; i++)
			if (out[i] == v)
				usage_error("%s: %lld listed twice", opt, v);
		if (n == maxn)
			usage_error("%s: more than %d values", opt, maxn);
		out[n++] = v;
	}
	free(copy);
	if (n == 0)
		usage_error("%s: empty list (example: %s 1,2)", opt, opt);
	return n;
}
