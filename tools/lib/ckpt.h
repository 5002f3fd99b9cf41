/*
 * ckpt: model checkpoints and training states, as safetensors frames.
 *
 * A checkpoint holds the parameters as PyTorch names them (the model's
 * tensors, F32; the MLP's layers.{i}.weight (out, in), layers.{i}.bias
 * (out)) and metadata: format "grokkit-ckpt-v1", tool, step, family, the
 * family's hyper-parameters (the MLP's p, depth, width, encoding, loss),
 * data_sha256, config (the writer's full configuration as JSON).  A file
 * without "family" is an MLP's: every checkpoint written before families
 * existed loads as it did.
 * A training state ("grokkit-state-v1") adds the optimiser's moments
 * (optim.m, optim.v: F32 [P]), the minibatch order (train.perm: I32 [n])
 * and, in metadata, optim_t, rng_state, rng_inc, batch_pos, elapsed.
 */
#ifndef CKPT_H
#define CKPT_H

#include <stdint.h>

#include <jansson.h>

#include "dataset.h"
#include "model.h"
#include "st.h"

/*
 * The limits on what a file may ask of the analysis tools, for their
 * --help (docs/formats.md lists every limit).
 */
#define CKPT_LIMITS_HELP \
"Limits: p <= 4096, MLP depth <= 16 and width <= 8192, transformer layers\n" \
"<= 8 and d_model <= 4096, parameters no more than the file's tensor data,\n" \
"headers <= 100 MB and data <= 64 GiB, at most 100000 checkpoints per call.\n"

/* Writer side: the parameter tensors and the checkpoint metadata (tool: "train-mlp 0.1.0"). */
void ckpt_add_params(struct st_writer *w, const struct model *m, const float *theta);
void ckpt_add_meta(struct st_writer *w, const struct model *m, const char *tool, long step,
    const char *data_digest, const char *config_json);
/* Write the frame to path atomically; 0, or -1 with errno. */
int ckpt_write_file(const struct st_writer *w, const char *path);
/*
 * A file derived from a checkpoint (eigenvectors, spectra, traces): w's
 * tensors and metadata, plus format, tool, step and checkpoint_sha256,
 * written atomically to path.  Dies on a write error; frees w.
 */
void ckpt_write_side(struct st_writer *w, const char *path, const char *format, const char *tool,
    long long step, const char *digest);

/*
 * The model a checkpoint's metadata describes: its family ("family"; mlp
 * when absent) and that family's hyper-parameters, no larger than the
 * file's tensor data.  NULL with a message in err.
 */
struct model *ckpt_model(const struct st_frame *f, const char *name, char *err, size_t errlen);
/*
 * Copy the parameters of model m out of the frame, checking names, dtypes,
 * shapes and that every value is finite.  0, or -1 with err.
 */
int ckpt_params(const struct st_frame *f, const struct model *m, float *theta,
    const char *name, char *err, size_t errlen);
/*
 * A checkpoint to analyse on data set d (named data_name in messages): its
 * model (*m, model_free it), parameters (malloc'd into *theta), step,
 * SHA-256 and run id (the run that wrote it; empty if the file does not
 * say).  The model must be for d's p, and unless any_data the checkpoint
 * must have been trained on d itself.  0, or -1 with err.
 */
int ckpt_open(const char *path, const struct dataset *d, const char *data_name,
    int any_data, struct model **m, float **theta, long long *step, char digest[65],
    char run_id[17], char *err, size_t errlen);
/*
 * The checkpoints an analysis tool was given: argv[first..argc-1], or paths
 * one per line on standard input when there are none.  *owned says whether
 * to free_lines() them.  Dies with a usage error on a terminal, and on an
 * empty list.
 */
char **ckpt_paths(int argc, char **argv, int first, size_t max, size_t *n, int *owned);
/* pattern with "{step}" replaced by the 8-digit step (malloc'd). */
char *ckpt_step_path(const char *pattern, long long step);
/*
 * Eigenvectors in parameter space (format grokkit-eigvecs-v1): vecs holds
 * k unit vectors of P doubles; each parameter tensor is written under its
 * own name with a leading dimension k.  eigenvalues (k) go to the
 * metadata with the step, the checkpoint's digest and the tool.  Dies on a
 * write error.
 */
void ckpt_write_eigvecs(const char *path, const struct model *m, const double *vecs,
    const double *eigenvalues, int k, const char *tool, long long step, const char *digest);
/*
 * A training state's resumable parts, checked against the model m and
 * n_train rows: the parameters, the optimiser's moments, the minibatch
 * order (a permutation's values in range), the step (<= max_step), the
 * optimiser's step count, the batch position and the shuffle generator.
 * Pointers are into the caller's buffers (theta, m, v: P floats; perm:
 * n_train).  The format, data digest and configuration are the caller's
 * to compare.  0, or -1 with err.
 */
struct ckpt_state {
	float *theta, *m, *v;
	int32_t *perm;
	long long step, optim_t, batch_pos;
	uint64_t rng_state, rng_inc;
	double elapsed;
};
int ckpt_state_read(const struct st_frame *f, const struct model *m, long n_train,
    long long max_step, long long max_optim_t, struct ckpt_state *s, const char *name,
    char *err, size_t errlen);

/*
 * The optimiser's state a checkpoint keeps when its trainer was asked to
 * (--ckpt-optim): the optimiser and its hyper-parameters (from the
 * config), the learning rate the schedule gave at that step (optim_lr),
 * the step count t (optim_t, for Adam's bias corrections) and, for Adam
 * and AdamW, the second moments optim.v (F32 [P], finite, >= 0, into v:
 * P floats; left untouched at t = 0, before Adam's first step has any).
 * lr may be 0 (a warm-up's first step): no step, no threshold (infinite).  0, or -1 with err (a checkpoint without them says so).
 */
struct ckpt_optim {
	int kind;                  /* enum optim_kind */
	double lr, beta1, beta2, eps, momentum;
	long long t;
	float *v;                  /* the caller's (P), filled for Adam(W) */
};
int ckpt_optim_read(const char *path, const struct model *m, struct ckpt_optim *o,
    char *err, size_t errlen);

/* An integer metadata value in min..max; 0, or -1 with err. */
int ckpt_meta_long(const struct st_frame *f, const char *key, long long min,
    long long max, long long *out, const char *name, char *err, size_t errlen);
/* A metadata value that is one of names (NULL-terminated), as its index; 0, or -1 with err. */
int ckpt_meta_choice(const struct st_frame *f, const char *key, const char *const *names,
    int *out, const char *name, char *err, size_t errlen);

#endif
