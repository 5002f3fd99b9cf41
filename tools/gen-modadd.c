/*
 * gen-modadd: write a modular-arithmetic data set as one safetensors frame.
 *
 * Every pair (x, y) of residues mod p appears exactly once, labelled
 * (x OP y) mod p, and goes either to the training or to the test split:
 * a seeded random fraction (--split random) or by label (--split label,
 * where every pair whose answer is in --holdout is kept for testing).
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "jsonl.h"
#include "opts.h"
#include "rng.h"
#include "st.h"
#include "util.h"

#define DEFAULT_P 97
#define DEFAULT_FRAC 0.3

enum op { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_SQSUM, OP_QUAD, OP_CUBIC };
static const char *const op_names[] = {
	"add", "sub", "mul", "div", "x2+y2", "x2+xy+y2", "x3+xy", NULL,
};
static const char *const split_names[] = {"random", "label", NULL};

static void
usage(FILE *fp)
{
	fprintf(fp,
"usage: gen-modadd [-p P] [--op OP] [--frac F] [--split random|label]\n"
"                  [--holdout LABELS] [--seed S] [-o FILE]\n");
}

static void
help(void)
{
	usage(stdout);
	printf(
"\n"
"Write every pair (x, y), 0 <= x, y < P, labelled (x OP y) mod P, split into\n"
"training and test sets, as one safetensors frame (tensors train.x I32 [n,2],\n"
"train.y I32 [n], test.x, test.y; metadata p, op, frac, split, holdout, seed).\n"
"\n"
"  -p, --modulus P      the modulus, %d..%d (default %d)\n"
"      --op OP          add, sub, mul, div (x * y^-1, y != 0; P must be prime),\n"
"                       x2+y2, x2+xy+y2, x3+xy (default add)\n"
"      --frac F         training fraction, 0 < F < 1, for --split random:\n"
"                       the first round(F * N) pairs of a seeded permutation\n"
"                       (default %g)\n"
"      --split MODE     random (default) or label\n"
"      --holdout LIST   with --split label: comma-separated labels whose pairs\n"
"                       all go to the test set, e.g. 1,2\n"
"      --seed S         seed of the permutation, 0..2^53-1 (default 0)\n"
"  -o, --output FILE    write FILE (atomically) instead of standard output\n"
"  -h, --help           show this help and exit\n"
"      --version        show the version and exit\n"
"\n"
"Binary data is never written to a terminal: pipe it or use -o.\n"
"Exit status: 0 success, 1 runtime error (e.g. write error), 2 usage error.\n"
"\n"
"Examples:\n"
"  gen-modadd -p 97 --frac 0.3 -o data.safetensors\n"
"  gen-modadd -p 59 --op div --split label --holdout 0,1 | train-mlp --data -\n",
	    DATASET_P_MIN, DATASET_P_MAX, DEFAULT_P, DEFAULT_FRAC);
}

static int
is_prime(long p)
{
	if (p < 2)
		return 0;
	for (long d = 2; d * d <= p; d++)
		if (p % d == 0)
			return 0;
	return 1;
}

static long
smallest_factor(long p)
{
	for (long d = 2; d * d <= p; d++)
		if (p % d == 0)
			return d;
	return p;
}

/* y^(p-2) mod p: the inverse of y for prime p (Fermat). */
static long
inverse_mod(long y, long p)
{
	long r = 1, b = y % p, e = p - 2;

	for (; e > 0; e >>= 1, b = b * b % p)
		if (e & 1)
			r = r * b % p;
	return r;
}

static long
apply(enum op op, long x, long y, long p)
{
	switch (op) {
	case OP_ADD: return (x + y) % p;
	case OP_SUB: return ((x - y) % p + p) % p;
	case OP_MUL: return x * y % p;
	case OP_DIV: return x * inverse_mod(y, p) % p;
	case OP_SQSUM: return (x * x + y * y) % p;
	case OP_QUAD: return (x * x + x * y + y * y) % p;
	case OP_CUBIC: return (x * x % p * x + x * y) % p;
	}
	return 0;
}

struct split {
	int32_t *x, *y;
	int64_t n;
};

