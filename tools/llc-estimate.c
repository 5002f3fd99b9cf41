/*
 * llc-estimate: the local learning coefficient of train-mlp checkpoints,
 * by SGLD chains localised at the checkpoint's parameters.
 *
 * For each checkpoint w*, --chains independent chains of --draws draws
 * (after --burn-in steps) sample the tempered, localised posterior around
 * w* on minibatches of the training set; the estimate per chain is
 * nbeta (mean draw loss - L(w*)), L(w*) the full training loss, and the
 * record gives their mean and standard deviation.  One JSON-lines record
 * per checkpoint, after a header.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis.h"
#include "chains.h"
#include "ckpt.h"
#include "dataset.h"
#include "jsonl.h"
#include "linalg.h"
#include "model.h"
#include "opts.h"
#include "sgld.h"
#include "st.h"
#include "util.h"

#define MAX_CKPTS 100000
#define MAX_CHAINS 10000
#define MAX_DRAWS 10000000L
/* The health rule's defaults (docs/design.md says where each comes from). */
#define LLC_MAX_RHAT 1.01
#define LLC_MAX_DRIFT 4.0
#define LLC_MIN_MALA 0.9
#define LLC_MIN_ESS 100.0
#define LLC_MIN_RELAX 0.0   /* off: devinterp's default chain has no burn-in */
#define LLC_MALA_EVERY 10

/*
 * When an estimate is healthy: every chain stayed finite and in the basin
 * and is stationary by its own halves and by the MALA acceptance of its
 * steps, and the chains agree (R-hat) with enough effective draws for the
 * mean (ESS).  A threshold of NaN is not applied.
 */
struct health_rule {
	double max_rhat;    /* Vehtari et al. 2021: trust below 1.01 */
	double max_drift;   /* |drift z| of a chain's halves */
	double min_mala;    /* devinterp: 0.9 to 0.95 */
	double min_ess;     /* ESS of the mean over all chains */
	double min_relax;   /* burn-in in relaxation times of the slowest direction */
};

struct config {
	const char *data, *trace;
	struct sgld_params sp;
	struct sgld_method meth;     /* preconditioner and its settings; moving set per checkpoint */
	const char *restrict_names;  /* --restrict: tensor or group names, comma-separated */
	int eps_auto, lanczos_steps;
	double margin, eps_scale;   /* --margin, --eps-scale */
	double explode;   /* margin over L(w*) */
	struct health_rule rule;
	int chains, threads, any_data, nbeta_set, explode_set;
	uint64_t seed;
};

/* The training loss of a minibatch, as the sampler's callback sees it. */
struct target {
	struct model_work *w;
	const struct dataset *d;
	int32_t *bx, *by;
};

static double
batch_loss_grad(void *ctx, float *grad, const float *theta, const int32_t *idx, int B)
{
	struct target *t = ctx;
	struct model_eval ev = {0};

	dataset_gather(t->d, idx, B, t->bx, t->by);
	model_loss_grad(t->w, &ev, grad, theta, t->bx, t->by, B, 1.0f / (float)B, NULL);
	return ev.loss_sum / B;
}

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: llc-estimate --data FILE [--chains C] [--draws N] [--burn-in B]\n"
	    "                    [--epsilon E] [--gamma G] [--nbeta NB] [--batch M]\n"
	    "                    [--trace FILE] [options] [CKPT...]\n");
}

static void
help(void)
{
	usage(stdout);
	printf(
"\n"
"For each train-mlp or train-transformer checkpoint (the arguments, or\n"
"paths one per line on standard input), the local learning coefficient of\n"
"the training loss at its parameters w*, estimated by SGLD chains as\n"
"devinterp does:\n"
"\n"
"  w <- w - (E/2) (NB grad L_batch(w) + G (w - w*)) + N(0, E)\n"
"  llc = NB (mean over draws of L_batch(w) - L(w*))\n"
"\n"
"per chain, then mean and standard deviation over chains.  One JSON-lines\n"
"record per checkpoint after a header.\n"
"\n"
"      --data FILE        the data set the checkpoints were trained on\n"
"      --any-data         allow a data set other than the checkpoint's own\n"
"Sampler\n"
"      --chains C         independent chains, 1..10000 (default 10)\n"
"      --draws N          draws kept per chain, 1..10000000 (default 100)\n"
"      --burn-in B        steps before the first draw, 0.. (default 0)\n"
"      --thin K           steps between draws, 1.. (default 1)\n"
"      --batch M          minibatch rows, 1..n_train (default 32)\n"
"      --epsilon E|auto   step size, (0, 1] (default 1e-3); auto: from the\n"
"                         Hessian's top eigenvalue lambda on the moving\n"
"                         parameters (Lanczos), the smaller of\n"
"                         4 / (margin (NB lambda + G)) and the step a Gaussian\n"
"                         of that top precision and G in the others would\n"
"                         accept at 0.97 by MALA (it falls with the number of\n"
"                         parameters), times --rms-delta with --precond rmsprop\n"
"      --margin M         auto's stability margin, > 0 (default 20)\n"
"      --eps-scale F      auto's step times F, > 0 (default 1; the calibration\n"
"                         grid's axis)\n"
"      --lanczos-steps K  auto's Lanczos steps, 2..1000 (default 20)\n"
"      --gamma G          localisation strength, 0..1e12 (default 100)\n"
"      --nbeta NB         inverse temperature n*beta, > 0 (default M / ln M)\n"
"      --precond P        none (plain SGLD) or rmsprop (devinterp's rmsprop_sgld:\n"
"                         steps scaled by 1 / (sqrt(v) + delta), v the running\n"
"                         mean of the squared gradient) (default none)\n"
"      --rms-alpha A      rmsprop: v's decay, [0, 1) (default 0.99)\n"
"      --rms-delta D      rmsprop: delta, > 0 (default 0.1)\n"
"      --freeze           rmsprop: adapt v during the burn-in only, then hold it\n"
"      --restrict NAMES   move only these tensors or layers (comma-separated,\n"
"                         e.g. layers.0.weight or layers.1), the rest held at w*\n"
"      --explode D        a draw whose loss exceeds L(w*) + D counts as\n"
"                         exploded (default: the loss of a model that knows\n"
"                         nothing, ln p for ce and 1/p for mse)\n"
);
}

