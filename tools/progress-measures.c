/*
 * progress-measures: what a checkpoint's network has learned, by the
 * mechanistic measures of the grokking literature, per checkpoint.
 *
 * On all p^2 inputs: the Fourier spectrum of the input embeddings and its
 * Gini coefficient, the neurons' key frequencies, restricted and excluded
 * loss and the key frequencies' share of the logits' variance (Nanda et
 * al. 2023), distance irrelevance and gradient symmetricity (Zhong et al.
 * 2023).  The model family is asked for the arrays through its probes
 * (model.h); tools/lib/progress.c computes the measures on them.  One
 * JSON-lines record per checkpoint after a header.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis.h"
#include "ckpt.h"
#include "dataset.h"
#include "jsonl.h"
#include "model.h"
#include "opts.h"
#include "progress.h"
#include "st.h"
#include "util.h"

#define MAX_CKPTS 100000
#define MAX_P 256            /* the logits of all pairs are p^3 floats */
#define ROWS_TARGET 4096     /* rows per forward pass, whole x values at a time */
#define GRAD_FLOATS (1L << 22)   /* the embedding gradients held at once */

struct config {
	const char *data, *arrays, *keys_arg;
	double threshold;
	int threads, any_data, symmetricity;
};

/* Everything a checkpoint's measures are computed from, over all p^2 pairs (row x p + y). */
struct pairs {
	int p, nneur;
	int32_t *x;             /* (p^2, 2) */
	int *labels;            /* (p^2) */
	unsigned char *train;   /* (p^2) */
	float *logits;          /* (p^2, p) */
	float *acts;            /* (p^2, nneur) or NULL */
};

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: progress-measures --data FILE [--neuron-threshold T] [--keys LIST]\n"
	    "                         [--no-symmetricity] [--arrays FILE] [options] [CKPT...]\n");
}

static void
help(void)
{
	usage(stdout);
	printf(
"\n"
"For each checkpoint (the arguments, or paths one per line on standard\n"
"input), the mechanistic progress measures of grokking on all p^2 inputs:\n"
"\n"
"  embedding    the Fourier spectrum of the input embeddings over the p\n"
"               residues (norm fraction per frequency) and its Gini\n"
"               coefficient\n"
"  neurons      each neuron's frequency and the share of its variance that\n"
"               frequency explains; the key frequencies, those of the\n"
"               neurons explained to at least the threshold, with counts\n"
"  logits       restricted loss (logits projected onto the key frequencies'\n"
"               cos/sin(w_k(x+y)) directions plus each class's mean, over\n"
"               all pairs) and excluded loss (those directions removed, on\n"
"               the training pairs), and their share of the logits' variance\n"
"  pizza        distance irrelevance and gradient symmetricity (over all\n"
"               p^3 triples, and over the correct class alone)\n"
"\n"
"For --op mul and div the measures run in discrete-logarithm coordinates of\n"
"the multiplicative group; for the polynomial ops only the embedding and\n"
"neuron spectra are defined.  docs/design.md gives every formula.\n"
"\n"
"      --data FILE            the data set the checkpoints were trained on\n"
"      --any-data             allow a data set other than the checkpoint's own\n"
"      --neuron-threshold T   a neuron is explained when its frequency holds at\n"
"                             least T of its variance, (0, 1] (default 0.85)\n"
"      --keys LIST            key frequencies to use instead of the neurons'\n"
"                             (comma-separated, 1..p/2)\n"
"      --no-symmetricity      skip gradient symmetricity (p backward passes\n"
"                             over all pairs)\n"
"      --arrays FILE          write the arrays the measures come from (logits,\n"
"                             neuron activations, spectra; safetensors); with\n"
"                             several checkpoints FILE must contain {step}\n"
"      --threads N            BLAS threads, 1..256 (default 1)\n"
"  -h, --help                 show this help and exit\n"
"      --version              show the version and exit\n"
"\n"
"p is at most %d here (the logits of all pairs take p^3 floats).\n"
"\n"
CKPT_LIMITS_HELP
"\n"
"Exit status: 0 success, 1 runtime or data error, 2 usage error.\n"
"\n"
"Examples:\n"
"  progress-measures --data data.safetensors ckpt/step-*.safetensors > progress.jsonl\n"
"  jq -r 'select(.record == \"progress\") | [.step, .restricted_loss, .excluded_loss] | @tsv' progress.jsonl\n",
	    MAX_P);
}

