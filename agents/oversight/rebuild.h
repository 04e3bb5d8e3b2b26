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
int rebuild_from_log(ostate *s, const char *logdir, uint64_t *applied, kabar_error *err);

#endif /* KABAR_REBUILD_H */
