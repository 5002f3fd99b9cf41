/*
 * dataset: a modular-arithmetic data set in memory, as gen-modadd writes it.
 *
 * Tensors: train.x I32 [n_train, 2], train.y I32 [n_train], test.x, test.y
 * (test may be empty).  Metadata: p (required), op, and the generator's
 * settings, carried through to every tool's header.
 */
#ifndef DATASET_H
#define DATASET_H

#include <stdint.h>

#include <jansson.h>

#include "st.h"

#define DATASET_P_MIN 2
#define DATASET_P_MAX 4096

struct dataset {
	int p;
	int n_train, n_test;
	int32_t *train_x;  /* (n_train, 2) */
	int32_t *train_y;  /* (n_train) */
	int32_t *test_x;   /* (n_test, 2) */
	int32_t *test_y;   /* (n_test) */
	json_t *meta;      /* the file's metadata */
	char digest[65];   /* SHA-256 of the file's bytes */
};

/* Which rows an analysis uses. */
enum dataset_set { SET_TRAIN, SET_TEST, SET_ALL };
extern const char *const dataset_set_names[];   /* "train", "test", "all", NULL */

/*
 * The rows of a set as one (n, 2) / (n) pair of arrays: pointers into d for
 * train or test, a malloc'd concatenation for all (*owned set to 1).
 */
void dataset_rows(const struct dataset *d, enum dataset_set s, const int32_t **x,
    const int32_t **y, long *n, int *owned);

/*
 * The training rows idx[0..B-1] gathered into bx (B, 2) and by (B): a
 * minibatch, for the trainer and the sampler alike.
 */
void dataset_gather(const struct dataset *d, const int32_t *idx, int B, int32_t *bx, int32_t *by);

/* Load and validate; path "-" reads standard input.  0, or -1 with err. */
int dataset_load(struct dataset *d, const char *path, char *err, size_t errlen);
/* Validate a frame already read (name labels it in messages). */
int dataset_from_frame(struct dataset *d, const struct st_frame *f,
    const char *name, char *err, size_t errlen);
void dataset_free(struct dataset *d);

#endif
