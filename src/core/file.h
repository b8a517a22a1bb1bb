/* file.h — reading a whole file into memory, the one way every module does it. */
#ifndef MPT_FILE_H
#define MPT_FILE_H

#include <stddef.h>

#include "core/status.h"

/* *data = the whole regular file at path, malloc'd and NUL-terminated (caller frees), *len its
 * length without the NUL. A missing or unreadable file, or one larger than max bytes, is
 * MPT_ERR_INPUT with a message that starts with the path; out of memory is MPT_ERR_RUN. */
mpt_status mpt_file_read(const char *path, size_t max, char **data, size_t *len, mpt_error *err);

#endif
