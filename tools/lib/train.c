#define _POSIX_C_SOURCE 200809L
#include "train.h"

#include <errno.h>
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
#include "model.h"
#include "opts.h"
#include "rng.h"
#include "sha256.h"
#include "st.h"
#include "util.h"

/* Everything a run needs while it trains. */
struct run {
	struct train_config cfg;
	const char *tool;             /* "train-mlp" */
	char tool_version[64];        /* "train-mlp 0.1.0": checkpoints' tool */
	struct dataset d;
	struct model *m;
	struct model_work *w;
	struct optim opt;
	struct rng shuffle;
	float *theta, *grad, *gfull;  /* (P) each */
	float *theta_epoch;           /* (P): the parameters at the current epoch's start */
	int epoch_known;              /* theta_epoch holds them (not after a resume mid-epoch from an old state) */
	double epoch_du;              /* ||theta change|| over the last whole epoch; -1 before one */
	int32_t *perm, *bx, *by;      /* minibatch order and rows */
	long B, pos, step, steps_per_epoch;
	long *logpts, nlog;
	long *ckpts, nckpt;           /* --ckpt-points: the steps that get checkpoints */
	json_t *config;               /* what determines the run; in every output */
	char *config_json;
	char run_id[17];              /* names the run in checkpoints and analyses */
	long resumed_steps;           /* the state's own length, when resumed (else 0) */
	double elapsed0, t0;
};

static volatile sig_atomic_t stop_signal;

static void
on_signal(int sig)
{
	stop_signal = sig;
}

enum {
	O_OPTIM = TRAIN_OPT_BASE, O_LR, O_B1, O_B2, O_EPS, O_WD, O_MOM, O_NEST, O_WARM, O_BATCH,
	O_STEPS, O_EPOCHS, O_SEED, O_LOGEVERY, O_LOGPTS, O_CKDIR, O_CKEVERY, O_CKPOINTS, O_OUT,
	O_STATE, O_RESUME, O_THREADS, O_QUIET, O_TAG, O_DATA, O_INIT, O_CKOPTIM, O_WORIGIN,
};

const struct option train_options[] = {
	{"data", required_argument, NULL, O_DATA},
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
	{"warmup-origin", required_argument, NULL, O_WORIGIN},
	{"batch", required_argument, NULL, O_BATCH},
	{"steps", required_argument, NULL, O_STEPS},
	{"epochs", required_argument, NULL, O_EPOCHS},
	{"seed", required_argument, NULL, O_SEED},
	{"log-every", required_argument, NULL, O_LOGEVERY},
	{"log-points", required_argument, NULL, O_LOGPTS},
	{"ckpt-dir", required_argument, NULL, O_CKDIR},
	{"ckpt-every", required_argument, NULL, O_CKEVERY},
	{"ckpt-points", required_argument, NULL, O_CKPOINTS},
	{"ckpt-optim", no_argument, NULL, O_CKOPTIM},
	{"out", required_argument, NULL, O_OUT},
	{"state", required_argument, NULL, O_STATE},
	{"resume", required_argument, NULL, O_RESUME},
	{"threads", required_argument, NULL, O_THREADS},
	{"quiet", no_argument, NULL, O_QUIET},
	{"tag", required_argument, NULL, O_TAG},
	{NULL, 0, NULL, 0},
};

const char train_help_optim[] =
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
"      --warmup-origin O  0 or 1: update k (from 1) runs at lr min((k-1+O)/N, 1);\n"
"                         1 starts at lr/N (default), 0 is PyTorch's\n"
"                         LambdaLR(lambda s: min(s / N, 1)): the first at 0\n"
"      --batch B|full     minibatch size, or the full training set (default)\n"
"      --steps N          optimisation steps, 1..1000000000 (default 20000)\n"
"      --epochs N         passes over the training set instead of --steps\n"
"      --seed S           initialisation and minibatch seed (default 0)\n";

