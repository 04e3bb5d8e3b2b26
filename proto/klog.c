/*
 * klog.c - the log lines of kabar's daemons (see klog.h for the format and the rules).
 */
#include "klog.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_name = "kabar";
static int log_fd = 2;
static klog_level log_min = KLOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void klog_init(const char *name, int fd, klog_level min)
{
    log_name = name;
    log_fd = fd;
    log_min = min;
}

bool klog_enabled(klog_level level)
{
    return level >= log_min;
}

const char *klog_level_name(klog_level level)
{
    if (level < KLOG_DEBUG || level > KLOG_ERROR)
        return "?";
    return level_names[level];
}

int klog_level_parse(const char *s)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (s != NULL && strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Line prefix "2026-11-25T07:40:00.123Z kabard INFO CODE "; returns its length. */
static int prefix(char *out, size_t cap, int64_t now_ns, klog_level level, const char *code)
{
    time_t sec = (time_t)(now_ns / 1000000000);
    int ms = (int)((now_ns % 1000000000) / 1000000);
    if (ms < 0) {
        ms += 1000;
        sec -= 1;
    }
    struct tm tm;
    gmtime_r(&sec, &tm);
    int n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s %s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms, log_name,
                     klog_level_name(level), code);
    return n < 0 ? 0 : (n >= (int)cap ? (int)cap - 1 : n);
}

static int vformat(char *out, int64_t now_ns, klog_level level, const char *code, const char *fmt,
                   va_list ap)
{
    const size_t cap = KLOG_LINE_MAX;
    int n = prefix(out, cap, now_ns, level, code);
    int m = vsnprintf(out + n, cap - (size_t)n, fmt, ap);
    if (m < 0)
        m = 0;
    if ((size_t)n + (size_t)m >= cap - 1) {
        /* Cut: keep room for "...\n" and the NUL. */
        n = (int)cap - 5;
        memcpy(out + n, "...", 3);
        n += 3;
    } else {
        n += m;
    }
    /* One line per entry: a newline inside the text would forge a line. */
    for (int i = 0; i < n; i++)
        if (out[i] == '\n' || out[i] == '\r')
            out[i] = ' ';
    out[n++] = '\n';
    out[n] = '\0';
    return n;
}

int klog_format(char *out, int64_t now_ns, klog_level level, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vformat(out, now_ns, level, code, fmt, ap);
    va_end(ap);
    return n;
}

static void vlog(klog_level level, const char *code, const char *fmt, va_list ap)
{
    char line[KLOG_LINE_MAX];
    int n = vformat(line, wall_ns(), level, code, fmt, ap);
    /* Best effort: a log that cannot be written must not stop the broker. */
    ssize_t w = write(log_fd, line, (size_t)n);
    (void)w;
}

void klog(klog_level level, const char *code, const char *fmt, ...)
{
    if (!klog_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, code, fmt, ap);
    va_end(ap);
}

bool klog_limited(klog_limit *l, int64_t now_ms, klog_level level, const char *code,
                  const char *fmt, ...)
{
    if (!klog_enabled(level))
        return false;
    if (now_ms - l->window_ms >= 1000) {
        klog_limit_flush(l, now_ms);
        l->window_ms = now_ms;
        l->lines = 0;
    }
    if (l->lines >= KLOG_BURST) {
        l->suppressed++;
        l->level = level;
        l->code = code;
        return false;
    }
    l->lines++;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, code, fmt, ap);
    va_end(ap);
    return true;
}

void klog_limit_flush(klog_limit *l, int64_t now_ms)
{
    if (l->suppressed == 0 || now_ms - l->window_ms < 1000)
        return;
    klog(l->level, l->code, "%llu more lines like this suppressed in the last %lld s",
         (unsigned long long)l->suppressed, (long long)((now_ms - l->window_ms + 999) / 1000));
    l->suppressed = 0;
    l->lines = 0;
    l->window_ms = now_ms;
}
