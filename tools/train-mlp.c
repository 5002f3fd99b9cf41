/*
 * train-mlp: train an MLP on a modular-arithmetic data set, logging what
 * grokking researchers watch (losses, accuracies, gradient and weight
 * norms, softmax collapse) as JSON-lines on stdout, with checkpoints,
 * resumable training states and PyTorch's optimiser semantics.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas.h"
#include "ckpt.h"
#include "dataset.h"
#include "jsonl.h"
#include "mlp.h"
#include "opts.h"
#include "optim.h"
#include "rng.h"
#include "sha256.h"
#include "st.h"
#include "util.h"

#define EXIT_DIVERGED 3
#define DEFAULT_STEPS 20000
#define DEFAULT_LOG_POINTS 200
#define MAX_STEPS 1000000000L

struct config {
	struct mlp_config model;
	struct optim_config opt;
	long steps, epochs, batch, warmup, log_every, log_points, ckpt_every, ckpt_points;
	uint64_t seed;
	int threads, quiet;
	const char *data, *init, *ckpt_dir, *out, *state, *resume, *tag;
};

/* Everything a run needs while it trains. */
struct run {
	struct config cfg;
	struct dataset d;
	struct model *m;
	struct model_work *w;
	struct optim opt;
	struct rng shuffle;
	float *theta, *grad, *gfull;  /* (P) each */
	int32_t *perm, *bx, *by;      /* minibatch order and rows */
	long B, pos, step, steps_per_epoch;
	long *logpts, nlog;
	long *ckpts, nckpt;           /* --ckpt-points: the steps that get checkpoints */
	json_t *config;               /* what determines the run; in every output */
	char *config_json;
	char run_id[17];              /* names the run in checkpoints and analyses */
	double elapsed0, t0;
};

static volatile sig_atomic_t stop_signal;

static void
on_signal(int sig)
{
	stop_signal = sig;
}

static void
usage(FILE *fp)
{
	fprintf(fp,
"usage: train-mlp [--data FILE] [--depth D] [--width W] [--encoding onehot|int]\n"
"                 [--loss ce|mse] [--optim adam|adamw|sgd] [--lr LR] [--wd WD]\n"
"                 [--batch B|full] [--steps N | --epochs N] [--ckpt-dir DIR]\n"
"                 [--state FILE] [--resume FILE] [--seed S] [options]\n");
}

static void
help(void)
{
	usage(stdout);
	printf(
"\n"
"Train an MLP on a gen-modadd data set (standard input unless --data) and\n"
"write JSON-lines to standard output: a header, a metrics record at every\n"
"log point, and a final record.\n"
"\n"
"Model\n"
"      --data FILE        data set (default: standard input)\n"
"      --depth D          hidden layers, 0..%d (default 2; 0 is a linear model)\n"
"      --width W          hidden width, 1..%d (default 128)\n"
"      --encoding E       onehot (default): one-hot(x) ++ one-hot(y);\n"
"                         int: the two integers as two inputs\n"
"      --loss L           ce (default) or mse (on one-hot targets)\n"
"      --init FILE        start from these parameters (a checkpoint)\n"
"Optimisation (torch.optim semantics)\n"
"      --optim O          adamw (default), adam (L2 decay in the gradient), sgd\n"
"      --lr LR            learning rate (default 0.001)\n"
"      --beta1 B1         Adam's beta1, 0..1 exclusive (default 0.9)\n"
"      --beta2 B2         Adam's beta2, 0..1 exclusive (default 0.999)\n"
"      --eps EPS          Adam's epsilon (default 1e-08)\n"
"      --wd WD            weight decay, 0..100 (default 2)\n"
"      --momentum MU      SGD momentum, 0..1 exclusive (default 0)\n"
"      --nesterov         SGD Nesterov momentum (needs --momentum)\n"
"      --warmup N         linear learning-rate warm-up over N steps (default 0)\n"
"      --batch B|full     minibatch size, or the full training set (default)\n"
"      --steps N          optimisation steps, 1..%ld (default %d)\n"
"      --epochs N         passes over the training set instead of --steps\n"
"      --seed S           initialisation and minibatch seed (default 0)\n"
"Output\n"
"      --log-every K      log every K steps (default: %d points spaced\n"
"                         logarithmically, plus step 0 and the last)\n"
"      --log-points N     number of logarithmic log points, 2..100000\n"
"      --ckpt-dir DIR     write DIR/step-NNNNNNNN.safetensors at each log point\n"
"      --ckpt-every K     ... or every K steps instead (and the last)\n"
"      --ckpt-points N    ... or at N logarithmically spaced log points\n"
"                         (with step 0 and the last), 2..100000\n"
"      --out FILE         write the final parameters\n"
"      --state FILE       keep the full training state in FILE (at every log\n"
"                         point, on SIGINT/SIGTERM and at the end)\n"
"      --resume FILE      continue from a state, with the same options\n"
"      --threads N        BLAS threads, 1..256 (default 1)\n"
"      --quiet            no progress line on a terminal\n"
"      --tag NAME         a label for the run (a recipe name), kept in the\n"
"                         config, checkpoints and analyses; summarize groups by it\n"
"  -h, --help             show this help and exit\n"
"      --version          show the version and exit\n"
"\n"
"Exit status: 0 success, 1 runtime or data error, 2 usage error,\n"
"3 diverged (NaN or infinite loss; the last good checkpoint is kept),\n"
"130/143 interrupted by SIGINT/SIGTERM (the state is written first).\n",
	    MLP_MAX_DEPTH, MLP_MAX_WIDTH, MAX_STEPS, DEFAULT_STEPS, DEFAULT_LOG_POINTS);
}

