/*
 * audit_report.h - `kabar audit report`: the oversight report's figures
 * computed from the log itself, for auditors.
 *
 *   kabar audit report (--data DIR | --broker EP) [--since DATE] [--until DATE]
 *                      [--agency ID] [--format text|csv|json|html] [--out FILE]
 *                      [--now TIME] [--tz ZONE] [--timeout MS]
 *
 * The auditor does not depend on the secretariat's kabar-oversight agent:
 * every event of the log is applied, with the agent's own apply code
 * (agents/oversight/oapply.h), into a fresh oversight state in a temporary
 * directory, and the report (agents/oversight/report.h, with charts) is
 * built from it, so its figures are the agent's by construction. The log
 * is read offline from kabard's data directory (read-only, safe while
 * kabard runs) or online through the broker with a bounded subscription
 * from the first event to the head (auditor role; --key/--server-key as
 * for every command). HTML is one self-contained file (tools/audit_html.h).
 * Documented in docs/OVERSIGHT.md "The auditor's report".
 *
 * Exit codes: 0 written; 2 bad usage, the log or broker cannot be read, or
 * the output cannot be written.
 */
#ifndef KABAR_AUDIT_REPORT_H
#define KABAR_AUDIT_REPORT_H

/* argv[0] is "report". */
int audit_report_main(int argc, char **argv);

#endif /* KABAR_AUDIT_REPORT_H */
