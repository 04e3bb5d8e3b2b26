/*
 * odate.c - calendar days and zones (see odate.h).
 *
 * The civil <-> day conversions are Howard Hinnant's days_from_civil and
 * civil_from_days algorithms: exact for every Gregorian date, no tables.
 */
#include "odate.h"

#include <stdio.h>
#include <string.h>

int32_t odate_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int32_t)(era * 146097 + doe - 719468);
}

static void civil(int32_t z, int *y, int *m, int *d)
{
    z += 719468;
    int era = (z >= 0 ? z : z - 146096) / 146097;
    int doe = z - era * 146097;
    int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

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

bool odate_parse(const char *s, size_t len, int32_t *day)
{
    if (s == NULL || len != 10 || s[4] != '-' || s[7] != '-')
        return false;
    int y = digits(s, 4), m = digits(s + 5, 2), d = digits(s + 8, 2);
    if (y < 0 || m < 1 || m > 12 || d < 1 || d > 31)
        return false;
    int32_t z = odate_from_civil(y, m, d);
    int y2, m2, d2;
    civil(z, &y2, &m2, &d2);
    if (m2 != m || d2 != d) /* 2023-02-30 */
        return false;
    *day = z;
    return true;
}

void odate_format(int32_t day, char *out)
{
    int y, m, d;
    civil(day, &y, &m, &d);
    snprintf(out, ODATE_MAX, "%04u-%02u-%02u", (unsigned)y % 10000u, (unsigned)m % 100u,
             (unsigned)d % 100u);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int32_t odate_of_instant(int64_t ns, int tz_s)
{
    int64_t s = floor_div(ns, 1000000000) + tz_s;
    return (int32_t)floor_div(s, 86400);
}

int64_t odate_midnight(int32_t day, int tz_s)
{
    return ((int64_t)day * 86400 - tz_s) * 1000000000;
}

bool odate_tz_parse(const char *s, int *tz_s)
{
    static const struct {
        const char *name;
        int off;
    } names[] = {{"WIB", 7 * 3600}, {"WITA", 8 * 3600}, {"WIT", 9 * 3600}, {"Z", 0}, {"UTC", 0}};
    if (s == NULL)
        return false;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *tz_s = names[i].off;
            return true;
        }
    if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':')
        return false;
    int h = digits(s + 1, 2), m = digits(s + 4, 2);
    if (h < 0 || m < 0 || h > 14 || m > 59 || (h == 14 && m > 0))
        return false;
    *tz_s = (s[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
    return true;
}

void odate_tz_format(int tz_s, char *out)
{
    int a = tz_s < 0 ? -tz_s : tz_s;
    snprintf(out, ODATE_TZ_MAX, "%c%02d:%02d", tz_s < 0 ? '-' : '+', (a / 3600) % 100,
             a % 3600 / 60);
}

int odate_parse_time(const char *s, int tz_s, int64_t *ns, kabar_error *err)
{
    int32_t day;
    if (s != NULL && odate_parse(s, strlen(s), &day)) {
        *ns = odate_midnight(day, tz_s);
        return 0;
    }
    kabar_error e = {0};
    if (s != NULL && kabar_time_parse(s, strlen(s), ns, &e) == 0)
        return 0;
    return kabar_error_set(err, KABAR_BAD_VALUE,
                           "\"%s\" is neither a date (YYYY-MM-DD) nor an RFC 3339 instant "
                           "(2023-09-01T08:00:00+07:00)",
                           s ? s : "");
}