static void
parse_args(struct config *c, int argc, char **argv)
{
	enum { O_DATA = 256, O_ANY, O_THRESH, O_KEYS, O_NOSYM, O_ARRAYS, O_THREADS, O_VERSION };
	static const struct option longopts[] = {
		{"data", required_argument, NULL, O_DATA},
		{"any-data", no_argument, NULL, O_ANY},
		{"neuron-threshold", required_argument, NULL, O_THRESH},
		{"keys", required_argument, NULL, O_KEYS},
		{"no-symmetricity", no_argument, NULL, O_NOSYM},
		{"arrays", required_argument, NULL, O_ARRAYS},
		{"threads", required_argument, NULL, O_THREADS},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION},
		{NULL, 0, NULL, 0},
	};
	int ch;

	memset(c, 0, sizeof *c);
	c->threshold = 0.85;
	c->threads = 1;
	c->symmetricity = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case O_DATA: c->data = optarg; break;
		case O_ANY: c->any_data = 1; break;
		case O_THRESH: c->threshold = opt_real("--neuron-threshold", optarg, 0, 1);
			if (c->threshold <= 0)
				usage_error("--neuron-threshold: %s is not in (0, 1]", optarg);
			break;
		case O_KEYS: c->keys_arg = optarg; break;
		case O_NOSYM: c->symmetricity = 0; break;
		case O_ARRAYS: c->arrays = optarg; break;
		case O_THREADS: c->threads = (int)opt_int("--threads", optarg, 1, 256); break;
		case 'h': help(); finish_stdout(); exit(0);
		case O_VERSION: printf("progress-measures %s\n", GROK_VERSION); finish_stdout(); exit(0);
		default: fprintf(stderr, "Try 'progress-measures --help' for more information.\n"); exit(EXIT_USAGE);
		}
	}
	if (!c->data)
		usage_error("--data FILE is required (the data set the checkpoints were trained on)");
}

/* The data set's operation ("add" when its metadata does not say). */
static const char *
data_op(const struct dataset *d)
{
	const char *op = json_string_value(json_object_get(d->meta, "op"));
	return op ? op : "add";
}

/* Every pair, its label and whether it is a training pair; dies if the data set disagrees with its op. */
static void
pairs_init(struct pairs *s, const struct dataset *d, const struct fourier_group *g, int has_group,
    const char *data_name)
{
	int p = d->p;
	size_t n = (size_t)p * p;

	memset(s, 0, sizeof *s);
	s->p = p;
	s->x = xmalloc(xmul(n, 2 * sizeof(int32_t)));
	s->labels = xmalloc(xmul(n, sizeof(int)));
	s->train = xcalloc(n, 1);
	for (size_t r = 0; r < n; r++) {
		s->x[2 * r] = (int32_t)(r / p);
		s->x[2 * r + 1] = (int32_t)(r % p);
		s->labels[r] = -1;
	}
	for (int set = 0; set < 2; set++) {
		const int32_t *x = set ? d->test_x : d->train_x, *y = set ? d->test_y : d->train_y;
		long m = set ? d->n_test : d->n_train;
		for (long i = 0; i < m; i++) {
			size_t r = (size_t)x[2 * i] * p + (size_t)x[2 * i + 1];
			s->labels[r] = y[i];
			s->train[r] |= !set;
		}
	}
	if (!has_group)
		return;
	for (int u = 0; u < g->n; u++)
		for (int v = 0; v < g->n; v++) {
			size_t r = (size_t)g->residue[u] * p + (size_t)g->residue[v];
			int want = g->residue[((u + g->sign * v) % g->n + g->n) % g->n];
			if (s->labels[r] >= 0 && s->labels[r] != want)
				die("%s: the label of (%d, %d) is %d, but %s gives %d", data_name,
				    g->residue[u], g->residue[v], s->labels[r], data_op(d), want);
			s->labels[r] = want;
		}
}

