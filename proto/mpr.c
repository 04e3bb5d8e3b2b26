/*
 * mpr.c - the strict, allocation-free msgpack reader (contract in mpr.h).
 *
 * Design notes: mpr_next reads one header byte, then exactly the bytes that
 * byte announces, checking that they are there before touching them. Every
 * multi-byte number is big-endian on the wire. In canonical mode each
 * encoding is compared with the smallest one that could hold the same
 * value; the first difference is reported as KABAR_NOT_CANONICAL with the
 * offset of the item's header. Counts of arrays and maps are checked against
 * the bytes left (an element takes at least one byte, a map entry two), so a
 * forged count is rejected before anyone loops over it.
 */
#include <math.h>
#include <string.h>

#include "mpr.h"

void mpr_init(mpr *r, const void *buf, size_t len)
{
    r->start = buf;
    r->p = buf;
    r->end = r->start + len;
    r->canonical = true;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static int truncated(size_t off, kabar_error *err)
{
    return kabar_error_set(err, KABAR_MALFORMED, "truncated msgpack at offset %zu", off);
}

static int not_canonical(size_t off, const char *what, kabar_error *err)
{
    return kabar_error_set(err, KABAR_NOT_CANONICAL, "%s at offset %zu", what, off);
}

/* The payload of a str/bin/ext: `len` bytes must be left. */
static int payload(mpr *r, mpr_item *it, uint32_t len, kabar_error *err)
{
    if (mpr_left(r) < len)
        return truncated(it->offset, err);
    it->str = (const char *)r->p;
    it->len = len;
    r->p += len;
    return KABAR_OK;
}

/* An array or map header: the count must be plausible for the bytes left. */
static int container(mpr *r, mpr_item *it, mpr_kind kind, uint32_t count, kabar_error *err)
{
    uint64_t need = kind == MPR_MAP ? 2 * (uint64_t)count : count;
    it->kind = kind;
    it->count = count;
    if (need > mpr_left(r))
        return kabar_error_set(err, KABAR_MALFORMED,
                               "%s at offset %zu claims %u %s but only %zu bytes follow",
                               kind == MPR_MAP ? "map" : "array", it->offset, count,
                               kind == MPR_MAP ? "entries" : "items", mpr_left(r));
    return KABAR_OK;
}

/* Decode the timestamp extension (type -1) into ns; `smallest` is whether
 * the header used was the smallest for this length. */
static int timestamp(mpr *r, mpr_item *it, bool smallest, kabar_error *err)
{
    const uint8_t *d = (const uint8_t *)it->str;
    int64_t sec;
    uint32_t nsec;
    if (it->len == 4) {
        sec = be32(d);
        nsec = 0;
    } else if (it->len == 8) {
        uint64_t v = be64(d);
        nsec = (uint32_t)(v >> 34);
        sec = (int64_t)(v & 0x3ffffffffULL);
    } else if (it->len == 12) {
        nsec = be32(d);
        sec = (int64_t)be64(d + 4);
    } else {
        return kabar_error_set(err, KABAR_MALFORMED,
                               "timestamp at offset %zu has %u data bytes (expected 4, 8 or 12)",
                               it->offset, it->len);
    }
    if (nsec > 999999999)
        return kabar_error_set(err, KABAR_MALFORMED,
                               "timestamp at offset %zu has nanoseconds %u > 999999999", it->offset,
                               nsec);
    /* int64 ns spans seconds -9223372037 (+145224192 ns) to 9223372036 (+854775807 ns). */
    if (sec < -9223372037LL || sec > 9223372036LL || (sec == -9223372037LL && nsec < 145224192) ||
        (sec == 9223372036LL && nsec > 854775807))
        return kabar_error_set(err, KABAR_MALFORMED,
                               "timestamp at offset %zu is out of range (kabar instants span "
                               "1677-09-22 to 2262-04-11)",
                               it->offset);
    if (r->canonical) {
        uint32_t want = (nsec == 0 && sec >= 0 && sec <= 0xffffffffLL) ? 4
                        : (sec >= 0 && sec < (1LL << 34))              ? 8
                                                                       : 12;
        if (want != it->len || !smallest)
            return not_canonical(it->offset, "timestamp not in its smallest form", err);
    }
    it->kind = MPR_TIMESTAMP;
    /* Computed as (sec + 1) s - (1e9 - nsec) ns when that avoids overflow. */
    if (sec < 0 && nsec > 0)
        it->i = (sec + 1) * 1000000000 - (int64_t)(1000000000 - nsec);
    else
        it->i = sec * 1000000000 + (int64_t)nsec;
    return KABAR_OK;
}

/* An ext item whose header byte was `hdr`; the type byte is next. */
static int ext(mpr *r, mpr_item *it, uint32_t len, uint8_t hdr, kabar_error *err)
{
    if (mpr_left(r) < 1)
        return truncated(it->offset, err);
    it->ext_type = (int8_t)*r->p++;
    int rc = payload(r, it, len, err);
    if (rc != 0)
        return rc;
    if (it->ext_type == -1) {
        /* fixext4/fixext8 are the smallest for 4 and 8 bytes, ext8 for 12. */
        bool smallest = len == 12 ? hdr == 0xc7 : hdr >= 0xd4;
        return timestamp(r, it, smallest, err);
    }
    it->kind = MPR_EXT;
    if (r->canonical)
        return not_canonical(it->offset, "ext type other than the timestamp", err);
    return KABAR_OK;
}

static int uint_item(mpr *r, mpr_item *it, uint64_t v, uint64_t min, kabar_error *err)
{
    it->kind = MPR_UINT;
    it->u = v;
    if (r->canonical && v < min)
        return not_canonical(it->offset, "integer not in its smallest encoding", err);
    return KABAR_OK;
}

static int int_item(mpr *r, mpr_item *it, int64_t v, int64_t max, kabar_error *err)
{
    if (v >= 0) {
        it->kind = MPR_UINT;
        it->u = (uint64_t)v;
        if (r->canonical)
            return not_canonical(it->offset, "non-negative integer in a signed encoding", err);
        return KABAR_OK;
    }
    it->kind = MPR_INT;
    it->i = v;
    if (r->canonical && v > max)
        return not_canonical(it->offset, "integer not in its smallest encoding", err);
    return KABAR_OK;
}

static int float_item(mpr *r, mpr_item *it, double f, bool is32, kabar_error *err)
{
    it->kind = MPR_FLOAT;
    it->f = f;
    if (!r->canonical)
        return KABAR_OK;
    if (is32)
        return not_canonical(it->offset, "float32 (kabar writes floats as float64)", err);
    if (!isfinite(f))
        return not_canonical(it->offset, "NaN or infinite float", err);
    if (f == trunc(f) && f >= -9223372036854775808.0 && f < 9223372036854775808.0)
        return not_canonical(it->offset, "integral float (write it as an integer)", err);
    return KABAR_OK;
}

/* Bytes of the fixed-size part after a header byte in 0xc4..0xdf. */
static const uint8_t extra_len[32] = {
    1, 2, 4,       /* bin8/16/32 */
    2, 3, 5,       /* ext8/16/32: length + type */
    4, 8,          /* float32/64 */
    1, 2, 4, 8,    /* uint8..64 */
    1, 2, 4, 8,    /* int8..64 */
    0, 0, 0, 0, 0, /* fixext: type read with the payload */
    1, 2, 4,       /* str8/16/32 */
    2, 4, 2, 4,    /* array16/32, map16/32 */
    0, 0, 0, 0,    /* unused */
};

int mpr_next(mpr *r, mpr_item *it, kabar_error *err)
{
    memset(it, 0, sizeof *it);
    it->offset = mpr_offset(r);
    if (r->p >= r->end)
        return truncated(it->offset, err);
    uint8_t c = *r->p++;
    if (c <= 0x7f)
        return uint_item(r, it, c, 0, err);
    if (c >= 0xe0) {
        it->kind = MPR_INT;
        it->i = (int8_t)c;
        return KABAR_OK;
    }
    if (c <= 0x8f)
        return container(r, it, MPR_MAP, c & 0x0f, err);
    if (c <= 0x9f)
        return container(r, it, MPR_ARRAY, c & 0x0f, err);
    if (c <= 0xbf) {
        it->kind = MPR_STR;
        return payload(r, it, c & 0x1f, err);
    }
    switch (c) {
    case 0xc0:
        it->kind = MPR_NIL;
        return KABAR_OK;
    case 0xc1:
        return kabar_error_set(err, KABAR_MALFORMED, "reserved byte 0xc1 at offset %zu",
                               it->offset);
    case 0xc2:
    case 0xc3:
        it->kind = MPR_BOOL;
        it->b = c == 0xc3;
        return KABAR_OK;
    }
    size_t n = extra_len[c - 0xc4];
    if (mpr_left(r) < n)
        return truncated(it->offset, err);
    const uint8_t *p = r->p;
    r->p += n;
    uint64_t v = n == 1 ? p[0] : n == 2 ? be16(p) : n == 4 ? be32(p) : n == 8 ? be64(p) : 0;
    switch (c) {
    case 0xc4: /* bin8 has no smaller form */
        it->kind = MPR_BIN;
        return payload(r, it, (uint32_t)v, err);
    case 0xc5:
    case 0xc6:
        it->kind = MPR_BIN;
        if (r->canonical && v < (c == 0xc5 ? 0x100u : 0x10000u))
            return not_canonical(it->offset, "bin header not in its smallest encoding", err);
        return payload(r, it, (uint32_t)v, err);
    case 0xc7:
    case 0xc8:
    case 0xc9: {
        /* ext8/16/32: length then the type byte (already counted in n). */
        uint32_t len = c == 0xc7 ? p[0] : c == 0xc8 ? be16(p) : be32(p);
        r->p -= 1; /* the type byte is read by ext() */
        return ext(r, it, len, c, err);
    }
    case 0xca: {
        uint32_t b = (uint32_t)v;
        float f;
        memcpy(&f, &b, sizeof f);
        return float_item(r, it, f, true, err);
    }
    case 0xcb: {
        double f;
        memcpy(&f, &v, sizeof f);
        return float_item(r, it, f, false, err);
    }
    case 0xcc:
        return uint_item(r, it, v, 0x80, err);
    case 0xcd:
        return uint_item(r, it, v, 0x100, err);
    case 0xce:
        return uint_item(r, it, v, 0x10000, err);
    case 0xcf:
        return uint_item(r, it, v, 0x100000000ULL, err);
    case 0xd0:
        return int_item(r, it, (int8_t)v, -33, err);
    case 0xd1:
        return int_item(r, it, (int16_t)v, -129, err);
    case 0xd2:
        return int_item(r, it, (int32_t)v, -32769, err);
    case 0xd3:
        return int_item(r, it, (int64_t)v, -2147483649LL, err);
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return ext(r, it, 1u << (c - 0xd4), c, err);
    case 0xd9:
    case 0xda:
    case 0xdb:
        it->kind = MPR_STR;
        if (r->canonical && v < (c == 0xd9 ? 32u : c == 0xda ? 0x100u : 0x10000u))
            return not_canonical(it->offset, "str header not in its smallest encoding", err);
        return payload(r, it, (uint32_t)v, err);
    case 0xdc:
    case 0xdd:
        if (r->canonical && v < (c == 0xdc ? 16u : 0x10000u))
            return not_canonical(it->offset, "array header not in its smallest encoding", err);
        return container(r, it, MPR_ARRAY, (uint32_t)v, err);
    default: /* 0xde, 0xdf */
        if (r->canonical && v < (c == 0xde ? 16u : 0x10000u))
            return not_canonical(it->offset, "map header not in its smallest encoding", err);
        return container(r, it, MPR_MAP, (uint32_t)v, err);
    }
}

int mpr_skip(mpr *r, int depth, kabar_error *err)
{
    mpr_item it;
    int rc = mpr_next(r, &it, err);
    if (rc != 0)
        return rc;
    if (it.kind != MPR_ARRAY && it.kind != MPR_MAP)
        return KABAR_OK;
    if (depth <= 0)
        return kabar_error_set(err, KABAR_LIMIT, "nesting too deep at offset %zu", it.offset);
    uint64_t n = it.kind == MPR_MAP ? 2 * (uint64_t)it.count : it.count;
    for (uint64_t i = 0; i < n; i++) {
        if ((rc = mpr_skip(r, depth - 1, err)) != 0)
            return rc;
    }
    return KABAR_OK;
}

int mpr_key_order(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static const char *kind_name(mpr_kind k)
{
    static const char *const names[] = {
        "nil",
        "boolean",
        "unsigned integer",
        "negative integer",
        "float",
        "string",
        "bin",
        "array",
        "map",
        "timestamp",
        "ext",
    };
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

/*
 * MPR_INT accepts any integer that fits int64 (it->i is set either way);
 * every other kind must match exactly.
 */
int mpr_expect(mpr *r, mpr_kind kind, mpr_item *it, const char *what, kabar_error *err)
{
    int rc = mpr_next(r, it, err);
    if (rc != 0)
        return rc;
    if (it->kind == kind)
        return KABAR_OK;
    if (kind == MPR_INT && it->kind == MPR_UINT && it->u <= INT64_MAX) {
        it->i = (int64_t)it->u;
        return KABAR_OK;
    }
    return kabar_error_set(err, KABAR_WRONG_TYPE, "%s: expected %s, found %s", what,
                           kind_name(kind), kind_name(it->kind));
}
