/*
 * audit_source.h - where the audit tools read the log from: a data
 * directory (offline, audit_log.h) or a broker (online, through the audit.*
 * and agency.list CALL methods with an auditor's key).
 *
 * Both give the same things: records by seq, stored checkpoints, signed
 * batches, registry keys, inclusion and consistency paths. Offline `verify`
 * also checks what only the data directory holds (tree nodes, indexes,
 * dedup, consumers) through src->log.
 */
#ifndef KABAR_AUDIT_SOURCE_H
#define KABAR_AUDIT_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "audit_log.h"
#include "kabar.h"
#include "merkle.h"

typedef struct audit_online audit_online;

typedef struct audit_source {
    audit_log *log;       /* offline, else NULL */
    audit_online *online; /* online, else NULL */
    uint64_t head;        /* the last seq when opened */
    char origin[256];     /* the checkpoint origin ("" when not known yet) */
} audit_source;

/* Offline on DIR (read-only snapshot). */
int audit_source_open_dir(audit_source *s, const char *dir, kabar_error *err);
/* Online on a connected client (borrowed; destroy it after closing s). */
int audit_source_open_client(audit_source *s, kabar_client *c, kabar_error *err);
void audit_source_close(audit_source *s);
/* Online: read the head again (offline the snapshot's head stays). */
int audit_source_refresh_head(audit_source *s, kabar_error *err);

/* One record; valid until the next record call. KABAR_NOT_FOUND past the head. */
int audit_source_record(audit_source *s, uint64_t seq, audit_rec *r, kabar_error *err);
/* The latest checkpoint, fresh: ask the broker to make one first (online only). */
int audit_source_checkpoint(audit_source *s, bool fresh, kabar_buf *note, uint64_t *size,
                            kabar_error *err);
/* Every stored checkpoint, oldest first; fn's non-zero return stops and is returned. */
int audit_source_checkpoints(audit_source *s,
                             int (*fn)(void *arg, uint64_t size, const char *note, size_t len),
                             void *arg, kabar_error *err);
/* A signed batch; valid until the next batch call. */
int audit_source_batch(audit_source *s, uint64_t id, audit_batch *b, kabar_error *err);
/* A registry key (KABAR_NOT_FOUND when not registered). */
int audit_source_key(audit_source *s, const uint8_t pk[32], audit_key *k, kabar_error *err);
/* Inclusion path of seq in the tree of `size`, that tree's root, and (when
 * record is not NULL) the stored record, appended to record. */
int audit_source_prove(audit_source *s, uint64_t seq, uint64_t size, merkle_proof *p,
                       uint8_t root[32], kabar_buf *record, kabar_error *err);
int audit_source_consistency(audit_source *s, uint64_t old_size, uint64_t new_size, merkle_proof *p,
                             uint8_t old_root[32], uint8_t new_root[32], kabar_error *err);

/* The size a checkpoint note claims (its second line), without verifying it. */
int audit_note_size(const char *note, size_t len, uint64_t *size, char *origin, size_t origin_sz,
                    kabar_error *err);

#endif
