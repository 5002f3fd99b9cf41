/*
 * train: the training loop, written once for every model family.  A
 * trainer tool (train-mlp) parses its family's own options into the
 * hyper-parameters' JSON, the shared training options through this
 * header, and calls train_run, which owns everything after: the data set,
 * the model, initialisation or --init, the learning-rate schedule and
 * warm-up, minibatches, log and checkpoint points, the training state and
 * --resume (including extending a run to more steps), SIGINT/SIGTERM and
 * divergence.  stdout gets the JSON-lines log: a header, a metrics record
 * at every log point, and a final record.
 */
#ifndef TRAIN_H
#define TRAIN_H

#include <getopt.h>
#include <stdint.h>

#include <jansson.h>

#include "optim.h"

#define TRAIN_EXIT_DIVERGED 3
#define TRAIN_DEFAULT_STEPS 20000
#define TRAIN_DEFAULT_LOG_POINTS 200
#define TRAIN_MAX_STEPS 1000000000L

struct train_config {
	struct optim_config opt;
	long steps, epochs, batch, warmup, log_every, log_points, ckpt_every, ckpt_points;
	int steps_given, set_beta, set_mom;
	int warmup_origin;            /* 1: the first update at lr / warmup; 0: LambdaLR's, at 0 */
	uint64_t seed;
	int threads, quiet;
	int ckpt_optim;                /* --ckpt-optim: the optimiser's state in checkpoints */
	const char *data, *init, *ckpt_dir, *out, *state, *resume, *tag;
};

/* The shared options' codes start here; a tool's own codes stay below. */
#define TRAIN_OPT_BASE 512
/* The shared options, NULL-terminated, for getopt_long (with the tool's own). */
extern const struct option train_options[];
/* The shared options' --help lines, sections Optimisation and Output. */
extern const char train_help_optim[], train_help_output[];

/* The defaults (AdamW lr 1e-3 wd 2, full batch, 20000 steps, 200 log points). */
void train_defaults(struct train_config *c);
/* Apply a shared option (code from train_options); 0 if code is not one of them. */
int train_option(struct train_config *c, int code, const char *arg);
/*
 * After parsing argv up to first (getopt's optind): no argument left over,
 * the checks between shared options, and data to read (usage errors that
 * name tool).
 */
void train_check(const struct train_config *c, int argc, char **argv, int first, const char *tool);
/*
 * Concatenate a tool's own long options with train_options (malloc'd,
 * NULL-terminated).
 */
struct option *train_longopts(const struct option *own);
/*
 * A trainer's option loop over argv: each option goes to own_option (the
 * tool's own, long options own, with ctx; 0 if code is not one of them)
 * or to train_option; anything else is a usage error pointing at tool
 * --help.  Returns getopt's optind, for train_check after the tool's own
 * checks between its options.
 */
int train_getopt(struct train_config *c, const struct option *own,
    int (*own_option)(void *ctx, int code, const char *arg), void *ctx, int argc, char **argv,
    const char *tool);

/*
 * Train a model of family (hyper-parameters hp, without "p": the data
 * set's) as tool (its name, for the log and checkpoints).  Returns the
 * exit status: 0, TRAIN_EXIT_DIVERGED, or 128 + the signal; dies on
 * errors (1) and usage errors (2).
 */
int train_run(const struct train_config *c, const char *tool, const char *family,
    const json_t *hp, int argc, char **argv);

#endif
