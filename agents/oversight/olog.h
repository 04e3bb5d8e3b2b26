/*
 * olog.h - kabar-oversight's log: one line per happening, on stderr.
 *
 * The shape of kabard's and kabar-agent's logs, so one grep covers all:
 *
 *     2026-11-25T07:40:00.123Z kabar-oversight INFO KABAR-OVERSIGHT-OVERDUE ...
 *
 * Codes are stable and listed in docs/OVERSIGHT.md. Each line is one
 * write(2).
 */
#ifndef KABAR_OLOG_H
#define KABAR_OLOG_H

typedef enum olog_level {
    OLOG_DEBUG = 0,
    OLOG_INFO,
    OLOG_WARN,
    OLOG_ERROR,
} olog_level;

/* Log lines of `min` and above (default OLOG_INFO). */
void olog_init(olog_level min);
/* "debug", "info", "warn", "error" -> level; -1 for anything else. */
int olog_level_parse(const char *s);

void olog(olog_level level, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* KABAR_OLOG_H */
