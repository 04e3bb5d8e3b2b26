/*
 * rebuild.h - build an oversight state from the whole log, through the same
 * apply code as the agent (oapply.h), for `kabar oversight report --rebuild`.
 *
 * Either online, from a broker, with a bounded subscription from the first
 * event to the head as of subscribing (no durable consumer is created), or
 * offline from a log directory (kabard --data) with the store's read-only
 * reader, safe while kabard runs. Records are applied in batches of
 * REBUILD_BATCH per transaction.
 */
#ifndef KABAR_REBUILD_H
#define KABAR_REBUILD_H

#include <stdint.h>

#include "kabar.h"
#include "ostate.h"

#define REBUILD_BATCH 4096

/* *applied (may be NULL) gets the number of records read. */
int rebuild_from_broker(ostate *s, const char *endpoint, int timeout_ms, uint64_t *applied,
                        kabar_error *err);
/*
 * The same with the caller's client options (its identity key and the
 * broker's key, its timeout; the window is forced to 1: nothing is
 * published). co->timeout_ms is also the longest silence between records.
 */
int rebuild_from_broker_opts(ostate *s, const char *endpoint, const kabar_client_opts *co,
                             uint64_t *applied, kabar_error *err);
int rebuild_from_log(ostate *s, const char *logdir, uint64_t *applied, kabar_error *err);

/*
 * A fresh, empty state in a new temporary directory under $TMPDIR (or
 * /tmp), for a report from the log: dir (cap >= PATH_MAX) gets its path,
 * *out the open state. On failure nothing is left behind and dir is "".
 * rebuild_tmp_remove closes the state (accepts NULL) and removes the
 * directory with its files (dir "" is a no-op).
 */
int rebuild_tmp_open(char *dir, size_t cap, ostate **out, kabar_error *err);
void rebuild_tmp_remove(char *dir, ostate **s);

#endif /* KABAR_REBUILD_H */