/* help()'s second half (one string would pass the 4095 characters C99 promises to support). */
static void
help_health(void)
{
	printf(
"Health (an estimate is healthy when no rule flags it; the record lists them)\n"
"      --max-rhat R       rhat: R-hat across chains above R, >= 1 (default\n"
"                         1.01, Vehtari et al. 2021)\n"
"      --max-drift Z      drift: a chain's |drift z| between its halves above\n"
"                         Z, > 0 (default 4)\n"
"      --min-mala A       mala: a chain's mean MALA acceptance below A, [0, 1]\n"
"                         (default 0.9, devinterp's lower end; 0: off), on\n"
"                         the proposal's own minibatch when measured\n"
"      --mala-every K     measure that acceptance every K-th draw step, at\n"
"                         the cost of one more evaluation; 0: only\n"
"                         devinterp's, across consecutive minibatches, whose\n"
"                         noise hides the step's error (default 10)\n"
"      --min-ess E        ess: the ESS of the mean of all draws below E, >= 0\n"
"                         (default 100; 0: off)\n"
"      --min-relax K      short: a burn-in under K relaxation times of the\n"
"                         slowest direction, 1 / (epsilon gamma G_min), >= 0\n"
"                         (default 0: off)\n"
"                         and always: nonfinite (a NaN or infinite loss),\n"
"                         exploded (a draw past --explode), nonlocal (the\n"
"                         mean estimate over nbeta, the posterior's mean loss\n"
"                         rise, past --explode), negative (the mean estimate\n"
"                         below 0: w* is not a minimum)\n"
"Output\n"
"      --trace FILE       write every draw's loss (safetensors, F64 [C, N]);\n"
"                         with several checkpoints FILE must contain {step}\n"
"Other\n"
"      --seed S           seed of the minibatch order and the noise (default 0)\n"
"      --threads N        BLAS threads, 1..256 (default 1)\n"
"  -h, --help             show this help and exit\n"
"      --version          show the version and exit\n"
"\n"
"burn-in + draws * thin is at most 100000000 steps per chain.  A chain\n"
"whose loss turns NaN or infinite stops; its estimate is null and the mean\n"
"is over the chains that finished.\n"
"\n"
CKPT_LIMITS_HELP
"\n"
"Exit status: 0 success, 1 runtime or data error, 2 usage error.\n"
"\n"
"Examples:\n"
"  llc-estimate --data data.safetensors ckpt/step-*.safetensors > llc.jsonl\n"
"  llc-estimate --data data.safetensors --epsilon auto --precond rmsprop --trace 'trace-{step}.st' ckpt/*.safetensors\n");
}

/* The sampler's method options (their codes follow parse_args's own). */
enum {
	O_PRECOND = 512, O_ALPHA, O_DELTA, O_FREEZE, O_RESTRICT, O_MARGIN, O_LANCZOS, O_EPSILON, O_EPS_SCALE,
	O_MAX_RHAT, O_MAX_DRIFT, O_MIN_MALA, O_MIN_ESS, O_MALA_EVERY, O_MIN_RELAX,
};

static void
sampler_option(struct config *c, int ch, const char *arg)
{
	static const char *const precond_names[] = {"none", "rmsprop", NULL};

	switch (ch) {
	case O_EPSILON:
		c->eps_auto = strcmp(arg, "auto") == 0;
		if (c->eps_auto)
			break;
		c->sp.epsilon = opt_real("--epsilon", arg, 0, 1);
		if (c->sp.epsilon <= 0)
			usage_error("--epsilon: %s is not in (0, 1]", arg);
		break;
	case O_PRECOND: c->meth.precond = (enum sgld_precond)opt_choice("--precond", arg, precond_names); break;
	case O_ALPHA: c->meth.alpha = opt_real("--rms-alpha", arg, 0, 1);
		if (c->meth.alpha >= 1)
			usage_error("--rms-alpha: %s is not in [0, 1)", arg);
		break;
	case O_DELTA: c->meth.delta = opt_real_open("--rms-delta", arg, 0, 1e6); break;
	case O_FREEZE: c->meth.freeze = 1; break;
	case O_RESTRICT: c->restrict_names = arg; break;
	case O_MARGIN: c->margin = opt_real_open("--margin", arg, 0, 1e6); break;
	case O_EPS_SCALE: c->eps_scale = opt_real_open("--eps-scale", arg, 0, 1e6); break;
	case O_LANCZOS: c->lanczos_steps = (int)opt_int("--lanczos-steps", arg, 2, 1000); break;
	case O_MAX_RHAT: c->rule.max_rhat = opt_real("--max-rhat", arg, 1, 1e12); break;
	case O_MAX_DRIFT: c->rule.max_drift = opt_real_open("--max-drift", arg, 0, 1e12); break;
	case O_MIN_MALA: c->rule.min_mala = opt_real("--min-mala", arg, 0, 1); break;
	case O_MIN_ESS: c->rule.min_ess = opt_real("--min-ess", arg, 0, 1e12); break;
	case O_MIN_RELAX: c->rule.min_relax = opt_real("--min-relax", arg, 0, 1e12); break;
	case O_MALA_EVERY: c->meth.mala_every = (long)opt_int("--mala-every", arg, 0, SGLD_MAX_STEPS); break;
	}
}

