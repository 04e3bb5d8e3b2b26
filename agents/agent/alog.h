/*
 * alog.h - kabar-agent's log: one line per happening, on stderr.
 *
 * The same shape as kabard's log, so that one grep covers both:
 *
 *     2026-11-25T07:40:00.123Z kabar-agent WARN KABAR-AGENT-BROKER-DOWN no broker ...
 *     ^ UTC, milliseconds       ^name       ^level ^stable code          ^text
 *
 * Codes are stable and listed in docs/AGENT.md. A line is written with one
 * write(2), so lines from the agent's threads never interleave. alog_init
 * is called once, before the threads start.
 */
#ifndef KABAR_AGENT_ALOG_H
#define KABAR_AGENT_ALOG_H

typedef enum alog_level {
    ALOG_DEBUG = 0,
    ALOG_INFO,
    ALOG_WARN,
    ALOG_ERROR,
} alog_level;

#define ALOG_LINE_MAX 1024

/* Log lines of `min` and above (default ALOG_INFO) to stderr. */
void alog_init(alog_level min);
/* "debug", "info", "warn", "error" -> level; -1 for anything else. */
int alog_level_parse(const char *s);

void alog(alog_level level, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* KABAR_AGENT_ALOG_H */
