/*
 * cmd_agent.h - `kabar agent`: look into a kabar-agent's data directory.
 *
 *   kabar agent status --data DIR [--broker EP] [--json]
 *   kabar agent inbox  --data DIR (--dead [--json] | --retry SEQ|all)
 *   kabar agent outbox --data DIR [--rejected] [--json]
 *
 * Reads the agent's LMDB store (agents/agent/agentdb.h) directly, so it
 * works whether or not the agent runs; --retry writes to it (LMDB lets the
 * agent and this command write in turn). Documented in docs/AGENT.md.
 */
#ifndef KABAR_CMD_AGENT_H
#define KABAR_CMD_AGENT_H

int cmd_agent(int argc, char **argv);

#endif /* KABAR_CMD_AGENT_H */
