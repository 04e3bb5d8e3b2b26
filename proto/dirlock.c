/*
 * dirlock.c - one process per data directory (see dirlock.h).
 */
#include "dirlock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int dirlock_take(const char *dir, const char *file, const char *program, int *fd_out,
                 kabar_error *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "data directory path too long: %s",
                               dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return kabar_error_set(err, KABAR_IO, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int en = errno;
        char buf[32] = {0};
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        long other = n > 0 ? strtol(buf, NULL, 10) : 0;
        close(fd);
        if (en == EWOULDBLOCK)
            return kabar_error_set(err, KABAR_LOCKED,
                                   "data directory %s is in use by another %s (pid %ld); stop "
                                   "it first or pass another --data",
                                   dir, program, other);
        return kabar_error_set(err, KABAR_IO, "cannot lock %s: %s", path, strerror(en));
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        int en = errno;
        close(fd);
        return kabar_error_set(err, KABAR_IO, "cannot write %s: %s", path, strerror(en));
    }
    *fd_out = fd;
    return 0;
}
