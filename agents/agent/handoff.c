/*
 * handoff.c - exec and JSON-lines hand-off (see handoff.h).
 *
 * Design notes. The agent is multi-threaded, so the child of fork() may
 * only call async-signal-safe functions before execve: everything it needs
 * (argv, the environment with the KABAR_* variables) is built before the
 * fork. The child gets its own process group, so that a timeout kills the
 * command and whatever it started. stdin is written without blocking while
 * watching the child, so a command that does not read its input (or exits
 * early) never hangs the agent.
 */
#define _GNU_SOURCE /* pipe2 */
#include "handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct handoff {
    handoff_opts o;
    int fd; /* jsonl file, -1 for exec */
    bool dirty;
    kabar_buf line;
};

int handoff_open(handoff **out, const handoff_opts *o, kabar_error *err)
{
    handoff *h = calloc(1, sizeof *h);
    if (h == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    h->o = *o;
    if (h->o.exec_timeout_ms <= 0)
        h->o.exec_timeout_ms = 60000;
    h->fd = -1;
    if (o->jsonl_path != NULL) {
        h->fd = open(o->jsonl_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (h->fd < 0) {
            int code = kabar_error_set(err, KABAR_IO, "cannot open %s for appending: %s",
                                       o->jsonl_path, strerror(errno));
            free(h);
            return code;
        }
    }
    *out = h;
    return 0;
}

void handoff_close(handoff **ph)
{
    if (ph == NULL || *ph == NULL)
        return;
    if ((*ph)->fd >= 0)
        close((*ph)->fd);
    kabar_buf_free(&(*ph)->line);
    free(*ph);
    *ph = NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The environment for the child: ours without KABAR_<var>, plus `add`. */
static char **child_env(char **add, int nadd)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = calloc(n + (size_t)nadd + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (int j = 0; j < nadd; j++) {
            size_t nl = (size_t)(strchr(add[j], '=') - add[j]) + 1;
            if (strncmp(environ[i], add[j], nl) == 0)
                replaced = true;
        }
        if (!replaced)
            env[k++] = environ[i];
    }
    for (int j = 0; j < nadd; j++)
        env[k++] = add[j];
    env[k] = NULL;
    return env;
}

/* Write the line to the child's stdin while it runs; then close it. */
static void feed(int fd, const char *p, size_t n, pid_t pid, int64_t deadline)
{
    while (n > 0 && mono_ms() < deadline) {
        struct pollfd pf = {fd, POLLOUT, 0};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        if (pf.revents & (POLLERR | POLLHUP))
            break;
        ssize_t w = write(fd, p, n);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0)
            break; /* EPIPE: the command did not read its input; its exit status decides */
        p += w;
        n -= (size_t)w;
    }
    (void)pid;
    close(fd);
}

/* Wait for the child until the deadline; kill its group after. */
static int reap(handoff *h, pid_t pid, int64_t deadline, kabar_error *err)
{
    int status = 0;
    bool killed = false;
    int timeout_ms = h->o.exec_timeout_ms;
    int64_t next_tick = mono_ms() + 1000;
    for (;;) {
        if (h->o.tick != NULL && mono_ms() >= next_tick) {
            h->o.tick(h->o.tick_arg);
            next_tick = mono_ms() + 1000;
        }
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            return kabar_error_set(err, KABAR_IO, "waiting for the handler: %s", strerror(errno));
        if (!killed && mono_ms() >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            killed = true;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (killed)
        return kabar_error_set(err, KABAR_TIMEOUT, "handler killed after the %d ms timeout",
                               timeout_ms);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        return kabar_error_set(err, KABAR_IO, "handler exited with status %d%s",
                               WEXITSTATUS(status),
                               WEXITSTATUS(status) == 127 ? " (command not found?)" : "");
    return kabar_error_set(err, KABAR_IO, "handler killed by signal %d", WTERMSIG(status));
}

static int run_exec(handoff *h, const kabar_event *ev, uint64_t seq, uint32_t attempt,
                    kabar_error *err)
{
    char vseq[40], vtype[16 + KABAR_MAX_TYPE_LEN], vid[16 + KABAR_MAX_ID_LEN];
    char vsrc[24 + KABAR_MAX_AGENCY_LEN], vag[24 + KABAR_MAX_AGENCY_LEN], vtry[32];
    snprintf(vseq, sizeof vseq, "KABAR_SEQ=%llu", (unsigned long long)seq);
    snprintf(vtype, sizeof vtype, "KABAR_TYPE=%.*s", (int)ev->type.len, ev->type.ptr);
    snprintf(vid, sizeof vid, "KABAR_ID=%.*s", (int)ev->id.len, ev->id.ptr);
    snprintf(vsrc, sizeof vsrc, "KABAR_SOURCE=%.*s", (int)ev->source.len, ev->source.ptr);
    snprintf(vag, sizeof vag, "KABAR_AGENCY=%s", h->o.agency);
    snprintf(vtry, sizeof vtry, "KABAR_TRY=%u", attempt);
    char *add[] = {vseq, vtype, vid, vsrc, vag, vtry};
    char **env = child_env(add, 6);
    char *argv[] = {"sh", "-c", (char *)h->o.exec_cmd, NULL};
    int fds[2];
    if (env == NULL || pipe2(fds, O_CLOEXEC) != 0) {
        free(env);
        return kabar_error_set(err, KABAR_IO, "cannot start the handler: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: async-signal-safe calls only. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        setpgid(0, 0);
        dup2(fds[0], 0);
        execve("/bin/sh", argv, env);
        _exit(127);
    }
    free(env);
    close(fds[0]);
    if (pid < 0) {
        close(fds[1]);
        return kabar_error_set(err, KABAR_IO, "cannot start the handler: %s", strerror(errno));
    }
    setpgid(pid, pid); /* also from here: no race with kill(-pid) */
    int64_t deadline = mono_ms() + h->o.exec_timeout_ms;
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    feed(fds[1], h->line.data, h->line.len, pid, deadline);
    return reap(h, pid, deadline, err);
}

int handoff_try(handoff *h, uint64_t seq, int64_t received_at, const uint8_t *event, size_t len,
                uint32_t attempt, kabar_error *err)
{
    kabar_event ev;
    int rc = kabar_event_decode(NULL, event, len, &ev, err);
    if (rc != 0)
        return rc;
    h->line.len = 0;
    rc = kabar_event_to_json(&h->line, seq, received_at, event, len, err);
    if (rc == 0)
        rc = kabar_buf_append(&h->line, "\n", 1);
    if (rc != 0)
        return err && err->code ? err->code : kabar_error_set(err, rc, "cannot format the event");
    if (h->fd < 0)
        return run_exec(h, &ev, seq, attempt, err);
    off_t end = lseek(h->fd, 0, SEEK_END);
    if (write_all(h->fd, h->line.data, h->line.len) != 0) {
        int e = errno;
        if (end >= 0 && ftruncate(h->fd, end) != 0) {
            /* The partial line stays; the next try appends a whole one after it. */
        }
        return kabar_error_set(err, KABAR_IO, "cannot append to %s: %s", h->o.jsonl_path,
                               strerror(e));
    }
    h->dirty = true;
    return 0;
}

void handoff_set_tick(handoff *h, void (*tick)(void *arg), void *arg)
{
    h->o.tick = tick;
    h->o.tick_arg = arg;
}

int handoff_sync(handoff *h, kabar_error *err)
{
    if (h->fd < 0 || !h->dirty)
        return 0;
    if (fsync(h->fd) != 0)
        return kabar_error_set(err, KABAR_IO, "cannot sync %s: %s", h->o.jsonl_path,
                               strerror(errno));
    h->dirty = false;
    return 0;
}