static void
put(struct split *s, long x, long y, long label)
{
	s->x[2 * s->n] = (int32_t)x;
	s->x[2 * s->n + 1] = (int32_t)y;
	s->y[s->n] = (int32_t)label;
	s->n++;
}

static void
write_frame(const char *out, struct split *train, struct split *test,
    char meta[][2][64], int nmeta, const char *holdout)
{
	struct st_writer w;
	struct afile af;
	int64_t sx[2], sy[1];

	st_writer_init(&w);
	for (int i = 0; i < nmeta; i++)
		st_writer_meta(&w, meta[i][0], meta[i][1]);
	st_writer_meta(&w, "holdout", holdout);
	sx[0] = sy[0] = train->n;
	sx[1] = 2;
	st_writer_add(&w, "train.x", ST_I32, 2, sx, train->x);
	st_writer_add(&w, "train.y", ST_I32, 1, sy, train->y);
	sx[0] = sy[0] = test->n;
	st_writer_add(&w, "test.x", ST_I32, 2, sx, test->x);
	st_writer_add(&w, "test.y", ST_I32, 1, sy, test->y);
	if (afile_open(&af, out) < 0)
		die("%s:", out);
	if (st_write(&w, af.fp) < 0 || afile_commit(&af) < 0)
		die("error writing %s:", strcmp(out, "-") ? out : "standard output");
	st_writer_free(&w);
}

struct gen_opts {
	long p;
	int op, split;
	double frac;
	int frac_given;
	const char *holdout_arg;   /* as given, for the metadata */
	long long holdout[DATASET_P_MAX];
	int nholdout;
	uint64_t seed;
	const char *out;
};

