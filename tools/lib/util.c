#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE   /* madvise(MADV_HUGEPAGE) */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

const char *progname = "grok";

void
setprogname(const char *argv0)
{
	const char *s = strrchr(argv0, '/');

	progname = s ? s + 1 : argv0;
}

/*
 * Temporaries of atomic writes in flight.  die() removes them so a failed
 * run leaves neither a partial final file nor litter beside it.  Few files
 * are ever open at once, so a small fixed table is enough.
 */
#define MAX_PENDING 16
static struct afile *pending[MAX_PENDING];

static void
remove_pending(void)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (pending[i] && pending[i]->tmp)
			unlink(pending[i]->tmp);
}

/*
 * Leave after a fatal error.  Output already written is flushed, but the
 * exit handlers are skipped: the suite registers none, and skipping them
 * keeps LeakSanitizer from reporting what a dying process did not free
 * (leaks on paths that go on running are still reported).
 */
void
quit(int code)
{
	remove_pending();
	fflush(stdout);
	fflush(stderr);
	_exit(code);
}

static void
vmessage(const char *fmt, va_list ap)
{
	int saved = errno;
	size_t n = strlen(fmt);

	fprintf(stderr, "%s: ", progname);
	vfprintf(stderr, fmt, ap);
	if (n > 0 && fmt[n - 1] == ':')
		fprintf(stderr, " %s", strerror(saved));
	fputc('\n', stderr);
}

void
die_code(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage(fmt, ap);
	va_end(ap);
	quit(code);
}

void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage(fmt, ap);
	va_end(ap);
	quit(EXIT_DATA);
}

void
warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage(fmt, ap);
	va_end(ap);
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		die("out of memory allocating %zu bytes", n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		die("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *
xmalloc_big(size_t n)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
	/*
	 * Blocks of many MiB (a Gram matrix, a Lanczos basis) are touched
	 * page by page on first write: a 64 MiB matrix costs 16384 faults in
	 * 4 KiB pages and 32 in 2 MiB ones.  Transparent huge pages need
	 * 2 MiB alignment and, where the system leaves them to the program
	 * (the "madvise" setting, Debian's default), this advice.
	 */
	enum { HUGE = 2 << 20 };
	void *p;

	if (n >= (size_t)HUGE) {
		if (posix_memalign(&p, HUGE, n) != 0)
			die("out of memory allocating %zu bytes", n);
		(void)madvise(p, n, MADV_HUGEPAGE);   /* advice only: fine if refused */
		return p;
	}
#endif
	return xmalloc(n);
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		die("out of memory allocating %zu bytes", n);
	return q;
}

int
name_index(const char *const *names, const char *s)
{
	for (int i = 0; s && names[i]; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

char *
xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(xmalloc(n), s, n);
}

size_t
xmul(size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		die("size overflow: %zu x %zu", n, size);
	return n * size;
}

void
finish_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout))
		die("error writing standard output:");
	if (fclose(stdout) != 0)
		die("error closing standard output:");
}

static void
track(struct afile *af)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (!pending[i]) {
			pending[i] = af;
			return;
		}
	die("too many files open for writing at once");
}

static void
untrack(struct afile *af)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (pending[i] == af)
			pending[i] = NULL;
}

int
afile_open(struct afile *af, const char *path)
{
	struct stat sb;
	char *dcopy, *bcopy;
	size_t n;
	int fd;

	memset(af, 0, sizeof *af);
	if (strcmp(path, "-") == 0) {
		af->fp = stdout;
		return 0;
	}
	/*
	 * A device or pipe (/dev/full, /dev/stdout, a fifo) is written in
	 * place: renaming over it would replace the device, not write to it.
	 */
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		if (!(af->fp = fopen(path, "wb")))
			return -1;
		af->path = xstrdup(path);
		return 0;
	}
	af->path = xstrdup(path);
	dcopy = xstrdup(path);
	bcopy = xstrdup(path);
	/* A dot-name in the same directory: rename(2) is then atomic. */
	n = strlen(path) + 32;
	af->tmp = xmalloc(n);
	snprintf(af->tmp, n, "%s/.%s.tmp.XXXXXX", dirname(dcopy), basename(bcopy));
	free(dcopy);
	free(bcopy);
	fd = mkstemp(af->tmp);
	if (fd < 0 || fchmod(fd, 0644) < 0 || !(af->fp = fdopen(fd, "wb"))) {
		int saved = errno;
		if (fd >= 0) {
			close(fd);
			unlink(af->tmp);
		}
		free(af->tmp);
		free(af->path);
		memset(af, 0, sizeof *af);
		errno = saved;
		return -1;
	}
	track(af);
	return 0;
}

int
afile_commit(struct afile *af)
{
	int rc = 0, saved;

	if (!af->tmp) {
		/* stdout or a device: written in place, nothing to rename. */
		rc = (fflush(af->fp) != 0 || ferror(af->fp)) ? -1 : 0;
		saved = errno;
		if (af->path && fclose(af->fp) != 0 && rc == 0) {
			rc = -1;
			saved = errno;
		}
		free(af->path);
		af->fp = NULL;
		af->path = NULL;
		errno = saved;
		return rc;
	}
	if (fflush(af->fp) != 0 || ferror(af->fp) || fsync(fileno(af->fp)) != 0)
		rc = -1;
	saved = errno;
	if (fclose(af->fp) != 0 && rc == 0) {
		rc = -1;
		saved = errno;
	}
	af->fp = NULL;
	if (rc == 0 && rename(af->tmp, af->path) != 0) {
		rc = -1;
		saved = errno;
	}
	if (rc != 0)
		unlink(af->tmp);
	untrack(af);
	free(af->tmp);
	free(af->path);
	af->tmp = af->path = NULL;
	errno = saved;
	return rc;
}

void
afile_abort(struct afile *af)
{
	if (!af->tmp) {
		if (af->path && af->fp)
			fclose(af->fp);
		free(af->path);
		memset(af, 0, sizeof *af);
		return;
	}
	if (af->fp)
		fclose(af->fp);
	unlink(af->tmp);
	untrack(af);
	free(af->tmp);
	free(af->path);
	memset(af, 0, sizeof *af);
}

int
flush_denormals(void)
{
#if defined(__SSE__) || defined(__x86_64__)
	_mm_setcsr(_mm_getcsr() | 0x8040);   /* FTZ (bit 15) | DAZ (bit 6) */
	return 1;
#else
	return 0;
#endif
}

double
peak_rss_mib(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	double kib = -1;

	if (!fp)
		return -1;
	while (fgets(line, sizeof line, fp))
		if (strncmp(line, "VmHWM:", 6) == 0) {
			kib = strtod(line + 6, NULL);
			break;
		}
	fclose(fp);
	return kib < 0 ? -1 : kib / 1024.0;
}

char **
read_lines(FILE *fp, const char *name, size_t max, size_t *n)
{
	char **lines = NULL, *line = NULL;
	size_t cap = 0, len = 0;
	ssize_t got;

	*n = 0;
	while ((got = getline(&line, &len, fp)) >= 0) {
		while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
			line[--got] = '\0';
		if (got == 0)
			continue;
		if (*n == max)
			die("%s: more than %zu lines", name, max);
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			lines = xrealloc(lines, xmul(cap, sizeof *lines));
		}
		lines[(*n)++] = xstrdup(line);
	}
	free(line);
	if (ferror(fp))
		die("%s: read error:", name);
	return lines;
}

void
free_lines(char **lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
}

double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
