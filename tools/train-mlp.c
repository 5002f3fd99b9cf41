/*
 * train-mlp: train an MLP on a modular-arithmetic data set, logging what
 * grokking researchers watch (losses, accuracies, gradient and weight
 * norms, softmax collapse) as JSON-lines on stdout, with checkpoints,
 * resumable (and extendable) training states and PyTorch's optimiser
 * semantics.  The model's options are this tool's; the training loop and
 * its options are the library's (train.h), shared by every family's
 * trainer.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"
#include "mlp_embed.h"
#include "opts.h"
#include "train.h"
#include "util.h"

static void
usage(FILE *fp)
{
	fprintf(fp,
"usage: train-mlp [--data FILE] [--depth D] [--width W] [--encoding onehot|int]\n"
"                 [--embed E] [--loss ce|mse] [--optim adam|adamw|sgd] [--lr LR] [--wd WD]\n"
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
"      --embed E          an embedding MLP instead (model mlp-embed): the\n"
"                         tokens \"x + y =\" looked up in one learned table of\n"
"                         width E, 1..%d, concatenated into the first layer;\n"
"                         p + 2 outputs, cross-entropy (enerrio/grokking-mlp)\n"
"      --loss L           ce (default) or mse (on one-hot targets)\n"
"      --init FILE        start from these parameters (a checkpoint)\n"
"%s%s"
"  -h, --help             show this help and exit\n"
"      --version          show the version and exit\n"
"\n"
"Extending a run: train-mlp --steps 20000 --state s.st ... then\n"
"train-mlp --steps 50000 --state s.st --resume s.st ... (the same options\n"
"but the length) continues it; a changed optimiser, learning rate or data\n"
"set is refused with the difference shown.\n"
"\n"
"Exit status: 0 success, 1 runtime or data error, 2 usage error,\n"
"3 diverged (NaN or infinite loss; the last good checkpoint is kept),\n"
"130/143 interrupted by SIGINT/SIGTERM (the state is written first).\n"
"\n"
"Examples:\n"
"  gen-modadd -p 97 | train-mlp --depth 3 --ckpt-dir ck > log.jsonl\n"
"  train-mlp --data d.st --depth 3 --steps 20000 --state s.st > log.jsonl\n"
"  train-mlp --data d.st --depth 3 --steps 50000 --state s.st --resume s.st >> log.jsonl\n",
	    MLP_MAX_DEPTH, MLP_MAX_WIDTH, MLP_EMBED_MAX, train_help_optim, train_help_output);
}

enum { O_DEPTH = 256, O_WIDTH, O_ENC, O_LOSS, O_EMBED, O_VERSION };

static const struct option model_options[] = {
	{"depth", required_argument, NULL, O_DEPTH},
	{"width", required_argument, NULL, O_WIDTH},
	{"encoding", required_argument, NULL, O_ENC},
	{"loss", required_argument, NULL, O_LOSS},
	{"embed", required_argument, NULL, O_EMBED},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, O_VERSION},
	{NULL, 0, NULL, 0},
};

/* The model's options: the MLP's, the embedding width, and which were given. */
struct model_opts {
	struct mlp_config m;
	int embed;                 /* 0: the plain MLP */
	int set_encoding, set_loss;
};

/* The model's options into o (a struct model_opts); 0 if code is not one of them. */
static int
model_option(void *ctx, int code, const char *arg)
{
	struct model_opts *o = ctx;
	struct mlp_config *m = &o->m;

	switch (code) {
	case O_DEPTH: m->depth = (int)opt_int("--depth", arg, 0, MLP_MAX_DEPTH); break;
	case O_WIDTH: m->width = (int)opt_int("--width", arg, 1, MLP_MAX_WIDTH); break;
	case O_ENC:
		m->encoding = (enum mlp_encoding)opt_choice("--encoding", arg, mlp_encoding_names);
		o->set_encoding = 1;
		break;
	case O_LOSS:
		m->loss = (enum mlp_loss)opt_choice("--loss", arg, mlp_loss_names);
		o->set_loss = 1;
		break;
	case O_EMBED: o->embed = (int)opt_int("--embed", arg, 1, MLP_EMBED_MAX); break;
	case 'h': help(); finish_stdout(); exit(0);
	case O_VERSION: printf("train-mlp %s\n", GROK_VERSION); finish_stdout(); exit(0);
	default: return 0;
	}
	return 1;
}

/* The embedding replaces the input encoding, and its model has only cross-entropy. */
static void
check_embed(const struct model_opts *o)
{
	if (o->embed && o->set_encoding && o->m.encoding != MLP_ONEHOT)
		die_code(EXIT_USAGE, "--embed looks the tokens up in a table, so it takes no "
		    "--encoding %s (e.g. --embed 128 alone)", mlp_encoding_names[o->m.encoding]);
	if (o->embed && o->set_loss && o->m.loss != MLP_CE)
		die_code(EXIT_USAGE, "--embed trains with cross-entropy only, not --loss %s",
		    mlp_loss_names[o->m.loss]);
}

static void
parse_args(struct model_opts *o, struct train_config *c, int argc, char **argv)
{
	int first;

	*o = (struct model_opts){{0, 2, 128, MLP_ONEHOT, MLP_CE}, 0, 0, 0};
	train_defaults(c);
	first = train_getopt(c, model_options, model_option, o, argc, argv, "train-mlp");
	check_embed(o);
	train_check(c, argc, argv, first, "train-mlp");
}

int
main(int argc, char **argv)
{
	struct model_opts o;
	struct train_config c;
	json_t *hp;
	int rc;

	setprogname(argv[0]);
	parse_args(&o, &c, argc, argv);
	if (o.embed)
		hp = json_pack("{s:i, s:i, s:i}", "embed", o.embed, "depth", o.m.depth,
		    "width", o.m.width);
	else
		hp = json_pack("{s:i, s:i, s:s, s:s}", "depth", o.m.depth, "width", o.m.width,
		    "encoding", mlp_encoding_names[o.m.encoding], "loss", mlp_loss_names[o.m.loss]);
	rc = train_run(&c, "train-mlp", o.embed ? "mlp-embed" : "mlp", hp, argc, argv);
	json_decref(hp);
	finish_stdout();
	return rc;
}
