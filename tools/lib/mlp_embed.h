/*
 * mlp_embed: the embedding MLP (enerrio/grokking-mlp's model) as a model
 * family (model.h), "mlp-embed".
 *
 * Dimension letters: B batch rows, p residues, V = p + 2 tokens (the p
 * residues, '+' = p, '=' = p + 1) and output classes, E embedding width,
 * W hidden width, D hidden layers, P parameter count.
 *
 * Each row (x, y) is the sentence "x + y =": four tokens looked up in one
 * embedding table shared by the four positions, concatenated into 4E
 * inputs, then D hidden layers of W ReLU units and a linear read-out to V
 * logits (the two operator tokens are classes too, as in the source,
 * though no label is ever one of them):
 *
 *   nn.Sequential(Embedding(V, E), Rearrange, Linear(4E, W), ReLU, ...,
 *                 Linear(W, V))
 *
 * Tensors are named as that module's state_dict names them: net.0.weight
 * (V, E), then Linear i (i = 0..D) at Sequential index 2 + 2i,
 * net.{2+2i}.weight (out, in) and net.{2+2i}.bias (out), in that order in
 * the flat parameter vector, so a vector loads into PyTorch as it is.
 * Groups: "net.0" (the embedding) and one per linear layer.
 *
 * The loss is cross-entropy over the V logits, its softmax in double (the
 * source casts its logits to float64 before the loss).
 */
#ifndef MLP_EMBED_H
#define MLP_EMBED_H

#include "model.h"

#define MLP_EMBED_MAX 4096   /* the largest embedding width E */

struct mlp_embed_config {
	int p;       /* residues */
	int embed;   /* E, 1..MLP_EMBED_MAX */
	int depth;   /* hidden layers D, 0..MLP_MAX_DEPTH */
	int width;   /* hidden width W, 1..MLP_MAX_WIDTH */
};

extern const struct model_family mlp_embed_family;

/* The model of configuration c, or NULL if out of range. */
struct model *mlp_embed_model_new(const struct mlp_embed_config *c);

/*
 * Reference in double precision, naive loops, independent of the fast
 * path: the mean loss over B rows; adds its gradient into grad if not NULL.
 */
double mlp_embed_ref_loss(const struct model *m, const double *theta, const int32_t *x,
    const int32_t *y, int B, double *grad);
/* hv += H v of the reference's mean loss, by the R-operator in double, row by row. */
void mlp_embed_ref_hvp(const struct model *m, const double *theta, const double *v,
    const int32_t *x, const int32_t *y, int B, double *hv);

#endif
