"""`kabar publish --agent DIR`: events handed to the local kabar-agent.

Real processes: kabard, kabar-agent and the kabar CLI in a temporary
directory. What a user relies on: an accepted event is on the agent's disk
(its result has an outbox position) and reaches the log once, published as
the agent's agency; a bad event is refused at once, by the agent, with its
stable code, even while the broker is down, and never reaches the log; the
exit codes are those of `kabar publish` to a broker. Nothing here asserts
on timing: every wait polls a condition.
"""

import json
import os
import select
import signal
import subprocess

from agenttest import AgentTestCase, fixed_broker_listen
from kabartest import KABAR, Broker, EventFactory, main, popen, run_cli, to_jsonl

AGENCY = "dinkes"


def own_events(n, prefix):
    """n valid events of every type whose source is AGENCY."""
    f = EventFactory(seed=11, prefix=prefix)
    return [f.make(i, source=AGENCY) for i in range(n)]


def publish_agent(agent, data, *extra, timeout=None):
    """`kabar publish - --agent DIR` of `data` (bytes or event dicts)."""
    if not isinstance(data, (bytes, str)):
        data = to_jsonl(data)
    args = ["publish", "-", "--agent", agent.data_dir] + list(extra)
    return run_cli(*args, input=data) if timeout is None else run_cli(*args, input=data,
                                                                      timeout=timeout)


