/* checkpoint_internal.h — what the checkpoint writer (checkpoint.c) and reader
 * (checkpoint_load.c) share: file names, file-system steps, JSON and checksums. Not public. */
#ifndef MPT_CHECKPOINT_INTERNAL_H
#define MPT_CHECKPOINT_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define MPT_CKPT_MAX_JSON_BYTES ((size_t)1 << 24)
#define MPT_CKPT_NAME_MAX 128 /* "exp_avg_sq." + a tensor name (< 96) */

extern const char *const mpt_ckpt_model_file, *const mpt_ckpt_optim_file,
    *const mpt_ckpt_stash_file, *const mpt_ckpt_state_file, *const mpt_ckpt_config_file, *const mpt_ckpt_manifest_file;

int mpt_ckpt_join(char *out, size_t size, const char *a, const char *b);
int mpt_ckpt_exists(const char *path);
/* 1 when `name` is a step directory's name: step_ followed by digits only. */
int mpt_ckpt_is_step_name(const char *name);
int mpt_ckpt_is_dir(const char *path);
int mpt_ckpt_fsync_dir(const char *path);
int mpt_ckpt_mkdir_p(const char *path);
int mpt_ckpt_remove_tree(const char *path);
mpt_status mpt_ckpt_write_text(const char *path, const char *text, mpt_error *err);
mpt_status mpt_ckpt_read_json(const char *path, cJSON **out, mpt_error *err);
mpt_status mpt_ckpt_hash_file(const char *path, uint64_t *hash, size_t *size, mpt_error *err);
int mpt_ckpt_json_u64(const cJSON *j, uint64_t *out);

#endif
