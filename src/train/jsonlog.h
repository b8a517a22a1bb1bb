/* jsonlog.h — the --log file: JSON Lines written by rank 0 (CONTRACT §7).
 * {"event":"start", ...}, then one object per step, then {"event":"end", ...}.
 * Each line is flushed as written so a crashed run keeps what it logged. */
#ifndef MPT_JSONLOG_H
#define MPT_JSONLOG_H

#include <stdio.h>

#include "core/status.h"

typedef struct cJSON cJSON;

typedef struct mpt_jsonlog {
    FILE *f;     /* owned; NULL when logging is off */
} mpt_jsonlog;

/* path NULL: logging off (every call below is then a no-op). */
mpt_status mpt_jsonlog_open(mpt_jsonlog *log, const char *path, mpt_error *err);
/* Writes obj as one line and deletes obj (the log takes ownership). */
mpt_status mpt_jsonlog_write(mpt_jsonlog *log, cJSON *obj, mpt_error *err);
void mpt_jsonlog_close(mpt_jsonlog *log);

#endif
