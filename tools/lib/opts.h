/*
 * opts: bounded parsing of option values and the suite's usage conventions.
 *
 * Every parser names the option in its message and states the allowed range;
 * a value outside it is a usage error (exit 2), never clamped.  On error the
 * message is printed followed by "Try 'prog --help'." and the tool exits 2.
 */
#ifndef OPTS_H
#define OPTS_H

#include <stdint.h>

/* Report a usage error and exit 2. */
void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* An integer in [min, max], decimal only. */
long long opt_int(const char *opt, const char *s, long long min, long long max);
/* A finite real in [min, max]. */
double opt_real(const char *opt, const char *s, double min, double max);
/* A finite real in the open interval (lo, hi). */
double opt_real_open(const char *opt, const char *s, double lo, double hi);
/* A seed: a decimal integer in 0..2^53-1. */
#define OPT_SEED_MAX 9007199254740991LL
uint64_t opt_seed(const char *opt, const char *s);
/* One of the NULL-terminated names; returns its index. */
int opt_choice(const char *opt, const char *s, const char *const *names);
/*
 * A comma-separated list of integers in [min, max], at most maxn of them,
 * without duplicates.  Returns the count; out must hold maxn values.
 */
int opt_int_list(const char *opt, const char *s, long long min, long long max,
    long long *out, int maxn);

#endif
