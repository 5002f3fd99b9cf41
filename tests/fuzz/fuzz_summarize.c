/*
 * libFuzzer target: summarize's JSON-lines reader and everything after it
 * (joining by run_id, the per-run summary, group statistics).  An input is
 * one or more logs separated by NUL bytes, seeded with real logs of
 * train-mlp and each analysis tool; the tool's own source is compiled in,
 * its main renamed.
 */
#define main summarize_main
#include "../../tools/summarize.c"
#undef main

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *inputs = json_object(), *recs = json_array(), *gs;
	char err[1024], *keys[] = {"recipe", "depth"};
	size_t start = 0;
	int ok = 1;

	for (size_t i = 0; i <= size && ok; i++) {
		FILE *fp;
		if (i < size && data[i] != 0)
			continue;
		if (i > start && (fp = fmemopen((void *)(data + start), i - start, "r"))) {
			ok = read_log_fp(fp, "fuzz", inputs, err, sizeof err) == 0;
			fclose(fp);
		}
		start = i + 1;
	}
	if (ok) {
		for (size_t i = 0; i < nruns; i++)
			if (runs[i].config)
				json_array_append_new(recs, summarise(&runs[i], 0.99));
		gs = groups(recs, keys, 2);
		json_decref(gs);
	}
	json_decref(recs);
	json_decref(inputs);
	free_runs();
	return 0;
}
