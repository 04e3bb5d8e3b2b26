/*
 * util.c - small shared pieces of libkabar: the growable buffer, the clock,
 * RFC 3339 instants and event ids.
 *
 * Design notes on time: kabar keeps instants as int64 nanoseconds since the
 * Unix epoch, UTC, which covers 1677-09-21 to 2262-04-11. Parsing converts a
 * civil date to days with the proleptic Gregorian calendar (the algorithm of
 * Howard Hinnant's "chrono-compatible low-level date algorithms"), so no
 * libc time-zone state (TZ, localtime) is ever consulted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "kabar.h"

/* ------------------------------------------------------------------------ */
/* Buffer                                                                   */

/*
 * Appends n bytes. The buffer is always kept NUL-terminated after its data
 * (data[len] == 0) so that a JSON or text result can be used as a C string.
 */
int kabar_buf_append(kabar_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2)
                return KABAR_NO_MEMORY;
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return KABAR_NO_MEMORY;
        b->data = d;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KABAR_OK;
}

void kabar_buf_free(kabar_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* Time                                                                     */

int64_t kabar_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12, d 1..31). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dim[m - 1];
}

/* Reads exactly n decimal digits at s; -1 when any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

#define TIME_EXPECTED "expected RFC 3339 like 2023-05-02T08:30:00+07:00"

int kabar_time_parse(const char *s, size_t len, int64_t *ns, kabar_error *err)
{
    /* YYYY-MM-DDTHH:MM:SS is 19 characters; a zone adds at least 1. */
    if (s == NULL || len < 20 || len > KABAR_TIME_MAX)
        return kabar_error_set(err, KABAR_BAD_VALUE, "not a valid instant (%s)", TIME_EXPECTED);
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int h = digits(s + 11, 2), mi = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || sec < 0 || s[4] != '-' || s[7] != '-' ||
        (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
        return kabar_error_set(err, KABAR_BAD_VALUE, "not a valid instant (%s)", TIME_EXPECTED);
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return kabar_error_set(err, KABAR_BAD_VALUE, "%.10s is not a calendar date", s);
    if (h > 23 || mi > 59 || sec > 59)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "time of day out of range (expected 00:00:00 to 23:59:59; leap "
                               "seconds are not supported)");
    size_t i = 19;
    int64_t frac = 0;
    if (i < len && s[i] == '.') {
        i++;
        int nd = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (nd == 9)
                return kabar_error_set(err, KABAR_BAD_VALUE,
                                       "fraction of a second has more than 9 digits");
            frac = frac * 10 + (s[i] - '0');
            nd++;
            i++;
        }
        if (nd == 0)
            return kabar_error_set(err, KABAR_BAD_VALUE, "no digits after the decimal point (%s)",
                                   TIME_EXPECTED);
        for (; nd < 9; nd++)
            frac *= 10;
    }
    int64_t off = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || om < 0 || oh > 23 || om > 59)
            return kabar_error_set(err, KABAR_BAD_VALUE, "bad time-zone offset (expected +HH:MM)");
        off = (int64_t)(oh * 60 + om) * 60;
        if (s[i] == '-')
            off = -off;
        i += 6;
    } else {
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "missing or bad time zone (expected Z or an offset like +07:00)");
    }
    if (i != len)
        return kabar_error_set(err, KABAR_BAD_VALUE, "trailing characters after the instant (%s)",
                               TIME_EXPECTED);
    int64_t secs =
        days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - off;
    /* int64 ns spans 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z. */
    __int128 t = (__int128)secs * 1000000000 + frac;
    if (t < INT64_MIN || t > INT64_MAX)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "instant out of range (kabar supports 1677-09-22 to 2262-04-11)");
    *ns = (int64_t)t;
    return KABAR_OK;
}

size_t kabar_time_format(int64_t ns, char *out)
{
    int64_t secs = ns / 1000000000;
    int64_t frac = ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        secs--;
    }
    int64_t days = secs / 86400;
    int64_t sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    /* Written by hand: this runs for every event that `kabar tail` prints. */
    unsigned v[6] = {(unsigned)y,         m, d, (unsigned)(sod / 3600), (unsigned)(sod / 60 % 60),
                     (unsigned)(sod % 60)};
    char *o = out;
    *o++ = (char)('0' + v[0] / 1000 % 10);
    *o++ = (char)('0' + v[0] / 100 % 10);
    for (int i = 0; i < 6; i++) {
        *o++ = (char)('0' + v[i] / 10 % 10);
        *o++ = (char)('0' + v[i] % 10);
        if (i < 5)
            *o++ = "--T::"[i];
    }
    if (frac != 0) {
        int digits = frac % 1000000 == 0 ? 3 : frac % 1000 == 0 ? 6 : 9;
        int64_t f = digits == 3 ? frac / 1000000 : digits == 6 ? frac / 1000 : frac;
        *o++ = '.';
        for (int i = digits - 1; i >= 0; i--) {
            o[i] = (char)('0' + f % 10);
            f /= 10;
        }
        o += digits;
    }
    size_t n = (size_t)(o - out);
    out[n++] = 'Z';
    out[n] = '\0';
    return (size_t)n;
}

/* ------------------------------------------------------------------------ */
/* Ids                                                                      */

/*
 * UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, version 7, 12 random
 * bits, the variant 10, 62 random bits. Ids sort by creation time to the
 * millisecond, which keeps LMDB indexes keyed by id append-friendly.
 */
void kabar_id_new(char out[37])
{
    static int sodium_ready;
    if (!sodium_ready) {
        /* sodium_init is idempotent; it fails only when no entropy source exists. */
        if (sodium_init() < 0)
            abort();
        sodium_ready = 1;
    }
    uint8_t u[16];
    randombytes_buf(u, sizeof u);
    uint64_t ms = (uint64_t)(kabar_now() / 1000000);
    for (int i = 0; i < 6; i++)
        u[i] = (uint8_t)(ms >> (40 - 8 * i));
    u[6] = (uint8_t)(0x70 | (u[6] & 0x0f));
    u[8] = (uint8_t)(0x80 | (u[8] & 0x3f));
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[u[i] >> 4];
        out[o++] = hex[u[i] & 15];
    }
    out[o] = '\0';
}
