/*
 * libFuzzer target: the checkpoint and training-state loaders on any frame
 * the safetensors reader accepts (seeded with real checkpoints and states):
 * metadata that names an impossible model, shapes that do not match it,
 * missing tensors, NaN weights, permutations out of range, malformed
 * generator states.
 */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ckpt.h"
#include "model.h"
#include "st.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_frame f;
	struct model *m;
	char err[ST_ERRLEN];
	long long n_train;
	FILE *fp;

	if (size == 0 || !(fp = fmemopen((void *)data, size, "rb")))
		return 0;
	if (st_read(&f, fp, "fuzz", err, sizeof err) == 0) {
		/* The loaders bound the model; keep the buffers within the fuzzer's memory limit. */
		if ((m = ckpt_model(&f, "fuzz", err, sizeof err)) && m->nparams < (1u << 22)) {
			const struct st_tensor *perm = st_find(&f, "train.perm");
			struct ckpt_state s;
			n_train = perm && perm->ndim == 1 && perm->shape[0] > 0 && perm->shape[0] < (1 << 20) ?
			    perm->shape[0] : 1;
			s.theta = malloc(m->nparams * sizeof(float) + 1);
			s.m = malloc(m->nparams * sizeof(float) + 1);
			s.v = malloc(m->nparams * sizeof(float) + 1);
			s.perm = malloc((size_t)n_train * sizeof(int32_t));
			ckpt_params(&f, m, s.theta, "fuzz", err, sizeof err);
			ckpt_state_read(&f, m, (long)n_train, 1000000000LL, 1000000000LL, &s, "fuzz", err, sizeof err);
			free(s.theta);
			free(s.m);
			free(s.v);
			free(s.perm);
		}
		model_free(m);
		st_free(&f);
	}
	fclose(fp);
	return 0;
}
