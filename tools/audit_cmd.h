/*
 * audit_cmd.h - `kabar audit` (tools/cmd_audit.c; docs/AUDIT.md).
 */
#ifndef KABAR_AUDIT_CMD_H
#define KABAR_AUDIT_CMD_H

/* argv[0] is "audit", argv[1] the subcommand. */
int cmd_audit(int argc, char **argv);

#endif /* KABAR_AUDIT_CMD_H */
