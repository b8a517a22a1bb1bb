/* peak.h — the measured fp32 FMA peak of this rank's cores (the denominator of MFU) and the
 * measured memory bandwidth (the roofline of the memory-bound kernels). */
#ifndef MPT_PEAK_H
#define MPT_PEAK_H

/* Runs independent FMA chains on `threads` OpenMP threads for about `seconds` (five tries of
 * each vector width, the best kept) and returns the summed rate in FLOP/s (an FMA counts 2). Uses the widest vector FMA the CPU has (AVX-512 or
 * AVX2+FMA); returns 0 when neither is available. */
double mpt_measure_peak_flops(int threads, double seconds);

/* One block of the peak's FMA loop on the calling thread: iters x 1024 x 12 independent vector
 * FMAs of the widest width the CPU has (AVX-512, else AVX2+FMA). Returns the FLOPs done (an FMA
 * counts 2; 196608 x iters with AVX2), 0 when the CPU has neither. Local to the thread. */
double mpt_peak_fma_block(long iters);

/* The memory bandwidth the roofline of bench/profile divides by: a STREAM-style triad
 * a[i] = b[i] + s*c[i] over three 64 MiB arrays (far beyond any cache), on `threads` OpenMP
 * threads, the best of several passes lasting about `seconds` in all. Returns bytes/s counted
 * as STREAM does (12 bytes per element: two reads, one write); 0 if the arrays cannot be
 * allocated. The arrays are a probe's scratch (malloc, freed before return), not training
 * state. */
double mpt_measure_bandwidth(int threads, double seconds);

#endif
