/*
 * train-transformer: train the grokking papers' transformer (Nanda et
 * al.'s progress-measures model; Zhong et al.'s attention coefficient) on
 * a modular-arithmetic data set, with the training loop, log, checkpoints
 * and resumable states every trainer shares (train.h).  Checkpoints hold
 * the papers' state_dict() names and shapes.  The defaults are Nanda's:
 * one layer, d_model 128, 4 heads, d_mlp 512, '=' token, AdamW lr 1e-3,
 * weight decay 1, betas (0.9, 0.98), 10 steps of linear warm-up from 0 as
 * their LambdaLR, full batch.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"
#include "train.h"
#include "transformer.h"
#include "util.h"

static void
usage(FILE *fp)
{
	fprintf(fp,
"usage: train-transformer [--data FILE] [--layers L] [--d-model D] [--heads H]\n"
"                         [--d-head E] [--d-mlp M] [--attention causal|full]\n"
"                         [--attn-coeff A] [--act relu|gelu] [--eq-token|--no-eq-token]\n"
"                         [--lr LR] [--wd WD] [--steps N] [--ckpt-dir DIR] [--seed S] [options]\n");
}

static void
help(void)
{
	usage(stdout);
	printf(
"\n"
"Train a transformer on a gen-modadd data set (standard input unless\n"
"--data) and write JSON-lines to standard output: a header, a metrics\n"
"record at every log point, and a final record.\n"
"\n"
"Model (Nanda et al. 2023; Zhong et al. 2023 for the attention coefficient)\n"
"      --data FILE        data set (default: standard input)\n"
"      --layers L         transformer blocks, 1..%d (default 1)\n"
"      --d-model D        residual width, 1..%d (default 128)\n"
"      --heads H          attention heads (default 4)\n"
"      --d-head E         width of a head (default d-model / heads)\n"
"      --d-mlp M          MLP width (default 4 d-model)\n"
"      --attention MODE   causal (default) or full (unmasked)\n"
"      --attn-coeff A     attention = A softmax(scores) + (1 - A), 0..1 (default 1;\n"
"                         0 is constant attention)\n"
"      --act F            relu (default) or gelu\n"
"      --eq-token         end every input with '=' (token p; the default)\n"
"      --no-eq-token      inputs x, y only\n"
"      --init FILE        start from these parameters (a checkpoint)\n"
"%s%s"
"  -h, --help             show this help and exit\n"
"      --version          show the version and exit\n"
"\n"
"This tool's optimisation defaults are Nanda's, not the shared ones above:\n"
"--wd 1 --beta2 0.98 --warmup 10 --warmup-origin 0 (the first update at\n"
"learning rate 0, as the papers' LambdaLR).\n"
"\n"
"Exit status: 0 success, 1 runtime or data error, 2 usage error,\n"
"3 diverged (NaN or infinite loss; the last good checkpoint is kept),\n"
"130/143 interrupted by SIGINT/SIGTERM (the state is written first).\n"
"\n"
"Examples:\n"
"  gen-modadd -p 113 --frac 0.3 | train-transformer --ckpt-dir ck > log.jsonl\n"
"  gen-modadd -p 59 --frac 0.8 -o d.st && train-transformer --data d.st --no-eq-token \\\n"
"      --attention full --attn-coeff 0 --wd 2 --tag pizza-a0 > log.jsonl\n",
	    TFM_MAX_LAYERS, TFM_MAX_DIM, train_help_optim, train_help_output);
}

enum { O_LAYERS = 256, O_DMODEL, O_HEADS, O_DHEAD, O_DMLP, O_ATT, O_COEFF, O_ACT, O_EQ, O_NOEQ, O_VERSION };

static const struct option model_options[] = {
	{"layers", required_argument, NULL, O_LAYERS},
	{"d-model", required_argument, NULL, O_DMODEL},
	{"heads", required_argument, NULL, O_HEADS},
	{"d-head", required_argument, NULL, O_DHEAD},
	{"d-mlp", required_argument, NULL, O_DMLP},
	{"attention", required_argument, NULL, O_ATT},
	{"attn-coeff", required_argument, NULL, O_COEFF},
	{"act", required_argument, NULL, O_ACT},
	{"eq-token", no_argument, NULL, O_EQ},
	{"no-eq-token", no_argument, NULL, O_NOEQ},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, O_VERSION},
	{NULL, 0, NULL, 0},
};

/* The model's options into ctx (a struct tfm_config); 0 if code is not one of them. */
static int
model_option(void *ctx, int code, const char *arg)
{
	struct tfm_config *c = ctx;

	switch (code) {
	case O_LAYERS: c->layers = (int)opt_int("--layers", arg, 1, TFM_MAX_LAYERS); break;
	case O_DMODEL: c->d_model = (int)opt_int("--d-model", arg, 1, TFM_MAX_DIM); break;
	case O_HEADS: c->heads = (int)opt_int("--heads", arg, 1, TFM_MAX_DIM); break;
	case O_DHEAD: c->d_head = (int)opt_int("--d-head", arg, 1, TFM_MAX_DIM); break;
	case O_DMLP: c->d_mlp = (int)opt_int("--d-mlp", arg, 1, 4 * TFM_MAX_DIM); break;
	case O_ATT: c->attention = (enum tfm_attention)opt_choice("--attention", arg, tfm_attention_names); break;
	case O_COEFF: c->alpha = opt_real("--attn-coeff", arg, 0, 1); break;
	case O_ACT: c->act = (enum tfm_act)opt_choice("--act", arg, tfm_act_names); break;
	case O_EQ: c->eq_token = 1; break;
	case O_NOEQ: c->eq_token = 0; break;
	case 'h': help(); finish_stdout(); exit(0);
	case O_VERSION: printf("train-transformer %s\n", GROK_VERSION); finish_stdout(); exit(0);
	default: return 0;
	}
	return 1;
}

