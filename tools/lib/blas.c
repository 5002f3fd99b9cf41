#define _POSIX_C_SOURCE 200809L
#include "blas.h"

#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include <cblas.h>

/*
 * OpenBLAS's DYNAMIC_ARCH build (Debian's) picks its kernels from the CPU
 * model.  A model it does not know, as virtual machines often report, gets
 * the generic Prescott (SSE3) kernels, at about half the speed of the AVX
 * ones on the same CPU.  The library reads OPENBLAS_CORETYPE only while it
 * loads, so when the generic kernels were chosen on a CPU that can run
 * better ones, the program re-executes itself once with the variable set.
 * A user's own OPENBLAS_CORETYPE is always respected, and if the re-exec
 * fails the program simply goes on with the generic kernels.
 */
static void
choose_kernels(char **argv)
{
#if defined(__x86_64__) && defined(__linux__)
	const char *want = NULL;

	if (getenv("OPENBLAS_CORETYPE") || strcasecmp(openblas_get_corename(), "prescott") != 0)
		return;
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		want = "SkylakeX";
	else if (__builtin_cpu_supports("avx2"))
		want = "Haswell";
	if (!want || setenv("OPENBLAS_CORETYPE", want, 1) != 0)
		return;
	execv("/proc/self/exe", argv);
	unsetenv("OPENBLAS_CORETYPE");
#else
	(void)argv;
#endif
}

void
blas_setup(int threads, char **argv)
{
	choose_kernels(argv);
	openblas_set_num_threads(threads);
}

const char *
blas_config(void)
{
	return openblas_get_config();
}

const char *
blas_core(void)
{
	return openblas_get_corename();
}
