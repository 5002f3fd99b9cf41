/*
 * libFuzzer target: the data set validator (shapes, labels against p,
 * inputs in range, the metadata) on any frame the safetensors reader
 * accepts, seeded with real data sets of every op and split.
 */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dataset.h"
#include "st.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_frame f;
	struct dataset d;
	char err[ST_ERRLEN];
	FILE *fp;

	if (size == 0 || !(fp = fmemopen((void *)data, size, "rb")))
		return 0;
	if (st_read(&f, fp, "fuzz", err, sizeof err) == 0) {
		if (dataset_from_frame(&d, &f, "fuzz", err, sizeof err) == 0) {
			const int32_t *x, *y;
			long n;
			int owned;
			dataset_rows(&d, SET_ALL, &x, &y, &n, &owned);
			if (owned) {
				free((void *)x);
				free((void *)y);
			}
			dataset_free(&d);
		}
		st_free(&f);
	}
	fclose(fp);
	return 0;
}
