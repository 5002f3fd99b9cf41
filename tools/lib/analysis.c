#include "analysis.h"

#include <string.h>

#include "blas.h"
#include "ckpt.h"
#include "jsonl.h"
#include "opts.h"
#include "st.h"
#include "util.h"

void
analysis_start(struct analysis *a, int argc, char **argv, int first, size_t max, int threads)
{
	memset(a, 0, sizeof *a);
	a->threads = threads;
	blas_setup(threads, argv);
	flush_denormals();
	a->paths = ckpt_paths(argc, argv, first, max, &a->n, &a->owned);
}

void
analysis_need_step(const struct analysis *a, const char *opt, const char *pattern)
{
	if (pattern && a->n > 1 && !strstr(pattern, "{step}"))
		usage_error("%s %s: with several checkpoints the name must contain {step}", opt, pattern);
}

void
analysis_load(struct analysis *a, const char *data)
{
	char err[ST_ERRLEN];

	if (dataset_load(&a->d, data, err, sizeof err) < 0)
		die("%s", err);
}

void
analysis_header(const struct analysis *a, const char *tool, int argc, char **argv,
    uint64_t seed, json_t *config)
{
	json_t *header = jsonl_header(tool, argc, argv, seed, config);

	json_object_set_new(json_object_get(header, "inputs"), "data", json_string(a->d.digest));
	json_object_set_new(header, "blas", blas_json(a->threads));
	jsonl_emit(stdout, header);
}

void
analysis_end(struct analysis *a)
{
	if (a->owned)
		free_lines(a->paths, a->n);
	dataset_free(&a->d);
	finish_stdout();
}

json_t *
analysis_dead_units(const struct mlp *m, const int *live)
{
	json_t *dead = json_array();

	for (int i = 0; i < m->c.depth; i++) {
		int count = 0;
		for (int j = 0; j < m->c.width; j++)
			count += !live[(size_t)i * (size_t)m->c.width + j];
		json_array_append_new(dead, json_integer(count));
	}
	return dead;
}
