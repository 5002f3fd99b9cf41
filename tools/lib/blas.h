/*
 * blas: OpenBLAS set-up shared by every tool that multiplies matrices.
 */
#ifndef BLAS_H
#define BLAS_H

/*
 * Choose the kernels and the thread count.  Call first thing in main,
 * before any input is read: it may re-execute the program (see blas.c).
 */
void blas_setup(int threads, char **argv);
/* The library's build configuration and chosen kernel family. */
const char *blas_config(void);
const char *blas_core(void);

#endif
