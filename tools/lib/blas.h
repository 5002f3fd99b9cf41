/*
 * blas: OpenBLAS set-up shared by every tool that multiplies matrices.
 */
#ifndef BLAS_H
#define BLAS_H

#include <jansson.h>

/*
 * Choose the kernels and the thread count.  Call first thing in main,
 * before any input is read: it may re-execute the program (see blas.c).
 */
void blas_setup(int threads, char **argv);
/*
 * For headers: {"config": OpenBLAS's build, "core": its kernels,
 * "threads", "gemm": what runs the MLP's products (gemm.h)}.
 */
json_t *blas_json(int threads);
const char *blas_core(void);

#endif
