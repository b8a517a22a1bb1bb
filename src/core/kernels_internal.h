/* kernels_internal.h — helpers shared by kernels.c and kernels_vecmath.c (not public). */
#ifndef MPT_KERNELS_INTERNAL_H
#define MPT_KERNELS_INTERNAL_H

#include <omp.h>

static inline int omp_threads_(void) { return omp_get_num_threads(); }
static inline int omp_thread_id_(void) { return omp_get_thread_num(); }

/* row[0..n) = softmax(row[0..n)) in place; the scale is already applied. Single-threaded. */
void mpt_softmax_inplace_(float *row, int n);

#endif