/* The defaults: devinterp's sampler, the health rule's thresholds. */
static void
config_defaults(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->chains = 10;
	c->sp.draws = 100;
	c->sp.thin = 1;
	c->sp.batch = 32;
	c->sp.epsilon = 1e-3;
	c->sp.gamma = 100;
	c->threads = 1;
	sgld_method_default(&c->meth);
	c->meth.mala_every = LLC_MALA_EVERY;
	c->margin = SGLD_EPS_MARGIN;
	c->eps_scale = 1;
	c->lanczos_steps = 20;
	c->rule = (struct health_rule){LLC_MAX_RHAT, LLC_MAX_DRIFT, LLC_MIN_MALA, LLC_MIN_ESS, LLC_MIN_RELAX};
}

/* What the options say together, once all are read. */
static void
check_config(struct config *c)
{
	if (!c->data)
		usage_error("--data FILE is required (the data set the checkpoints were trained on)");
	if (c->sp.burnin + c->sp.draws * c->sp.thin > SGLD_MAX_STEPS)
		usage_error("--burn-in + --draws * --thin is %ld steps per chain, more than %ld",
		    c->sp.burnin + c->sp.draws * c->sp.thin, SGLD_MAX_STEPS);
	if (!c->nbeta_set) {
		if (c->sp.batch < 2)
			usage_error("--batch 1 has no default --nbeta (M / ln M); give --nbeta");
		c->sp.nbeta = sgld_default_nbeta(c->sp.batch);
	}
	if (c->meth.freeze && c->meth.precond != SGLD_PRECOND_RMSPROP)
		usage_error("--freeze holds RMSprop's preconditioner: it needs --precond rmsprop");
	/*
	 * The update is stable only while every step moves less than the
	 * localisation pulls back: eps * gamma / 2 < 2.
	 */
	if (!c->eps_auto && c->eps_scale != 1)
		usage_error("--eps-scale scales --epsilon auto's step: it needs --epsilon auto");
	if (!c->eps_auto && c->sp.epsilon * c->sp.gamma >= 4)
		usage_error("--epsilon %g with --gamma %g: the localisation alone diverges "
		    "(it needs epsilon * gamma < 4)", c->sp.epsilon, c->sp.gamma);
}

static void
parse_args(struct config *c, int argc, char **argv)
{
	enum {
		O_DATA = 256, O_ANY, O_CHAINS, O_DRAWS, O_BURN, O_THIN, O_BATCH, O_EPS, O_GAMMA,
		O_NBETA, O_EXPLODE, O_TRACE, O_SEED, O_THREADS, O_VERSION,
	};
	static const struct option longopts[] = {
		{"data", required_argument, NULL, O_DATA},
		{"any-data", no_argument, NULL, O_ANY},
		{"chains", required_argument, NULL, O_CHAINS},
		{"draws", required_argument, NULL, O_DRAWS},
		{"burn-in", required_argument, NULL, O_BURN},
		{"thin", required_argument, NULL, O_THIN},
		{"batch", required_argument, NULL, O_BATCH},
		{"epsilon", required_argument, NULL, O_EPS},
		{"gamma", required_argument, NULL, O_GAMMA},
		{"nbeta", required_argument, NULL, O_NBETA},
		{"explode", required_argument, NULL, O_EXPLODE},
		{"trace", required_argument, NULL, O_TRACE},
		{"seed", required_argument, NULL, O_SEED},
		{"threads", required_argument, NULL, O_THREADS},
		{"precond", required_argument, NULL, O_PRECOND},
		{"rms-alpha", required_argument, NULL, O_ALPHA},
		{"rms-delta", required_argument, NULL, O_DELTA},
		{"freeze", no_argument, NULL, O_FREEZE},
		{"restrict", required_argument, NULL, O_RESTRICT},
		{"margin", required_argument, NULL, O_MARGIN},
		{"eps-scale", required_argument, NULL, O_EPS_SCALE},
		{"lanczos-steps", required_argument, NULL, O_LANCZOS},
		{"max-rhat", required_argument, NULL, O_MAX_RHAT},
		{"max-drift", required_argument, NULL, O_MAX_DRIFT},
		{"min-mala", required_argument, NULL, O_MIN_MALA},
		{"min-ess", required_argument, NULL, O_MIN_ESS},
		{"mala-every", required_argument, NULL, O_MALA_EVERY},
		{"min-relax", required_argument, NULL, O_MIN_RELAX},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION},
		{NULL, 0, NULL, 0},
	};
	int ch;

	config_defaults(c);
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case O_DATA: c->data = optarg; break;
		case O_ANY: c->any_data = 1; break;
		case O_CHAINS: c->chains = (int)opt_int("--chains", optarg, 1, MAX_CHAINS); break;
		case O_DRAWS: c->sp.draws = (long)opt_int("--draws", optarg, 1, MAX_DRAWS); break;
		case O_BURN: c->sp.burnin = (long)opt_int("--burn-in", optarg, 0, SGLD_MAX_STEPS); break;
		case O_THIN: c->sp.thin = (long)opt_int("--thin", optarg, 1, SGLD_MAX_STEPS); break;
		case O_BATCH: c->sp.batch = (int)opt_int("--batch", optarg, 1, 1L << 24); break;
		case O_EPS: sampler_option(c, O_EPSILON, optarg); break;
		case O_PRECOND: case O_ALPHA: case O_DELTA: case O_FREEZE: case O_RESTRICT: case O_MARGIN:
		case O_EPS_SCALE:
		case O_LANCZOS: case O_MAX_RHAT: case O_MAX_DRIFT: case O_MIN_MALA: case O_MIN_ESS: case O_MALA_EVERY:
		case O_MIN_RELAX:
			sampler_option(c, ch, optarg);
			break;
		case O_GAMMA: c->sp.gamma = opt_real("--gamma", optarg, 0, 1e12); break;
		case O_NBETA: c->sp.nbeta = opt_real_open("--nbeta", optarg, 0, 1e12); c->nbeta_set = 1; break;
		case O_EXPLODE: c->explode = opt_real_open("--explode", optarg, 0, 1e300); c->explode_set = 1; break;
		case O_TRACE: c->trace = optarg; break;
		case O_SEED: c->seed = opt_seed("--seed", optarg); break;
		case O_THREADS: c->threads = (int)opt_int("--threads", optarg, 1, 256); break;
		case 'h': help(); help_health(); finish_stdout(); exit(0);
		case O_VERSION: printf("llc-estimate %s\n", GROK_VERSION); finish_stdout(); exit(0);
		default: fprintf(stderr, "Try 'llc-estimate --help' for more information.\n"); exit(EXIT_USAGE);
		}
	}
	check_config(c);
}

