/*
 * cmd_oversight.h - `kabar oversight report`: the secretariat's report.
 *
 *   kabar oversight report --data DIR [--since DATE] [--until DATE]
 *                          [--format text|csv|json] [--now TIME] [--tz ZONE]
 *   kabar oversight report --rebuild (--broker EP | --log DIR) [same options]
 *
 * Reads kabar-oversight's state (agents/oversight/ostate.h) read-only, so
 * it is safe while the agent runs; --rebuild first builds a fresh state in
 * a temporary directory from the whole log, through the agent's own apply
 * code. Documented in docs/OVERSIGHT.md.
 */
#ifndef KABAR_CMD_OVERSIGHT_H
#define KABAR_CMD_OVERSIGHT_H

int cmd_oversight(int argc, char **argv);

#endif /* KABAR_CMD_OVERSIGHT_H */
