/* data.c — batches in the contract's order (see data.h). */
#include "train/data.h"

mpt_status mpt_data_check(const mpt_tokfile *f, int T, const char *path, mpt_error *err) {
    if (f->n <= (size_t)T + 1)
        return mpt_fail(err, MPT_ERR_INPUT,
                        "%s holds %zu tokens, fewer than one sequence of %d + 1: use more text or "
                        "a shorter --seq-len",
                        path, f->n, T);
    return MPT_OK;
}

void mpt_data_batch(const mpt_tokfile *f, long step, int B, int first, int count, int T,
                    int32_t *inputs, int32_t *targets) {
    unsigned __int128 span = f->n - (size_t)T - 1;
    for (int i = 0; i < count; i++) {
        unsigned __int128 g = (unsigned __int128)step * (unsigned)B + (unsigned)(first + i);
        size_t start = (size_t)((g * (unsigned)T) % span);
        for (int t = 0; t < T; t++) {
            if (inputs) inputs[(size_t)i * T + t] = f->tokens[start + t];
            if (targets) targets[(size_t)i * T + t] = f->tokens[start + t + 1];
        }
    }
}

void mpt_data_batch_cp(const mpt_tokfile *f, long step, int B, int first, int count, int T,
                       int cp, int cp_rank, int32_t *inputs, int32_t *targets) {
    if (cp <= 1) {
        mpt_data_batch(f, step, B, first, count, T, inputs, targets);
        return;
    }
    unsigned __int128 span = f->n - (size_t)T - 1;
    int Tc = T / (2 * cp), Tl = 2 * Tc;
    for (int i = 0; i < count; i++) {
        unsigned __int128 g = (unsigned __int128)step * (unsigned)B + (unsigned)(first + i);
        size_t start = (size_t)((g * (unsigned)T) % span);
        for (int t = 0; t < Tl; t++) {
            int chunk = t < Tc ? cp_rank : 2 * cp - 1 - cp_rank;
            size_t at = start + (size_t)chunk * Tc + (size_t)(t % Tc);
            if (inputs) inputs[(size_t)i * Tl + t] = f->tokens[at];
            if (targets) targets[(size_t)i * Tl + t] = f->tokens[at + 1];
        }
    }
}
