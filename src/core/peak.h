/* peak.h — the measured fp32 FMA peak of this rank's cores, the denominator of MFU. */
#ifndef MPT_PEAK_H
#define MPT_PEAK_H

/* Runs independent FMA chains on `threads` OpenMP threads for about `seconds` (five tries of
 * each vector width, the best kept) and returns the summed rate in FLOP/s (an FMA counts 2). Uses the widest vector FMA the CPU has (AVX-512 or
 * AVX2+FMA); returns 0 when neither is available. */
double mpt_measure_peak_flops(int threads, double seconds);

#endif
