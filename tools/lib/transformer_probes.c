/*
 * transformer_probes: the transformer's probes for the progress measures
 * (model.h, struct model_probes).
 *
 * Neurons: the last block's MLP hidden units after their activation, at
 * the last position, the one the logits are read from (Nanda et al.'s
 * neurons).  Embedding: W_E (d_model, d_vocab), the same matrix for x and
 * y, residue r in column r ('=', column p, is no operand).  The embedding
 * gradient is that of a logit with respect to the vectors W_E[:, x] and
 * W_E[:, y] looked up at positions 0 and 1, before W_pos is added (Zhong
 * et al.'s gradient symmetricity): unlike the MLP's, x's and y's differ.
 * Those per-row gradients need every position's deltas row by row, which
 * the training work's shared tables merge, so embed_grad runs on the
 * work's naive twin (tfm_work_of).
 */
#include <string.h>

#include "model.h"
#include "transformer.h"

static int
neurons(const struct model *m, const char **what)
{
	*what = "the last block's MLP after its activation, at the last position";
	return tfm_of(m)->c.d_mlp;
}

static void
forward(struct model_work *mw, const float *theta, const int32_t *x, int B, float *logits,
    float *acts)
{
	const struct tfm *t = tfm_of(mw->m);
	struct tfm_work *w = tfm_work_of(mw, 0);

	tfm_forward(t, w, theta, x, B);
	memcpy(logits, tfm_logits(w), (size_t)B * (size_t)t->c.p * sizeof(float));
	if (acts)
		tfm_mlp_acts(t, w, B, acts);
}

static int
embedding(const struct model *m, const float *theta, int i, const float **E, int *d, int *ld,
    int *col0)
{
	const struct tfm *t = tfm_of(m);

	(void)i;   /* one table for both operands */
	*E = theta + t->W_E;
	*d = t->c.d_model;
	*ld = t->d_vocab;
	*col0 = 0;
	return 0;
}

static void
embed_grad(struct model_work *mw, const float *theta, const int32_t *x, int B, const int *cls,
    int nc, float *gx, float *gy)
{
	const struct tfm *t = tfm_of(mw->m);
	struct tfm_work *w = tfm_work_of(mw, 1);
	size_t n = (size_t)B * (size_t)t->c.d_model;

	tfm_forward(t, w, theta, x, B);
	for (int k = 0; k < nc; k++)
		tfm_logit_input_grad(t, w, theta, B, cls[k], gx + (size_t)k * n, gy + (size_t)k * n);
}

const struct model_probes tfm_probes = {
	.neurons = neurons,
	.forward = forward,
	.embedding = embedding,
	.embed_grad = embed_grad,
};