/* d_head and d_mlp follow d_model unless given; a d_model that heads does not divide needs --d-head. */
static void
derive(struct tfm_config *m)
{
	if (m->d_head == 0) {
		if (m->d_model % m->heads)
			usage_error("--heads %d does not divide --d-model %d: give --d-head", m->heads, m->d_model);
		m->d_head = m->d_model / m->heads;
	}
	if (m->d_mlp == 0)
		m->d_mlp = 4 * m->d_model;
	if ((long)m->heads * m->d_head > 4 * TFM_MAX_DIM)
		usage_error("--heads times --d-head is %ld, more than %d", (long)m->heads * m->d_head, 4 * TFM_MAX_DIM);
}

static void
parse_args(struct tfm_config *m, struct train_config *c, int argc, char **argv)
{
	int first;

	*m = (struct tfm_config){.layers = 1, .d_model = 128, .heads = 4, .attention = TFM_CAUSAL,
	    .alpha = 1, .act = TFM_RELU, .eq_token = 1};
	train_defaults(c);
	c->opt.wd = 1;
	c->opt.beta2 = 0.98;
	c->warmup = 10;
	c->warmup_origin = 0;   /* LambdaLR(lambda s: min(s / 10, 1)): step 0 at lr 0 */
	first = train_getopt(c, model_options, model_option, m, argc, argv, "train-transformer");
	derive(m);
	train_check(c, argc, argv, first, "train-transformer");
}

int
main(int argc, char **argv)
{
	struct tfm_config m;
	struct train_config c;
	json_t *hp;
	int rc;

	setprogname(argv[0]);
	parse_args(&m, &c, argc, argv);
	hp = json_pack("{s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:s, s:b}", "layers", m.layers,
	    "d_model", m.d_model, "heads", m.heads, "d_head", m.d_head, "d_mlp", m.d_mlp,
	    "attention", tfm_attention_names[m.attention], "attn_coeff", m.alpha,
	    "act", tfm_act_names[m.act], "eq_token", m.eq_token);
	rc = train_run(&c, "train-transformer", "transformer", hp, argc, argv);
	json_decref(hp);
	finish_stdout();
	return rc;
}
