/*
 * odate.h - calendar days and the region's zone, for the oversight agent.
 *
 * Oversight counts in the region's days: a finding is overdue when its due
 * date is before *today in the region*, a review resolves a finding on the
 * day its occurred_at falls on *in the region*. A day is an int32 count of
 * days since 1970-01-01 (proleptic Gregorian), so that "days between" is a
 * subtraction. A zone is a fixed offset from UTC in seconds: Indonesia has
 * no daylight saving time, so WIB is +07:00 all year.
 */
#ifndef KABAR_ODATE_H
#define KABAR_ODATE_H

#include <stdbool.h>
#include <stdint.h>

#include "kabar.h"

#define ODATE_NONE   INT32_MIN /* no day: an absent date, an open bound */
#define ODATE_MAX    11        /* "YYYY-MM-DD" + NUL */
#define ODATE_TZ_MAX 7         /* "+07:00" + NUL */
#define ODATE_WIB    (7 * 3600)

/* Day number of a civil date (any y, 1 <= m <= 12, 1 <= d <= 31). */
int32_t odate_from_civil(int y, int m, int d);

/* "YYYY-MM-DD" (exactly, a real calendar date) -> day. false otherwise. */
bool odate_parse(const char *s, size_t len, int32_t *day);

/* day -> "YYYY-MM-DD" in out (ODATE_MAX bytes). */
void odate_format(int32_t day, char *out);

/* The day an instant (ns UTC) falls on in the zone `tz_s` (seconds east of UTC). */
int32_t odate_of_instant(int64_t ns, int tz_s);

/* The instant 00:00 of `day` in the zone. */
int64_t odate_midnight(int32_t day, int tz_s);

/*
 * A zone: "+07:00" / "-03:30" (numeric, up to +-14:00), or the Indonesian
 * names "WIB" (+07:00), "WITA" (+08:00), "WIT" (+09:00). false otherwise.
 */
bool odate_tz_parse(const char *s, int *tz_s);

/* tz -> "+07:00" in out (ODATE_TZ_MAX bytes). */
void odate_tz_format(int tz_s, char *out);

/*
 * A TIME option: an RFC 3339 instant, or a date YYYY-MM-DD meaning 00:00
 * of that day in the zone tz_s. 0 or KABAR_BAD_VALUE with a message.
 */
int odate_parse_time(const char *s, int tz_s, int64_t *ns, kabar_error *err);

#endif /* KABAR_ODATE_H */
