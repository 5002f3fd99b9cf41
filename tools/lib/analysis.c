#include "analysis.h"

#include <stdlib.h>
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
	json_object_set_new(header, "blas", blas_json(a->threads, NULL));
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

void
analysis_open(const struct analysis *a, const char *path, const char *data_name, int any_data,
    struct analysis_ckpt *c)
{
	char err[ST_ERRLEN];

	memset(c, 0, sizeof *c);
	c->path = path;
	c->t0 = now_seconds();
	if (ckpt_open(path, &a->d, data_name, any_data, &c->m, &c->theta, &c->step, c->digest,
	    c->run_id, err, sizeof err) < 0)
		die("%s", err);
}

void
analysis_close(struct analysis_ckpt *c)
{
	model_free(c->m);
	free(c->theta);
	memset(c, 0, sizeof *c);
}

json_t *
analysis_record(const char *kind, const struct analysis_ckpt *c)
{
	json_t *rec = json_pack("{s:s, s:s, s:s, s:I}", "record", kind, "checkpoint", c->path,
	    "checkpoint_sha256", c->digest, "step", (json_int_t)c->step);

	model_describe(c->m, rec);
	json_object_set_new(rec, "params", json_integer((json_int_t)c->m->nparams));
	/* the header cannot say it: one run may read checkpoints of several families */
	json_object_set_new(rec, "gemm", json_string(model_kernel(c->m)));
	return rec;
}

void
analysis_record_emit(json_t *rec, const struct analysis_ckpt *c)
{
	double rss = peak_rss_mib();

	json_object_set_new(rec, "run_id", c->run_id[0] ? json_string(c->run_id) : json_null());
	json_object_set_new(rec, "seconds", jnum(now_seconds() - c->t0));
	json_object_set_new(rec, "peak_rss_mib", rss < 0 ? json_null() : jnum(rss));
	jsonl_emit(stdout, rec);
}

void
analysis_side_file(const char *pattern, const struct analysis_ckpt *c, const char *format,
    const char *tool, struct st_writer *w)
{
	char *path = ckpt_step_path(pattern, c->step);

	ckpt_write_side(w, path, format, tool, c->step, c->digest);
	free(path);
}
