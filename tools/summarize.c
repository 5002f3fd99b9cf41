/*
 * summarize: grokking steps and tables from train-mlp, train-transformer,
 * hess-eig, gop-spectrum, llc-estimate and progress-measures logs.
 *
 * Records are joined by run_id (the trainers name every run by a hash of
 * its configuration and data, and the analyses copy it from the
 * checkpoints).  A run's model family (its log header's, or its trainer's)
 * comes first in the order of runs and always splits groups: a mean over
 * MLPs and transformers together is no statistic of either.  A
 * transformer's depth is its layers; it has no width.
 * Per run: the memorisation and generalisation steps (first log point at
 * or above the threshold), the delay between them, final and best
 * accuracies, the top Hessian eigenvalue at those steps and at its peak,
 * the gradient outer product's statistics and the local learning
 * coefficient at the same steps (and the LLC at the last checkpoint).  Per
 * group (--group-by): mean, standard deviation, minimum and maximum over
 * the runs, and how many reached each threshold.  A threshold never
 * reached is null with its flag false, never a made-up number.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "jsonl.h"
#include "model.h"
#include "opts.h"
#include "sha256.h"
#include "util.h"

#define MAX_FILES 100000

struct point {
	long step;
	double train_acc, test_acc;
};

struct hpoint {
	long step;
	double top;
	double pre_ratio;   /* hess-eig --precond: its sharpness over its threshold (NaN without) */
	char block[40];     /* hess-eig --blocks: the group whose block has the largest lambda_1 ("" without) */
};

struct gpoint {
	long step;
	double spectral, effective_rank, trace, mean_grad_sq;
};

struct lpoint {
	long step;
	double llc, std;
	int flagged;   /* some chain left the basin */
};

/* A progress-measures record (the mechanistic measures at a checkpoint). */
struct ppoint {
	long step;
	double restricted, excluded, key_var_frac;
	json_t *keys;   /* key_freqs, an array of frequencies */
};

struct run {
	char id[17];
	const char *file;
	json_t *config, *data;      /* the trainer's header's config and data metadata */
	json_t *family;             /* "mlp" or "transformer" (a string) */
	char blas_core[32];         /* the kernel family its products ran on ("" if unknown) */
	char status[16];
	struct point *pts;
	size_t npts, cpts;
	struct hpoint *h;
	size_t nh, ch;
	struct gpoint *g;
	size_t ng, cg;
	struct lpoint *l;
	size_t nl, cl;
	struct ppoint *pg;
	size_t npg, cpg;
};

static struct run *runs;
static size_t nruns, cruns;

/* --restricted-below: the restricted loss (nats) that counts as the circuit formed. */
static double restricted_below = 0.1;

static const char *const group_keys[] = {
	"recipe", "depth", "width", "seed", "wd", "lr", "optim", "frac", "p", "encoding", "loss", NULL,
};

/* The tools whose logs define runs. */
static int
is_trainer(const char *tool)
{
	return strcmp(tool, "train-mlp") == 0 || strcmp(tool, "train-transformer") == 0;
}

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: summarize [--threshold T] [--group-by KEYS] [--tsv] [LOG.jsonl...]\n");
}

static void
help(void)
{
	usage(stdout);
	printf(
"\n"
"Read train-mlp, train-transformer, hess-eig, gop-spectrum, llc-estimate and\n"
"progress-measures JSON-lines logs (the arguments, or their paths one per\n"
"line on standard input), join them by run_id, and write one record per\n"
"run (or per group with --group-by) after a header.  Runs of different\n"
"model families never share a group; a transformer's depth is its number\n"
"of layers.\n"
"\n"
"      --threshold T      accuracy that counts as memorised (train) and\n"
"                         generalised (test), 0 < T <= 1 (default 0.99)\n"
"      --group-by KEYS    comma-separated: recipe, depth, width, seed, wd, lr,\n"
"                         optim, frac, p, encoding, loss; mean, std, min, max\n"
"                         over each group's runs\n"
"      --restricted-below L  restricted loss (nats) below which the Fourier\n"
"                         circuit counts as formed, 0 < L <= 100 (default 0.1:\n"
"                         a geometric-mean probability of 0.9 on the answer)\n"
"      --tsv              a tab-separated table with a header line instead\n"
"                         (NaN where a value does not exist), for gnuplot\n"
"  -h, --help             show this help and exit\n"
"      --version          show the version and exit\n"
"\n"
"With progress-measures logs, each run also gets: the first analysed\n"
"checkpoint whose restricted loss is below --restricted-below (checkpoints\n"
"are log-spaced: the first past the crossing), the excluded loss at the\n"
"checkpoint nearest generalisation, and the key frequencies at the last.\n"
"\n"
"A log that ends early (an interrupted run) counts up to its last whole\n"
"record; its status is 'incomplete' if it has no final record.\n"
"Exit status: 0 success, 1 a file that is not one of our logs, 2 usage error.\n"
"\n"
"Examples:\n"
"  summarize results/small/*/*/log.jsonl results/small/*/*/hessian.jsonl > runs.jsonl\n"
"  ls results/small/*/*/*.jsonl | summarize --group-by recipe,depth --tsv > by-depth.tsv\n");
}

static struct run *
find_run(const char *id)
{
	for (size_t i = 0; i < nruns; i++)
		if (strcmp(runs[i].id, id) == 0)
			return &runs[i];
	if (nruns == cruns) {
		cruns = cruns ? 2 * cruns : 64;
		runs = xrealloc(runs, xmul(cruns, sizeof *runs));
	}
	memset(&runs[nruns], 0, sizeof runs[nruns]);
	snprintf(runs[nruns].id, sizeof runs[nruns].id, "%s", id);
	snprintf(runs[nruns].status, sizeof runs[nruns].status, "incomplete");
	return &runs[nruns++];
}

