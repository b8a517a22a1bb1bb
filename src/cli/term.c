/* term.c — whether stdout ends on a terminal, so a progress display knows whether it may
 * redraw one live line (carriage returns) or must print plain lines.
 *
 * isatty(1) is not the answer under mpirun: OpenMPI gives every local rank a pseudo-terminal
 * as its stdout and copies what the rank writes to mpirun's own stdout, whatever that is. A
 * run piped to a file or a CI log thus saw a terminal, and its carriage returns piled up into
 * one endless line. Under an OpenMPI launch (OMPI_COMM_WORLD_SIZE set) the destination is the
 * stdout of the launcher, the rank's parent process on its node (mpirun for the ranks on
 * mpirun's node, rank 0 among them; orted elsewhere, whose stdout is no terminal): that file
 * is a terminal when /proc/<parent>/fd/1 names a terminal device. Linux. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

/* "/dev/pts/N", "/dev/ttyN", "/dev/console": a terminal device's name. */
static int names_terminal_(const char *path) {
    return strncmp(path, "/dev/pts/", 9) == 0 || strncmp(path, "/dev/tty", 8) == 0 ||
           strcmp(path, "/dev/console") == 0;
}

int mpt_cli_stdout_is_terminal(void) {
    if (!isatty(STDOUT_FILENO)) return 0;
    if (!getenv("OMPI_COMM_WORLD_SIZE")) return 1; /* no launcher: the terminal is the user's */
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/%ld/fd/1", (long)getppid());
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0; /* unknown: plain lines are safe anywhere */
    target[n] = '\0';
    return names_terminal_(target);
}
