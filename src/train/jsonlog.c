/* jsonlog.c — JSON Lines log (see jsonlog.h). */
#include "train/jsonlog.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

mpt_status mpt_jsonlog_open(mpt_jsonlog *log, const char *path, mpt_error *err) {
    log->f = NULL;
    if (!path) return MPT_OK;
    log->f = fopen(path, "w");
    if (!log->f)
        return mpt_fail(err, MPT_ERR_INPUT, "cannot write the log %s: %s", path, strerror(errno));
    return MPT_OK;
}

mpt_status mpt_jsonlog_write(mpt_jsonlog *log, cJSON *obj, mpt_error *err) {
    mpt_status st = MPT_OK;
    if (log->f && obj) {
        char *text = cJSON_PrintUnformatted(obj);
        if (!text || fprintf(log->f, "%s\n", text) < 0 || fflush(log->f) != 0)
            st = mpt_fail(err, MPT_ERR_RUN, "cannot write to the log: %s", strerror(errno));
        free(text);
    }
    cJSON_Delete(obj);
    return st;
}

void mpt_jsonlog_close(mpt_jsonlog *log) {
    if (log && log->f) fclose(log->f);
    if (log) log->f = NULL;
}