static void
parse_args(struct config *c, int argc, char **argv)
{
	enum {
		O_DATA = 256, O_DEPTH, O_WIDTH, O_ENC, O_LOSS, O_INIT, O_OPTIM, O_LR,
		O_B1, O_B2, O_EPS, O_WD, O_MOM, O_NEST, O_WARM, O_BATCH, O_STEPS,
		O_EPOCHS, O_SEED, O_LOGEVERY, O_LOGPTS, O_CKDIR, O_CKEVERY, O_CKPOINTS, O_OUT,
		O_STATE, O_RESUME, O_THREADS, O_QUIET, O_TAG, O_VERSION,
	};
	static const struct option longopts[] = {
		{"data", required_argument, NULL, O_DATA},
		{"depth", required_argument, NULL, O_DEPTH},
		{"width", required_argument, NULL, O_WIDTH},
		{"encoding", required_argument, NULL, O_ENC},
		{"loss", required_argument, NULL, O_LOSS},
		{"init", required_argument, NULL, O_INIT},
		{"optim", required_argument, NULL, O_OPTIM},
		{"lr", required_argument, NULL, O_LR},
		{"beta1", required_argument, NULL, O_B1},
		{"beta2", required_argument, NULL, O_B2},
		{"eps", required_argument, NULL, O_EPS},
		{"wd", required_argument, NULL, O_WD},
		{"momentum", required_argument, NULL, O_MOM},
		{"nesterov", no_argument, NULL, O_NEST},
		{"warmup", required_argument, NULL, O_WARM},
		{"batch", required_argument, NULL, O_BATCH},
		{"steps", required_argument, NULL, O_STEPS},
		{"epochs", required_argument, NULL, O_EPOCHS},
		{"seed", required_argument, NULL, O_SEED},
		{"log-every", required_argument, NULL, O_LOGEVERY},
		{"log-points", required_argument, NULL, O_LOGPTS},
		{"ckpt-dir", required_argument, NULL, O_CKDIR},
		{"ckpt-every", required_argument, NULL, O_CKEVERY},
		{"ckpt-points", required_argument, NULL, O_CKPOINTS},
		{"out", required_argument, NULL, O_OUT},
		{"state", required_argument, NULL, O_STATE},
		{"resume", required_argument, NULL, O_RESUME},
		{"threads", required_argument, NULL, O_THREADS},
		{"quiet", no_argument, NULL, O_QUIET},
		{"tag", required_argument, NULL, O_TAG},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION},
		{NULL, 0, NULL, 0},
	};
	int ch, set_beta = 0, set_mom = 0, steps_given = 0;

	memset(c, 0, sizeof *c);
	c->model.depth = 2;
	c->model.width = 128;
	c->model.encoding = MLP_ONEHOT;
	c->model.loss = MLP_CE;
	c->opt.kind = OPT_ADAMW;
	c->opt.lr = 1e-3;
	c->opt.beta1 = 0.9;
	c->opt.beta2 = 0.999;
	c->opt.eps = 1e-8;
	c->opt.wd = 2.0;
	c->steps = DEFAULT_STEPS;
	c->log_points = DEFAULT_LOG_POINTS;
	c->threads = 1;
	c->data = "-";

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case O_DATA: c->data = optarg; break;
		case O_DEPTH: c->model.depth = (int)opt_int("--depth", optarg, 0, MLP_MAX_DEPTH); break;
		case O_WIDTH: c->model.width = (int)opt_int("--width", optarg, 1, MLP_MAX_WIDTH); break;
		case O_ENC: c->model.encoding = (enum mlp_encoding)opt_choice("--encoding", optarg, mlp_encoding_names); break;
		case O_LOSS: c->model.loss = (enum mlp_loss)opt_choice("--loss", optarg, mlp_loss_names); break;
		case O_INIT: c->init = optarg; break;
		case O_OPTIM: c->opt.kind = (enum optim_kind)opt_choice("--optim", optarg, optim_names); break;
		case O_LR: c->opt.lr = opt_real_open("--lr", optarg, 0, 1e6); break;
		case O_B1: c->opt.beta1 = opt_real("--beta1", optarg, 0, 0.999999999); set_beta = 1; break;
		case O_B2: c->opt.beta2 = opt_real("--beta2", optarg, 0, 0.999999999); set_beta = 1; break;
		case O_EPS: c->opt.eps = opt_real_open("--eps", optarg, 0, 1); set_beta = 1; break;
		case O_WD: c->opt.wd = opt_real("--wd", optarg, 0, 100); break;
		case O_MOM: c->opt.momentum = opt_real("--momentum", optarg, 0, 0.999999999); set_mom = 1; break;
		case O_NEST: c->opt.nesterov = 1; break;
		case O_WARM: c->warmup = (long)opt_int("--warmup", optarg, 0, MAX_STEPS); break;
		case O_BATCH:
			c->batch = strcmp(optarg, "full") == 0 ? 0 :
			    (long)opt_int("--batch", optarg, 1, (long long)DATASET_P_MAX * DATASET_P_MAX);
			break;
		case O_STEPS: c->steps = (long)opt_int("--steps", optarg, 1, MAX_STEPS); steps_given = 1; break;
		case O_EPOCHS: c->epochs = (long)opt_int("--epochs", optarg, 1, MAX_STEPS); break;
		case O_SEED: c->seed = opt_seed("--seed", optarg); break;
		case O_LOGEVERY: c->log_every = (long)opt_int("--log-every", optarg, 1, MAX_STEPS); break;
		case O_LOGPTS: c->log_points = (long)opt_int("--log-points", optarg, 2, 100000); break;
		case O_CKDIR: c->ckpt_dir = optarg; break;
		case O_CKEVERY: c->ckpt_every = (long)opt_int("--ckpt-every", optarg, 1, MAX_STEPS); break;
		case O_CKPOINTS: c->ckpt_points = (long)opt_int("--ckpt-points", optarg, 2, 100000); break;
		case O_OUT: c->out = optarg; break;
		case O_STATE: c->state = optarg; break;
		case O_RESUME: c->resume = optarg; break;
		case O_THREADS: c->threads = (int)opt_int("--threads", optarg, 1, 256); break;
		case O_QUIET: c->quiet = 1; break;
		case O_TAG:
			if (strlen(optarg) == 0 || strlen(optarg) > 64)
				usage_error("--tag: '%s' must have 1..64 characters (example: --tag grok)", optarg);
			c->tag = optarg;
			break;
		case 'h': help(); finish_stdout(); exit(0);
		case O_VERSION: printf("train-mlp %s\n", GROK_VERSION); finish_stdout(); exit(0);
		default: fprintf(stderr, "Try 'train-mlp --help' for more information.\n"); exit(EXIT_USAGE);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s' (the data set is read from --data FILE or standard input)",
		    argv[optind]);
	if (steps_given && c->epochs)
		usage_error("--steps and --epochs exclude each other");
	if (c->opt.kind == OPT_SGD && set_beta)
		usage_error("--beta1, --beta2 and --eps apply to --optim adam and adamw only");
	if (c->opt.kind != OPT_SGD && (set_mom || c->opt.nesterov))
		usage_error("--momentum and --nesterov apply to --optim sgd only");
	if (c->opt.nesterov && c->opt.momentum == 0)
		usage_error("--nesterov needs --momentum greater than 0");
	if (c->log_every && c->log_points != DEFAULT_LOG_POINTS)
		usage_error("--log-every and --log-points exclude each other");
	if ((c->ckpt_every || c->ckpt_points) && !c->ckpt_dir)
		usage_error("--ckpt-every and --ckpt-points need --ckpt-dir DIR");
	if (c->ckpt_every && c->ckpt_points)
		usage_error("--ckpt-every and --ckpt-points exclude each other");
	if (c->init && c->resume)
		usage_error("--init and --resume exclude each other (a state holds its parameters)");
	if (strcmp(c->data, "-") == 0 && isatty(STDIN_FILENO))
		usage_error("no data: pipe gen-modadd into train-mlp or give --data FILE");
}

