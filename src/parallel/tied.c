/* tied.c — the sum of the tied wte's gradients over the two ends of a pipeline (see tied.h). */
#include "parallel/tied.h"

#include <stdint.h>

size_t mpt_tied_tensor(const mpt_param_table *pt) {
    for (size_t i = 0; i < pt->n; i++)
        if (pt->t[i].full_id == 0) return i;
    return SIZE_MAX;
}

mpt_status mpt_tied_sum(void *embed, float *g, size_t n, mpt_error *err) {
    mpt_comm *c = embed;
    if (!c || c->size < 2) return MPT_OK;
    return mpt_allreduce_sum(c, g, n, err);
}
