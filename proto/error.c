/*
 * error.c - kabar's one error list: names, messages and the error setter.
 *
 * The list itself is the KABAR_ERRORS X-macro in kabar.h; this file turns it
 * into the two tables (stable NAME, human message) and fills kabar_error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kabar.h"

static const char *const err_names[] = {
#define X_(name, msg) #name,
    KABAR_ERRORS(X_)
#undef X_
};

static const char *const err_msgs[] = {
#define X_(name, msg) msg,
    KABAR_ERRORS(X_)
#undef X_
};

const char *kabar_strerror(int code)
{
    if (code < 0 || code >= KABAR_ERR_COUNT_)
        return "unknown error";
    return err_msgs[code];
}

const char *kabar_errname(int code)
{
    if (code < 0 || code >= KABAR_ERR_COUNT_)
        return "UNKNOWN";
    return err_names[code];
}

int kabar_errcode(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < KABAR_ERR_COUNT_; i++) {
        if (strcmp(err_names[i], name) == 0)
            return i;
    }
    return -1;
}

int kabar_error_set(kabar_error *e, int code, const char *fmt, ...)
{
    if (e == NULL)
        return code;
    e->code = code;
    if (fmt == NULL || fmt[0] == '\0') {
        snprintf(e->message, sizeof e->message, "%s", kabar_strerror(code));
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(e->message, sizeof e->message, "%s", kabar_strerror(code));
    return code;
}
