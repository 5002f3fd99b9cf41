/*
 * analysis: the frame every checkpoint-analysis tool (hess-eig,
 * gop-spectrum, llc-estimate) puts around its own work: BLAS and
 * floating-point set-up, the checkpoint list (arguments or stdin), the
 * data set, the header record, and the end.  Each tool keeps its options,
 * its config JSON and its per-checkpoint analysis.
 */
#ifndef ANALYSIS_H
#define ANALYSIS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "dataset.h"
#include "mlp.h"

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
/*
 * The record's dead_units: per hidden layer of m, how many units live
 * (D, W; from mlp_mark_live over the whole set) left at zero.
 */
json_t *analysis_dead_units(const struct mlp *m, const int *live);
/* Free everything and flush stdout (dies on a write error). */
void analysis_end(struct analysis *a);

#endif
