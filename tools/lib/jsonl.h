/*
 * jsonl: JSON-lines records, one object per line, flushed per line so a
 * reader (tail -f, jq, a crashed run's log) always sees whole records.
 *
 * Reals are written in the shortest form that reads back to the same
 * double; NaN and infinities, which JSON cannot hold, are written as null.
 * Every record has a "record" field naming its kind; the first record of
 * every tool's output is a header (see jsonl_header).
 */
#ifndef JSONL_H
#define JSONL_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* A real, or null when not finite. */
json_t *jnum(double v);
/* The n values of v as a JSON array of reals (null where not finite). */
json_t *jarray(const double *v, long n);
/* Write rec as one line and flush; 0, or -1 with errno set. */
int jsonl_write(FILE *fp, json_t *rec);
/* As jsonl_write, dying with a message on error; consumes rec. */
void jsonl_emit(FILE *fp, json_t *rec);
/*
 * The header every tool writes first:
 *   {"record":"header","tool":..,"version":..,"argv":[..],"seed":..,
 *    "config":config,"inputs":{}}
 * config is consumed.  Add input digests to "inputs" before writing.
 */
json_t *jsonl_header(const char *tool, int argc, char **argv, uint64_t seed,
    json_t *config);
/* v as one line of JSON in the same format (malloc'd). */
char *jsonl_string(json_t *v);
/* The shortest decimal form of v that reads back to the same double. */
void format_real(char *buf, size_t n, double v);

#endif