/* The loss trace of one chain in a few numbers: is it stationary, did it leave? */
static json_t *
chain_json(const struct config *c, const struct sgld_chain *ch, const double *loss, double llc)
{
	long n = c->sp.draws, h = n / 2;
	double lo = INFINITY, hi = -INFINITY, first = 0, second = 0;
	long finite = 0;

	for (long d = 0; d < n; d++) {
		if (!isfinite(loss[d]))
			continue;
		finite++;
		lo = fmin(lo, loss[d]);
		hi = fmax(hi, loss[d]);
		if (d < h)
			first += loss[d];
		else
			second += loss[d];
	}
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:b}",
	    "llc", jnum(llc), "loss_mean", jnum(ch->loss_mean),
	    "loss_first_half", jnum(h > 0 && !ch->nonfinite ? first / h : NAN),
	    "loss_second_half", jnum(!ch->nonfinite ? second / (n - h) : NAN),
	    "loss_min", jnum(finite ? lo : NAN), "loss_max", jnum(finite ? hi : NAN),
	    "loss_last", jnum(loss[n - 1]), "steps", (json_int_t)ch->steps,
	    "nonfinite_fraction", jnum((double)ch->nonfinite / (double)ch->steps),
	    "exploded_fraction", jnum((double)ch->exploded / (double)n),
	    "left_basin", ch->nonfinite || ch->exploded);
}

static void
write_trace(const struct config *c, const struct analysis_ckpt *ck, const double *loss,
    double init_loss)
{
	int64_t shape[2] = {c->chains, c->sp.draws};
	struct st_writer w;
	char buf[64];

	st_writer_init(&w);
	st_writer_add(&w, "loss", ST_F64, 2, shape, loss);
	format_real(buf, sizeof buf, init_loss);
	st_writer_meta(&w, "init_loss", buf);
	format_real(buf, sizeof buf, c->sp.nbeta);
	st_writer_meta(&w, "nbeta", buf);
	analysis_side_file(c->trace, ck, "grokkit-llc-trace-v1", "llc-estimate " GROK_VERSION, &w);
}

/* The reasons an estimate is flagged, as bits, and their names in the record. */
enum {
	FLAG_NONFINITE = 1, FLAG_EXPLODED = 2, FLAG_DRIFT = 4, FLAG_MALA = 8, FLAG_RHAT = 16, FLAG_ESS = 32,
	FLAG_NEGATIVE = 64, FLAG_NONLOCAL = 128, FLAG_SHORT = 256,
};
static const char *const flag_names[] = {"nonfinite", "exploded", "drift", "mala", "rhat", "ess", "negative",
	"nonlocal", "short", NULL};

static json_t *
flags_json(unsigned flags)
{
	json_t *a = json_array();

	for (int i = 0; flag_names[i]; i++)
		if (flags & (1u << i))
			json_array_append_new(a, json_string(flag_names[i]));
	return a;
}

/*
 * A diagnostic against its threshold: flagged when it is on the wrong
 * side, or cannot be computed (NaN: too few draws, a stopped chain) while
 * the rule is on, since then nothing shows the chain is healthy.
 */
static int
fails_below(double x, double min)
{
	return min > 0 && !(x >= min);
}

static int
fails_above(double x, double max)
{
	return isfinite(max) && !(x <= max);
}

/*
 * The chain's own health: MALA acceptance, drift between its halves, ESS,
 * the preconditioner's range, and the rule's verdict on it.
 */
