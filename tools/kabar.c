/*
 * kabar.c - the `kabar` command: global options and subcommand dispatch.
 *
 * Each subcommand lives in its own file (tools/cmd_NAME.c) and is listed
 * once in `commands` below, which is also what `kabar --help` prints.
 * Documentation: docs/CLI.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_cmd.h"
#include "cli.h"
#include "cmd_agent.h"
#include "cmd_oversight.h"

int cmd_keygen(int argc, char **argv); /* tools/cmd_keygen.c */

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"publish", cmd_publish, "publish JSON Lines events and print one result per line"},
    {"tail", cmd_tail, "follow events as they are committed (like tail -f)"},
    {"replay", cmd_replay, "print a range or period of the log, online or from a data dir"},
    {"status", cmd_status, "show the log's head, size and consumers"},
    {"bench", cmd_bench, "measure publish and replay throughput against a broker"},
    {"agent", cmd_agent, "show a kabar-agent's outbox, inbox and dead letters"},
    {"oversight", cmd_oversight, "the secretariat's report: visits, findings, innovations"},
    {"audit", cmd_audit, "prove the log was not changed: verify, checkpoints, proofs, report"},
    {"agency", cmd_agency, "the agency registry: add, list, show, revoke-key, rotate-key"},
    {"keygen", cmd_keygen, "make an identity key (secret key file and its public key)"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: kabar [--schema FILE] [--key FILE] [--server-key KEY|FILE] COMMAND [OPTIONS]\n"
            "             [ARGS]\n"
            "       kabar help COMMAND | kabar --help | kabar --version\n"
            "\n"
            "kabar talks to a kabar broker (kabard): a durable event bus for the agencies\n"
            "of a regional government.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n"
               "Global options:\n"
               "  --schema FILE  use this schema registry instead of the built-in one\n"
               "                 (same as env KABAR_SCHEMA)\n"
               "  --key FILE     your secret key file (kabar keygen): the broker admits and\n"
               "                 authorises you by it, and what you publish is signed with it\n"
               "                 (same as env KABAR_KEY; none: plaintext, for kabard --insecure)\n"
               "  --server-key KEY|FILE\n"
               "                 the broker's public key (ed25519:..., or a file such as the\n"
               "                 broker's DATA/broker.pub) (same as env KABAR_SERVER_KEY)\n"
               "  -h, --help     show this help\n"
               "  -V, --version  show the version\n"
               "\n"
               "Environment:\n"
               "  KABAR_BROKER   broker endpoint when --broker is not given\n"
               "                 (default " KABAR_DEFAULT_ENDPOINT ")\n"
               "  KABAR_SCHEMA   schema registry file\n"
               "  KABAR_KEY      secret key file when --key is not given\n"
               "  KABAR_SERVER_KEY  the broker's public key when --server-key is not given\n"
               "\n"
               "Exit codes: 0 ok, 1 some event was rejected or a check failed,\n"
               "2 bad usage or cannot run. 'kabar help COMMAND' shows a command's options.\n");
}

static const command *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int unknown(const char *name)
{
    fprintf(stderr, "kabar: '%s' is not a kabar command. See 'kabar --help'.\n", name);
    return CLI_USAGE;
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return CLI_OK;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("kabar %s (protocol %d)\n", kabar_version(), KABAR_PROTOCOL_VERSION);
            return CLI_OK;
        } else if (strcmp(a, "--schema") == 0 && i + 1 < argc) {
            setenv("KABAR_SCHEMA", argv[++i], 1);
        } else if (strncmp(a, "--schema=", 9) == 0) {
            setenv("KABAR_SCHEMA", a + 9, 1);
        } else if (strcmp(a, "--key") == 0 && i + 1 < argc) {
            cli_set_key(argv[++i]);
        } else if (strncmp(a, "--key=", 6) == 0) {
            cli_set_key(a + 6);
        } else if (strcmp(a, "--server-key") == 0 && i + 1 < argc) {
            cli_set_server_key(argv[++i]);
        } else if (strncmp(a, "--server-key=", 13) == 0) {
            cli_set_server_key(a + 13);
        } else {
            fprintf(stderr, "kabar: unknown option '%s'. See 'kabar --help'.\n", a);
            return CLI_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[i], "help") == 0) {
        if (i + 1 >= argc) {
            usage(stdout);
            return CLI_OK;
        }
        const command *c = find(argv[i + 1]);
        if (c == NULL)
            return unknown(argv[i + 1]);
        char *help_argv[] = {(char *)c->name, "--help", NULL};
        return c->fn(2, help_argv);
    }
    const command *c = find(argv[i]);
    if (c == NULL)
        return unknown(argv[i]);
    return c->fn(argc - i, argv + i);
}