const char train_help_output[] =
"Output\n"
"      --log-every K      log every K steps (default: 200 points spaced\n"
"                         logarithmically, plus step 0 and the last)\n"
"      --log-points N     number of logarithmic log points, 2..100000\n"
"      --ckpt-dir DIR     write DIR/step-NNNNNNNN.safetensors at each log point\n"
"      --ckpt-every K     ... or every K steps instead (and the last)\n"
"      --ckpt-points N    ... or at N logarithmically spaced log points\n"
"                         (with step 0 and the last), 2..100000\n"
"      --ckpt-optim       keep the optimiser's state in each checkpoint: its\n"
"                         step count, next learning rate and (Adam, AdamW)\n"
"                         second moments, for hess-eig --precond\n""      --out FILE         write the final parameters\n"
"      --state FILE       keep the full training state in FILE (at every log\n"
"                         point, on SIGINT/SIGTERM and at the end)\n"
"      --resume FILE      continue from a state: the same options, or a larger\n"
"                         --steps/--epochs to extend the run (its initial\n"
"                         weights and data are the state's; the weights then\n"
"                         equal a straight run of the new length)\n"
"      --threads N        BLAS threads, 1..256 (default 1)\n"
"      --quiet            no progress line on a terminal\n"
"      --tag NAME         a label for the run (a recipe name), kept in the\n"
"                         config, checkpoints and analyses; summarize groups by it\n";

void
train_defaults(struct train_config *c)
{
	memset(c, 0, sizeof *c);
	c->opt.kind = OPT_ADAMW;
	c->opt.lr = 1e-3;
	c->opt.beta1 = 0.9;
	c->opt.beta2 = 0.999;
	c->opt.eps = 1e-8;
	c->opt.wd = 2.0;
	c->steps = TRAIN_DEFAULT_STEPS;
	c->log_points = TRAIN_DEFAULT_LOG_POINTS;
	c->warmup_origin = 1;
	c->threads = 1;
	c->data = "-";
}

/* The optimiser's options. */
static int
optim_option(struct train_config *c, int code, const char *arg)
{
	switch (code) {
	case O_OPTIM: c->opt.kind = (enum optim_kind)opt_choice("--optim", arg, optim_names); break;
	case O_LR: c->opt.lr = opt_real_open("--lr", arg, 0, 1e6); break;
	case O_B1: c->opt.beta1 = opt_real("--beta1", arg, 0, 0.999999999); c->set_beta = 1; break;
	case O_B2: c->opt.beta2 = opt_real("--beta2", arg, 0, 0.999999999); c->set_beta = 1; break;
	case O_EPS: c->opt.eps = opt_real_open("--eps", arg, 0, 1); c->set_beta = 1; break;
	case O_WD: c->opt.wd = opt_real("--wd", arg, 0, 100); break;
	case O_MOM: c->opt.momentum = opt_real("--momentum", arg, 0, 0.999999999); c->set_mom = 1; break;
	case O_NEST: c->opt.nesterov = 1; break;
	case O_WARM: c->warmup = (long)opt_int("--warmup", arg, 0, TRAIN_MAX_STEPS); break;
	case O_WORIGIN: c->warmup_origin = (int)opt_int("--warmup-origin", arg, 0, 1); break;
	default: return 0;
	}
	return 1;
}

int
train_option(struct train_config *c, int code, const char *arg)
{
	if (optim_option(c, code, arg))
		return 1;
	switch (code) {
	case O_DATA: c->data = arg; break;
	case O_INIT: c->init = arg; break;
	case O_BATCH:
		c->batch = strcmp(arg, "full") == 0 ? 0 :
		    (long)opt_int("--batch", arg, 1, (long long)DATASET_P_MAX * DATASET_P_MAX);
		break;
	case O_STEPS: c->steps = (long)opt_int("--steps", arg, 1, TRAIN_MAX_STEPS); c->steps_given = 1; break;
	case O_EPOCHS: c->epochs = (long)opt_int("--epochs", arg, 1, TRAIN_MAX_STEPS); break;
	case O_SEED: c->seed = opt_seed("--seed", arg); break;
	case O_LOGEVERY: c->log_every = (long)opt_int("--log-every", arg, 1, TRAIN_MAX_STEPS); break;
	case O_LOGPTS: c->log_points = (long)opt_int("--log-points", arg, 2, 100000); break;
	case O_CKDIR: c->ckpt_dir = arg; break;
	case O_CKEVERY: c->ckpt_every = (long)opt_int("--ckpt-every", arg, 1, TRAIN_MAX_STEPS); break;
	case O_CKPOINTS: c->ckpt_points = (long)opt_int("--ckpt-points", arg, 2, 100000); break;
	case O_CKOPTIM: c->ckpt_optim = 1; break;
	case O_OUT: c->out = arg; break;
	case O_STATE: c->state = arg; break;
	case O_RESUME: c->resume = arg; break;
	case O_THREADS: c->threads = (int)opt_int("--threads", arg, 1, 256); break;
	case O_QUIET: c->quiet = 1; break;
	case O_TAG:
		if (strlen(arg) == 0 || strlen(arg) > 64)
			usage_error("--tag: '%s' must have 1..64 characters (example: --tag grok)", arg);
		c->tag = arg;
		break;
	default: return 0;
	}
	return 1;
}