static unsigned
chain_health_json(json_t *o, const struct health_rule *rule, const struct sgld_chain *ch,
    const struct sgld_health *h, const double *loss, long n)
{
	struct chain_drift dr;
	unsigned flags = 0;

	chain_half_drift(loss, n, &dr);
	flags |= ch->nonfinite ? FLAG_NONFINITE : 0;
	flags |= ch->exploded ? FLAG_EXPLODED : 0;
	flags |= fails_above(fabs(dr.z), rule->max_drift) ? FLAG_DRIFT : 0;
	flags |= fails_below(h->mala_batch_n ? h->mala_batch_mean : h->mala_mean, rule->min_mala) ? FLAG_MALA : 0;
	json_object_set_new(o, "mala_mean", jnum(h->mala_mean));
	json_object_set_new(o, "mala_min", jnum(h->mala_min));
	json_object_set_new(o, "mala_batch_mean", jnum(h->mala_batch_mean));
	json_object_set_new(o, "mala_batch_min", jnum(h->mala_batch_min));
	json_object_set_new(o, "mala_batch_n", json_integer(h->mala_batch_n));
	json_object_set_new(o, "drift_z", jnum(dr.z));
	json_object_set_new(o, "ess", jnum(chain_ess(loss, n)));
	json_object_set_new(o, "precond_min", jnum(h->precond_min));
	json_object_set_new(o, "precond_max", jnum(h->precond_max));
	json_object_set_new(o, "flags", flags_json(flags));
	json_object_set_new(o, "flagged", json_boolean(flags != 0));
	return flags;
}

/* The chains' estimates and how many finished or were flagged. */
struct chains_summary {
	double *llc;            /* (chains) */
	double *loss;           /* (chains, draws) every draw's loss */
	long ok, left, flagged, steps;
	double gmin;            /* the smallest preconditioner over the chains' last steps (1: plain) */
	unsigned flags;         /* every chain's flags, or-ed */
	double sum, ss;         /* over the finite estimates: sum, squared deviations */
	json_t *per_chain;
};

static void
run_chains(const struct config *c, const struct sgld_target *st, const struct sgld_params *sp,
    const struct sgld_method *meth, const float *theta, double init_loss, struct chains_summary *s)
{
	struct sgld_chain *chains = xcalloc((size_t)c->chains, sizeof *chains);

	memset(s, 0, sizeof *s);
	s->llc = xmalloc(xmul((size_t)c->chains, sizeof(double)));
	s->loss = xmalloc(xmul(xmul((size_t)c->chains, (size_t)sp->draws), sizeof(double)));
	s->per_chain = json_array();
	s->gmin = INFINITY;
	for (int k = 0; k < c->chains; k++) {
		double *lk = s->loss + (size_t)k * (size_t)sp->draws;
		struct sgld_health h = {0};
		sgld_run_method(st, sp, meth, theta, c->seed, k, lk, &chains[k], &h);
		s->llc[k] = sp->nbeta * (chains[k].loss_mean - init_loss);
		s->steps += chains[k].steps;
		unsigned f;
		if (chains[k].nonfinite || chains[k].exploded)
			s->left++;
		if (isfinite(s->llc[k])) {
			s->ok++;
			s->sum += s->llc[k];
		}
		json_array_append_new(s->per_chain, chain_json(c, &chains[k], lk, s->llc[k]));
		f = chain_health_json(json_array_get(s->per_chain, (size_t)k), &c->rule, &chains[k], &h, lk, sp->draws);
		s->flagged += f != 0;
		s->flags |= f;
		s->gmin = fmin(s->gmin, h.precond_min);
	}
	if (s->ok) {
		double mean = s->sum / s->ok;
		for (int k = 0; k < c->chains; k++)
			if (isfinite(s->llc[k]))
				s->ss += (s->llc[k] - mean) * (s->llc[k] - mean);
	}
	free(chains);
}

/*
 * --restrict: the parameters of the named tensors or groups (layers), as
 * the sampler's moving list; dies naming what the checkpoint lacks.
 */
static size_t *
restrict_moving(const struct model *m, const char *names, const char *path, size_t *count)
{
	char *list = xstrdup(names), *save = NULL;
	size_t *lo = xmalloc(xmul(strlen(names) + 1, sizeof(size_t)));
	size_t *hi = xmalloc(xmul(strlen(names) + 1, sizeof(size_t))), *moving;
	int n = 0;

	for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save), n++) {
		const struct model_tensor *t = model_tensor_find(m, name);
		int g;
		if (t) {
			lo[n] = t->offset;
			hi[n] = t->offset + t->numel;
			continue;
		}
		for (g = 0; g < m->ngroups && strcmp(m->group_names[g], name) != 0; g++)
			;
		if (g == m->ngroups)
			die("--restrict: %s has no tensor or group called '%s'", path, name);
		model_group_range(m, g, &lo[n], &hi[n]);
	}
	moving = sgld_moving_from_ranges(lo, hi, n, m->nparams, count);
	if (!moving)
		die("--restrict %s: no parameters of %s", names, path);
	free(list);
	free(lo);
	free(hi);
	return moving;
}

/* The Hessian of the mean training loss at theta, on the moving parameters, as a linear operator. */
struct curvature {
	struct model_hvp *h;
	const struct dataset *d;
	const float *theta;
	const size_t *moving;   /* NULL: all */
	size_t nm, P;
	float *v, *hv, *tmp;    /* (P), (P), (2 P) */
};

