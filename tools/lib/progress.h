/*
 * progress: the mechanistic progress measures of grokking on plain arrays
 * of a model's numbers over all p^2 inputs, so nothing here knows about
 * models (the tool asks the model family for logits, neurons, embeddings
 * and input gradients and hands them over).  Arithmetic in double.
 *
 * Sources: Nanda et al. 2023, "Progress measures for grokking via
 * mechanistic interpretability" (Fourier basis, key frequencies,
 * restricted and excluded loss, as their helpers compute them); Zhong et
 * al. 2023, "The clock and the pizza" (distance irrelevance, gradient
 * symmetricity, as their evaluation notebook computes them).
 * docs/design.md gives every formula.
 *
 * The group.  x OP y for OP = add or sub is addition in Z_p, so the
 * Fourier basis is over the residues themselves.  For OP = mul or div
 * (p prime) the non-zero residues form the cyclic group Z_p^* of order
 * p - 1, isomorphic to Z_{p-1} through a discrete logarithm, and mul/div
 * is addition/subtraction of logarithms there: the same measures apply in
 * logarithm coordinates, over the pairs and classes that are non-zero.
 * Elsewhere (x2+y2 and the other polynomials) there is no group in which
 * the operation is a sum, and the logit measures are not defined.
 *
 * Layouts: "pair tables" have p^2 rows in the order x * p + y (every pair,
 * whether or not the data set has it); a class index is the residue.
 */
#ifndef PROGRESS_H
#define PROGRESS_H

#include <stddef.h>

/* 2 pi (C11 has no M_PI). */
#define TWO_PI 6.28318530717958647692528676655900577

struct fourier_group {
	int p;          /* residues 0..p-1 */
	int n;          /* group order: p (add, sub) or p - 1 (mul, div) */
	int sign;       /* label = u + sign * v in group coordinates */
	int mult;       /* coordinates are discrete logarithms */
	int generator;  /* the primitive root used (mult) */
	int *coord;     /* (p) group coordinate of each residue, -1 outside the group */
	int *residue;   /* (n) the residue at each coordinate */
	int nfreq;      /* frequencies 1..nfreq = n / 2 */
	double *basis;  /* (n, n) orthonormal real Fourier basis, row-major */
};

/*
 * The group of op on Z_p ("add", "sub", "mul", "div"); 0, or -1 when op
 * has none (other ops, or mul/div with p not prime).  The basis rows are
 * Nanda's: row 0 the constant 1/sqrt(n), rows 2k-1 and 2k cos and sin of
 * 2 pi k u / n, each of unit norm; for even n the last row is frequency
 * n/2's alternating +-1/sqrt(n) (its sine is zero).
 */
int fourier_group_init(struct fourier_group *g, int p, const char *op);
void fourier_group_free(struct fourier_group *g);
/* The basis rows of frequency k: *first and how many (2, or 1 at n/2). */
int fourier_rows(const struct fourier_group *g, int k, int *first);

/*
 * The Fourier spectrum of an embedding: E is (d, ld) with residue r's
 * vector in column col0 + r (the MLP's first-layer weight: columns 0..p-1
 * for x, p..2p-1 for y).  frac (nfreq) gets each frequency's share of the
 * squared norm outside the constant component (which *const_frac gets as
 * a share of the whole).  Over group residues only.
 */
void embed_spectrum(const struct fourier_group *g, const float *E, int d, int ld, int col0,
    double *frac, double *const_frac);
/* Gini coefficient of n non-negative numbers: 0 spread evenly, 1 - 1/n all on one. */
double gini(const double *x, int n);

/*
 * Key frequencies from neuron activations: acts is a pair table (p^2
 * rows) of nneur neurons, row stride ld.  Per neuron, over the group's
 * pairs: centre, 2-D Fourier transform, and the share of its variance in
 * the terms of each frequency k (the 3 x 3 block of basis rows {0, 2k-1,
 * 2k} in x and in y: linear and quadratic terms, Nanda's extract_freq_2d).
 * best (nneur) gets the frequency with the largest share, share (nneur)
 * that share (0 and 0 for a neuron constant on every pair).  Neurons go
 * through two matrix products in chunks that fit the scratch.
 */
void neuron_freqs(const struct fourier_group *g, const float *acts, int nneur, int ld,
    int *best, double *share, double *scratch);
/* Scratch neuron_freqs needs for nneur neurons: doubles. */
size_t neuron_freqs_scratch(const struct fourier_group *g, int nneur);

/*
 * Logit measures for a set of key frequencies.  logits is a pair table of
 * p classes (row stride ld), labels (p^2) each pair's label, train (p^2)
 * non-zero for the training pairs.  Over the pairs inside the group:
 *   loss_all, loss_train   the logits' own cross-entropy
 *   restricted             every class's logits projected onto the
 *                          directions cos and sin of w_k (u + sign v), k
 *                          in keys, plus the class's mean over pairs
 *                          (Nanda's trig loss with bias correction), over
 *                          all pairs
 *   excluded               those directions removed, on the training pairs
 *   key_var_frac           the key directions' share of the logits'
 *                          variance about each class's mean
 * A set without training pairs in the group gives NaN for the train losses.
 */
struct logit_measures {
	double loss_all, loss_train, restricted, excluded, key_var_frac;
	long pairs, train_pairs;
};
void logit_measures(const struct fourier_group *g, const float *logits, int ld,
    const int *labels, const unsigned char *train, const int *keys, int nkeys,
    struct logit_measures *out, double *scratch);
/* Scratch logit_measures needs: doubles. */
size_t logit_measures_scratch(const struct fourier_group *g);

/*
 * Zhong et al.'s distance irrelevance: each pair's correct-class logit in
 * an n x n table, row the label's coordinate u + sign v, column the
 * "distance" u - sign v; the mean over columns of the standard deviation
 * down each column, over the standard deviation of the whole table.  0:
 * the logit depends on the distance only (the pizza); 1: not at all (the
 * clock).  NaN for even n, where (sum, distance) does not index the pairs
 * one to one, and for a table without variance.
 */
double distance_irrelevance(const struct fourier_group *g, const float *logits, int ld,
    const int *labels);

/* Cosine similarity of two vectors of length d (NaN if either is zero). */
double cosine(const double *a, const double *b, int d);

#endif
