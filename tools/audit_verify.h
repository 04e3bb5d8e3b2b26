/*
 * audit_verify.h - `kabar audit verify`: check a whole log, offline on a
 * data directory or online through a broker.
 *
 * One pass over the records in seq order (a plain LMDB cursor offline,
 * audit.records pages online), each record hashed once and pushed through
 * a merkle_frontier, whose visit callback compares every completed node
 * with the stored `tree` (offline). Checked:
 *
 *   - seq gap-free from 1 to the head; every record of format 2; received_at
 *     never decreasing; every event decodes;
 *   - the tree: every stored node equals the one recomputed from the
 *     records, and the tree holds no other node (offline);
 *   - every stored checkpoint: signed by the log key, its size is a size of
 *     the log, its root equals the recomputed root at that size;
 *   - every signed event: its batch is stored, the event's bytes hash to
 *     the batch's leaf at its index, the batch signature verifies, the key
 *     was registered and valid at the event's received_at, and the key's
 *     agency is the event's source;
 *   - the indexes (by_source, by_target, by_type) and dedup hold exactly the
 *     entries the events call for (a keyed fingerprint of each database is
 *     compared first; on a difference every entry is looked at, both ways);
 *     consumers' acked <= head (offline);
 *   - with a saved checkpoint: the recomputed root at its size is its root.
 *
 * Every problem is one line on `out`: "seq N: WHAT" (or "checkpoint ...",
 * "consumer NAME: ...", "tree: ..." where no seq applies), in seq order.
 */
#ifndef KABAR_AUDIT_VERIFY_H
#define KABAR_AUDIT_VERIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "audit_source.h"
#include "checkpoint.h"

typedef struct audit_verify_opts {
    const checkpoint_verifier *log_key; /* required */
    const char *since_note;             /* a saved checkpoint to extend, or NULL */
    size_t since_len;
    bool progress;         /* progress on stderr */
    FILE *out;             /* problem lines */
    uint64_t max_problems; /* stop printing after this many (0: 1000) */
} audit_verify_opts;

typedef struct audit_verify_result {
    uint64_t events, problems, checkpoints, batches, signed_events, unsigned_events;
    uint64_t head;
    uint8_t root[32]; /* recomputed root at head */
    double seconds;
} audit_verify_result;

/* 0 when the check ran (res->problems says whether it passed), else the error that stopped it. */
int audit_verify(audit_source *s, const audit_verify_opts *o, audit_verify_result *res,
                 kabar_error *err);

#endif
