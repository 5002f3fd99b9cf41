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
"Exit status: 0 success, 1 runtime error (e.g. write error), 2 usage error.\n",
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

int
main(int argc, char **argv)
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
	long long holdout[DATASET_P_MAX];
	char meta[7][2][64];
	const char *out = "-", *holdout_arg = NULL;
	long p = DEFAULT_P;
	double frac = DEFAULT_FRAC;
	int op = OP_ADD, split = 0, nholdout = 0, frac_given = 0, c;
	uint64_t seed = 0;
	struct split train, test;
	int32_t *order;
	unsigned char *held;
	int64_t npairs, ntrain, k = 0;
	struct rng r;

	setprogname(argv[0]);
	while ((c = getopt_long(argc, argv, "p:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': p = (long)opt_int("-p", optarg, DATASET_P_MIN, DATASET_P_MAX); break;
		case 'O': op = opt_choice("--op", optarg, op_names); break;
		case 'f': frac = opt_real_open("--frac", optarg, 0, 1); frac_given = 1; break;
		case 'S': split = opt_choice("--split", optarg, split_names); break;
		case 'H': holdout_arg = optarg; break;
		case 's': seed = opt_seed("--seed", optarg); break;
		case 'o': out = optarg; break;
		case 'h': help(); finish_stdout(); return 0;
		case 'V': printf("gen-modadd %s\n", GROK_VERSION); finish_stdout(); return 0;
		default: fprintf(stderr, "Try 'gen-modadd --help' for more information.\n"); return EXIT_USAGE;
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (op == OP_DIV && !is_prime(p))
		usage_error("--op div needs a prime modulus, but -p %ld = %ld x %ld",
		    p, smallest_factor(p), p / smallest_factor(p));
	if (split == 1 && !holdout_arg)
		usage_error("--split label needs --holdout LABELS (example: --holdout 1,2)");
	if (split == 0 && holdout_arg)
		usage_error("--holdout needs --split label");
	if (split == 1 && frac_given)
		usage_error("--frac applies to --split random only; --split label splits by --holdout");
	if (holdout_arg)
		nholdout = opt_int_list("--holdout", holdout_arg, 0, p - 1, holdout, (int)p);
	if (strcmp(out, "-") == 0 && isatty(STDOUT_FILENO))
		usage_error("refusing to write binary data to a terminal; pipe it or use -o FILE");

	npairs = op == OP_DIV ? p * (p - 1) : p * p;
	train.x = xmalloc(xmul((size_t)npairs, 2 * sizeof(int32_t)));
	train.y = xmalloc(xmul((size_t)npairs, sizeof(int32_t)));
	test.x = xmalloc(xmul((size_t)npairs, 2 * sizeof(int32_t)));
	test.y = xmalloc(xmul((size_t)npairs, sizeof(int32_t)));
	train.n = test.n = 0;
	order = xmalloc(xmul((size_t)npairs, sizeof(int32_t)));
	for (long x = 0; x < p; x++)
		for (long y = op == OP_DIV ? 1 : 0; y < p; y++)
			order[k++] = (int32_t)(x * p + y);

	if (split == 0) {
		ntrain = llround(frac * (double)npairs);
		if (ntrain < 1 || ntrain >= npairs)
			usage_error("--frac %g of %lld pairs gives %lld training pairs; both splits need at least one",
			    frac, (long long)npairs, (long long)ntrain);
		rng_init(&r, seed, RNG_SPLIT);
		rng_shuffle(&r, order, (size_t)npairs);
		for (int64_t i = 0; i < npairs; i++) {
			long x = order[i] / p, y = order[i] % p;
			put(i < ntrain ? &train : &test, x, y, apply(op, x, y, p));
		}
	} else {
		held = xcalloc((size_t)p, 1);
		for (int i = 0; i < nholdout; i++)
			held[holdout[i]] = 1;
		for (int64_t i = 0; i < npairs; i++) {
			long x = order[i] / p, y = order[i] % p, label = apply(op, x, y, p);
			put(held[label] ? &test : &train, x, y, label);
		}
		free(held);
		if (train.n == 0)
			usage_error("--holdout %s holds out every pair; nothing is left to train on", holdout_arg);
		frac = (double)train.n / (double)npairs;
	}

	snprintf(meta[0][0], 64, "p");
	snprintf(meta[0][1], 64, "%ld", p);
	snprintf(meta[1][0], 64, "op");
	snprintf(meta[1][1], 64, "%s", op_names[op]);
	snprintf(meta[2][0], 64, "frac");
	format_real(meta[2][1], 64, frac);
	snprintf(meta[3][0], 64, "split");
	snprintf(meta[3][1], 64, "%s", split_names[split]);
	snprintf(meta[4][0], 64, "seed");
	snprintf(meta[4][1], 64, "%llu", (unsigned long long)seed);
	snprintf(meta[5][0], 64, "generator");
	snprintf(meta[5][1], 64, "gen-modadd %s", GROK_VERSION);
	snprintf(meta[6][0], 64, "format");
	snprintf(meta[6][1], 64, "modadd-v1");
	write_frame(out, &train, &test, meta, 7,
	    holdout_arg ? holdout_arg : "");

	free(order);
	free(train.x);
	free(train.y);
	free(test.x);
	free(test.y);
	if (strcmp(out, "-") == 0)
		finish_stdout();
	return 0;
}
