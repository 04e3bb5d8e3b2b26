/*
 * audit_export.h - verifiable exports: `kabar replay --with-proof` writes
 * one, `kabar audit check-export` checks one with no access to the log.
 *
 * An export proves, under one signed checkpoint, that its records are the
 * log's seqs [lo, hi] exactly (a range proof to the checkpoint's root) and
 * that the filter applied to them selects exactly the events marked
 * "match": so nothing matching in the covered range was left out. The
 * covered range [first, last] is what the filter's seq bounds and period
 * select inside the checkpoint's tree; when a period cuts it, the record
 * just outside each end is included too (lo = first-1, hi = last+1) and
 * proves the cut by its received_at (the log's clock never goes back).
 * Every record of the range is carried whole, matching or not: a leaf hash
 * alone could hide a matching event. docs/AUDIT.md gives the JSON.
 *
 * What an export cannot prove by itself: whose key signed a batch. The
 * batch signature (key, sig, batch size, path) is not a Merkle leaf, so the
 * exporter can replace it with a one-event batch signed by a key of their
 * own, and the "agency", "valid_from" and "revoked_at" the export writes
 * beside the key are the exporter's word. The checker therefore takes the
 * key -> agency mapping and the keys' validity from the auditor
 * (audit_registry.h); without one it checks the signatures' mathematics
 * only and says that the signers' agencies were not verified.
 */
#ifndef KABAR_AUDIT_EXPORT_H
#define KABAR_AUDIT_EXPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "audit_registry.h"
#include "audit_source.h"

typedef struct audit_export_opts {
    const char *type_prefix, *source, *target; /* NULL or "": any */
    uint64_t from, to;                         /* seq bounds, 0: none */
    bool has_since, has_until;
    int64_t since, until; /* received_at period, [since, until) */
    bool fresh;           /* online: a new checkpoint when the head is past the latest */
} audit_export_opts;

/* Write the export document to out. */
int audit_export_write(audit_source *s, const audit_export_opts *o, FILE *out, kabar_error *err);

typedef struct audit_export_summary {
    uint64_t size;        /* the checkpoint's */
    uint64_t first, last; /* covered range */
    uint64_t records, matching, unsigned_matching;
    uint64_t signatures; /* verified: the math, and key -> source, valid, per the registry */
    uint64_t signatures_unverified; /* the math holds, but no registry said whose key it is */
    uint64_t problems;
} audit_export_summary;

/*
 * Check an export document. log_key: as for audit_log_key_load. reg: the
 * auditor's registry, NULL when none was given: each matching signed event
 * whose batch signature holds then gets the line "seq N: signature valid
 * by key K, agency NOT VERIFIED (no --registry)" (not a problem; counted in
 * sum->signatures_unverified). Problems are printed to out, one per line
 * ("seq N: WHAT" or "export: WHAT"); 0 when the check ran (sum->problems
 * says whether it passed), else why not.
 */
int audit_export_check(const char *text, size_t len, const char *log_key, const audit_registry *reg,
                       FILE *out, audit_export_summary *sum, kabar_error *err);

#endif