/* The options into o; -1 to go on, or the exit status (--help, --version, misuse). */
static int
parse_options(int argc, char **argv, struct gen_opts *o)
{
	static const struct option longopts[] = {
		{"modulus", required_argument, NULL, 'p'},
		{"op", required_argument, NULL, 'O'},
		{"frac", required_argument, NULL, 'f'},
		{"split", required_argument, NULL, 'S'},
		{"holdout", required_argument, NULL, 'H'},
		{"seed", required_argument, NULL, 's'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "p:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': o->p = (long)opt_int("-p", optarg, DATASET_P_MIN, DATASET_P_MAX); break;
		case 'O': o->op = opt_choice("--op", optarg, op_names); break;
		case 'f': o->frac = opt_real_open("--frac", optarg, 0, 1); o->frac_given = 1; break;
		case 'S': o->split = opt_choice("--split", optarg, split_names); break;
		case 'H': o->holdout_arg = optarg; break;
		case 's': o->seed = opt_seed("--seed", optarg); break;
		case 'o': o->out = optarg; break;
		case 'h': help(); finish_stdout(); return 0;
		case 'V': printf("gen-modadd %s\n", GROK_VERSION); finish_stdout(); return 0;
		default: fprintf(stderr, "Try 'gen-modadd --help' for more information.\n"); return EXIT_USAGE;
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	return -1;
}

/* Options that make sense alone but not together; exits 2 on any. */
static void
check_options(struct gen_opts *o)
{
	if (o->op == OP_DIV && !is_prime(o->p))
		usage_error("--op div needs a prime modulus, but -p %ld = %ld x %ld",
		    o->p, smallest_factor(o->p), o->p / smallest_factor(o->p));
	if (o->split == 1 && !o->holdout_arg)
		usage_error("--split label needs --holdout LABELS (example: --holdout 1,2)");
	if (o->split == 0 && o->holdout_arg)
		usage_error("--holdout needs --split label");
	if (o->split == 1 && o->frac_given)
		usage_error("--frac applies to --split random only; --split label splits by --holdout");
	if (o->holdout_arg)
		o->nholdout = opt_int_list("--holdout", o->holdout_arg, 0, o->p - 1, o->holdout, (int)o->p);
	if (strcmp(o->out, "-") == 0 && isatty(STDOUT_FILENO))
		usage_error("refusing to write binary data to a terminal; pipe it or use -o FILE");
}

/*
 * Every pair into train or test (allocated here, each big enough for all
 * pairs), by a seeded permutation or by label; with --split label,
 * o->frac becomes the fraction that landed in train.
 */
static void
split_pairs(struct gen_opts *o, struct split *train, struct split *test)
{
	long p = o->p;
	int64_t npairs = o->op == OP_DIV ? p * (p - 1) : p * p, ntrain, k = 0;
	int32_t *order;

	train->x = xmalloc(xmul((size_t)npairs, 2 * sizeof(int32_t)));
	train->y = xmalloc(xmul((size_t)npairs, sizeof(int32_t)));
	test->x = xmalloc(xmul((size_t)npairs, 2 * sizeof(int32_t)));
	test->y = xmalloc(xmul((size_t)npairs, sizeof(int32_t)));
	train->n = test->n = 0;
	order = xmalloc(xmul((size_t)npairs, sizeof(int32_t)));
	for (long x = 0; x < p; x++)
		for (long y = o->op == OP_DIV ? 1 : 0; y < p; y++)
			order[k++] = (int32_t)(x * p + y);

	if (o->split == 0) {
		struct rng r;
		ntrain = llround(o->frac * (double)npairs);
		if (ntrain < 1 || ntrain >= npairs)
			usage_error("--frac %g of %lld pairs gives %lld training pairs; both splits need at least one",
			    o->frac, (long long)npairs, (long long)ntrain);
		rng_init(&r, o->seed, RNG_SPLIT);
		rng_shuffle(&r, order, (size_t)npairs);
		for (int64_t i = 0; i < npairs; i++) {
			long x = order[i] / p, y = order[i] % p;
			put(i < ntrain ? train : test, x, y, apply(o->op, x, y, p));
		}
	} else {
		unsigned char *held = xcalloc((size_t)p, 1);
		for (int i = 0; i < o->nholdout; i++)
			held[o->holdout[i]] = 1;
		for (int64_t i = 0; i < npairs; i++) {
			long x = order[i] / p, y = order[i] % p, label = apply(o->op, x, y, p);
			put(held[label] ? test : train, x, y, label);
		}
		free(held);
		if (train->n == 0)
			usage_error("--holdout %s holds out every pair; nothing is left to train on", o->holdout_arg);
		o->frac = (double)train->n / (double)npairs;
	}
	free(order);
}

/* The frame's metadata, then the frame itself. */
static void
write_dataset(const struct gen_opts *o, struct split *train, struct split *test)
{
	char meta[7][2][64];

	snprintf(meta[0][0], 64, "p");
	snprintf(meta[0][1], 64, "%ld", o->p);
	snprintf(meta[1][0], 64, "op");
	snprintf(meta[1][1], 64, "%s", op_names[o->op]);
	snprintf(meta[2][0], 64, "frac");
	format_real(meta[2][1], 64, o->frac);
	snprintf(meta[3][0], 64, "split");
	snprintf(meta[3][1], 64, "%s", split_names[o->split]);
	snprintf(meta[4][0], 64, "seed");
	snprintf(meta[4][1], 64, "%llu", (unsigned long long)o->seed);
	snprintf(meta[5][0], 64, "generator");
	snprintf(meta[5][1], 64, "gen-modadd %s", GROK_VERSION);
	snprintf(meta[6][0], 64, "format");
	snprintf(meta[6][1], 64, "modadd-v1");
	write_frame(o->out, train, test, meta, 7, o->holdout_arg ? o->holdout_arg : "");
}

int
main(int argc, char **argv)
{
	struct gen_opts o = {.p = DEFAULT_P, .op = OP_ADD, .frac = DEFAULT_FRAC, .out = "-"};
	struct split train, test;
	int rc;

	setprogname(argv[0]);
	if ((rc = parse_options(argc, argv, &o)) >= 0)
		return rc;
	check_options(&o);
	split_pairs(&o, &train, &test);
	write_dataset(&o, &train, &test);

	free(train.x);
	free(train.y);
	free(test.x);
	free(test.y);
	if (strcmp(o.out, "-") == 0)
		finish_stdout();
	return 0;
}