static void
pairs_free(struct pairs *s)
{
	free(s->x);
	free(s->labels);
	free(s->train);
	free(s->logits);
	free(s->acts);
}

/* Rows per forward pass: whole x values (p rows each), about ROWS_TARGET. */
static int
chunk_rows(int p)
{
	int k = ROWS_TARGET / p;
	return (k < 1 ? 1 : k) * p;
}

/* Logits and neurons of every pair, in chunks of whole x values. */
static void
pairs_forward(struct pairs *s, const struct model_probes *pr, struct model_work *w,
    const float *theta, int chunk)
{
	size_t n = (size_t)s->p * s->p;

	s->logits = xmalloc(xmul(n * s->p, sizeof(float)));
	s->acts = s->nneur ? xmalloc(xmul(n * s->nneur, sizeof(float))) : NULL;
	for (size_t r = 0; r < n; r += chunk) {
		int B = n - r < (size_t)chunk ? (int)(n - r) : chunk;
		pr->forward(w, theta, s->x + 2 * r, B, s->logits + r * s->p,
		    s->acts ? s->acts + r * s->nneur : NULL);
	}
}

/* One operand's embedding spectrum, or null when the model embeds no token. */
static json_t *
embedding_json(const struct fourier_group *g, const struct model_probes *pr,
    const struct model *m, const float *theta, int i, double *frac)
{
	const float *E;
	int d, ld, col0, top = 0;
	double cf;

	if (pr->embedding(m, theta, i, &E, &d, &ld, &col0) < 0)
		return json_null();
	embed_spectrum(g, E, d, ld, col0, frac, &cf);
	for (int k = 1; k < g->nfreq; k++)
		top = frac[k] > frac[top] ? k : top;
	return json_pack("{s:o, s:o, s:i, s:o}", "freq_frac", jarray(frac, g->nfreq),
	    "gini", jnum(gini(frac, g->nfreq)), "top_freq", top + 1, "const_frac", jnum(cf));
}

/*
 * Neuron frequencies of acts (p^2, nn) and the key frequencies: those of
 * the explained neurons.  Returns their count.
 */
static int
neuron_keys(const struct config *c, const struct fourier_group *g, const float *acts, int nn,
    const char *what, int *best, double *share, int *keys, json_t *rec)
{
	long *count = xcalloc((size_t)g->nfreq + 1, sizeof *count), explained = 0;
	int nkeys = 0;
	double mean = 0;

	double *scratch = xmalloc(xmul(neuron_freqs_scratch(g, nn), sizeof(double)));

	neuron_freqs(g, acts, nn, nn, best, share, scratch);
	free(scratch);
	for (int j = 0; j < nn; j++) {
		mean += share[j] / nn;
		if (share[j] >= c->threshold) {
			count[best[j]]++;
			explained++;
		}
	}
	for (int k = 1; k <= g->nfreq; k++)
		if (count[k])
			keys[nkeys++] = k;
	json_t *counts = json_array();
	for (int k = 1; k <= g->nfreq; k++)
		json_array_append_new(counts, json_integer(count[k]));
	json_object_set_new(rec, "neurons", json_pack("{s:s, s:i, s:i, s:o, s:o, s:o}", "of", what,
	    "count", nn, "explained", (int)explained, "threshold", jnum(c->threshold),
	    "mean_share", jnum(mean), "freq_counts", counts));
	free(count);
	return nkeys;
}