#define PUSH(arr, n, cap, val) do { \
	if ((n) == (cap)) { \
		(cap) = (cap) ? 2 * (cap) : 64; \
		(arr) = xrealloc((arr), xmul((cap), sizeof *(arr))); \
	} \
	(arr)[(n)++] = (val); \
} while (0)

static double
num(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : NAN;
}

/*
 * A record's step: a whole number 0..2^53.  (A NaN cast to long is
 * undefined behaviour; the fuzzer found that.)
 */
static int
step_of(json_t *rec, long *step)
{
	double v = num(rec, "step");

	if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v))
		return -1;
	*step = (long)v;
	return 0;
}

/* A progress-measures record: the measures summarize reports, at its step. */
static void
take_progress(struct run *r, long step, json_t *rec)
{
	json_t *k = json_object_get(rec, "key_freqs");
	struct ppoint p = {step, num(rec, "restricted_loss"), num(rec, "excluded_loss"),
	    num(rec, "key_var_frac"), json_is_array(k) ? json_incref(k) : json_array()};

	PUSH(r->pg, r->npg, r->cpg, p);
}

/* One record of a log whose header named tool; 0, or -1 with err. */
/* The group of the --blocks entry with the largest lambda_max into out ("" if none). */
static void
sharpest_block(json_t *blocks, char *out, size_t len)
{
	double best = -INFINITY;
	size_t i;
	json_t *b;

	*out = 0;
	json_array_foreach(blocks, i, b) {
		const char *g = json_string_value(json_object_get(b, "group"));
		if (g && num(b, "lambda_max") > best) {
			best = num(b, "lambda_max");
			snprintf(out, len, "%s", g);
		}
	}
}

static int
take(const char *file, long line, const char *tool, json_t *rec, const char **run_id,
    char *err, size_t errlen)
{
	const char *kind = json_string_value(json_object_get(rec, "record"));
	const char *rid = json_string_value(json_object_get(rec, "run_id"));
	struct run *r;
	long step = 0;

	if (!kind) {
		snprintf(err, errlen, "%s:%ld: a record without a \"record\" field", file, line);
		return -1;
	}
	if ((strcmp(kind, "metrics") == 0 || strcmp(kind, "hessian") == 0 || strcmp(kind, "gop") == 0 ||
	    strcmp(kind, "llc") == 0 || strcmp(kind, "progress") == 0) && step_of(rec, &step) < 0) {
		snprintf(err, errlen, "%s:%ld: a %s record without a whole, non-negative step", file, line, kind);
		return -1;
	}
	if (is_trainer(tool)) {
		r = find_run(*run_id);
		if (strcmp(kind, "metrics") == 0) {
			struct point p = {step, num(rec, "train_acc"), num(rec, "test_acc")};
			PUSH(r->pts, r->npts, r->cpts, p);
		} else if (strcmp(kind, "final") == 0) {
			const char *st = json_string_value(json_object_get(rec, "status"));
			snprintf(r->status, sizeof r->status, "%s", st ? st : "incomplete");
		}
		return 0;
	}
	if (!rid)
		return 0;   /* an analysis of a checkpoint that names no run */
	r = find_run(rid);
	if (strcmp(kind, "hessian") == 0) {
		json_t *ev = json_object_get(rec, "eigenvalues");
		const char *mat = json_string_value(json_object_get(rec, "matrix"));
		struct hpoint h = {step, json_number_value(json_array_get(ev, 0)),
		    num(json_object_get(rec, "precond"), "ratio"), ""};
		/* a Gauss-Newton spectrum is not the loss's sharpness */
		if (mat && strcmp(mat, "hessian") != 0)
			return 0;
		sharpest_block(json_object_get(rec, "blocks"), h.block, sizeof h.block);
		if (json_array_size(ev) > 0)
			PUSH(r->h, r->nh, r->ch, h);
	} else if (strcmp(kind, "gop") == 0) {
		json_t *gop = json_object_get(rec, "gop");
		struct gpoint g = {step, num(gop, "spectral"), num(gop, "effective_rank"),
		    num(gop, "trace"), num(rec, "mean_grad_sq")};
		PUSH(r->g, r->ng, r->cg, g);
	} else if (strcmp(kind, "llc") == 0) {
		/* Flagged by llc-estimate's health rule; an older record, by a chain that left. */
		json_t *healthy = json_object_get(rec, "healthy");
		struct lpoint l = {step, num(rec, "llc_mean"), num(rec, "llc_std"),
		    healthy ? !json_is_true(healthy) : num(rec, "chains_flagged") > 0};
		PUSH(r->l, r->nl, r->cl, l);
	} else if (strcmp(kind, "progress") == 0) {
		take_progress(r, step, rec);
	}
	return 0;
}

/*
 * The kernel family a run is reproducible within (docs/design.md), from
 * its header's blas object: gemm where the products ran on a kernel of
 * our own (gemm.h's "avx512"), else OpenBLAS's core.  Headers written
 * before each family named its own kernel gave every family the MLP's
 * gemm, so it is believed only for a family that has a kernel of its
 * own (model.h's kernel method).  Not exact for a transformer log of
 * those builds: the family has a kernel now, so its avx512 is taken,
 * though that build's transformer ran on OpenBLAS; its logs are remade
 * with the study's (every output depends on the binaries).
 */
static void
blas_core_of(const char *family, const json_t *blas, char *out, size_t n)
{
	const struct model_family *f = family ? model_family_find(family) : NULL;
	const char *gemm = json_string_value(json_object_get(blas, "gemm"));
	const char *core = json_string_value(json_object_get(blas, "core"));

	if (f && f->kernel && gemm && strcmp(gemm, "openblas") != 0)
		snprintf(out, n, "%s", gemm);
	else
		snprintf(out, n, "%s", core ? core : "");
}