class PublishAgentTest(AgentTestCase):
    def check_accepted(self, results, events):
        self.assertEqual([r.get("id") for r in results], [e["id"] for e in events])
        for r in results:
            self.assertNotIn("error", r, r)
            self.assertNotIn("seq", r, "the seq is not known at the agent: %r" % r)
        positions = [r["pos"] for r in results]
        self.assertEqual(positions, sorted(set(positions)), "outbox positions rise: %r" % positions)

    def test_accepted_events_reach_the_log_as_the_agency(self):
        broker = self.start_broker()
        agent = self.start_agent(AGENCY, broker.endpoint)
        events = own_events(60, "acc")
        # Half without "source": the agent fills in its own agency.
        for e in events[::2]:
            del e["source"]
        r = publish_agent(agent, events)
        self.assertEqual(r.rc, 0, r)
        results = r.json_lines()
        self.check_accepted(results, events)

        agent.wait_outbox_empty()
        log = self.replay_all(broker)
        self.assertEqual([e["id"] for e in log], [e["id"] for e in events],
                         "every event in the log once, in the input's order")
        self.assertEqual({e["source"] for e in log}, {AGENCY})
        for got, sent in zip(log, events):
            self.assertEqual(got["type"], sent["type"])
            self.assertEqual(got["body"], sent["body"], "body stored as published")

        # Publishing the same input again is harmless: the log keeps one of each.
        again = publish_agent(agent, events)
        self.assertEqual(again.rc, 0, again)
        self.check_accepted(again.json_lines(), events)
        agent.wait_outbox_empty()
        self.assertEqual(len(self.replay_all(broker)), len(events), "nothing stored twice")

    def test_bad_events_refused_at_once_with_their_code_even_without_broker(self):
        listen = fixed_broker_listen()
        broker = Broker(os.path.join(self.tmp, "data"), listen=listen)
        self.addCleanup(self._stop_broker, broker)
        agent = self.start_agent(AGENCY, listen)  # the broker is not running yet

        good = own_events(3, "mix")
        missing = {"id": "bad-missing", "type": "attendance.reported",
                   "body": {"agency": AGENCY, "date": "2023-04-26", "total": 212}}
        unknown = dict(good[1], id="bad-type", type="finding.forgotten")
        other = dict(good[2], id="bad-source", source="bappeda")
        lines = [
            json.dumps(good[0]),
            json.dumps(missing),
            json.dumps(good[1]),
            "this is not json",
            "",  # blank lines are skipped, not reported
            json.dumps(unknown),
            json.dumps(other),
            json.dumps(good[2]),
        ]
        r = publish_agent(agent, "\n".join(lines) + "\n", timeout=120)
        self.assertEqual(r.rc, 1, "some event was rejected: %r" % r)
        res = r.json_lines()
        self.assertEqual(len(res), 7, "one result per event line: %r" % res)
        self.check_accepted([res[0], res[2], res[6]], good)
        self.assertEqual(res[1]["id"], "bad-missing")
        self.assertEqual(res[1]["error"], "MISSING_FIELD")
        self.assertIn("body.present", res[1]["message"])
        self.assertEqual(res[3], {"line": 4, "error": "BAD_JSON", "message": res[3]["message"]})
        self.assertEqual(res[4]["id"], "bad-type")
        self.assertEqual(res[4]["error"], "UNKNOWN_TYPE")
        self.assertIn("finding.forgotten", res[4]["message"])
        self.assertEqual(res[5]["id"], "bad-source")
        self.assertEqual(res[5]["error"], "BAD_VALUE")
        self.assertIn("bappeda", res[5]["message"])

        st = agent.status()
        self.assertEqual(st["outbox"]["depth"], 3, "only the good events wait for the broker")
        broker.start()
        agent.wait_outbox_empty()
        self.assertEqual([e["id"] for e in self.replay_all(broker)], [e["id"] for e in good],
                         "only the accepted events reach the log")

    def test_source_option_and_generated_ids(self):
        broker = self.start_broker()
        agent = self.start_agent(AGENCY, broker.endpoint)
        ev = own_events(2, "src")
        for e in ev:
            del e["source"]
        del ev[1]["id"]
        r = publish_agent(agent, ev, "--source", AGENCY)
        self.assertEqual(r.rc, 0, r)
        res = r.json_lines()
        self.assertEqual(res[0]["id"], ev[0]["id"])
        self.assertRegex(res[1]["id"], r"^[0-9a-f-]{36}$", "a missing id is generated")
        r = publish_agent(agent, [dict(ev[0], id="src-other")], "--source", "bappeda")
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.json_lines()[0]["error"], "BAD_VALUE")
        agent.wait_outbox_empty()
        log = self.replay_all(broker)
        self.assertEqual([e["id"] for e in log], [res[0]["id"], res[1]["id"]])
        self.assertEqual({e["source"] for e in log}, {AGENCY})

    def test_each_result_is_written_as_soon_as_known(self):
        """A service can pipe events in and read each answer before sending the next."""
        broker = self.start_broker()
        agent = self.start_agent(AGENCY, broker.endpoint)
        p = popen([KABAR, "publish", "--agent", agent.data_dir], stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for e in own_events(3, "pipe"):
                p.stdin.write(to_jsonl([e]))
                p.stdin.flush()
                ready, _, _ = select.select([p.stdout], [], [], 120)
                self.assertTrue(ready, "no result while stdin is still open")
                self.assertEqual(json.loads(p.stdout.readline())["id"], e["id"])
            p.stdin.close()
            self.assertEqual(p.wait(timeout=120), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    def test_exit_codes_when_the_agent_cannot_be_used(self):
        broker = self.start_broker()
        ev = to_jsonl(own_events(1, "exit"))
        missing = os.path.join(self.tmp, "no-agent-here")
        r = run_cli("publish", "-", "--agent", missing, input=ev)
        self.assertEqual(r.rc, 2, r)
        self.assertIn("no agent socket", r.errtext)
        self.assertIn(missing, r.errtext)
        self.assertEqual(r.out, b"")

        agent = self.start_agent(AGENCY, broker.endpoint)
        r = run_cli("publish", "-", "--agent", agent.data_dir, "--broker", broker.endpoint, input=ev)
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--broker and --agent", r.errtext)
        r = run_cli("publish", "--agent", input=ev)
        self.assertEqual(r.rc, 2, r)

        # A stopped (frozen) agent: the results known so far, then exit 2.
        first = own_events(2, "frozen")
        r = publish_agent(agent, first[:1])
        self.assertEqual(r.rc, 0, r)
        os.kill(agent.proc.pid, signal.SIGSTOP)
        try:
            r = publish_agent(agent, first[1:], "--timeout", "500")
        finally:
            os.kill(agent.proc.pid, signal.SIGCONT)
        self.assertEqual(r.rc, 2, r)
        self.assertIn("did not answer", r.errtext)
        self.assertEqual(r.out, b"", "no result for the unanswered event")

        # The agent gone (stopped cleanly, socket removed): exit 2 as well.
        self.assertEqual(agent.stop(), 0)
        r = publish_agent(agent, first[1:])
        self.assertEqual(r.rc, 2, r)


if __name__ == "__main__":
    main()