void
train_check(const struct train_config *c, int argc, char **argv, int first, const char *tool)
{
	if (first < argc)
		usage_error("unexpected argument '%s' (the data set is read from --data FILE or standard input)",
		    argv[first]);
	if (c->steps_given && c->epochs)
		usage_error("--steps and --epochs exclude each other");
	if (c->opt.kind == OPT_SGD && c->set_beta)
		usage_error("--beta1, --beta2 and --eps apply to --optim adam and adamw only");
	if (c->opt.kind != OPT_SGD && (c->set_mom || c->opt.nesterov))
		usage_error("--momentum and --nesterov apply to --optim sgd only");
	if (c->opt.nesterov && c->opt.momentum == 0)
		usage_error("--nesterov needs --momentum greater than 0");
	if (c->log_every && c->log_points != TRAIN_DEFAULT_LOG_POINTS)
		usage_error("--log-every and --log-points exclude each other");
	if ((c->ckpt_every || c->ckpt_points) && !c->ckpt_dir)
		usage_error("--ckpt-every and --ckpt-points need --ckpt-dir DIR");
	if (c->ckpt_optim && !c->ckpt_dir)
		usage_error("--ckpt-optim needs --ckpt-dir DIR");
	if (c->ckpt_every && c->ckpt_points)
		usage_error("--ckpt-every and --ckpt-points exclude each other");
	if (c->init && c->resume)
		usage_error("--init and --resume exclude each other (a state holds its parameters)");
	if (strcmp(c->data, "-") == 0 && isatty(STDIN_FILENO))
		usage_error("no data: pipe gen-modadd into %s or give --data FILE", tool);
}

struct option *
train_longopts(const struct option *own)
{
	size_t a = 0, b = 0;
	struct option *all;

	while (own[a].name)
		a++;
	while (train_options[b].name)
		b++;
	all = xmalloc(xmul(a + b + 1, sizeof *all));
	memcpy(all, own, a * sizeof *all);
	memcpy(all + a, train_options, (b + 1) * sizeof *all);
	return all;
}

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
	const struct train_config *c = &r->cfg;
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
	const struct train_config *c = &r->cfg;
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
	/* only where it is not the first form, so that older configurations read the same */
	if (c->warmup_origin != 1)
		json_object_set_new(cfg, "warmup_origin", json_integer(c->warmup_origin));
	json_object_set_new(cfg, "tag", c->tag ? json_string(c->tag) : json_null());
	return cfg;
}

/*
 * The learning rate of update s (1, 2, ...): the warm-up's factor is (s -
 * 1 + origin) / warmup until it reaches 1.  Origin 0 is PyTorch's
 * LambdaLR(lambda k: min(k / warmup, 1)) stepped after each update, which
 * gives update s the factor of k = s - 1 (the first update runs at 0).
 */