/*
 * A trainer's header opens its run: the config, family, data fraction and
 * BLAS kernels; *rid points into rec.  0, or -1 with err.
 */
static int
run_from_header(json_t *rec, const char *file, const char *t, const char **rid, char *err,
    size_t errlen)
{
	struct run *r;
	json_t *md;
	const char *fr, *fam = json_string_value(json_object_get(rec, "family"));

	*rid = json_string_value(json_object_get(rec, "run_id"));
	if (!*rid) {
		snprintf(err, errlen, "%s: a %s log without a run_id (from an older version?)", file, t);
		return -1;
	}
	if (!json_is_object(json_object_get(rec, "config"))) {
		snprintf(err, errlen, "%s: a %s header without its config", file, t);
		return -1;
	}
	r = find_run(*rid);
	if (r->config) {
		snprintf(err, errlen, "%s: run %s already read from %s", file, *rid, r->file);
		return -1;
	}
	r->file = file;
	r->config = json_incref(json_object_get(rec, "config"));
	/* headers before the family field: the trainer says it */
	r->family = json_string(fam ? fam : strcmp(t, "train-mlp") == 0 ? "mlp" : "transformer");
	/* data set metadata are strings; the fraction is a number here */
	md = json_object_get(json_object_get(rec, "data"), "metadata");
	fr = json_string_value(json_object_get(md, "frac"));
	r->data = json_pack("{s:o}", "frac", fr ? jnum(strtod(fr, NULL)) : json_null());
	blas_core_of(json_string_value(r->family), json_object_get(rec, "blas"), r->blas_core,
	    sizeof r->blas_core);
	return 0;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto fail; } while (0)

/*
 * Read one log from fp (named file) into the runs; its SHA-256 goes into
 * inputs.  0, or -1 with err: the reader is also a fuzz target, so it
 * never exits and frees what it holds on every path.
 */
static int
read_log_fp(FILE *fp, const char *file, json_t *inputs, char *err, size_t errlen)
{
	char *line = NULL, hex[65], tool[32] = "";
	const char *rid = NULL;
	size_t cap = 0;
	ssize_t len;
	long lineno = 0;
	struct sha256 sh;
	unsigned char d[32];
	json_t *header = NULL, *rec = NULL;

	sha256_init(&sh);
	while ((len = getline(&line, &cap, fp)) >= 0) {
		json_error_t je;
		int last;
		lineno++;
		sha256_update(&sh, line, (size_t)len);
		last = line[len - 1] != '\n';
		if (len == 1 && !last)
			continue;
		rec = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &je);
		if (!rec || !json_is_object(rec)) {
			json_decref(rec);
			rec = NULL;
			if (lineno == 1)
				FAIL("%s: not a JSON-lines log of train-mlp, hess-eig, gop-spectrum or llc-estimate", file);
			/* A run killed mid-write leaves a partial last line: count up to it. */
			if (last) {
				warn("%s:%ld: ignoring a partial last line", file, lineno);
				break;
			}
			FAIL("%s:%ld: not a JSON object: %s", file, lineno, je.text);
		}
		if (lineno == 1) {
			const char *t = json_string_value(json_object_get(rec, "tool"));
			const char *k = json_string_value(json_object_get(rec, "record"));
			if (!k || strcmp(k, "header") != 0 || !t ||
			    (!is_trainer(t) && strcmp(t, "hess-eig") && strcmp(t, "gop-spectrum") &&
			    strcmp(t, "llc-estimate") && strcmp(t, "progress-measures")))
				FAIL("%s: not a log of train-mlp, hess-eig, gop-spectrum or llc-estimate (no such header)", file);
			snprintf(tool, sizeof tool, "%s", t);
			if (is_trainer(t)) {
				if (run_from_header(rec, file, t, &rid, err, errlen) < 0)
					goto fail;
				header = rec;   /* rid points into it: keep it to the end of the file */
				rec = NULL;
				continue;
			}
			json_decref(rec);
			rec = NULL;
			continue;
		}
		if (take(file, lineno, tool, rec, &rid, err, errlen) < 0)
			goto fail;
		json_decref(rec);
		rec = NULL;
	}
	if (ferror(fp))
		FAIL("%s: read error: %s", file, strerror(errno));
	if (lineno == 0)
		FAIL("%s: empty (not a log of train-mlp, hess-eig, gop-spectrum or llc-estimate)", file);
	free(line);
	sha256_final(&sh, d);
	sha256_hex(d, hex);
	json_object_set_new(inputs, file, json_string(hex));
	json_decref(header);
	return 0;
fail:
	free(line);
	json_decref(rec);
	json_decref(header);
	return -1;
}

#undef FAIL

static void
read_log(const char *file, json_t *inputs)
{
	FILE *fp = fopen(file, "r");
	char err[1024];
	int rc;

	if (!fp)
		die("%s:", file);
	rc = read_log_fp(fp, file, inputs, err, sizeof err);
	fclose(fp);
	if (rc < 0)
		die("%s", err);
}

static void
free_progress(struct run *r)
{
	for (size_t i = 0; i < r->npg; i++)
		json_decref(r->pg[i].keys);
	free(r->pg);
}

static void
free_runs(void)
{
	for (size_t i = 0; i < nruns; i++) {
		json_decref(runs[i].config);
		json_decref(runs[i].data);
		json_decref(runs[i].family);
		free(runs[i].pts);
		free(runs[i].h);
		free(runs[i].g);
		free(runs[i].l);
		free_progress(&runs[i]);
	}
	free(runs);
	runs = NULL;
	nruns = cruns = 0;
}

