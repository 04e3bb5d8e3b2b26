/*
 * dirlock.h - one process per data directory.
 *
 * kabard, kabar-agent and kabar-oversight each own a data directory; a
 * second process on the same one would corrupt nothing (LMDB locks) but
 * would fight over sockets and durable consumers, so it refuses to start.
 * The lock is flock(2) on a file in the directory, held for the life of
 * the process (the kernel drops it when the process dies, however it
 * dies), and the file holds the owner's pid so that the refusal can name
 * it. The file is never removed, not even at a clean exit: removing it
 * would let a second process lock a new file of the same name while the
 * first still holds the old one.
 */
#ifndef KABAR_DIRLOCK_H
#define KABAR_DIRLOCK_H

#include "kabar.h"

/*
 * Take DIR/FILE for `program` ("kabard"): 0 with *fd_out set (keep it open;
 * closing it releases the lock), KABAR_LOCKED naming the other process's
 * pid when another holds it, KABAR_IO when the file cannot be opened or
 * written.
 */
int dirlock_take(const char *dir, const char *file, const char *program, int *fd_out,
                 kabar_error *err);

#endif /* KABAR_DIRLOCK_H */