/* Cosine of two float vectors, in double; NaN if either is zero. */
static double
cosine_f(const float *a, const float *b, int d)
{
	double ab = 0, aa = 0, bb = 0;

	for (int i = 0; i < d; i++) {
		ab += (double)a[i] * b[i];
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : NAN;
}

/*
 * Gradient symmetricity over all p^3 triples (x, y, c), and over the
 * labelled pairs' correct class: the mean cosine between the gradients of
 * logit c with respect to x's and y's embedding vectors.  A triple whose
 * gradient is zero (every unit dead on it) has no cosine and is counted.
 */
static void
symmetricity(const struct pairs *s, const struct model_probes *pr, const struct model *m,
    struct model_work *w, const float *theta, int chunk, json_t *rec)
{
	const float *E;
	int d, ld, col0, p = s->p, *cls = xmalloc(xmul((size_t)p, sizeof(int)));
	size_t n = (size_t)p * p;
	double all = 0, correct = 0;
	long nall = 0, ncorrect = 0, undefined = 0;

	pr->embedding(m, theta, 0, &E, &d, &ld, &col0);
	int nc = (int)(GRAD_FLOATS / ((long)chunk * d));
	nc = nc < 1 ? 1 : nc > p ? p : nc;
	float *gx = xmalloc(xmul(xmul((size_t)nc * chunk, (size_t)d), sizeof(float)));
	float *gy = xmalloc(xmul(xmul((size_t)nc * chunk, (size_t)d), sizeof(float)));
	for (size_t r0 = 0; r0 < n; r0 += chunk) {
		int B = n - r0 < (size_t)chunk ? (int)(n - r0) : chunk;
		for (int c0 = 0; c0 < p; c0 += nc) {
			int k = p - c0 < nc ? p - c0 : nc;
			for (int j = 0; j < k; j++)
				cls[j] = c0 + j;
			pr->embed_grad(w, theta, s->x + 2 * r0, B, cls, k, gx, gy);
			for (int j = 0; j < k; j++)
				for (int b = 0; b < B; b++) {
					size_t o = ((size_t)j * B + b) * d;
					double cs = cosine_f(gx + o, gy + o, d);
					if (isnan(cs)) {
						undefined++;
						continue;
					}
					all += cs;
					nall++;
					if (s->labels[r0 + b] == cls[j]) {
						correct += cs;
						ncorrect++;
					}
				}
		}
	}
	json_object_set_new(rec, "gradient_symmetricity", jnum(nall ? all / nall : NAN));
	json_object_set_new(rec, "gradient_symmetricity_correct", jnum(ncorrect ? correct / ncorrect : NAN));
	json_object_set_new(rec, "gradient_symmetricity_undefined", json_integer(undefined));
	free(cls);
	free(gx);
	free(gy);
}

/*
 * A family whose x and y gradients are one vector by construction (the
 * one-hot MLP) has symmetricity 1 over every triple with a non-zero
 * gradient: said, not computed (p backward passes over all pairs would
 * only confirm it; check_progress does, by autograd).
 */
static void
tied_symmetricity(json_t *rec)
{
	json_object_set_new(rec, "gradient_symmetricity", json_real(1));
	json_object_set_new(rec, "gradient_symmetricity_correct", json_real(1));
	json_object_set_new(rec, "gradient_symmetricity_undefined", json_null());
	json_object_set_new(rec, "gradient_symmetricity_tied", json_true());
}

/* The arrays behind the record, as a side file. */
static void
write_arrays(const struct config *c, const struct analysis_ckpt *ck, const struct pairs *s,
    const struct fourier_group *g, const double *fx, const double *fy, int nn, const int *best,
    const double *share)
{
	int64_t nnl = nn;
	int64_t n = (int64_t)s->p * s->p, shp[2] = {n, s->p}, nf = g->nfreq;
	int32_t *lab = xmalloc(xmul((size_t)n, sizeof *lab)), *tr = xmalloc(xmul((size_t)n, sizeof *tr));
	struct st_writer w;

	for (int64_t r = 0; r < n; r++) {
		lab[r] = s->labels[r];
		tr[r] = s->train[r];
	}
	st_writer_init(&w);
	st_writer_add(&w, "logits", ST_F32, 2, shp, s->logits);
	st_writer_add(&w, "labels", ST_I32, 1, &n, lab);
	st_writer_add(&w, "train", ST_I32, 1, &n, tr);
	if (fx) {
		st_writer_add(&w, "embed_x_freq_frac", ST_F64, 1, &nf, fx);
		st_writer_add(&w, "embed_y_freq_frac", ST_F64, 1, &nf, fy);
	}
	if (s->nneur) {
		int64_t sa[2] = {n, s->nneur};
		st_writer_add(&w, "neurons", ST_F32, 2, sa, s->acts);
	}
	/* Of the neurons, or of the logits for a model without any. */
	st_writer_add(&w, "neuron_freq", ST_I32, 1, &nnl, best);
	st_writer_add(&w, "neuron_share", ST_F64, 1, &nnl, share);
	analysis_side_file(c->arrays, ck, "grokkit-progress-arrays-v1",
	    "progress-measures " GROK_VERSION, &w);
	free(lab);
	free(tr);
}

/* The logit measures over the group, or nulls where the op has none. */
static void
logits_json(const struct fourier_group *g, int has_group, const struct pairs *s,
    const int *keys, int nkeys, json_t *rec)
{
	struct logit_measures lm;
	double *scratch;
	json_t *k = json_array();

	for (int i = 0; i < nkeys; i++)
		json_array_append_new(k, json_integer(keys[i]));
	json_object_set_new(rec, "key_freqs", k);
	if (!has_group) {
		static const char *const f[] = {"loss_all", "loss_train", "restricted_loss",
		    "excluded_loss", "key_var_frac", "distance_irrelevance"};
		for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
			json_object_set_new(rec, f[i], json_null());
		return;
	}
	scratch = xmalloc(xmul(logit_measures_scratch(g), sizeof(double)));
	logit_measures(g, s->logits, s->p, s->labels, s->train, keys, nkeys, &lm, scratch);
	free(scratch);
	json_object_set_new(rec, "loss_all", jnum(lm.loss_all));
	json_object_set_new(rec, "loss_train", jnum(lm.loss_train));
	json_object_set_new(rec, "restricted_loss", jnum(lm.restricted));
	json_object_set_new(rec, "excluded_loss", jnum(lm.excluded));
	json_object_set_new(rec, "key_var_frac", jnum(lm.key_var_frac));
	json_object_set_new(rec, "pairs", json_integer(lm.pairs));
	json_object_set_new(rec, "train_pairs", json_integer(lm.train_pairs));
	json_object_set_new(rec, "distance_irrelevance", jnum(distance_irrelevance(g, s->logits, s->p,
	    s->labels)));
}

/* What the run needs once: the group, the labels and training pairs, the fixed keys. */
struct run {
	struct fourier_group g;
	int has_group, nfixed;
	long long fixed[MAX_P];
};

static void
analyse(const struct config *c, const struct analysis *a, const struct run *run, const char *path)
{
	const struct fourier_group *g = &run->g;
	struct analysis_ckpt ck;
	struct pairs s;
	const struct model_probes *pr;
	struct model_work *w;
	const char *what;
	int chunk = chunk_rows(a->d.p), nkeys, *keys = xmalloc(sizeof(int) * (g->nfreq + 1));
	double *fx = xmalloc(xmul((size_t)g->nfreq, sizeof(double)));
	double *fy = xmalloc(xmul((size_t)g->nfreq, sizeof(double)));
	json_t *rec;

	analysis_open(a, path, c->data, c->any_data, &ck);
	pr = model_probes(ck.m);
	if (!pr)
		die("%s: the %s family offers no probes for progress measures", path, ck.m->family->name);
	pairs_init(&s, &a->d, g, run->has_group, c->data);
	s.nneur = pr->neurons(ck.m, &what);
	w = model_work_new(ck.m, chunk);
	pairs_forward(&s, pr, w, ck.theta, chunk);
	rec = analysis_record("progress", &ck);
	json_object_set_new(rec, "op", json_string(data_op(&a->d)));
	json_object_set_new(rec, "group", json_pack("{s:i, s:s, s:o}", "order", g->n,
	    "coordinates", g->mult ? "discrete logarithm" : "residue",
	    "generator", g->mult ? json_integer(g->generator) : json_null()));
	json_t *ex = embedding_json(g, pr, ck.m, ck.theta, 0, fx);
	json_object_set_new(rec, "embedding", json_is_null(ex) ? ex : json_pack("{s:o, s:o}", "x", ex,
	    "y", embedding_json(g, pr, ck.m, ck.theta, 1, fy)));
	/* A model without hidden neurons is read from its logits, the only layer it has. */
	int nn = s.nneur ? s.nneur : s.p;
	int *best = xmalloc(xmul((size_t)nn, sizeof(int)));
	double *share = xmalloc(xmul((size_t)nn, sizeof(double)));
	nkeys = neuron_keys(c, g, s.nneur ? s.acts : s.logits, nn, s.nneur ? what : "logits",
	    best, share, keys, rec);
	if (run->nfixed) {
		nkeys = run->nfixed;
		for (int i = 0; i < nkeys; i++)
			keys[i] = (int)run->fixed[i];
	}
	logits_json(g, run->has_group, &s, keys, nkeys, rec);
	if (c->symmetricity && !json_is_null(ex) && pr->tied_grads)
		tied_symmetricity(rec);
	else if (c->symmetricity && !json_is_null(ex))
		symmetricity(&s, pr, ck.m, w, ck.theta, chunk, rec);
	else
		json_object_set_new(rec, "gradient_symmetricity", json_null());
	if (c->arrays)
		write_arrays(c, &ck, &s, g, json_is_null(ex) ? NULL : fx, fy, nn, best, share);
	analysis_record_emit(rec, &ck);
	model_work_free(w);
	pairs_free(&s);
	free(keys);
	free(fx);
	free(fy);
	free(best);
	free(share);
	analysis_close(&ck);
}

int
main(int argc, char **argv)
{
	struct config c;
	struct analysis a;
	struct run run;
	const char *op;

	setprogname(argv[0]);
	parse_args(&c, argc, argv);
	analysis_start(&a, argc, argv, optind, MAX_CKPTS, c.threads);
	analysis_need_step(&a, "--arrays", c.arrays);
	analysis_load(&a, c.data);
	if (a.d.p > MAX_P)
		die("%s: p = %d is more than the %d progress-measures handles", c.data, a.d.p, MAX_P);
	op = data_op(&a.d);
	memset(&run, 0, sizeof run);
	run.has_group = fourier_group_init(&run.g, a.d.p, op) == 0;
	if (!run.has_group)
		fourier_group_init(&run.g, a.d.p, "add");   /* spectra over the residues */
	if (c.keys_arg)
		run.nfixed = opt_int_list("--keys", c.keys_arg, 1, run.g.nfreq, run.fixed, MAX_P);
	analysis_header(&a, "progress-measures", argc, argv, 0,
	    json_pack("{s:o, s:o, s:b, s:s, s:b}", "neuron_threshold", jnum(c.threshold),
	    "keys", c.keys_arg ? json_string(c.keys_arg) : json_null(), "symmetricity", c.symmetricity,
	    "op", op, "group", run.has_group));
	for (size_t i = 0; i < a.n; i++)
		analyse(&c, &a, &run, a.paths[i]);
	fourier_group_free(&run.g);
	analysis_end(&a);
	return 0;
}
