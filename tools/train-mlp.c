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
#include "opts.h"
#include "train.h"
#include "util.h"

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
	    MLP_MAX_DEPTH, MLP_MAX_WIDTH, train_help_optim, train_help_output);
}

enum { O_DEPTH = 256, O_WIDTH, O_ENC, O_LOSS, O_VERSION };

static const struct option model_options[] = {
	{"depth", required_argument, NULL, O_DEPTH},
	{"width", required_argument, NULL, O_WIDTH},
	{"encoding", required_argument, NULL, O_ENC},
	{"loss", required_argument, NULL, O_LOSS},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, O_VERSION},
	{NULL, 0, NULL, 0},
};

/* The model's options into m; 0 if code is not one of them. */
static int
model_option(struct mlp_config *m, int code, const char *arg)
{
	switch (code) {
	case O_DEPTH: m->depth = (int)opt_int("--depth", arg, 0, MLP_MAX_DEPTH); break;
	case O_WIDTH: m->width = (int)opt_int("--width", arg, 1, MLP_MAX_WIDTH); break;
	case O_ENC: m->encoding = (enum mlp_encoding)opt_choice("--encoding", arg, mlp_encoding_names); break;
	case O_LOSS: m->loss = (enum mlp_loss)opt_choice("--loss", arg, mlp_loss_names); break;
	case 'h': help(); finish_stdout(); exit(0);
	case O_VERSION: printf("train-mlp %s\n", GROK_VERSION); finish_stdout(); exit(0);
	default: return 0;
	}
	return 1;
}

static void
parse_args(struct mlp_config *m, struct train_config *c, int argc, char **argv)
{
	struct option *longopts = train_longopts(model_options);
	int ch;

	*m = (struct mlp_config){0, 2, 128, MLP_ONEHOT, MLP_CE};
	train_defaults(c);
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (model_option(m, ch, optarg) || train_option(c, ch, optarg))
			continue;
		fprintf(stderr, "Try 'train-mlp --help' for more information.\n");
		exit(EXIT_USAGE);
	}
	free(longopts);
	train_check(c, argc, argv, optind, "train-mlp");
}

int
main(int argc, char **argv)
{
	struct mlp_config m;
	struct train_config c;
	json_t *hp;
	int rc;

	setprogname(argv[0]);
	parse_args(&m, &c, argc, argv);
	hp = json_pack("{s:i, s:i, s:s, s:s}", "depth", m.depth, "width", m.width,
	    "encoding", mlp_encoding_names[m.encoding], "loss", mlp_loss_names[m.loss]);
	rc = train_run(&c, "train-mlp", "mlp", hp, argc, argv);
	json_decref(hp);
	finish_stdout();
	return rc;
}