/* Run attributes that groups and tables use; NULL where the run has none (a transformer's width). */
static json_t *
attribute(const struct run *r, const char *key)
{
	json_t *model = json_object_get(r->config, "model"), *opt = json_object_get(r->config, "optim");

	if (strcmp(key, "family") == 0)
		return r->family;
	if (strcmp(key, "recipe") == 0)
		return json_object_get(r->config, "tag");
	/* the study's depth question spans both families: a transformer's depth is its blocks */
	if (strcmp(key, "depth") == 0 && !json_object_get(model, "depth"))
		return json_object_get(model, "layers");
	if (strcmp(key, "depth") == 0 || strcmp(key, "width") == 0 || strcmp(key, "p") == 0 ||
	    strcmp(key, "encoding") == 0 || strcmp(key, "loss") == 0)
		return json_object_get(model, key) ? json_object_get(model, key) : json_null();
	if (strcmp(key, "seed") == 0)
		return json_object_get(r->config, "seed");
	if (strcmp(key, "wd") == 0 || strcmp(key, "lr") == 0)
		return json_object_get(opt, key);
	if (strcmp(key, "optim") == 0)
		return json_object_get(opt, "name");
	if (strcmp(key, "frac") == 0)
		return json_object_get(r->data, "frac");
	return NULL;
}

/* attribute's value, or JSON null (borrowed either way, for json_pack's O). */
static json_t *
attr_or_null(const struct run *r, const char *key)
{
	json_t *v = attribute(r, key);

	return v ? v : json_null();
}

static long
first_reaching(const struct run *r, int test, double t)
{
	for (size_t i = 0; i < r->npts; i++) {
		double a = test ? r->pts[i].test_acc : r->pts[i].train_acc;
		if (a >= t)
			return r->pts[i].step;
	}
	return -1;
}

/*
 * Index of the record nearest to step (the earlier on a tie), or -1: the
 * records are n structs of size bytes, each starting with its long step.
 */
static long
nearest(const void *records, size_t n, size_t size, long step)
{
	const char *base = records;
	long best = -1, bestd = 0;

	for (size_t i = 0; i < n; i++) {
		long d = labs(*(const long *)(base + i * size) - step);
		if (best < 0 || d < bestd) {
			best = (long)i;
			bestd = d;
		}
	}
	return best;
}

static json_t *
hess_at(const struct run *r, long step)
{
	long i = step < 0 ? -1 : nearest(r->h, r->nh, sizeof *r->h, step);

	return i < 0 ? json_null() : json_pack("{s:I, s:o}", "step", (json_int_t)r->h[i].step,
	    "top", jnum(r->h[i].top));
}

/*
 * hess-eig's curvature views: the group whose block is sharpest at the
 * peak of lambda_1 (--blocks), and the largest preconditioned sharpness
 * over its threshold in the run (--precond); null without either.
 */
static json_t *
curvature_json(const struct run *r, long peak)
{
	long pre = -1;

	for (size_t i = 0; i < r->nh; i++)
		if (isfinite(r->h[i].pre_ratio) && (pre < 0 || r->h[i].pre_ratio > r->h[pre].pre_ratio))
			pre = (long)i;
	if (pre < 0 && (peak < 0 || !*r->h[peak].block))
		return json_null();
	return json_pack("{s:o, s:o}", "peak_block", peak >= 0 && *r->h[peak].block ?
	    json_string(r->h[peak].block) : json_null(),
	    "precond_peak", pre < 0 ? json_null() : json_pack("{s:I, s:o}",
	    "step", (json_int_t)r->h[pre].step, "ratio", jnum(r->h[pre].pre_ratio)));
}

static json_t *
gop_at(const struct run *r, long step)
{
	long i = step < 0 ? -1 : nearest(r->g, r->ng, sizeof *r->g, step);

	return i < 0 ? json_null() : json_pack("{s:I, s:o, s:o, s:o, s:o}", "step", (json_int_t)r->g[i].step,
	    "spectral", jnum(r->g[i].spectral), "effective_rank", jnum(r->g[i].effective_rank),
	    "trace", jnum(r->g[i].trace), "mean_grad_sq", jnum(r->g[i].mean_grad_sq));
}

static json_t *
llc_json(const struct lpoint *l)
{
	return json_pack("{s:I, s:o, s:o, s:b}", "step", (json_int_t)l->step, "llc", jnum(l->llc),
	    "std", jnum(l->std), "flagged", l->flagged);
}

static json_t *
llc_at(const struct run *r, long step)
{
	long i = step < 0 ? -1 : nearest(r->l, r->nl, sizeof *r->l, step);

	return i < 0 ? json_null() : llc_json(&r->l[i]);
}

static json_t *
step_or_null(long s)
{
	return s < 0 ? json_null() : json_integer(s);
}

static json_t *
ppoint_json(const struct ppoint *p)
{
	return json_pack("{s:I, s:o, s:o, s:o, s:O}", "step", (json_int_t)p->step,
	    "restricted_loss", jnum(p->restricted), "excluded_loss", jnum(p->excluded),
	    "key_var_frac", jnum(p->key_var_frac), "key_freqs", p->keys);
}

/*
 * The progress measures of a run (null without progress records): the
 * first analysed checkpoint whose restricted loss is below
 * restricted_below (the circuit has formed; checkpoints are log-spaced, so
 * this is the first checkpoint past the crossing, not the crossing), the
 * measures at the checkpoint nearest generalisation step gen (excluded
 * loss there: how much of the fit the Fourier directions carry) and at the
 * last checkpoint (the final key frequencies).
 */
