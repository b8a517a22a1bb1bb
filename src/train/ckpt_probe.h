/* ckpt_probe.h — before training: can the checkpoint root of --save be created and written?
 * A run that trained for hours must not find at its first save that the path is a file, lies
 * under a file, or sits in a directory it cannot write (exit 1 then, the work lost); this check
 * makes those exit 2 before the first step. It leaves nothing behind: it creates a probe
 * directory of its own name in the root, or, when the root is missing, in the deepest existing
 * directory of the path, and removes it again (never the root: ranks probe concurrently). Called by every rank that writes checkpoint files (rank 0; every rank with
 * the sharded format), inside the set-up whose outcome the ranks agree on. */
#ifndef MPT_TRAIN_CKPT_PROBE_H
#define MPT_TRAIN_CKPT_PROBE_H

#include "core/status.h"

/* MPT_OK when `root` exists as a writable directory or can be created; else MPT_ERR_INPUT with
 * what is wrong (the part of the path that is not a directory, or the system's reason). */
mpt_status mpt_ckpt_probe_dir(const char *root, mpt_error *err);

/* A fresh run (no --resume) must not write into a root that holds another run's checkpoints:
 * their `latest` would be overwritten and --keep would delete their step directories. MPT_OK
 * when `root` is missing or holds neither `latest` nor a step_N directory; else MPT_ERR_INPUT
 * saying to pass --resume or choose another --save. */
mpt_status mpt_ckpt_probe_unused(const char *root, mpt_error *err);

#endif
