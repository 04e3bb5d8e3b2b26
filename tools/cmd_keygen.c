/*
 * cmd_keygen.c - `kabar keygen`: make a principal's identity key (an
 * agency's, an auditor's, an operator's), or print a key file's public key
 * (docs/CLI.md "keygen"; the formats: proto/kkey.h, proto/PROTOCOL.md
 * "Principals and roles").
 *
 * The public key goes to stdout alone, so that a script can capture it
 * (`pk=$(kabar keygen --out dinkes.key)`); what was written where goes to
 * stderr.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kkey.h"

static const char *const CMD = "keygen";

static void usage(FILE *f)
{
    fprintf(f, "Usage: kabar keygen --out FILE [--force]\n"
               "       kabar keygen --public FILE\n"
               "\n"
               "Make an identity key: one Ed25519 keypair per agency, auditor or operator.\n"
               "It is both the CURVE key that lets you into the broker and the key that signs\n"
               "what you publish. Writes the secret key to FILE (mode 0600: keep it private;\n"
               "whoever holds it speaks for its owner) and the public key to FILE.pub, and\n"
               "prints the public key (ed25519:BASE64) on stdout. Give the public key to the\n"
               "broker's operator, who registers it (kabar agency add).\n"
               "\n"
               "Options:\n"
               "  -o, --out FILE     write the new key to FILE and FILE.pub\n"
               "  -f, --force        replace FILE if it exists (its old key is lost)\n"
               "  -p, --public FILE  print the public key of FILE (a secret key file, a .pub\n"
               "                     file, or the key text itself) and its key id on stderr\n"
               "  -h, --help         show this help\n"
               "\n"
               "Exit codes: 0 ok, 2 bad usage or the file cannot be written or read.\n");
}

static int show_public(const char *what)
{
    uint8_t pk[KKEY_PUBLIC];
    char text[KKEY_TEXT_MAX], id[KKEY_ID_TEXT];
    kabar_error err;
    if (kkey_public_parse(pk, what, &err) != 0)
        return cli_fail(CMD, &err);
    kkey_public_text(pk, text);
    kkey_id_text(pk, id);
    printf("%s\n", text);
    fprintf(stderr, "key id %s\n", id);
    return cli_flush(CMD) == 0 ? CLI_OK : CLI_USAGE;
}

static int make_key(const char *path, bool force)
{
    kkey k;
    char text[KKEY_TEXT_MAX], id[KKEY_ID_TEXT];
    kabar_error err;
    if (kkey_generate(&k, &err) != 0)
        return cli_fail(CMD, &err);
    int rc = kkey_save(&k, path, force, &err);
    kkey_public_text(k.pk, text);
    kkey_id_text(k.pk, id);
    kkey_wipe(&k);
    if (rc != 0)
        return cli_fail(CMD, &err);
    printf("%s\n", text);
    fprintf(stderr,
            "kabar keygen: secret key written to %s (mode 0600: keep it private)\n"
            "kabar keygen: public key written to %s.pub (key id %s)\n",
            path, path, id);
    return cli_flush(CMD) == 0 ? CLI_OK : CLI_USAGE;
}

int cmd_keygen(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        {"public", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL, *pub = NULL;
    bool force = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "o:fp:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'o':
            out = optarg;
            break;
        case 'f':
            force = true;
            break;
        case 'p':
            pub = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            return cli_usage_error(CMD, "unknown option");
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
    if ((out == NULL) == (pub == NULL))
        return cli_usage_error(CMD, "give either --out FILE (a new key) or --public FILE");
    if (pub != NULL) {
        if (force)
            return cli_usage_error(CMD, "--force goes with --out");
        return show_public(pub);
    }
    if (out[0] == '\0')
        return cli_usage_error(CMD, "--out needs a file name");
    return make_key(out, force);
}