static json_t *
progress_json(const struct run *r, long gen)
{
	long first = -1, last = 0, at;

	if (r->npg == 0)
		return json_null();
	for (size_t i = 0; i < r->npg; i++) {
		if (r->pg[i].restricted < restricted_below && (first < 0 || r->pg[i].step < first))
			first = r->pg[i].step;
		if (r->pg[i].step > r->pg[last].step)
			last = (long)i;
	}
	at = gen < 0 ? -1 : nearest(r->pg, r->npg, sizeof *r->pg, gen);
	return json_pack("{s:o, s:b, s:o, s:o, s:o}", "restricted_below", jnum(restricted_below),
	    "restricted_reached", first >= 0, "restricted_step", step_or_null(first),
	    "at_generalisation", at < 0 ? json_null() : ppoint_json(&r->pg[at]),
	    "final", ppoint_json(&r->pg[last]));
}

/* The per-run summary record. */
static json_t *
summarise(const struct run *r, double t)
{
	long mem = first_reaching(r, 0, t), gen = first_reaching(r, 1, t), peak = -1;
	double best = -1, fin_tr = NAN, fin_te = NAN;
	long best_step = -1;
	json_t *rec;

	for (size_t i = 0; i < r->npts; i++)
		if (r->pts[i].test_acc > best) {
			best = r->pts[i].test_acc;
			best_step = r->pts[i].step;
		}
	if (r->npts) {
		fin_tr = r->pts[r->npts - 1].train_acc;
		fin_te = r->pts[r->npts - 1].test_acc;
	}
	for (size_t i = 0; i < r->nh; i++)
		if (peak < 0 || r->h[i].top > r->h[peak].top)
			peak = (long)i;
	rec = json_pack("{s:s, s:s, s:s, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}",
	    "record", "run", "run_id", r->id, "log", r->file,
	    "recipe", attr_or_null(r, "recipe"), "depth", attr_or_null(r, "depth"),
	    "width", attr_or_null(r, "width"), "seed", attr_or_null(r, "seed"), "p", attr_or_null(r, "p"),
	    "frac", attr_or_null(r, "frac"), "optim", attr_or_null(r, "optim"), "lr", attr_or_null(r, "lr"),
	    "wd", attr_or_null(r, "wd"), "encoding", attr_or_null(r, "encoding"));
	json_object_set(rec, "family", attr_or_null(r, "family"));
	json_object_set(rec, "model", json_object_get(r->config, "model") ?
	    json_object_get(r->config, "model") : json_null());
	json_object_set_new(rec, "blas_core", *r->blas_core ? json_string(r->blas_core) : json_null());
	json_object_set_new(rec, "status", json_string(r->status));
	json_object_set_new(rec, "diverged", json_boolean(strcmp(r->status, "diverged") == 0));
	json_object_set_new(rec, "last_step", r->npts ? json_integer(r->pts[r->npts - 1].step) : json_null());
	json_object_set_new(rec, "memorised", json_boolean(mem >= 0));
	json_object_set_new(rec, "memorisation_step", step_or_null(mem));
	json_object_set_new(rec, "generalised", json_boolean(gen >= 0));
	json_object_set_new(rec, "generalisation_step", step_or_null(gen));
	json_object_set_new(rec, "grokking_delay", mem >= 0 && gen >= 0 ? json_integer(gen - mem) : json_null());
	json_object_set_new(rec, "grokking_ratio", mem > 0 && gen >= 0 ? jnum((double)gen / mem) : json_null());
	json_object_set_new(rec, "final_train_acc", jnum(fin_tr));
	json_object_set_new(rec, "final_test_acc", jnum(fin_te));
	json_object_set_new(rec, "best_test_acc", best_step >= 0 ? jnum(best) : json_null());
	json_object_set_new(rec, "best_test_step", step_or_null(best_step));
	json_object_set_new(rec, "hessian", json_pack("{s:o, s:o, s:o}",
	    "at_memorisation", hess_at(r, mem), "at_generalisation", hess_at(r, gen),
	    "peak", peak < 0 ? json_null() : json_pack("{s:I, s:o}", "step", (json_int_t)r->h[peak].step,
	    "top", jnum(r->h[peak].top))));
	json_object_set_new(rec, "curvature", curvature_json(r, peak));
	json_object_set_new(rec, "gop", json_pack("{s:o, s:o}",
	    "at_memorisation", gop_at(r, mem), "at_generalisation", gop_at(r, gen)));
	if (r->nl) {
		long last = 0, lpeak = 0;
		for (size_t i = 1; i < r->nl; i++) {
			if (r->l[i].step > r->l[last].step)
				last = (long)i;
			if (r->l[i].llc > r->l[lpeak].llc)
				lpeak = (long)i;
		}
		json_object_set_new(rec, "llc", json_pack("{s:o, s:o, s:o, s:o}",
		    "at_memorisation", llc_at(r, mem), "at_generalisation", llc_at(r, gen),
		    "peak", llc_json(&r->l[lpeak]), "final", llc_json(&r->l[last])));
	} else {
		json_object_set_new(rec, "llc", json_null());
	}
	json_object_set_new(rec, "progress", progress_json(r, gen));
	return rec;
}

static int
cmp_runs(const void *a, const void *b)
{
	const struct run *x = a, *y = b;
	static const char *const order[] = {"family", "recipe", "depth", "seed", "wd", "frac", NULL};

	for (int i = 0; order[i]; i++) {
		json_t *u = attribute(x, order[i]), *v = attribute(y, order[i]);
		char *su = u ? json_dumps(u, JSON_ENCODE_ANY) : NULL, *sv = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
		int c;
		if (json_is_number(u) && json_is_number(v))
			c = json_number_value(u) < json_number_value(v) ? -1 : json_number_value(u) > json_number_value(v);
		else
			c = strcmp(su ? su : "", sv ? sv : "");
		free(su);
		free(sv);
		if (c)
			return c;
	}
	return strcmp(x->id, y->id);
}

