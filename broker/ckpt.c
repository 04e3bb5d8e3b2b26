/*
 * ckpt.c - checkpoint policy and signing (see ckpt.h).
 */
#include "ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

struct ckpt {
    checkpoint_signer signer;
    char origin[CHECKPOINT_NAME_MAX + 1];
    int64_t interval_ms;
    uint64_t events;
    uint64_t last_size;
    int64_t last_ms;
    int64_t demand_ms; /* when the last on-demand checkpoint was taken */
    bool demanded;     /* one was */
    kabar_buf note;
};

int ckpt_new(ckpt **out, const kkey *key, const char *origin, int64_t interval_ms, uint64_t events,
             store_reader *rd, int64_t now_ms, kabar_error *err)
{
    ckpt *c = calloc(1, sizeof *c);
    if (c == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "cannot allocate the checkpointer");
    uint8_t seed[32];
    crypto_sign_ed25519_sk_to_seed(seed, key->sk);
    int rc = checkpoint_signer_from_seed(&c->signer, origin, seed, err);
    sodium_memzero(seed, sizeof seed);
    if (rc != 0) {
        free(c);
        return rc;
    }
    snprintf(c->origin, sizeof c->origin, "%s", origin);
    c->interval_ms = interval_ms;
    c->events = events;
    c->last_ms = now_ms;
    kabar_error e;
    if (store_checkpoint_get(rd, 0, &c->note, &c->last_size, &e) != 0)
        c->last_size = 0;
    c->note.len = 0;
    *out = c;
    return 0;
}

void ckpt_destroy(ckpt **cp)
{
    ckpt *c = cp ? *cp : NULL;
    if (c == NULL)
        return;
    checkpoint_signer_wipe(&c->signer);
    kabar_buf_free(&c->note);
    free(c);
    *cp = NULL;
}

const checkpoint_verifier *ckpt_verifier(const ckpt *c)
{
    return &c->signer.verifier;
}

bool ckpt_policy_due(uint64_t last_size, int64_t last_ms, uint64_t head, int64_t now_ms,
                     int64_t interval_ms, uint64_t events)
{
    if (head <= last_size)
        return false;
    return now_ms - last_ms >= interval_ms || (events > 0 && head - last_size >= events);
}

bool ckpt_due(const ckpt *c, uint64_t head, int64_t now_ms)
{
    return ckpt_policy_due(c->last_size, c->last_ms, head, now_ms, c->interval_ms, c->events);
}

bool ckpt_demand_take(ckpt *c, int64_t now_ms)
{
    if (c->demanded && now_ms - c->demand_ms < CKPT_DEMAND_MS && now_ms >= c->demand_ms)
        return false;
    c->demanded = true;
    c->demand_ms = now_ms;
    return true;
}

uint64_t ckpt_last_size(const ckpt *c)
{
    return c->last_size;
}

int ckpt_make(ckpt *c, store *st, store_reader *rd, int64_t now_ms, kabar_buf *note, uint64_t *size,
              kabar_error *err)
{
    checkpoint cp;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "%s", c->origin);
    cp.size = store_reader_head(rd);
    if (cp.size == 0)
        return kabar_error_set(err, KABAR_NOT_FOUND,
                               "the log is empty: there is nothing to checkpoint yet");
    int rc = store_root(rd, cp.size, cp.root, err);
    c->note.len = 0;
    rc = rc ? rc : checkpoint_sign(&cp, &c->signer, &c->note, err);
    rc = rc ? rc : store_checkpoint_put(st, cp.size, c->note.data, c->note.len, err);
    if (rc != 0)
        return rc;
    c->last_size = cp.size;
    c->last_ms = now_ms;
    if (size != NULL)
        *size = cp.size;
    if (note != NULL)
        return kabar_buf_append(note, c->note.data, c->note.len) == 0
                   ? 0
                   : kabar_error_set(err, KABAR_NO_MEMORY, "cannot copy the checkpoint");
    return 0;
}
