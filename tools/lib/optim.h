/*
 * optim: Adam, AdamW and SGD over one flat parameter vector, with exactly
 * the update rules of torch.optim (version 1.13, single-tensor path), in
 * float32 as torch computes them:
 *
 *   adam   g += wd * theta (L2 decay in the gradient)
 *          m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *          theta -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   adamw  theta *= 1 - lr * wd (decoupled, every parameter), then adam's
 *          step without the L2 term
 *   sgd    g += wd * theta;  buf = g (first step), else buf = mu buf + g;
 *          g = nesterov ? g + mu buf : buf;  theta -= lr g
 */
#ifndef OPTIM_H
#define OPTIM_H

#include <stddef.h>

enum optim_kind { OPT_ADAM, OPT_ADAMW, OPT_SGD };
extern const char *const optim_names[];   /* "adam", "adamw", "sgd", NULL */

struct optim_config {
	enum optim_kind kind;
	double lr, beta1, beta2, eps, wd, momentum;
	int nesterov;
};

struct optim {
	struct optim_config c;
	size_t n;
	long t;        /* steps taken */
	float *m;      /* (P) first moment, or SGD's momentum buffer */
	float *v;      /* (P) second moment (Adam, AdamW) */
};

void optim_init(struct optim *o, const struct optim_config *c, size_t n);
void optim_free(struct optim *o);
/*
 * One step at learning rate lr (the schedule's value for this step).
 * Returns the squared norm of the change to theta.
 */
double optim_step(struct optim *o, float *theta, const float *grad, double lr);

#endif