static void
curvature_apply(void *ctx, double *y, const double *x)
{
	struct curvature *cv = ctx;

	memset(cv->v, 0, cv->P * sizeof(float));
	memset(cv->hv, 0, cv->P * sizeof(float));
	for (size_t j = 0; j < cv->nm; j++)
		cv->v[cv->moving ? cv->moving[j] : j] = (float)x[j];
	model_hvp_set(cv->h, cv->hv, cv->theta, cv->v, cv->d->train_x, cv->d->train_y, cv->d->n_train,
	    1.0 / cv->d->n_train, cv->tmp);
	for (size_t j = 0; j < cv->nm; j++)
		y[j] = cv->hv[cv->moving ? cv->moving[j] : j];
}

/*
 * --epsilon auto: the largest eigenvalue of the training loss's Hessian
 * on the moving parameters by a few Lanczos steps (start vector from the
 * seed's sample stream), and the products it took.
 */
static double
top_curvature(const struct config *c, const struct analysis_ckpt *ck, const struct dataset *d,
    const size_t *moving, size_t nm, long *products)
{
	struct curvature cv = {model_hvp_new(ck->m, d->n_train < c->sp.batch * 32 ? d->n_train : c->sp.batch * 32),
	    d, ck->theta, moving, nm, ck->m->nparams, NULL, NULL, NULL};
	struct linop A = {nm, curvature_apply, &cv, 0};
	struct eig_result res = {0};
	struct rng r;
	double top = NAN;
	int steps = c->lanczos_steps < (int)nm ? c->lanczos_steps : (int)nm;

	cv.v = xmalloc(xmul(cv.P, sizeof(float)));
	cv.hv = xmalloc(xmul(cv.P, sizeof(float)));
	cv.tmp = xmalloc(xmul(2 * cv.P, sizeof(float)));
	rng_init(&r, c->seed, RNG_SAMPLE);
	if (lanczos_eigs(&A, 1, EIG_TOP, CONVERGE_VALUE, 1e-3, steps, &r, 0, &res) == 0 && res.ntop > 0)
		top = res.top[0];
	*products = A.count;
	eig_result_free(&res);
	model_hvp_free(cv.h);
	free(cv.v);
	free(cv.hv);
	free(cv.tmp);
	return top;
}

/*
 * --epsilon auto: the smaller of eps_auto on the top curvature at the
 * margin (each direction's stability and bias) and eps_mala (the MALA
 * acceptance of all the moving directions together, which falls as
 * d^(1/3) eps gamma grows); for RMSprop, times delta, since G <= 1/delta
 * bounds the preconditioned curvature by the plain one over delta
 * whatever G becomes; times --eps-scale.  eps[0..1] receives the two bounds.
 */
static void
auto_epsilon(const struct config *c, const struct analysis_ckpt *ck, const struct dataset *d,
    const struct sgld_method *meth, struct sgld_params *sp, double *lmax, long *products, double eps[2])
{
	size_t nm = meth->moving ? meth->nmoving : ck->m->nparams;

	*lmax = top_curvature(c, ck, d, meth->moving, nm, products);
	if (!isfinite(*lmax))
		die("%s: --epsilon auto: the Lanczos steps gave no curvature", ck->path);
	eps[0] = sgld_eps_auto(fmax(*lmax, 0), sp->nbeta, sp->gamma, c->margin);
	eps[1] = sgld_eps_mala(fmax(*lmax, 0), sp->nbeta, sp->gamma, nm, SGLD_EPS_ACCEPT);
	sp->epsilon = c->eps_scale * fmin(eps[0], eps[1]);
	if (meth->precond == SGLD_PRECOND_RMSPROP)
		sp->epsilon *= meth->delta;
	if (!(sp->epsilon > 0 && sp->epsilon * sp->gamma < 4))
		die("%s: --epsilon auto: no stable step (nbeta lambda_max + gamma = %g)", ck->path,
		    sp->nbeta * fmax(*lmax, 0) + sp->gamma);
}

/*
 * How many steps the slowest direction takes to relax: on a direction of
 * precision a the chain's variance reaches its stationary value as
 * 1 - exp(-eps G a t), and no direction has less than the localisation's
 * gamma, so the loss's transient from w* (where every chain starts) dies
 * in 1 / (eps G gamma) steps at the least preconditioned parameter (G = 1
 * for plain SGLD).  A checkpoint whose lambda_max forces a small eps can
 * then need more steps than the chain has: that, not the posterior, is
 * why its chains drift and disagree.  Infinite (null) without a
 * localisation.
 */
static double
relaxation_steps(const struct sgld_params *sp, double gmin)
{
	double rate = sp->epsilon * sp->gamma * gmin;

	return rate > 0 ? 1 / rate : INFINITY;
}

/*
 * The sampler and its health in the record: the method, the moving
 * parameters, the chosen epsilon's curvature, the relaxation time, and
 * across the chains R-hat, the bulk ESS of the draws, the ESS of
 * lambda-hat and its Monte Carlo standard error (NaN, written null, when
 * a chain stopped).
 */