static double
lr_at(const struct train_config *c, long s)
{
	long k = s - 1 + c->warmup_origin;

	if (c->warmup && k < c->warmup)
		return c->opt.lr * (double)k / (double)c->warmup;
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

/*
 * At the end of an epoch: the norm of the whole epoch's change,
 * ||theta_end - theta_start||, then this epoch's end becomes the next
 * one's start.  One pass and one copy of the parameters per epoch, so
 * the log carries an epoch's displacement (the steps' updates summed as
 * vectors, not their norms) at the cost of two vector sweeps.
 */
static void
epoch_end(struct run *r)
{
	size_t n = r->m->nparams;

	if (r->epoch_known) {
		double s = 0.0;
		for (size_t k = 0; k < n; k++) {
			double d = (double)r->theta[k] - (double)r->theta_epoch[k];
			s += d * d;
		}
		r->epoch_du = sqrt(s);
	}
	memcpy(r->theta_epoch, r->theta, n * sizeof(float));
	r->epoch_known = 1;
}

/* The epoch's start for a run that begins here (fresh, --init, or a resume without one). */
static void
epoch_begin(struct run *r)
{
	memcpy(r->theta_epoch, r->theta, r->m->nparams * sizeof(float));
	r->epoch_known = 1;
	r->epoch_du = -1;
}

/*
 * A resumed run's epoch state: the state's, or, from a state written
 * before it was saved, this point as an epoch's start if it is one (else
 * the epoch in progress is not measured: its start is gone).
 */
static void
read_epoch_state(struct run *r, const struct st_frame *f)
{
	int64_t shp[1] = {(int64_t)r->m->nparams};
	const struct st_tensor *t;
	const char *v;
	char err[ST_ERRLEN], *end;

	r->epoch_du = -1;
	if (!st_find(f, "train.epoch_start")) {
		if (r->pos == 0)
			epoch_begin(r);
		return;
	}
	if (!(t = st_expect(f, "train.epoch_start", ST_F32, 1, shp, err, sizeof err)))
		die("--resume: %s: %s", r->cfg.resume, err);
	memcpy(r->theta_epoch, t->data, t->nbytes);
	r->epoch_known = 1;
	if ((v = st_meta(f, "epoch_update_norm"))) {
		r->epoch_du = strtod(v, &end);
		if (end == v || *end || !(r->epoch_du >= 0 || r->epoch_du == -1))
			die("--resume: %s: malformed epoch_update_norm '%s'", r->cfg.resume, v);
	}
}

/*
 * --ckpt-optim: what the preconditioned sharpness needs, beside the
 * parameters: the optimiser's step count (Adam's bias corrections), the
 * learning rate of the step the next update takes from these weights,
 * and Adam's second moments.  Not a training state: no first moments,
 * no minibatch order.
 */
static void
add_optim_state(struct run *r, struct st_writer *w)
{
	int64_t shp[1] = {(int64_t)r->m->nparams};
	char buf[32];

	st_writer_meta_long(w, "optim_t", r->opt.t);
	format_real(buf, sizeof buf, lr_at(&r->cfg, r->step + 1));
	st_writer_meta(w, "optim_lr", buf);
	if (r->cfg.opt.kind != OPT_SGD)
		st_writer_add(w, "optim.v", ST_F32, 1, shp, r->opt.v);
}

/*
 * The per-epoch update's state, so a resumed run logs what a straight
 * run would: the parameters at the current epoch's start and the last
 * whole epoch's update norm (format_real reads back to the same double).
 */
static void
add_epoch_state(struct run *r, struct st_writer *w)
{
	int64_t shp[1] = {(int64_t)r->m->nparams};
	char buf[32];

	if (!r->epoch_known)
		return;
	st_writer_add(w, "train.epoch_start", ST_F32, 1, shp, r->theta_epoch);
	format_real(buf, sizeof buf, r->epoch_du);
	st_writer_meta(w, "epoch_update_norm", buf);
}

/* The parameters, with the training state (state) or the optimiser's (optim), or alone. */
static void
write_params_file(struct run *r, const char *path, int state, int optim)
{
	struct st_writer w;
	int64_t shp[1];
	char buf[32];

	st_writer_init(&w);
	ckpt_add_params(&w, r->m, r->theta);
	ckpt_add_meta(&w, r->m, r->tool_version, r->step, r->d.digest, r->config_json);
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
		add_epoch_state(r, &w);
	} else if (optim) {
		add_optim_state(r, &w);
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
	write_params_file(r, path, 0, r->cfg.ckpt_optim);
	free(path);
}

/*
 * The per-example gradient statistics of the training set, from sq (n):
 * each example's squared gradient norm |g_i|^2 (its own loss, unscaled),
 * and gbar2 = |gbar|^2, gbar = (1/n) sum g_i the full-batch gradient.
 * With G = (1/n) sum g_i g_i^T (gop-spectrum's uncentred GOP) and
 * C = G - gbar gbar^T (its centred covariance, 1/n: the training set is
 * the whole population of the empirical risk, not a sample of it):
 * example_grad_sq_mean = tr G, and noise_scale = tr C / |gbar|^2, the
 * simple noise scale B_simple of McCandlish et al. (2018); tr G / |gbar|^2
 * = noise_scale + 1.  Null when gbar is zero.
 */
static void
example_stats(json_t *rec, const double *sq, long n, double gbar2)
{
	double mean = 0, max = 0, sqmean = 0;

	for (long i = 0; i < n; i++) {
		double g = sqrt(sq[i]);
		mean += g;
		sqmean += sq[i];
		max = g > max ? g : max;
	}
	mean /= (double)n;
	sqmean /= (double)n;
	json_object_set_new(rec, "example_grad_norm_mean", jnum(mean));
	json_object_set_new(rec, "example_grad_norm_max", jnum(max));
	json_object_set_new(rec, "example_grad_sq_mean", jnum(sqmean));
	json_object_set_new(rec, "noise_scale", gbar2 > 0 ? jnum((sqmean - gbar2) / gbar2) : json_null());
}

/* One metrics record for the parameters after r->step updates; -1 if they diverged. */
static int
log_metrics(struct run *r, double lr, double update_norm)
{
	const struct dataset *d = &r->d;
	struct model_eval tr, te;
	json_t *layers = json_array(), *rec;
	double train_loss;

	/* the family's own fields, if it has any, come from the training set's pass */
	struct model_diag *dg = r->m->family->log_json ? model_diag_new(r->m) : NULL;

	/* per-example gradient norms from the same pass, where the family has them */
	double *sq = r->m->family->example_norms && d->n_train > 0 ?
	    xmalloc(xmul((size_t)d->n_train, sizeof(double))) : NULL;

	memset(r->gfull, 0, r->m->nparams * sizeof(float));
	if (!sq || model_eval_set_norms(r->w, &tr, r->gfull, sq, r->theta, d->train_x, d->train_y,
	    d->n_train, dg) < 0)
		model_eval_set(r->w, &tr, r->gfull, r->theta, d->train_x, d->train_y, d->n_train, dg);
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
	json_object_set_new(rec, "epoch_update_norm", r->epoch_du >= 0 ? jnum(r->epoch_du) : json_null());
	if (sq)
		example_stats(rec, sq, d->n_train, norm2(r->gfull, r->m->nparams));
	free(sq);
	if (r->m->family->log_json)
		r->m->family->log_json(r->m, r->theta, dg, rec);
	model_diag_free(dg);
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
	fprintf(stderr, "\r%s: step %ld/%ld  %.0f steps/s  ETA %.0fs   ",
	    r->tool, r->step, r->cfg.steps, rate, eta);
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

/* Keys whose values differ between a and b, as "  key: A in the state, B in this command" lines. */
static void
config_diff(const json_t *a, const json_t *b, const char *prefix, char *out, size_t n)
{
	const char *key;
	json_t *va;
	char path[128];

	json_object_foreach((json_t *)a, key, va) {
		json_t *vb = json_object_get(b, key);
		snprintf(path, sizeof path, "%s%s", prefix, key);
		if (json_is_object(va) && json_is_object(vb)) {
			char sub[sizeof path + 1];
			snprintf(sub, sizeof sub, "%s.", path);
			config_diff(va, vb, sub, out, n);
		} else if (!vb || !json_equal(va, vb)) {
			char *sa = jsonl_string(va), *sb = vb ? jsonl_string(vb) : xstrdup("(none)");
			size_t used = strlen(out);
			snprintf(out + used, n - used, "\n  %s: %s in the state, %s in this command", path, sa, sb);
			free(sa);
			free(sb);
		}
	}
	json_object_foreach((json_t *)b, key, va) {
		if (!json_object_get(a, key)) {
			size_t used = strlen(out);
			snprintf(out + used, n - used, "\n  %s%s: not in the state", prefix, key);
		}
	}
}

/*
 * The state to resume, opened and checked against this command: its
 * format and data, and its configuration with the length (steps) left
 * out, since a run may be extended.  Its initial weights' digest stands
 * for --init, which a resumed command does not repeat.
 */
static json_t *
open_state(struct run *r, struct st_frame *f, char **init_digest)
{
	const char *name = r->cfg.resume, *s;
	char err[ST_ERRLEN];
	json_t *saved, *init;
	json_error_t je;

	if (st_load(f, name, err, sizeof err) < 0)
		die("--resume: %s", err);
	if (!(s = st_meta(f, "format")) || strcmp(s, "grokkit-state-v1") != 0)
		die("--resume: %s: not a training state (format '%s', expected grokkit-state-v1)",
		    name, s ? s : "none");
	if (!(s = st_meta(f, "data_sha256")) || strcmp(s, r->d.digest) != 0)
		die("--resume: %s: trained on data %.12s..., not on this data set (%.12s...)",
		    name, s ? s : "?", r->d.digest);
	saved = json_loads(st_meta(f, "config") ? st_meta(f, "config") : "", 0, &je);
	if (!json_is_object(saved))
		die("--resume: %s: its configuration is missing or not JSON", name);
	init = json_object_get(saved, "init_sha256");
	*init_digest = json_is_string(init) ? xstrdup(json_string_value(init)) : NULL;
	return saved;
}

/* Refuse a state whose configuration, apart from its length, differs from the command's. */
static void
check_state_config(struct run *r, json_t *saved)
{
	json_t *a = json_deep_copy(saved), *b = json_deep_copy(r->config), *steps;
	char diff[4096] = "";

	steps = json_object_get(saved, "steps");
	r->resumed_steps = json_is_integer(steps) ? (long)json_integer_value(steps) : 0;
	json_object_del(a, "steps");
	json_object_del(b, "steps");
	if (!json_equal(a, b)) {
		config_diff(a, b, "", diff, sizeof diff);
		die("--resume: %s: its configuration differs from this command's:%s", r->cfg.resume, diff);
	}
	json_decref(a);
	json_decref(b);
}

/* The state's parameters, moments, minibatch order, step and generator. */
static void
read_state(struct run *r, const struct st_frame *f, json_t *inputs)
{
	struct ckpt_state st;
	const char *name = r->cfg.resume;
	char err[ST_ERRLEN], hex[65];
	long long step;

	if (ckpt_meta_long(f, "step", 0, TRAIN_MAX_STEPS, &step, name, err, sizeof err) < 0)
		die("--resume: %s", err);
	if (step > r->cfg.steps)
		die("--resume: %s: the state is at step %lld, past this command's %ld steps",
		    name, step, r->cfg.steps);
	st = (struct ckpt_state){.theta = r->theta, .m = r->opt.m, .v = r->opt.v, .perm = r->perm};
	if (ckpt_state_read(f, r->m, r->d.n_train, r->cfg.steps, TRAIN_MAX_STEPS, &st, name, err, sizeof err) < 0)
		die("--resume: %s", err);
	r->elapsed0 = st.elapsed;
	r->step = (long)st.step;
	r->opt.t = (long)st.optim_t;
	r->pos = (long)st.batch_pos;
	r->shuffle.state = st.rng_state;
	r->shuffle.inc = st.rng_inc;
	read_epoch_state(r, f);
	sha256_hex(f->digest, hex);
	json_object_set_new(inputs, "resume", json_string(hex));
}

/* The run's name: its configuration and its data, hashed. */
static void
name_run(struct run *r)
{
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

/* The data set, the batch and the length; the model and every buffer. */
static void
setup_buffers(struct run *r, const char *family, const json_t *hp)
{
	struct train_config *c = &r->cfg;
	char err[ST_ERRLEN];

	if (dataset_load(&r->d, c->data, err, sizeof err) < 0)
		die("%s", err);
	if (c->batch > r->d.n_train)
		usage_error("--batch %ld exceeds the %d training examples (use --batch full)",
		    c->batch, r->d.n_train);
	r->B = c->batch ? c->batch : r->d.n_train;
	r->steps_per_epoch = (r->d.n_train + r->B - 1) / r->B;
	if (c->epochs) {
		if (c->epochs > TRAIN_MAX_STEPS / r->steps_per_epoch)
			usage_error("--epochs %ld is more than %ld steps", c->epochs, TRAIN_MAX_STEPS);
		c->steps = c->epochs * r->steps_per_epoch;
	}
	if (!(r->m = model_new_json(family, hp, r->d.p, err, sizeof err)))
		die("%s", err);
	r->theta = xcalloc(r->m->nparams, sizeof(float));
	r->grad = xcalloc(r->m->nparams, sizeof(float));
	r->gfull = xcalloc(r->m->nparams, sizeof(float));
	r->theta_epoch = xcalloc(r->m->nparams, sizeof(float));
	r->w = model_work_new(r->m, (int)r->B);
	optim_init(&r->opt, &c->opt, r->m->nparams);
	r->perm = xmalloc(xmul((size_t)r->d.n_train, sizeof(int32_t)));
	for (int i = 0; i < r->d.n_train; i++)
		r->perm[i] = i;
	r->bx = xmalloc(xmul((size_t)r->B, 2 * sizeof(int32_t)));
	r->by = xmalloc(xmul((size_t)r->B, sizeof(int32_t)));
	rng_init(&r->shuffle, c->seed, RNG_SHUFFLE);
	make_schedule(r);
}

static void
header(struct run *r, json_t *inputs, int argc, char **argv)
{
	json_t *h = jsonl_header(r->tool, argc, argv, r->cfg.seed, json_incref(r->config));

	json_object_set_new(h, "inputs", inputs);
	json_object_set_new(h, "data", json_pack("{s:O, s:i, s:i}", "metadata", r->d.meta,
	    "n_train", r->d.n_train, "n_test", r->d.n_test));
	json_object_set_new(h, "family", json_string(r->m->family->name));
	json_object_set_new(h, "params", json_integer((json_int_t)r->m->nparams));
	json_object_set_new(h, "run_id", json_string(r->run_id));
	json_object_set_new(h, "blas", blas_json(r->cfg.threads, model_kernel(r->m)));
	json_object_set_new(h, "flush_denormals", json_boolean(flush_denormals()));
	json_object_set_new(h, "resumed_from_step", r->cfg.resume ? json_integer(r->step) : json_null());
	if (r->cfg.resume && r->resumed_steps != r->cfg.steps)
		json_object_set_new(h, "extended_from_steps", json_integer(r->resumed_steps));
	jsonl_emit(stdout, h);
}

static void
setup(struct run *r, const char *family, const json_t *hp, int argc, char **argv)
{
	struct train_config *c = &r->cfg;
	char *init_digest = NULL;
	json_t *inputs, *saved = NULL;
	struct st_frame f;
	struct rng ri;

	setup_buffers(r, family, hp);
	inputs = json_pack("{s:s}", "data", r->d.digest);
	if (c->resume) {
		saved = open_state(r, &f, &init_digest);
	} else if (c->init) {
		load_init(r, inputs, &init_digest);
	} else {
		rng_init(&ri, c->seed, RNG_INIT);
		r->m->family->init(r->m, r->theta, &ri);
	}
	if (!c->resume)
		epoch_begin(r);
	r->config = config_json(r, init_digest);
	r->config_json = jsonl_string(r->config);
	name_run(r);
	free(init_digest);
	if (c->resume) {
		check_state_config(r, saved);
		read_state(r, &f, inputs);
		json_decref(saved);
		st_free(&f);
	}
	if (c->ckpt_dir && mkdir(c->ckpt_dir, 0777) < 0 && errno != EEXIST)
		die("--ckpt-dir %s:", c->ckpt_dir);
	header(r, inputs, argc, argv);
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
	free(r->theta_epoch);
	free(r->perm);
	free(r->bx);
	free(r->by);
	free(r->logpts);
	free(r->ckpts);
	free(r->config_json);
	json_decref(r->config);
}

/* One optimisation step on the next minibatch; -1 if its loss is not finite. */
static int
train_step(struct run *r, double *lr, double *du)
{
	const int32_t *x, *y;
	struct model_eval ev = {0};
	int B;

	next_batch(r, &x, &y, &B);
	memset(r->grad, 0, r->m->nparams * sizeof(float));
	model_loss_grad(r->w, &ev, r->grad, r->theta, x, y, B, (float)(1.0 / B), NULL);
	if (!isfinite(ev.loss_sum))
		return -1;
	r->step++;
	*lr = lr_at(&r->cfg, r->step);
	*du = optim_step(&r->opt, r->theta, r->grad, *lr);
	return 0;
}

/* The steps; TRAIN_EXIT_DIVERGED if the loss stopped being finite (-1 at step 0), else 0. */
static int
train_loop(struct run *r)
{
	double lr = 0, du = 0, last_progress = 0;
	long s0 = r->step;

	if (r->step == 0 && log_metrics(r, 0, 0) < 0)
		return -1;   /* the initial parameters' loss: nothing was trained */
	if (r->step == 0 && is_ckpt_point(r, 0))
		write_checkpoint(r);
	while (r->step < r->cfg.steps && !stop_signal) {
		if (train_step(r, &lr, &du) < 0)
			return TRAIN_EXIT_DIVERGED;
		if (r->step % r->steps_per_epoch == 0)
			epoch_end(r);
		if (is_log_point(r, r->step)) {
			if (log_metrics(r, lr, sqrt(du)) < 0)
				return TRAIN_EXIT_DIVERGED;
			if (is_ckpt_point(r, r->step))
				write_checkpoint(r);
			if (r->cfg.state)
				write_params_file(r, r->cfg.state, 1, 0);
		} else if (is_ckpt_point(r, r->step)) {
			write_checkpoint(r);
		}
		progress(r, s0, &last_progress);
	}
	return 0;
}

int
train_run(const struct train_config *c, const char *tool, const char *family,
    const json_t *hp, int argc, char **argv)
{
	static struct run r;
	struct sigaction sa;
	int rc;

	memset(&r, 0, sizeof r);
	r.cfg = *c;
	r.tool = tool;
	snprintf(r.tool_version, sizeof r.tool_version, "%s %s", tool, GROK_VERSION);
	blas_setup(c->threads, argv);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	r.t0 = now_seconds();
	setup(&r, family, hp, argc, argv);
	rc = train_loop(&r);
	if (rc < 0) {
		final_record(&r, "diverged");
		rc = TRAIN_EXIT_DIVERGED;
	} else if (rc == TRAIN_EXIT_DIVERGED) {
		warn("diverged at step %ld (loss is not finite); the last good checkpoint is kept", r.step);
		final_record(&r, "diverged");
	} else if (stop_signal) {
		if (r.cfg.state)
			write_params_file(&r, r.cfg.state, 1, 0);
		final_record(&r, "interrupted");
		rc = 128 + stop_signal;
	} else {
		if (r.cfg.state)
			write_params_file(&r, r.cfg.state, 1, 0);
		if (r.cfg.out)
			write_params_file(&r, r.cfg.out, 0, 0);
		final_record(&r, "ok");
	}
	teardown(&r);
	return rc;
}

int
train_getopt(struct train_config *c, const struct option *own,
    int (*own_option)(void *ctx, int code, const char *arg), void *ctx, int argc, char **argv,
    const char *tool)
{
	struct option *longopts = train_longopts(own);
	int ch;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (own_option(ctx, ch, optarg) || train_option(c, ch, optarg))
			continue;
		fprintf(stderr, "Try '%s --help' for more information.\n", tool);
		exit(EXIT_USAGE);
	}
	free(longopts);
	return optind;
}
