/*
 * ckpt.h - kabard's signed checkpoints of its Merkle log (design45 section
 * 6, docs/MERKLE.md): when to make one, and making one.
 *
 * A checkpoint is the C2SP signed note (proto/checkpoint.h) of the log's
 * tree at its head: origin (the log's name, store_origin), size, root,
 * signed with the broker's Ed25519 key under the name of the origin. Each
 * is stored (store_checkpoint_put) so that an auditor can fetch any of
 * them later and ask for a consistency proof between two.
 *
 * Policy: one is due when the tree grew since the last and either
 * `interval_ms` passed or `events` events were added since; kabard also
 * makes one at a clean stop and on demand (CALL audit.checkpoint). Any
 * principal may ask for one, and each costs a signature and an fsync, so
 * on-demand checkpoints are rate-limited: at most one per CKPT_DEMAND_MS
 * for all callers together (ckpt_demand_take); a request within that time
 * gets the latest checkpoint instead.
 */
#ifndef KABARD_CKPT_H
#define KABARD_CKPT_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint.h"
#include "kabar.h"
#include "kkey.h"
#include "store.h"

typedef struct ckpt ckpt;

/*
 * A checkpointer signing with `key` (copied; wiped on destroy) as `origin`,
 * starting from the latest stored checkpoint as read through `rd`.
 * KABAR_INVALID_ARGUMENT when the origin is not a valid key name.
 */
int ckpt_new(ckpt **out, const kkey *key, const char *origin, int64_t interval_ms, uint64_t events,
             store_reader *rd, int64_t now_ms, kabar_error *err);
void ckpt_destroy(ckpt **c);

/* The note verifier (origin+KEYID+base64(0x01||pk)) of the broker's checkpoints. */
const checkpoint_verifier *ckpt_verifier(const ckpt *c);

/* The policy, as a pure function: is a checkpoint due? */
bool ckpt_policy_due(uint64_t last_size, int64_t last_ms, uint64_t head, int64_t now_ms,
                     int64_t interval_ms, uint64_t events);
/* ckpt_policy_due with this checkpointer's state and settings. */
bool ckpt_due(const ckpt *c, uint64_t head, int64_t now_ms);
/*
 * An on-demand checkpoint may be made at now_ms (monotonic): true, and the
 * next one may be made CKPT_DEMAND_MS later, when none was taken in the
 * last CKPT_DEMAND_MS; false otherwise.
 */
#define CKPT_DEMAND_MS 1000
bool ckpt_demand_take(ckpt *c, int64_t now_ms);

/* The size of the last checkpoint made or found (0: none). */
uint64_t ckpt_last_size(const ckpt *c);

/*
 * Sign the checkpoint of the tree at rd's head (rd must be fresh: it is
 * what the checkpoint says) and store it. When `note` is not NULL the
 * signed note is appended to it. KABAR_NOT_FOUND when the log is empty;
 * the store's codes otherwise.
 */
int ckpt_make(ckpt *c, store *st, store_reader *rd, int64_t now_ms, kabar_buf *note, uint64_t *size,
              kabar_error *err);

#endif /* KABARD_CKPT_H */