/* mean, std (n - 1), min, max and n of the non-null values. */
static json_t *
stats(const double *v, int n)
{
	double s = 0, s2 = 0, mn = INFINITY, mx = -INFINITY;
	int k = 0;

	for (int i = 0; i < n; i++)
		if (isfinite(v[i])) {
			s += v[i];
			mn = fmin(mn, v[i]);
			mx = fmax(mx, v[i]);
			k++;
		}
	if (k == 0)
		return json_pack("{s:n, s:n, s:n, s:n, s:i}", "mean", "std", "min", "max", "n", 0);
	for (int i = 0; i < n; i++)
		if (isfinite(v[i]))
			s2 += (v[i] - s / k) * (v[i] - s / k);
	return json_pack("{s:o, s:o, s:o, s:o, s:i}", "mean", jnum(s / k),
	    "std", k > 1 ? jnum(sqrt(s2 / (k - 1))) : json_null(), "min", jnum(mn), "max", jnum(mx), "n", k);
}

/*
 * What a group record summarises: the run record's field a (its member b,
 * if any), under name.  unflagged: LLC estimates whose chains left the
 * basin are left out (they are not estimates of anything), so that a mean
 * over them is never drawn as if it were one.
 */
struct group_metric {
	const char *a, *b, *name;
	int unflagged;
};

static const struct group_metric group_metrics[] = {
	{"memorisation_step", NULL, "memorisation_step", 0},
	{"generalisation_step", NULL, "generalisation_step", 0},
	{"grokking_delay", NULL, "grokking_delay", 0},
	{"grokking_ratio", NULL, "grokking_ratio", 0},
	{"final_test_acc", NULL, "final_test_acc", 0},
	{"best_test_acc", NULL, "best_test_acc", 0},
	{"hessian", "peak", "peak_sharpness", 0},
	{"hessian", "at_memorisation", "sharpness_at_memorisation", 0},
	{"hessian", "at_generalisation", "sharpness_at_generalisation", 0},
	{"llc", "at_memorisation", "llc_at_memorisation", 0},
	{"llc", "at_generalisation", "llc_at_generalisation", 0},
	{"llc", "final", "llc_final", 0},
	{"llc", "final", "llc_final_unflagged", 1},
	{NULL, NULL, NULL, 0},
};

/* The value of a record's member at (a step's summary) that metric m summarises. */
static json_t *
progress_field(const struct group_metric *m, json_t *at)
{
	if (strcmp(m->a, "progress") == 0)
		return json_object_get(at, "excluded_loss");
	return json_object_get(at, strcmp(m->a, "llc") == 0 ? "llc" : "top");
}