static void
record_sampler(json_t *rec, const struct config *c, const struct sgld_method *meth,
    const struct sgld_params *sp, const struct chains_summary *s, double lmax, long products,
    const double eps[2])
{
	static const char *const names[] = {"none", "rmsprop"};
	json_t *set = json_object_get(rec, "settings");
	long n = sp->draws;

	json_object_set_new(set, "precond", json_string(names[meth->precond]));
	if (meth->precond == SGLD_PRECOND_RMSPROP)
		json_object_set_new(set, "rmsprop", json_pack("{s:o, s:o, s:b}", "alpha", jnum(meth->alpha),
		    "delta", jnum(meth->delta), "freeze", meth->freeze));
	json_object_set_new(set, "restrict", c->restrict_names ? json_string(c->restrict_names) : json_null());
	json_object_set_new(set, "moving_params", json_integer((json_int_t)(meth->moving ? meth->nmoving :
	    (size_t)json_integer_value(json_object_get(rec, "params")))));
	if (c->eps_auto)
		json_object_set_new(set, "epsilon_auto", json_pack("{s:o, s:o, s:i, s:I, s:o, s:o, s:o, s:o}",
		    "lambda_max", jnum(lmax), "margin", jnum(c->margin), "lanczos_steps", c->lanczos_steps,
		    "products", (json_int_t)products, "scale", jnum(c->eps_scale), "epsilon_margin", jnum(eps[0]),
		    "epsilon_mala", jnum(eps[1]), "mala_target", jnum(SGLD_EPS_ACCEPT)));
	json_object_set_new(rec, "relaxation_steps", jnum(relaxation_steps(sp, s->gmin)));
	json_object_set_new(rec, "rhat", jnum(chains_rhat(s->loss, c->chains, n)));
	json_object_set_new(rec, "ess_bulk", jnum(chains_ess_bulk(s->loss, c->chains, n)));
	json_object_set_new(rec, "ess_llc", jnum(chains_ess_mean(s->loss, c->chains, n)));
	json_object_set_new(rec, "llc_mcse", jnum(sp->nbeta * chains_mcse_mean(s->loss, c->chains, n)));
}

/*
 * The verdict: the chains' flags and the ensemble's (R-hat, ESS of the
 * mean, the burn-in against the relaxation time, the posterior's loss
 * rise), the rule that gave them, and healthy when there are none.
 */
static unsigned
record_health(json_t *rec, const struct health_rule *rule, long mala_every, unsigned chain_flags,
    const struct sgld_params *sp, double margin)
{
	unsigned flags = chain_flags;
	json_t *rs = json_object_get(rec, "relaxation_steps");
	double relax = json_is_null(rs) ? INFINITY : json_number_value(rs);   /* null: no localisation */
	double rise = json_number_value(json_object_get(rec, "llc_mean")) / sp->nbeta;

	flags |= fails_above(json_number_value(json_object_get(rec, "rhat")), rule->max_rhat) ? FLAG_RHAT : 0;
	flags |= fails_below(json_number_value(json_object_get(rec, "ess_llc")), rule->min_ess) ? FLAG_ESS : 0;
	/* The chains found lower loss than L(w*): w* is no minimum, and lambda-hat no LLC. */
	flags |= json_number_value(json_object_get(rec, "llc_mean")) < 0 ? FLAG_NEGATIVE : 0;
	/*
	 * The chains' mean draw is worse than w* by more than a model that
	 * knows nothing: E[L] - L(w*) = lambda-hat / nbeta > the explode
	 * margin.  Not an excursion of one chain but where the tempered,
	 * localised posterior itself lies (or, while the chains still rise,
	 * less than that): at this nbeta and gamma it holds models that have
	 * forgotten w*'s data, so lambda-hat is no local quantity whatever the
	 * sampler does; only nbeta and gamma change it.
	 */
	flags |= rise > margin ? FLAG_NONLOCAL : 0;
	/* The burn-in in relaxation times; an infinite relaxation flags while the rule is on. */
	flags |= rule->min_relax > 0 && !((double)sp->burnin >= rule->min_relax * relax) ? FLAG_SHORT : 0;
	/* A null (NaN) diagnostic reads as 0 above: null R-hat must flag too. */
	if (json_is_null(json_object_get(rec, "rhat")) && isfinite(rule->max_rhat))
		flags |= FLAG_RHAT;
	json_object_set_new(json_object_get(rec, "settings"), "health", json_pack("{s:o, s:o, s:o, s:o, s:I, s:o}",
	    "max_rhat", jnum(rule->max_rhat), "max_drift", jnum(rule->max_drift),
	    "min_mala", jnum(rule->min_mala), "min_ess", jnum(rule->min_ess), "mala_every", (json_int_t)mala_every,
	    "min_relax", jnum(rule->min_relax)));
	json_object_set_new(rec, "flags", flags_json(flags));
	json_object_set_new(rec, "healthy", json_boolean(flags == 0));
	return flags;
}

/*
 * Chains that left the basin, and what would keep them in it: a smaller
 * step when one chain wandered off, but nothing the sampler controls when
 * the tempered posterior itself lies past the margin (nonlocal).
 */
static void
warn_left(const char *path, const struct chains_summary *s, int chains, unsigned flags,
    const struct sgld_params *sp, double margin)
{
	if (!s->left)
		return;
	if (flags & FLAG_NONLOCAL)
		warn("%s: %ld of %d chains left the basin, and the posterior is not local: its mean loss "
		    "rise lambda-hat / nbeta = %.3g passes the margin %.3g; a smaller --epsilon does not change "
		    "that, only --gamma or --nbeta (which change what lambda-hat measures)",
		    path, s->left, chains, s->ok ? s->sum / s->ok / sp->nbeta : NAN, margin);
	else
		warn("%s: %ld of %d chains left the basin (a NaN or exploded loss); "
		    "a smaller --epsilon or a larger --gamma keeps them local", path, s->left, chains);
}

