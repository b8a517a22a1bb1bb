/* dtype.c — element types (see dtype.h). */
#include "core/dtype.h"

size_t mpt_dtype_size(mpt_dtype t) {
    static const size_t bytes[MPT_DTYPES] = {4, 2, 4, 8};
    return (unsigned)t < MPT_DTYPES ? bytes[t] : 0;
}

const char *mpt_dtype_name(mpt_dtype t) {
    static const char *names[MPT_DTYPES] = {"f32", "bf16", "i32", "f64"};
    return (unsigned)t < MPT_DTYPES ? names[t] : "?";
}
