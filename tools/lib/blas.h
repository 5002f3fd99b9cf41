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
 * "threads", "gemm": what ran the output's matrix products (model_kernel:
 * "avx512" or "openblas")}.  gemm NULL leaves "gemm" out, for a tool
 * whose products depend on each input's model family (the analyses:
 * each record names its own).
 */
json_t *blas_json(int threads, const char *gemm);
const char *blas_core(void);

#endif