static double
field(json_t *rec, const struct group_metric *m)
{
	json_t *v = json_object_get(rec, m->a);

	if (m->b) {
		json_t *at = json_object_get(v, m->b);
		if (m->unflagged && json_is_true(json_object_get(at, "flagged")))
			return NAN;
		v = json_is_number(at) ? at : progress_field(m, at);
	}
	return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The progress measures' group metrics (their TSV columns come after all the others). */
static const struct group_metric progress_metrics[] = {
	{"progress", "restricted_step", "restricted_step", 0},
	{"progress", "at_generalisation", "excluded_at_generalisation", 0},
	{NULL, NULL, NULL, 0},
};

/* Group g's statistics of each metric of table over its m members in recs. */
static void
group_stats(json_t *g, json_t *recs, const size_t *members, size_t m, const struct group_metric *table)
{
	for (const struct group_metric *q = table; q->a; q++) {
		double *v = xmalloc(xmul(m + 1, sizeof *v));
		for (size_t j = 0; j < m; j++)
			v[j] = field(json_array_get(recs, members[j]), q);
		json_object_set_new(g, q->name, stats(v, (int)m));
		free(v);
	}
}

/* Runs whose LLC at the last checkpoint is flagged (some chain left the basin). */
static int
llc_final_flagged(json_t *rec)
{
	return json_is_true(json_object_get(json_object_get(json_object_get(rec, "llc"), "final"), "flagged"));
}

/* Group summaries over the run records, by the listed keys. */
/* The distinct kernel families the members trained on: a group mixing them mixes roundings. */
static json_t *
blas_cores(json_t *recs, const size_t *members, size_t m)
{
	json_t *out = json_array();

	for (size_t j = 0; j < m; j++) {
		json_t *c = json_object_get(json_array_get(recs, members[j]), "blas_core"), *x;
		size_t k;
		int seen = 0;
		if (!json_is_string(c))
			continue;
		json_array_foreach(out, k, x)
			seen |= json_equal(x, c);
		if (!seen)
			json_array_append(out, c);
	}
	return out;
}

static json_t *
groups(json_t *recs, char *const *keys, int nkeys)
{
	json_t *out = json_array();
	size_t n = json_array_size(recs);
	char *done = xcalloc(n + 1, 1);

	for (size_t i = 0; i < n; i++) {
		json_t *g, *first = json_array_get(recs, i);
		size_t *members, m = 0;
		int mem = 0, gen = 0, div = 0, flagged = 0;
		if (done[i])
			continue;
		members = xmalloc(xmul(n, sizeof *members));
		for (size_t j = i; j < n; j++) {
			int same = json_equal(json_object_get(first, "family"),
			    json_object_get(json_array_get(recs, j), "family"));
			for (int k = 0; k < nkeys && same; k++)
				same = json_equal(json_object_get(first, keys[k]),
				    json_object_get(json_array_get(recs, j), keys[k])) ||
				    (!json_object_get(first, keys[k]) && !json_object_get(json_array_get(recs, j), keys[k]));
			if (same && !done[j]) {
				done[j] = 1;
				members[m++] = j;
			}
		}
		g = json_object();
		json_object_set_new(g, "record", json_string("group"));
		json_object_set(g, "family", json_object_get(first, "family"));
		for (int k = 0; k < nkeys; k++)
			json_object_set(g, keys[k], json_object_get(first, keys[k]) ? json_object_get(first, keys[k]) : json_null());
		for (size_t j = 0; j < m; j++) {
			json_t *r = json_array_get(recs, members[j]);
			mem += json_is_true(json_object_get(r, "memorised"));
			gen += json_is_true(json_object_get(r, "generalised"));
			div += json_is_true(json_object_get(r, "diverged"));
			flagged += llc_final_flagged(r);
		}
		json_object_set_new(g, "runs", json_integer((json_int_t)m));
		json_object_set_new(g, "memorised", json_integer(mem));
		json_object_set_new(g, "generalised", json_integer(gen));
		json_object_set_new(g, "diverged", json_integer(div));
		json_object_set_new(g, "llc_final_flagged", json_integer(flagged));
		json_object_set_new(g, "blas_cores", blas_cores(recs, members, m));
		for (const struct group_metric *q = group_metrics; q->a; q++) {
			double *v = xmalloc(xmul(m + 1, sizeof *v));
			for (size_t j = 0; j < m; j++)
				v[j] = field(json_array_get(recs, members[j]), q);
			json_object_set_new(g, q->name, stats(v, (int)m));
			free(v);
		}
		group_stats(g, recs, members, m, progress_metrics);
		json_array_append_new(out, g);
		free(members);
	}
	free(done);
	return out;
}

static void
tsv_value(json_t *v)
{
	char buf[40];

	if (json_is_string(v))
		fputs(json_string_value(v), stdout);
	else if (json_is_integer(v))
		printf("%lld", (long long)json_integer_value(v));
	else if (json_is_real(v)) {
		format_real(buf, sizeof buf, json_real_value(v));
		fputs(buf, stdout);
	} else if (json_is_boolean(v))
		fputs(json_is_true(v) ? "1" : "0", stdout);
	else
		fputs("NaN", stdout);
}

/* A run's progress columns (last, so that the columns before keep their numbers). */
static const char tsv_progress_head[] =
	"restricted_step\texcluded_at_generalisation\tfinal_restricted_loss\tfinal_excluded_loss\tfinal_key_freqs";

static void
tsv_progress(json_t *pg)
{
	json_t *fin = json_object_get(pg, "final"), *k;
	size_t i;

	putchar('\t');
	tsv_value(json_object_get(pg, "restricted_step"));
	putchar('\t');
	tsv_value(json_object_get(json_object_get(pg, "at_generalisation"), "excluded_loss"));
	putchar('\t');
	tsv_value(json_object_get(fin, "restricted_loss"));
	putchar('\t');
	tsv_value(json_object_get(fin, "excluded_loss"));
	putchar('\t');
	if (!fin)
		fputs("NaN", stdout);
	else if (json_array_size(json_object_get(fin, "key_freqs")) == 0)
		putchar('-');   /* analysed, no key frequency */
	json_array_foreach(json_object_get(fin, "key_freqs"), i, k)
		printf("%s%lld", i ? "," : "", (long long)json_integer_value(k));
}

static void
tsv_runs(json_t *recs)
{
	static const char *const cols[] = {
		"recipe", "depth", "seed", "wd", "frac", "status", "memorisation_step", "generalisation_step",
		"grokking_delay", "grokking_ratio", "final_train_acc", "final_test_acc", "best_test_acc", NULL,
	};
	size_t i;
	json_t *r;

	for (int c = 0; cols[c]; c++)
		printf("%s%s", c ? "\t" : "", cols[c]);
	printf("\tpeak_sharpness\tpeak_sharpness_step\tsharpness_at_memorisation\tsharpness_at_generalisation");
	/* new columns last, so that the columns before keep their numbers */
	printf("\t%s\tblas_core\tfamily\n", tsv_progress_head);
	json_array_foreach(recs, i, r) {
		json_t *h = json_object_get(r, "hessian");
		for (int c = 0; cols[c]; c++) {
			if (c)
				putchar('\t');
			tsv_value(json_object_get(r, cols[c]));
		}
		putchar('\t');
		tsv_value(json_object_get(json_object_get(h, "peak"), "top"));
		putchar('\t');
		tsv_value(json_object_get(json_object_get(h, "peak"), "step"));
		putchar('\t');
		tsv_value(json_object_get(json_object_get(h, "at_memorisation"), "top"));
		putchar('\t');
		tsv_value(json_object_get(json_object_get(h, "at_generalisation"), "top"));
		tsv_progress(json_object_get(r, "progress"));
		putchar('\t');
		tsv_value(json_object_get(r, "blas_core"));
		putchar('\t');
		tsv_value(json_object_get(r, "family"));
		putchar('\n');
	}
}

/* The mean, std, min and max columns of table's metrics: their heads, or group g's values. */
static void
tsv_group_stats(json_t *g, const struct group_metric *table)
{
	static const char *const part[] = {"mean", "std", "min", "max"};

	for (const struct group_metric *q = table; q->a; q++)
		for (int p = 0; p < 4; p++) {
			putchar('\t');
			if (g)
				tsv_value(json_object_get(json_object_get(g, q->name), part[p]));
			else
				printf("%s_%s", q->name, part[p]);
		}
}

static void
tsv_groups(json_t *gs, char *const *keys, int nkeys)
{
	size_t i;
	json_t *g;

	for (int k = 0; k < nkeys; k++)
		printf("%s\t", keys[k]);
	printf("runs\tmemorised\tgeneralised\tdiverged");
	for (const struct group_metric *q = group_metrics; q->a; q++)
		printf("\t%s_mean\t%s_std\t%s_min\t%s_max", q->name, q->name, q->name, q->name);
	/* last, so that the columns before keep their numbers */
	printf("\tllc_final_flagged");
	tsv_group_stats(NULL, progress_metrics);
	printf("\tblas_cores\tfamily\n");
	json_array_foreach(gs, i, g) {
		for (int k = 0; k < nkeys; k++) {
			tsv_value(json_object_get(g, keys[k]));
			putchar('\t');
		}
		printf("%lld\t%lld\t%lld\t%lld", (long long)json_integer_value(json_object_get(g, "runs")),
		    (long long)json_integer_value(json_object_get(g, "memorised")),
		    (long long)json_integer_value(json_object_get(g, "generalised")),
		    (long long)json_integer_value(json_object_get(g, "diverged")));
		for (const struct group_metric *q = group_metrics; q->a; q++) {
			json_t *s = json_object_get(g, q->name);
			static const char *const part[] = {"mean", "std", "min", "max"};
			for (int p = 0; p < 4; p++) {
				putchar('\t');
				tsv_value(json_object_get(s, part[p]));
			}
		}
		putchar('\t');
		tsv_value(json_object_get(g, "llc_final_flagged"));
		tsv_group_stats(g, progress_metrics);
		putchar('\t');
		{
			size_t k;
			json_t *x;
			json_array_foreach(json_object_get(g, "blas_cores"), k, x)
				printf("%s%s", k ? "," : "", json_string_value(x));
		}
		putchar('\t');
		tsv_value(json_object_get(g, "family"));
		putchar('\n');
	}
}

struct options {
	double threshold;
	char *keys[16];   /* --group-by's keys, pointing into gcopy */
	int nkeys, tsv;
	char *gcopy;
};

static void
parse_group_by(struct options *o, const char *arg)
{
	char *save = NULL;

	free(o->gcopy);
	o->gcopy = xstrdup(arg);
	o->nkeys = 0;
	for (char *t = strtok_r(o->gcopy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		opt_choice("--group-by", t, group_keys);
		if (o->nkeys == 16)
			usage_error("--group-by: more than 16 keys");
		o->keys[o->nkeys++] = t;
	}
	if (o->nkeys == 0)
		usage_error("--group-by: no keys (example: --group-by recipe,depth)");
}

/* The options into o; -1 to go on, or the exit status (--help, --version, misuse). */
static int
parse_options(int argc, char **argv, struct options *o)
{
	enum { O_THRESHOLD = 256, O_GROUPBY, O_TSV, O_VERSION, O_RESTRICTED };
	static const struct option longopts[] = {
		{"threshold", required_argument, NULL, O_THRESHOLD},
		{"group-by", required_argument, NULL, O_GROUPBY},
		{"tsv", no_argument, NULL, O_TSV},
		{"restricted-below", required_argument, NULL, O_RESTRICTED},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION},
		{NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case O_THRESHOLD: o->threshold = opt_real("--threshold", optarg, 1e-9, 1); break;
		case O_GROUPBY: parse_group_by(o, optarg); break;
		case O_TSV: o->tsv = 1; break;
		case O_RESTRICTED: restricted_below = opt_real("--restricted-below", optarg, 1e-12, 100); break;
		case 'h': help(); finish_stdout(); return 0;
		case O_VERSION: printf("summarize %s\n", GROK_VERSION); finish_stdout(); return 0;
		default: fprintf(stderr, "Try 'summarize --help' for more information.\n"); return EXIT_USAGE;
		}
	}
	return -1;
}

/* The run records, in order of family, recipe, depth, seed, wd and frac. */
static json_t *
run_records(double threshold)
{
	json_t *recs = json_array();

	qsort(runs, nruns, sizeof *runs, cmp_runs);
	for (size_t i = 0; i < nruns; i++) {
		if (!runs[i].config) {
			warn("run %s: analyses but no train-mlp or train-transformer log; left out", runs[i].id);
			continue;
		}
		json_array_append_new(recs, summarise(&runs[i], threshold));
	}
	return recs;
}

/* The records (or their groups) as JSON lines after the header, or as a table; takes header. */
static void
emit(json_t *header, json_t *recs, const struct options *o)
{
	json_t *out = o->nkeys ? groups(recs, o->keys, o->nkeys) : json_incref(recs);
	size_t i;
	json_t *r;

	if (o->tsv) {
		if (o->nkeys)
			tsv_groups(out, o->keys, o->nkeys);
		else
			tsv_runs(out);
		json_decref(header);
	} else {
		jsonl_emit(stdout, header);
		json_array_foreach(out, i, r)
			jsonl_emit(stdout, json_incref(r));
	}
	json_decref(out);
}

int
main(int argc, char **argv)
{
	struct options o = {.threshold = 0.99};
	char **files;
	size_t nfiles;
	int rc;
	json_t *inputs, *recs, *gkeys, *config, *header;

	setprogname(argv[0]);
	if ((rc = parse_options(argc, argv, &o)) >= 0) {
		free(o.gcopy);
		return rc;
	}
	if (optind < argc) {
		files = argv + optind;
		nfiles = (size_t)(argc - optind);
	} else {
		if (isatty(STDIN_FILENO))
			usage_error("no logs: give them as arguments or their paths one per line on standard input");
		files = read_lines(stdin, "<stdin>", MAX_FILES, &nfiles);
	}
	inputs = json_object();
	for (size_t i = 0; i < nfiles; i++)
		read_log(files[i], inputs);
	recs = run_records(o.threshold);

	gkeys = json_array();
	for (int k = 0; k < o.nkeys; k++)
		json_array_append_new(gkeys, json_string(o.keys[k]));
	config = json_pack("{s:o, s:o, s:b, s:o}", "threshold", jnum(o.threshold), "group_by", gkeys, "tsv", o.tsv,
	    "restricted_below", jnum(restricted_below));
	header = jsonl_header("summarize", argc, argv, 0, config);
	json_object_set_new(header, "inputs", inputs);
	emit(header, recs, &o);

	json_decref(recs);
	free_runs();
	free(o.gcopy);
	if (optind >= argc)
		free_lines(files, nfiles);
	finish_stdout();
	return 0;
}
