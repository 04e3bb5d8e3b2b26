/*
 * bench_broker.c - the kabard that `kabar bench` measures when no --broker
 * is given (contract in bench.h): started from the binary beside this one
 * (or $KABAR_KABARD) on a fresh log in a temporary directory on disk
 * ($TMPDIR, else /var/tmp), listening on a loopback wildcard port whose
 * endpoint it writes to DATA/kabard.endpoint; stopped with SIGTERM (SIGKILL
 * after 10 s) and its directory removed. Unless plaintext, the bench's
 * principals are registered in the log before kabard first opens it, and
 * the broker.pub that kabard creates is read to pin the broker.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "kabar.h"
#include "kkey.h"

static int kabard_path(char out[PATH_MAX], size_t cap, kabar_error *err)
{
    const char *env = getenv("KABAR_KABARD");
    if (env != NULL && *env != '\0') {
        snprintf(out, cap, "%s", env);
    } else {
        char self[PATH_MAX - 16];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0)
            return kabar_error_set(err, KABAR_IO,
                                   "cannot read /proc/self/exe: %s (set KABAR_KABARD)",
                                   strerror(errno));
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL)
            *slash = '\0';
        snprintf(out, cap, "%s/kabard", self);
    }
    if (access(out, X_OK) != 0)
        return kabar_error_set(err, KABAR_NOT_FOUND,
                               "cannot run kabard at %s: %s (build it beside kabar, set "
                               "KABAR_KABARD, or pass --broker EP)",
                               out, strerror(errno));
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Print the end of kabard's log to stderr, for a failure's context. */
static void print_log_tail(const bench_broker *b)
{
    FILE *f = fopen(b->log, "r");
    if (f == NULL)
        return;
    char buf[2048];
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)sizeof buf - 1)
        fseek(f, -(long)(sizeof buf - 1), SEEK_END);
    else
        fseek(f, 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (n > 0)
        fprintf(stderr, "kabar bench: end of kabard's log:\n%s", buf);
}

void bench_broker_stop(bench_broker *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        int status = 0;
        int64_t deadline = mono_ns() + 10 * 1000000000LL;
        while (waitpid(b->pid, &status, WNOHANG) == 0) {
            if (mono_ns() > deadline) {
                fprintf(stderr,
                        "kabar bench: kabard (pid %d) ignored SIGTERM for 10 s; killing it\n",
                        (int)b->pid);
                kill(b->pid, SIGKILL);
                waitpid(b->pid, &status, 0);
                break;
            }
            usleep(10000);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "kabar bench: warning: kabard did not stop cleanly (status 0x%x)\n",
                    status);
            print_log_tail(b);
        }
        b->pid = 0;
    }
    if (b->dir[0] != '\0') {
        nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        b->dir[0] = '\0';
    }
}

static int read_endpoint(bench_broker *b)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/kabard.endpoint", b->data);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(b->endpoint, 1, sizeof b->endpoint - 1, f);
    fclose(f);
    while (n > 0 && (b->endpoint[n - 1] == '\n' || b->endpoint[n - 1] == '\r'))
        n--;
    b->endpoint[n] = '\0';
    return n > 0 ? 0 : -1;
}

static void exec_kabard(const char *exe, const bench_broker *b, bool nosync, bool plaintext)
{
    int fd = open(b->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
    }
    char *args[8] = {(char *)"kabard", (char *)"--data", (char *)b->data, (char *)"--listen",
                     (char *)"tcp://127.0.0.1:*"};
    int n = 5;
    if (plaintext)
        args[n++] = (char *)"--insecure";
    if (nosync)
        args[n++] = (char *)"--unsafe-nosync";
    args[n] = NULL;
    execv(exe, args);
    fprintf(stderr, "kabar bench: cannot run %s: %s\n", exe, strerror(errno));
    _exit(127);
}

int bench_broker_start(bench_broker *b, bool nosync, bool plaintext, bench_principal *p, size_t np,
                       uint8_t server_pk[32], kabar_error *err)
{
    char exe[PATH_MAX];
    int rc = kabard_path(exe, sizeof exe, err);
    if (rc != 0)
        return rc;
    const char *tmp = getenv("TMPDIR");
    snprintf(b->dir, sizeof b->dir, "%s/kabar-bench-XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/var/tmp");
    if (mkdtemp(b->dir) == NULL) {
        rc = kabar_error_set(err, KABAR_IO,
                             "cannot create a temporary directory %s: %s (set TMPDIR)", b->dir,
                             strerror(errno));
        b->dir[0] = '\0';
        return rc;
    }
    snprintf(b->data, sizeof b->data, "%s/data", b->dir);
    snprintf(b->log, sizeof b->log, "%s/kabard.log", b->dir);
    if (!plaintext && (rc = bench_register(b->data, p, np, err)) != 0)
        return rc;
    fflush(NULL);
    b->pid = fork();
    if (b->pid < 0) {
        b->pid = 0;
        return kabar_error_set(err, KABAR_IO, "cannot start kabard: fork: %s", strerror(errno));
    }
    if (b->pid == 0)
        exec_kabard(exe, b, nosync, plaintext);

    int64_t deadline = mono_ns() + 15 * 1000000000LL;
    while (read_endpoint(b) != 0) {
        int status;
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            b->pid = 0;
            print_log_tail(b);
            return kabar_error_set(err, KABAR_CONNECT,
                                   "kabard (%s) exited with status 0x%x before it was ready", exe,
                                   status);
        }
        if (mono_ns() > deadline || bench_stop) {
            print_log_tail(b);
            return kabar_error_set(err, KABAR_TIMEOUT,
                                   "kabard (%s) did not write %s/kabard.endpoint within 15 s", exe,
                                   b->data);
        }
        usleep(5000);
    }
    if (!plaintext) {
        char pub[PATH_MAX + 16];
        kabar_error e = {0};
        snprintf(pub, sizeof pub, "%s/broker.pub", b->data);
        if (kkey_public_parse(server_pk, pub, &e) != 0)
            return kabar_error_set(err, e.code, "cannot read kabard's public key: %s", e.message);
    }
    return 0;
}
