/* libFuzzer target: the safetensors frame reader on arbitrary bytes, and the data set and checkpoint validators on whatever frame it accepts. */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ckpt.h"
#include "dataset.h"
#include "model.h"
#include "st.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_frame f;
	struct dataset d;
	struct model *m;
	char err[ST_ERRLEN];
	FILE *fp;

	if (size == 0)
		return 0;
	fp = fmemopen((void *)data, size, "rb");
	if (!fp)
		return 0;
	if (st_read(&f, fp, "fuzz", err, sizeof err) == 0) {
		if (dataset_from_frame(&d, &f, "fuzz", err, sizeof err) == 0)
			dataset_free(&d);
		if ((m = ckpt_model(&f, "fuzz", err, sizeof err)) && m->nparams < (1u << 22)) {
			float *theta = malloc(m->nparams * sizeof *theta + 1);
			ckpt_params(&f, m, theta, "fuzz", err, sizeof err);
			free(theta);
		}
		model_free(m);
		st_free(&f);
	}
	fclose(fp);
	return 0;
}