/* 0, about npoints steps spaced logarithmically from 1 to steps, and steps. */
static long *
log_spaced(long steps, long npoints, long *count)
{
	long n = 0, *pts = xmalloc(xmul((size_t)npoints + 3, sizeof(long)));

	pts[n++] = 0;
	for (long i = 0; i < npoints; i++) {
		double e = log((double)steps) * (double)i / (double)(npoints - 1);
		long s = lround(exp(e));
		if (s > pts[n - 1] && s <= steps)
			pts[n++] = s;
	}
	if (pts[n - 1] != steps)
		pts[n++] = steps;
	*count = n;
	return pts;
}

/* The log points: --log-every multiples or log-spaced steps, with 0 and the last. */
static void
make_schedule(struct run *r)
{
	const struct config *c = &r->cfg;
	long n = 0;

	if (c->ckpt_points)
		r->ckpts = log_spaced(c->steps, c->ckpt_points, &r->nckpt);
	if (!c->log_every) {
		r->logpts = log_spaced(c->steps, c->log_points, &r->nlog);
		return;
	}
	r->logpts = xmalloc(xmul((size_t)(c->steps / c->log_every) + 3, sizeof(long)));
	r->logpts[n++] = 0;
	for (long s = c->log_every; s <= c->steps; s += c->log_every)
		r->logpts[n++] = s;
	if (r->logpts[n - 1] != c->steps)
		r->logpts[n++] = c->steps;
	r->nlog = n;
}

