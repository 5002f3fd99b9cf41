#define _POSIX_C_SOURCE 200809L
#include "blas.h"
#include "gemm.h"

#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include <cblas.h>

/*
 * Two settings OpenBLAS reads only while it loads, so they are made by
 * re-executing the program once with the environment set:
 *
 * - The kernels.  The DYNAMIC_ARCH build (Debian's) picks them from the CPU
 *   model; a model it does not know, as virtual machines often report,
 *   gets the generic Prescott (SSE3) kernels, at about half the speed of
 *   the AVX ones on the same CPU.  When that happened on a CPU that can run
 *   better ones, OPENBLAS_CORETYPE names them.
 * - The thread pool.  With one thread wanted, openblas_set_num_threads(1)
 *   still leaves a pool of workers that spin in sched_yield while the
 *   main thread calls BLAS, taking a core from the next job of `make -j`;
 *   OPENBLAS_NUM_THREADS=1 keeps the pool from starting.
 *
 * A user's own settings are always respected, and if the re-exec fails the
 * program goes on as it is.
 */
static void
reexec_configured(int threads, char **argv)
{
#if defined(__x86_64__) && defined(__linux__)
	const char *want = NULL;
	int again = 0;

	if (!getenv("OPENBLAS_CORETYPE") && strcasecmp(openblas_get_corename(), "prescott") == 0) {
		__builtin_cpu_init();
		if (__builtin_cpu_supports("avx512f"))
			want = "SkylakeX";
		else if (__builtin_cpu_supports("avx2"))
			want = "Haswell";
		if (want && setenv("OPENBLAS_CORETYPE", want, 1) == 0)
			again = 1;
	}
	if (threads == 1 && !getenv("OPENBLAS_NUM_THREADS") && openblas_get_num_threads() > 1 &&
	    setenv("OPENBLAS_NUM_THREADS", "1", 1) == 0)
		again = 1;
	if (again)
		execv("/proc/self/exe", argv);
#else
	(void)threads;
	(void)argv;
#endif
}

void
blas_setup(int threads, char **argv)
{
	reexec_configured(threads, argv);
	openblas_set_num_threads(threads);
	gemm_setup(threads);
}

json_t *
blas_json(int threads, const char *gemm)
{
	json_t *b = json_pack("{s:s, s:s, s:i}", "config", openblas_get_config(),
	    "core", openblas_get_corename(), "threads", threads);

	if (gemm)
		json_object_set_new(b, "gemm", json_string(gemm));
	return b;
}

const char *
blas_core(void)
{
	return openblas_get_corename();
}