static void
analyse(const struct config *c, const struct analysis *a, const char *path)
{
	const struct dataset *d = &a->d;
	struct analysis_ckpt ck;
	struct target tg;
	struct sgld_target st;
	struct sgld_params sp = c->sp;
	struct model_eval ev = {0};
	struct chains_summary s;
	struct sgld_method meth;
	size_t *moving = NULL;
	double init_loss, margin, lmax = NAN, eps[2] = {NAN, NAN};
	long products = 0;
	int rows;
	json_t *rec;

	analysis_open(a, path, c->data, c->any_data, &ck);
	if (c->sp.batch > d->n_train)
		die("--batch %d is more than the %d training rows of %s", c->sp.batch, d->n_train, c->data);
	/* A chain has left w*'s basin when a draw is worse than w* by a whole know-nothing model's loss. */
	margin = c->explode_set ? c->explode : model_chance_loss(ck.m);

	/* One work for the minibatches and for L(w*) over the training set in batches of up to 4096 rows. */
	rows = d->n_train < 4096 ? d->n_train : 4096;
	tg = (struct target){model_work_new(ck.m, c->sp.batch > rows ? c->sp.batch : rows), d, NULL, NULL};
	tg.bx = xmalloc(xmul((size_t)c->sp.batch, 2 * sizeof(int32_t)));
	tg.by = xmalloc(xmul((size_t)c->sp.batch, sizeof(int32_t)));
	model_eval_set(tg.w, &ev, NULL, ck.theta, d->train_x, d->train_y, d->n_train, NULL);
	init_loss = ev.loss_sum / d->n_train;
	sp.explode = init_loss + margin;

	st = (struct sgld_target){ck.m->nparams, d->n_train, batch_loss_grad, &tg};
	meth = c->meth;
	meth.mala = 1;
	if (c->restrict_names)
		meth.moving = moving = restrict_moving(ck.m, c->restrict_names, path, &meth.nmoving);
	if (c->eps_auto)
		auto_epsilon(c, &ck, d, &meth, &sp, &lmax, &products, eps);
	run_chains(c, &st, &sp, &meth, ck.theta, init_loss, &s);

	rec = analysis_record("llc", &ck);
	json_object_set_new(rec, "n", json_integer((json_int_t)d->n_train));
	json_object_set_new(rec, "init_loss", jnum(init_loss));
	json_object_set_new(rec, "llc_mean", jnum(s.ok ? s.sum / s.ok : NAN));
	/* Sample standard deviation over chains, as devinterp (torch's std). */
	json_object_set_new(rec, "llc_std", jnum(s.ok > 1 ? sqrt(s.ss / (s.ok - 1)) : NAN));
	json_object_set_new(rec, "llc_stderr", jnum(s.ok > 1 ? sqrt(s.ss / (s.ok - 1) / s.ok) : NAN));
	json_object_set_new(rec, "llc_per_chain", jarray(s.llc, c->chains));
	json_object_set_new(rec, "chains_ok", json_integer(s.ok));
	json_object_set_new(rec, "chains_left", json_integer(s.left));
	json_object_set_new(rec, "chains_flagged", json_integer(s.flagged));
	json_object_set_new(rec, "chains", s.per_chain);
	json_object_set_new(rec, "settings", json_pack("{s:o, s:o, s:o, s:i, s:I, s:I, s:I, s:i, s:o}",
	    "epsilon", jnum(sp.epsilon), "gamma", jnum(sp.gamma), "nbeta", jnum(sp.nbeta),
	    "batch", sp.batch, "draws", (json_int_t)sp.draws, "burn_in", (json_int_t)sp.burnin,
	    "thin", (json_int_t)sp.thin, "chains", c->chains, "explode", jnum(margin)));
	json_object_set_new(rec, "explode_at", jnum(sp.explode));
	record_sampler(rec, c, &meth, &sp, &s, lmax, products, eps);
	warn_left(path, &s, c->chains, record_health(rec, &c->rule, meth.mala_every, s.flags, &sp, margin), &sp,
	    margin);
	if (c->trace)
		write_trace(c, &ck, s.loss, init_loss);
	json_object_set_new(rec, "steps", json_integer(s.steps));
	json_object_set_new(rec, "steps_per_second", jnum(s.steps / fmax(now_seconds() - ck.t0, 1e-9)));
	analysis_record_emit(rec, &ck);
	model_work_free(tg.w);
	free(tg.bx);
	free(tg.by);
	free(s.llc);
	free(s.loss);
	free(moving);
	analysis_close(&ck);
}

int
main(int argc, char **argv)
{
	struct config c;
	struct analysis a;

	setprogname(argv[0]);
	parse_args(&c, argc, argv);
	analysis_start(&a, argc, argv, optind, MAX_CKPTS, c.threads);
	analysis_need_step(&a, "--trace", c.trace);
	analysis_load(&a, c.data);
	analysis_header(&a, "llc-estimate", argc, argv, c.seed,
	    json_pack("{s:i, s:I, s:I, s:I, s:i, s:o, s:o, s:o, s:o}",
	    "chains", c.chains, "draws", (json_int_t)c.sp.draws, "burn_in", (json_int_t)c.sp.burnin,
	    "thin", (json_int_t)c.sp.thin, "batch", c.sp.batch, "epsilon", jnum(c.sp.epsilon),
	    "gamma", jnum(c.sp.gamma), "nbeta", jnum(c.sp.nbeta),
	    "explode", c.explode_set ? jnum(c.explode) : json_null()));
	for (size_t i = 0; i < a.n; i++)
		analyse(&c, &a, a.paths[i]);
	analysis_end(&a);
	return 0;
}