static int
in_sorted(const long *v, long n, long s)
{
	long lo = 0, hi = n - 1;

	while (lo <= hi) {
		long mid = (lo + hi) / 2;
		if (v[mid] == s)
			return 1;
		if (v[mid] < s)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return 0;
}

static int
is_log_point(const struct run *r, long s)
{
	return in_sorted(r->logpts, r->nlog, s);
}

static int
is_ckpt_point(const struct run *r, long s)
{
	if (!r->cfg.ckpt_dir)
		return 0;
	if (r->cfg.ckpt_every)
		return s % r->cfg.ckpt_every == 0 || s == r->cfg.steps;
	if (r->cfg.ckpt_points)
		return in_sorted(r->ckpts, r->nckpt, s);
	return is_log_point(r, s);
}

/* What determines the run's numbers; a resumed run must match it exactly. */
static json_t *
config_json(const struct run *r, const char *init_digest)
{
	const struct config *c = &r->cfg;
	json_t *opt = json_pack("{s:s, s:o, s:o}", "name", optim_names[c->opt.kind],
	    "lr", json_real(c->opt.lr), "wd", json_real(c->opt.wd));

	if (c->opt.kind == OPT_SGD) {
		json_object_set_new(opt, "momentum", json_real(c->opt.momentum));
		json_object_set_new(opt, "nesterov", json_boolean(c->opt.nesterov));
	} else {
		json_object_set_new(opt, "beta1", json_real(c->opt.beta1));
		json_object_set_new(opt, "beta2", json_real(c->opt.beta2));
		json_object_set_new(opt, "eps", json_real(c->opt.eps));
	}
	json_t *cfg = json_pack("{s:o, s:o, s:o, s:I, s:I, s:I, s:o, s:o, s:o, s:I, s:o}",
	    "model", r->m->family->hparams_json(r->m),
	    "optim", opt,
	    "batch", c->batch ? json_integer(c->batch) : json_string("full"),
	    "steps", (json_int_t)c->steps, "warmup", (json_int_t)c->warmup,
	    "steps_per_epoch", (json_int_t)r->steps_per_epoch,
	    "log_every", c->log_every ? json_integer(c->log_every) : json_null(),
	    "log_points", c->log_every ? json_null() : json_integer(c->log_points),
	    "ckpt_every", c->ckpt_every ? json_integer(c->ckpt_every) :
	    c->ckpt_points ? json_pack("{s:I}", "log_points", (json_int_t)c->ckpt_points) : json_null(),
	    "seed", (json_int_t)c->seed,
	    "init_sha256", init_digest ? json_string(init_digest) : json_null());
	json_object_set_new(cfg, "tag", c->tag ? json_string(c->tag) : json_null());
	return cfg;
}

static double
lr_at(const struct config *c, long s)
{
	if (c->warmup && s < c->warmup)
		return c->opt.lr * (double)s / (double)c->warmup;
	return c->opt.lr;
}

static double
norm2(const float *v, size_t n)
{
	double s = 0.0;

	for (size_t k = 0; k < n; k++)
		s += (double)v[k] * (double)v[k];
	return s;
}

static void
write_params_file(struct run *r, const char *path, int state)
{
	struct st_writer w;
	int64_t shp[1];
	char buf[32];

	st_writer_init(&w);
	ckpt_add_params(&w, r->m, r->theta);
	ckpt_add_meta(&w, r->m, "train-mlp " GROK_VERSION, r->step, r->d.digest, r->config_json);
	st_writer_meta(&w, "run_id", r->run_id);
	if (state) {
		st_writer_meta(&w, "format", "grokkit-state-v1");
		shp[0] = (int64_t)r->m->nparams;
		st_writer_add(&w, "optim.m", ST_F32, 1, shp, r->opt.m);
		st_writer_add(&w, "optim.v", ST_F32, 1, shp, r->opt.v);
		shp[0] = r->d.n_train;
		st_writer_add(&w, "train.perm", ST_I32, 1, shp, r->perm);
		snprintf(buf, sizeof buf, "%ld", r->opt.t);
		st_writer_meta(&w, "optim_t", buf);
		snprintf(buf, sizeof buf, "%llu", (unsigned long long)r->shuffle.state);
		st_writer_meta(&w, "rng_state", buf);
		snprintf(buf, sizeof buf, "%llu", (unsigned long long)r->shuffle.inc);
		st_writer_meta(&w, "rng_inc", buf);
		snprintf(buf, sizeof buf, "%ld", r->pos);
		st_writer_meta(&w, "batch_pos", buf);
		format_real(buf, sizeof buf, r->elapsed0 + now_seconds() - r->t0);
		st_writer_meta(&w, "elapsed", buf);
	}
	if (ckpt_write_file(&w, path) < 0)
		die("error writing %s:", path);
	st_writer_free(&w);
}

static void
write_checkpoint(struct run *r)
{
	size_t n = strlen(r->cfg.ckpt_dir) + 40;
	char *path = xmalloc(n);

	snprintf(path, n, "%s/step-%08ld.safetensors", r->cfg.ckpt_dir, r->step);
	write_params_file(r, path, 0);
	free(path);
}

/* One metrics record for the parameters after r->step updates; -1 if they diverged. */
static int
log_metrics(struct run *r, double lr, double update_norm)
{
	const struct dataset *d = &r->d;
	struct model_eval tr, te;
	json_t *layers = json_array(), *rec;
	double train_loss;

	memset(r->gfull, 0, r->m->nparams * sizeof(float));
	model_eval_set(r->w, &tr, r->gfull, r->theta, d->train_x, d->train_y, d->n_train, NULL);
	model_eval_set(r->w, &te, NULL, r->theta, d->test_x, d->test_y, d->n_test, NULL);
	train_loss = tr.loss_sum / d->n_train;
	/* each group's matrices (the MLP: each layer's weight; biases left out) */
	for (int g = 0; g < r->m->ngroups; g++) {
		double s2 = 0;
		for (int k = 0; k < r->m->ntensors; k++)
			if (r->m->tensors[k].group == g && r->m->tensors[k].ndim >= 2)
				s2 += norm2(r->theta + r->m->tensors[k].offset, r->m->tensors[k].numel);
		json_array_append_new(layers, jnum(sqrt(s2)));
	}
	rec = json_pack("{s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
	    "record", "metrics", "step", (json_int_t)r->step,
	    "epoch", jnum((double)r->step / (double)r->steps_per_epoch),
	    "lr", r->step ? jnum(lr) : json_null(),
	    "train_loss", jnum(train_loss),
	    "train_acc", jnum((double)tr.correct / d->n_train),
	    "test_loss", d->n_test ? jnum(te.loss_sum / d->n_test) : json_null(),
	    "test_acc", d->n_test ? jnum((double)te.correct / d->n_test) : json_null(),
	    "grad_norm", jnum(sqrt(norm2(r->gfull, r->m->nparams))),
	    "weight_norm", jnum(sqrt(norm2(r->theta, r->m->nparams))),
	    "layer_weight_norms", layers,
	    "update_norm", r->step ? jnum(update_norm) : json_null(),
	    "softmax_collapse", jnum((double)tr.collapsed / d->n_train),
	    "elapsed", jnum(r->elapsed0 + now_seconds() - r->t0));
	jsonl_emit(stdout, rec);
	return isfinite(train_loss) ? 0 : -1;
}

static void
final_record(struct run *r, const char *status)
{
	double rss = peak_rss_mib();

	jsonl_emit(stdout, json_pack("{s:s, s:I, s:s, s:o, s:o}", "record", "final",
	    "steps", (json_int_t)r->step, "status", status,
	    "wall_seconds", jnum(r->elapsed0 + now_seconds() - r->t0),
	    "peak_rss_mib", rss < 0 ? json_null() : jnum(rss)));
}

/* The rows of the next minibatch, reshuffling at the start of each epoch. */
static void
next_batch(struct run *r, const int32_t **x, const int32_t **y, int *B)
{
	const struct dataset *d = &r->d;
	long n = d->n_train, take;

	if (r->B == n) {
		*x = d->train_x;
		*y = d->train_y;
		*B = (int)n;
		return;
	}
	if (r->pos == 0)
		rng_shuffle(&r->shuffle, r->perm, (size_t)n);
	take = n - r->pos < r->B ? n - r->pos : r->B;
	dataset_gather(d, r->perm + r->pos, (int)take, r->bx, r->by);
	r->pos = r->pos + take == n ? 0 : r->pos + take;
	*x = r->bx;
	*y = r->by;
	*B = (int)take;
}

static void
progress(struct run *r, long s0, double *last)
{
	double t = now_seconds(), rate, eta;

	if (r->cfg.quiet || !isatty(STDERR_FILENO) || (t - *last < 0.5 && r->step != r->cfg.steps))
		return;
	*last = t;
	rate = (double)(r->step - s0) / (t - r->t0 + 1e-9);
	eta = rate > 0 ? (double)(r->cfg.steps - r->step) / rate : 0;
	fprintf(stderr, "\rtrain-mlp: step %ld/%ld  %.0f steps/s  ETA %.0fs   ",
	    r->step, r->cfg.steps, rate, eta);
	if (r->step == r->cfg.steps)
		fputc('\n', stderr);
}

static void
load_init(struct run *r, json_t *inputs, char **digest)
{
	struct st_frame f;
	char err[ST_ERRLEN], hex[65];

	if (st_load(&f, r->cfg.init, err, sizeof err) < 0 ||
	    ckpt_params(&f, r->m, r->theta, r->cfg.init, err, sizeof err) < 0)
		die("--init: %s", err);
	sha256_hex(f.digest, hex);
	json_object_set_new(inputs, "init", json_string(hex));
	*digest = xstrdup(hex);
	st_free(&f);
}

static void
load_state(struct run *r, json_t *inputs)
{
	struct st_frame f;
	struct ckpt_state st;
	const char *name = r->cfg.resume, *s;
	char err[ST_ERRLEN], hex[65];
	json_t *saved;
	json_error_t je;

	if (st_load(&f, name, err, sizeof err) < 0)
		die("--resume: %s", err);
	if (!(s = st_meta(&f, "format")) || strcmp(s, "grokkit-state-v1") != 0)
		die("--resume: %s: not a training state (format '%s', expected grokkit-state-v1)",
		    name, s ? s : "none");
	if (!(s = st_meta(&f, "data_sha256")) || strcmp(s, r->d.digest) != 0)
		die("--resume: %s: trained on data %.12s..., not on this data set (%.12s...)",
		    name, s ? s : "?", r->d.digest);
	saved = json_loads(st_meta(&f, "config") ? st_meta(&f, "config") : "", 0, &je);
	if (!saved || !json_equal(saved, r->config)) {
		char *now = jsonl_string(r->config);
		die("--resume: %s: its configuration differs from this command's:\n  state:   %s\n  command: %s",
		    name, st_meta(&f, "config") ? st_meta(&f, "config") : "(none)", now);
	}
	json_decref(saved);
	st = (struct ckpt_state){.theta = r->theta, .m = r->opt.m, .v = r->opt.v, .perm = r->perm};
	if (ckpt_state_read(&f, r->m, r->d.n_train, r->cfg.steps, MAX_STEPS, &st, name, err, sizeof err) < 0)
		die("--resume: %s", err);
	r->elapsed0 = st.elapsed;
	r->step = (long)st.step;
	r->opt.t = (long)st.optim_t;
	r->pos = (long)st.batch_pos;
	r->shuffle.state = st.rng_state;
	r->shuffle.inc = st.rng_inc;
	sha256_hex(f.digest, hex);
	json_object_set_new(inputs, "resume", json_string(hex));
	st_free(&f);
}


static void
setup(struct run *r, int argc, char **argv)
{
	struct config *c = &r->cfg;
	char err[ST_ERRLEN], *init_digest = NULL;
	json_t *header, *inputs;
	struct rng ri;

	if (dataset_load(&r->d, c->data, err, sizeof err) < 0)
		die("%s", err);
	c->model.p = r->d.p;
	if (c->batch > r->d.n_train)
		usage_error("--batch %ld exceeds the %d training examples (use --batch full)",
		    c->batch, r->d.n_train);
	r->B = c->batch ? c->batch : r->d.n_train;
	r->steps_per_epoch = (r->d.n_train + r->B - 1) / r->B;
	if (c->epochs) {
		if (c->epochs > MAX_STEPS / r->steps_per_epoch)
			usage_error("--epochs %ld is more than %ld steps", c->epochs, MAX_STEPS);
		c->steps = c->epochs * r->steps_per_epoch;
	}
	if (!(r->m = mlp_model_new(&c->model)))
		die("model out of range");
	r->theta = xcalloc(r->m->nparams, sizeof(float));
	r->grad = xcalloc(r->m->nparams, sizeof(float));
	r->gfull = xcalloc(r->m->nparams, sizeof(float));
	r->w = model_work_new(r->m, (int)r->B);
	optim_init(&r->opt, &c->opt, r->m->nparams);
	r->perm = xmalloc(xmul((size_t)r->d.n_train, sizeof(int32_t)));
	for (int i = 0; i < r->d.n_train; i++)
		r->perm[i] = i;
	r->bx = xmalloc(xmul((size_t)r->B, 2 * sizeof(int32_t)));
	r->by = xmalloc(xmul((size_t)r->B, sizeof(int32_t)));
	rng_init(&r->shuffle, c->seed, RNG_SHUFFLE);
	make_schedule(r);

	inputs = json_pack("{s:s}", "data", r->d.digest);
	if (c->init) {
		load_init(r, inputs, &init_digest);
	} else {
		rng_init(&ri, c->seed, RNG_INIT);
		r->m->family->init(r->m, r->theta, &ri);
	}
	r->config = config_json(r, init_digest);
	r->config_json = jsonl_string(r->config);
	{
		/* The run's name: its configuration and its data, hashed. */
		struct sha256 sh;
		unsigned char dg[32];
		char hex[65];
		sha256_init(&sh);
		sha256_update(&sh, r->config_json, strlen(r->config_json));
		sha256_update(&sh, r->d.digest, strlen(r->d.digest));
		sha256_final(&sh, dg);
		sha256_hex(dg, hex);
		memcpy(r->run_id, hex, 16);
		r->run_id[16] = '\0';
	}
	free(init_digest);
	if (c->resume)
		load_state(r, inputs);
	if (c->ckpt_dir && mkdir(c->ckpt_dir, 0777) < 0 && errno != EEXIST)
		die("--ckpt-dir %s:", c->ckpt_dir);

	header = jsonl_header("train-mlp", argc, argv, c->seed, json_incref(r->config));
	json_object_set_new(header, "inputs", inputs);
	json_object_set_new(header, "data", json_pack("{s:O, s:i, s:i}", "metadata", r->d.meta,
	    "n_train", r->d.n_train, "n_test", r->d.n_test));
	json_object_set_new(header, "params", json_integer((json_int_t)r->m->nparams));
	json_object_set_new(header, "run_id", json_string(r->run_id));
	json_object_set_new(header, "blas", blas_json(c->threads));
	json_object_set_new(header, "flush_denormals", json_boolean(flush_denormals()));
	json_object_set_new(header, "resumed_from_step", c->resume ? json_integer(r->step) : json_null());
	jsonl_emit(stdout, header);
}

static void
teardown(struct run *r)
{
	model_work_free(r->w);
	model_free(r->m);
	optim_free(&r->opt);
	dataset_free(&r->d);
	free(r->theta);
	free(r->grad);
	free(r->gfull);
	free(r->perm);
	free(r->bx);
	free(r->by);
	free(r->logpts);
	free(r->ckpts);
	free(r->config_json);
	json_decref(r->config);
}

int
main(int argc, char **argv)
{
	static struct run r;
	struct sigaction sa;
	double lr = 0, du = 0, last_progress = 0;
	long s0;
	int rc = 0;

	setprogname(argv[0]);
	parse_args(&r.cfg, argc, argv);
	blas_setup(r.cfg.threads, argv);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	r.t0 = now_seconds();
	setup(&r, argc, argv);
	s0 = r.step;
	if (r.step == 0 && log_metrics(&r, 0, 0) < 0) {
		final_record(&r, "diverged");
		finish_stdout();
		return EXIT_DIVERGED;
	}
	if (r.step == 0 && is_ckpt_point(&r, 0))
		write_checkpoint(&r);

	while (r.step < r.cfg.steps && !stop_signal) {
		const int32_t *x, *y;
		struct model_eval ev = {0};
		int B;

		next_batch(&r, &x, &y, &B);
		memset(r.grad, 0, r.m->nparams * sizeof(float));
		model_loss_grad(r.w, &ev, r.grad, r.theta, x, y, B, (float)(1.0 / B), NULL);
		if (!isfinite(ev.loss_sum)) {
			rc = EXIT_DIVERGED;
			break;
		}
		r.step++;
		lr = lr_at(&r.cfg, r.step);
		du = optim_step(&r.opt, r.theta, r.grad, lr);
		if (is_log_point(&r, r.step)) {
			if (log_metrics(&r, lr, sqrt(du)) < 0) {
				rc = EXIT_DIVERGED;
				break;
			}
			if (is_ckpt_point(&r, r.step))
				write_checkpoint(&r);
			if (r.cfg.state)
				write_params_file(&r, r.cfg.state, 1);
		} else if (is_ckpt_point(&r, r.step)) {
			write_checkpoint(&r);
		}
		progress(&r, s0, &last_progress);
	}

	if (rc == EXIT_DIVERGED) {
		warn("diverged at step %ld (loss is not finite); the last good checkpoint is kept", r.step);
		final_record(&r, "diverged");
	} else if (stop_signal) {
		if (r.cfg.state)
			write_params_file(&r, r.cfg.state, 1);
		final_record(&r, "interrupted");
		rc = 128 + stop_signal;
	} else {
		if (r.cfg.state)
			write_params_file(&r, r.cfg.state, 1);
		if (r.cfg.out)
			write_params_file(&r, r.cfg.out, 0);
		final_record(&r, "ok");
	}
	teardown(&r);
	finish_stdout();
	return rc;
}
