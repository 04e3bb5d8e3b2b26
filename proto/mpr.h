/*
 * mpr.h - a strict, allocation-free msgpack reader.
 *
 * kabar reads untrusted msgpack (events and wire headers from any client)
 * with this cursor rather than an object-tree unpacker: it never allocates,
 * so a header that claims four billion elements costs nothing; it checks
 * every item against kabar's canonical form (PROTOCOL.md "Canonical
 * encoding") as it goes, so a decoder can say exactly which field is not
 * canonical; and it knows the byte offset of everything, so an event's body
 * can be handed on as the exact bytes it arrived as.
 *
 * Canonical form, as checked by mpr_next when r->canonical is true:
 *  - integers in the smallest encoding: non-negative values in the unsigned
 *    family (positive fixint, uint8..uint64), negative values in the
 *    smallest of negative fixint, int8..int64;
 *  - str, bin, array and map headers in their smallest encoding;
 *  - floats only as float64 (never float32), finite, and not integral
 *    (an integral number within int64 is an integer);
 *  - the only ext is the timestamp (type -1), in its smallest form
 *    (timestamp32 when nsec == 0 and 0 <= sec < 2^32, timestamp64 when
 *    0 <= sec < 2^34, else timestamp96);
 *  - map keys are strings, strictly ascending in byte order (memcmp, then
 *    shorter first); this check is the caller's, with mpr_key_order.
 *
 * Ownership: the reader borrows the buffer; every pointer it yields points
 * into it.
 */
#ifndef KABAR_MPR_H
#define KABAR_MPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kabar.h"

typedef enum mpr_kind {
    MPR_NIL,
    MPR_BOOL,
    MPR_UINT,      /* non-negative integer: it.u */
    MPR_INT,       /* negative integer: it.i */
    MPR_FLOAT,     /* it.f */
    MPR_STR,       /* it.str, it.len */
    MPR_BIN,       /* it.str (bytes), it.len */
    MPR_ARRAY,     /* it.count items follow */
    MPR_MAP,       /* it.count key/value pairs follow */
    MPR_TIMESTAMP, /* it.i = ns since epoch (must fit int64) */
    MPR_EXT,       /* any other ext: it.ext_type, it.str, it.len */
} mpr_kind;

typedef struct mpr_item {
    mpr_kind kind;
    bool b;
    uint64_t u;
    int64_t i;
    double f;
    const char *str;
    uint32_t len;
    uint32_t count;
    int8_t ext_type;
    size_t offset; /* where the item's header starts in the buffer */
} mpr_item;

typedef struct mpr {
    const uint8_t *start;
    const uint8_t *p;
    const uint8_t *end;
    bool canonical; /* reject non-canonical encodings (default true via mpr_init) */
} mpr;

void mpr_init(mpr *r, const void *buf, size_t len);

/*
 * Read the next item's header (for str/bin/ext also its payload; for
 * array/map only the count: the elements follow). Returns 0, KABAR_MALFORMED
 * (truncated, reserved byte 0xc1, a count larger than the bytes left could
 * hold), or KABAR_NOT_CANONICAL; err->message says what and at which offset.
 */
int mpr_next(mpr *r, mpr_item *it, kabar_error *err);

/* Skip one whole item, nested ones included, at most `depth` levels deep. */
int mpr_skip(mpr *r, int depth, kabar_error *err);

/* Bytes left to read. */
static inline size_t mpr_left(const mpr *r)
{
    return (size_t)(r->end - r->p);
}

/* Offset of the cursor from the start of the buffer. */
static inline size_t mpr_offset(const mpr *r)
{
    return (size_t)(r->p - r->start);
}

/* <0, 0, >0 as memcmp-then-length: the canonical order of map keys. */
int mpr_key_order(const char *a, uint32_t alen, const char *b, uint32_t blen);

/* Convenience: the next item must be of `kind` (else KABAR_WRONG_TYPE naming `what`). */
int mpr_expect(mpr *r, mpr_kind kind, mpr_item *it, const char *what, kabar_error *err);

#endif /* KABAR_MPR_H */
