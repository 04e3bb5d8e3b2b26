"""kabar-agent: outbox while the broker is down, inbox hand-off, dead letters,
targeted delivery, validation at the intake, and the `kabar agent` command.

Real processes: kabard, kabar-agent and the kabar CLI, in a temporary
directory. Nothing here asserts on timing: every wait polls a condition.
"""

import json
import os
import stat

from agenttest import AgentTestCase, fixed_broker_listen, read_lines, wait_lines
from kabartest import Broker, EventFactory, main, run_cli, wait_for

AGENCY = "dinkes"


def own_events(n, prefix, start=0):
    """n valid events whose source is AGENCY (what the agent may publish)."""
    f = EventFactory(seed=7, prefix=prefix)
    return [f.make(i, source=AGENCY) for i in range(start, start + n)]


def write_script(path, text):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


class AgentTest(AgentTestCase):
    def test_outbox_while_broker_down_then_forwarded_in_order_once(self):
        listen = fixed_broker_listen()
        broker = Broker(os.path.join(self.tmp, "data"), listen=listen)
        self.addCleanup(self._stop_broker, broker)
        agent = self.start_agent(AGENCY, listen)

        events = own_events(10000, "down")
        replies = agent.submit_many(events)
        self.assertTrue(all(r is not None for r in replies), "every submit answered")
        bad = [r for r in replies if not r["ok"]]
        self.assertEqual(bad, [], "all 10,000 events accepted by the agent")
        self.assertEqual([r["id"] for r in replies], [e["id"] for e in events])
        positions = [r["pos"] for r in replies]
        self.assertEqual(positions, sorted(positions), "outbox positions follow submission order")

        st = agent.status()
        self.assertEqual(st["agency"], AGENCY)
        self.assertFalse(st["connected"])
        self.assertEqual(st["outbox"]["depth"], 10000)
        self.assertIsNone(st["inbox"]["lag"], "lag is unknown while the broker is down")
        wait_for(lambda: "KABAR-AGENT-BROKER-DOWN" in agent.log_text(), 60, what="BROKER-DOWN log")

        broker.start()
        agent.wait_outbox_empty()
        wait_for(lambda: "KABAR-AGENT-BROKER-UP" in agent.log_text(), 60, what="BROKER-UP log")

        log = self.replay_all(broker)
        self.assertEqual([e["id"] for e in log], [e["id"] for e in events],
                         "all 10,000 in the log, once each, in the agent's order")
        self.assertEqual([e["seq"] for e in log], list(range(1, 10001)))
        self.assertTrue(all(e["source"] == AGENCY for e in log))
        self.assertEqual(log[17]["body"], events[17]["body"])

        st = agent.status()
        self.assertTrue(st["connected"])
        self.assertEqual(st["last_acked_seq"], 10000)
        self.assertEqual(st["outbox"]["depth"], 0)
        self.assertEqual(st["rejected"], 0)

    def test_intake_validates_and_sets_source(self):
        broker = self.start_broker()
        agent = self.start_agent(AGENCY, broker.endpoint)
        good = own_events(1, "val")[0]
        no_source = dict(good, id="val-nosrc")
        del no_source["source"]
        r = agent.submit(no_source)
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["id"], "val-nosrc")

        other = dict(good, id="val-other", source="bappeda")
        r = agent.submit(other)
        self.assertFalse(r["ok"])
        self.assertEqual(r["error"], "BAD_VALUE")
        self.assertIn("bappeda", r["message"])

        missing = json.loads(json.dumps(good))
        missing["id"] = "val-missing"
        missing["body"].pop(next(iter(missing["body"])))
        r = agent.submit(missing)
        self.assertFalse(r["ok"])
        self.assertIn(r["error"], ("MISSING_FIELD",))
        r = agent.submit(b"\xc1garbage", raw=True)
        self.assertFalse(r["ok"])
        r = agent.submit({"type": "no.such.type", "body": {}})
        self.assertEqual(r["error"], "UNKNOWN_TYPE")

        agent.wait_outbox_empty()
        log = self.replay_all(broker)
        self.assertEqual([e["id"] for e in log], ["val-nosrc"], "only the valid event was sent")
        self.assertEqual(log[0]["source"], AGENCY)

    def test_second_agent_on_same_dir_refuses(self):
        broker = self.start_broker()
        agent = self.start_agent(AGENCY, broker.endpoint)
        r = run_cli("agent", "status", "--data", agent.data_dir, env=agent.env())
        self.assertEqual(r.rc, 0, r)
        self.assertIn("running", r.text)
        import subprocess
        p = subprocess.run(agent.command(), capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"in use by another kabar-agent", p.stderr)
        self.assertTrue(agent.running())
        self.assertEqual(agent.stop(), 0, "SIGTERM: clean exit 0")
        self.assertFalse(os.path.exists(agent.socket_path))

    def test_exec_handler_retried_until_it_succeeds(self):
        broker = self.start_broker()
        got = os.path.join(self.tmp, "got.jsonl")
        counts = os.path.join(self.tmp, "counts")
        os.mkdir(counts)
        # Fails the first two tries of every event, then records it.
        script = write_script(
            os.path.join(self.tmp, "flaky.sh"),
            'c="%s/$KABAR_SEQ"; n=$(cat "$c" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$c"\n'
            '[ "$n" -ge 3 ] || exit 3\n'
            'line=$(cat); printf \'{"env_seq":%%s,"env_type":"%%s","event":%%s}\\n\' "$KABAR_SEQ" "$KABAR_TYPE" "$line" >> %s\n'
            % (counts, got),
        )
        agent = self.start_agent(AGENCY, broker.endpoint, "--exec", script)
        f = EventFactory(seed=3, prefix="ex")
        events = [f.make(i, source="setda", targets=[AGENCY]) for i in range(6)]
        self.publish(broker, events)
        lines = wait_lines(got, 6)
        self.assertEqual([l["event"]["id"] for l in lines], [e["id"] for e in events])
        for l in lines:
            self.assertEqual(l["env_seq"], l["event"]["seq"])
            self.assertEqual(l["env_type"], l["event"]["type"])
        for l in lines:
            with open(os.path.join(counts, str(l["env_seq"]))) as c:
                self.assertEqual(int(c.read()), 3, "delivered on the third try")
        wait_for(lambda: agent.status()["inbox"]["position"] == 6, 60, what="inbox position 6")
        st = agent.status()
        self.assertEqual(st["dead_letters"], 0)
        self.assertEqual(st["inbox"]["lag"], 0)

    def test_failing_handler_parks_dead_letter_and_inbox_goes_on(self):
        broker = self.start_broker()
        got = os.path.join(self.tmp, "got.jsonl")
        fixed = os.path.join(self.tmp, "fixed")
        script = write_script(
            os.path.join(self.tmp, "picky.sh"),
            'if [ "$KABAR_TYPE" = finding.raised ] && [ ! -e %s ]; then exit 1; fi\n'
            "cat >> %s\n" % (fixed, got),
        )
        agent = self.start_agent(AGENCY, broker.endpoint, "--exec", script, "--max-tries", "2")
        f = EventFactory(seed=4, prefix="dl")
        events = [
            f.make(0, type="visit.scheduled", targets=[AGENCY]),
            f.make(1, type="finding.raised", targets=[AGENCY]),
            f.make(2, type="visit.scheduled", targets=[AGENCY]),
            f.make(3, type="attendance.reported", source="setda", targets=[AGENCY]),
        ]
        res = self.publish(broker, events)
        bad_seq = res[1]["seq"]
        lines = wait_lines(got, 3)
        self.assertEqual([l["id"] for l in lines], [events[i]["id"] for i in (0, 2, 3)],
                         "the events after the dead letter are still delivered, in order")
        wait_for(lambda: agent.status()["dead_letters"] == 1, 60, what="one dead letter")
        dead = agent.dead_letters()
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["seq"], bad_seq)
        self.assertEqual(dead[0]["tries"], 2)
        self.assertEqual(dead[0]["event"]["id"], events[1]["id"])
        self.assertIn("status 1", dead[0]["reason"])
        self.assertIn("KABAR-AGENT-DEAD-LETTER", agent.log_text())

        r = run_cli("agent", "inbox", "--data", agent.data_dir, "--retry", "999999")
        self.assertEqual(r.rc, 1, r)
        open(fixed, "w").close()
        r = run_cli("agent", "inbox", "--data", agent.data_dir, "--retry", str(bad_seq))
        self.assertEqual(r.rc, 0, r)
        lines = wait_lines(got, 4)
        self.assertEqual(lines[3]["id"], events[1]["id"], "the re-queued letter is delivered")
        wait_for(lambda: agent.status()["dead_letters"] == 0 and agent.status()["retry_pending"] == 0,
                 60, what="no dead letters left")
        self.assertEqual(agent.dead_letters(), [])

    def test_targeted_delivery_and_broadcasts_only(self):
        broker = self.start_broker()
        got = os.path.join(self.tmp, "inbox.jsonl")
        agent = self.start_agent(AGENCY, broker.endpoint, "--jsonl", got)
        f = EventFactory(seed=5, prefix="tg")
        events = []
        for i in range(60):
            k = i % 3
            if k == 0:
                events.append(f.make(i, type="finding.reviewed", source="inspektorat", targets=[AGENCY]))
            elif k == 1:
                events.append(f.make(i, type="finding.reviewed", source="inspektorat", targets=["bappeda"]))
            else:
                events.append(f.make(i, type="innovation.awarded", source="setda", targets=[]))
        res = self.publish(broker, events)
        expected = [e["id"] for e in events if not e.get("targets") or AGENCY in e["targets"]]
        lines = wait_lines(got, len(expected))
        wait_for(lambda: agent.status()["inbox"]["position"] == res[-1]["seq"], 60,
                 what="the inbox to reach the last event")
        lines = read_lines(got)
        self.assertEqual([l["id"] for l in lines], expected,
                         "targeted and broadcast events, not others', each once, in order")
        self.assertTrue(all("seq" in l and "received_at" in l for l in lines))

        # Restart: nothing is handed over twice, new events continue.
        self.assertEqual(agent.stop(), 0)
        more = [f.make(100, type="finding.reviewed", source="inspektorat", targets=[AGENCY])]
        self.publish(broker, more)
        agent.start()
        lines = wait_lines(got, len(expected) + 1)
        self.assertEqual([l["id"] for l in lines], expected + [more[0]["id"]])

    def test_status_text_and_usage(self):
        broker = self.start_broker()
        agent = self.start_agent(AGENCY, broker.endpoint)
        r = run_cli("agent", "status", "--data", agent.data_dir, env=agent.env())
        self.assertEqual(r.rc, 0, r)
        for word in ("agency", "outbox", "last acked", "inbox", "dead letters"):
            self.assertIn(word, r.text)
        self.assertEqual(run_cli("agent", "status").rc, 2)
        self.assertEqual(run_cli("agent", "bogus", "--data", agent.data_dir).rc, 2)
        self.assertEqual(run_cli("agent", "inbox", "--data", agent.data_dir).rc, 2)
        r = run_cli("agent", "status", "--data", os.path.join(self.tmp, "nothing"))
        self.assertEqual(r.rc, 2)
        self.assertIn("no agent store", r.errtext)


if __name__ == "__main__":
    main()
