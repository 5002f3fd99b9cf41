/*
 * analysis: the frame every checkpoint-analysis tool (hess-eig,
 * gop-spectrum, llc-estimate) puts around its own work: BLAS and
 * floating-point set-up, the checkpoint list (arguments or stdin), the
 * data set, the header record, each checkpoint opened as a model, the
 * frame of its record, and the end.  Each tool keeps its options, its
 * config JSON and its per-checkpoint analysis.
 *
 * Every per-checkpoint record is
 *   {"record": KIND, "checkpoint", "checkpoint_sha256", "step",
 *    "family", "model": {hyper-parameters}, the family's own fields (the
 *    MLP: "depth", "width"), "params",
 *    ... the tool's fields and the family's diagnostics (the MLP:
 *    "dead_units") ...,
 *    "run_id", "seconds", "peak_rss_mib"}
 * analysis_record opens it and analysis_record_emit closes and writes it.
 */
#ifndef ANALYSIS_H
#define ANALYSIS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "dataset.h"
#include "st.h"
#include "model.h"

struct analysis {
	struct dataset d;
	char **paths;     /* the checkpoints */
	size_t n;
	int owned;        /* paths read from stdin, to free */
	int threads;
};

/* BLAS threads, FTZ/DAZ, the checkpoints from argv[first..] or stdin (at most max). */
void analysis_start(struct analysis *a, int argc, char **argv, int first, size_t max, int threads);
/*
 * A usage error unless one checkpoint is analysed or pattern (the value of
 * option opt, a file name) contains {step}.  NULL pattern: not asked for.
 */
void analysis_need_step(const struct analysis *a, const char *opt, const char *pattern);
/* Load the data set (dies with its message). */
void analysis_load(struct analysis *a, const char *data);
/* The header record: tool, argv, seed, config (stolen), the data's digest, BLAS. */
void analysis_header(const struct analysis *a, const char *tool, int argc, char **argv,
    uint64_t seed, json_t *config);
/* One checkpoint being analysed. */
struct analysis_ckpt {
	const char *path;
	struct model *m;
	float *theta;          /* (P) */
	long long step;
	char digest[65];       /* the file's SHA-256 */
	char run_id[17];       /* the run that wrote it, or "" */
	double t0;             /* when its analysis began */
};
/* Open path against a's data set (dies with the message on an error). */
void analysis_open(const struct analysis *a, const char *path, const char *data_name,
    int any_data, struct analysis_ckpt *c);
void analysis_close(struct analysis_ckpt *c);
/* A record of kind for checkpoint c: the frame's opening fields. */
json_t *analysis_record(const char *kind, const struct analysis_ckpt *c);
/* Close the record (run_id, seconds, peak_rss_mib), write it to stdout. */
void analysis_record_emit(json_t *rec, const struct analysis_ckpt *c);
/*
 * A side file of checkpoint c (a spectrum, a loss trace): pattern with
 * {step} replaced, the tensors already in w, format and tool, step and
 * the checkpoint's digest added.  Dies on a write error; frees w.
 */
void analysis_side_file(const char *pattern, const struct analysis_ckpt *c, const char *format,
    const char *tool, struct st_writer *w);
/* Free everything and flush stdout (dies on a write error). */
void analysis_end(struct analysis *a);

#endif
