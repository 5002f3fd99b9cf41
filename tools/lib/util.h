/*
 * util: error reporting, checked allocation, checked output and atomic
 * file replacement, shared by every tool.
 *
 * Exit codes are the same across the suite:
 *   0  success
 *   1  runtime or data error (unreadable input, malformed file, write error)
 *   2  usage error (bad option or argument)
 * Tools may add their own documented codes above 2 (train-mlp: 3 diverged).
 */
#ifndef UTIL_H
#define UTIL_H

#include <stddef.h>
#include <stdio.h>

#define GROK_VERSION "0.1.0"

enum { EXIT_OK = 0, EXIT_DATA = 1, EXIT_USAGE = 2 };

/* The name messages start with; set once by the tool's main. */
extern const char *progname;
void setprogname(const char *argv0);

/*
 * die/warn: "prog: message" on stderr.  A format ending in ':' appends
 * ": strerror(errno)", as in OpenBSD's err(3) family.
 */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void die_code(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));
/* Exit with code after removing pending temporaries (see util.c). */
void quit(int code) __attribute__((noreturn));
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
/* xmalloc for blocks of many MiB, on huge pages where the system allows; free() frees it. */
void *xmalloc_big(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* The index of s in a NULL-terminated list of names, or -1 (also for s NULL). */
int name_index(const char *const *names, const char *s);
/* n * size, dying on overflow. */
size_t xmul(size_t n, size_t size);

/* Flush and close stdout, dying on any write error (full disk, closed pipe). */
void finish_stdout(void);

/*
 * Atomic replacement of a file: write to a temporary in the same directory,
 * then fsync and rename over the final name, so an interrupted writer never
 * leaves a partial file under the final name.  Temporaries still open when
 * the process dies through die() are removed.
 */
struct afile {
	FILE *fp;
	char *path;
	char *tmp;
};
/* Opens path's temporary; path "-" means stdout (no rename). 0 or -1 (errno). */
int afile_open(struct afile *af, const char *path);
/* Flush, fsync, close and rename into place.  0 or -1 (errno). */
int afile_commit(struct afile *af);
/* Close and remove the temporary; leaves any old file in place. */
void afile_abort(struct afile *af);

/*
 * Flush denormal results to zero and treat denormal inputs as zero (x86
 * MXCSR FTZ and DAZ), so that weights decaying towards zero never fall
 * onto the slow microcoded path; a no-op elsewhere.  Returns 1 if set.
 */
int flush_denormals(void);

/*
 * The process's peak resident memory in MiB (VmHWM, Linux), or -1 where
 * unknown.  Unlike getrusage's ru_maxrss it starts afresh at exec, so it
 * does not count a parent's memory a fork shared.
 */
double peak_rss_mib(void);

/*
 * The non-empty lines of a stream (newlines stripped), at most max of
 * them; dies on a read error or beyond max.  Free with free_lines.
 */
char **read_lines(FILE *fp, const char *name, size_t max, size_t *n);
void free_lines(char **lines, size_t n);

/* Seconds on a monotonic clock, for timings. */
double now_seconds(void);

#endif
