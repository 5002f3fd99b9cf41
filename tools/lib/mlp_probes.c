/*
 * mlp_probes: the MLP's probes for the progress measures (model.h).
 *
 * Neurons: the last hidden layer after its ReLU, the layer the logits are
 * read from (a depth-0 model has none: its logits are its only layer).
 * Embeddings: with one-hot inputs the first layer's pre-activation is
 * W0[:, x] + W0[:, p + y] + b0, so its columns 0..p-1 embed x and p..2p-1
 * embed y; raw integer inputs embed nothing.  The gradient of a logit
 * with respect to either looked-up column is the gradient with respect
 * to that pre-activation, so x's and y's are the same vector.
 */
#include <string.h>

#include <cblas.h>

#include "mlp.h"
#include "util.h"

static const struct mlp *
layout(const struct model_work *w)
{
	return ((const struct mlp_work *)w)->m;
}

static int
neurons(const struct model *m, const char **what)
{
	const struct mlp *l = mlp_of(m);

	*what = l->c.depth > 0 ? "the last hidden layer after its ReLU" : "none";
	return l->c.depth > 0 ? l->c.width : 0;
}

static void
forward(struct model_work *mw, const float *theta, const int32_t *x, int B, float *logits,
    float *acts)
{
	const struct mlp *l = layout(mw);
	struct mlp_work *w = (struct mlp_work *)mw;

	mlp_forward(l, w, theta, x, B);
	memcpy(logits, w->logits, (size_t)B * (size_t)l->c.p * sizeof(float));
	if (acts && l->c.depth > 0)
		memcpy(acts, w->acts[l->c.depth - 1], (size_t)B * (size_t)l->c.width * sizeof(float));
}

static int
embedding(const struct model *m, const float *theta, int i, const float **E, int *d, int *ld,
    int *col0)
{
	const struct mlp *l = mlp_of(m);

	if (l->c.encoding != MLP_ONEHOT)
		return -1;
	*E = theta + l->woff[0];
	*d = l->out[0];
	*ld = l->in[0];
	*col0 = i * l->c.p;
	return 0;
}

/*
 * d (B, out[0]): the gradient of logit c of every row with respect to the
 * first layer's pre-activation, after a forward pass of the rows.  The top
 * layer's backward is a row of its weight (the logit's own), masked.
 */
static void
logit_delta(const struct mlp *l, struct mlp_work *w, const float *theta, int B, int c,
    float **d)
{
	int L = l->nlayers, cur = 0;
	float *dz;

	if (L == 1) {
		dz = w->dbuf[0];
		memset(dz, 0, (size_t)B * (size_t)l->c.p * sizeof(float));
		for (int b = 0; b < B; b++)
			dz[(size_t)b * l->c.p + c] = 1;
		*d = dz;
		return;
	}
	{
		int nin = l->in[L - 1];
		const float *row = theta + l->woff[L - 1] + (size_t)c * nin, *a = w->acts[L - 2];
		dz = w->dbuf[cur];
		for (int b = 0; b < B; b++) {
			const float *ab = a + (size_t)b * nin;
			float *db = dz + (size_t)b * nin;
			for (int j = 0; j < nin; j++)
				db[j] = ab[j] > 0.0f ? row[j] : 0.0f;
		}
		cur ^= 1;
	}
	for (int i = L - 2; i >= 1; i--) {
		int nout = l->out[i], nin = l->in[i];
		const float *a = w->acts[i - 1];
		float *dprev = w->dbuf[cur];
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, nin, nout,
		    1.0f, dz, nout, theta + l->woff[i], nin, 0.0f, dprev, nin);
		for (size_t k = 0; k < (size_t)B * nin; k++)
			dprev[k] = a[k] > 0.0f ? dprev[k] : 0.0f;
		dz = dprev;
		cur ^= 1;
	}
	*d = dz;
}

static void
embed_grad(struct model_work *mw, const float *theta, const int32_t *x, int B, const int *cls,
    int nc, float *gx, float *gy)
{
	const struct mlp *l = layout(mw);
	struct mlp_work *w = (struct mlp_work *)mw;
	size_t n = (size_t)B * (size_t)l->out[0];

	mlp_forward(l, w, theta, x, B);
	for (int k = 0; k < nc; k++) {
		float *d;
		logit_delta(l, w, theta, B, cls[k], &d);
		memcpy(gx + (size_t)k * n, d, n * sizeof(float));
		if (gy)
			memcpy(gy + (size_t)k * n, d, n * sizeof(float));
	}
}

const struct model_probes mlp_probes = {
	.neurons = neurons,
	.forward = forward,
	.embedding = embedding,
	.embed_grad = embed_grad,
	.tied_grads = 1,
};
