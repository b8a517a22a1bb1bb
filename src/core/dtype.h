/* dtype.h — element types of buffers, tensors and messages.
 *
 * Everything is fp32 today; the type travels with every arena block, buffer-list entry and
 * communication call so that bf16 working copies beside fp32 master weights are a local change
 * (the byte counts and MPI datatypes come from here, never from a sizeof at the call site). */
#ifndef MPT_DTYPE_H
#define MPT_DTYPE_H

#include <stddef.h>

typedef enum mpt_dtype { MPT_F32, MPT_BF16, MPT_I32, MPT_F64, MPT_DTYPES } mpt_dtype;

/* Bytes of one element (0 for an unknown type). */
size_t mpt_dtype_size(mpt_dtype t);
/* "f32", "bf16", "i32", "f64"; "?" for an unknown type. */
const char *mpt_dtype_name(mpt_dtype t);

#endif
