"""kabar-agent fault tests: SIGKILL the agent while it forwards and while it
accepts events, restart it, and check that the broker's log has every event
the agent acknowledged exactly once, in the agent's order.

Rounds: env KABAR_FAULT_ROUNDS (default 3).
"""

import os
import threading

from agenttest import AgentTestCase, fixed_broker_listen
from kabartest import Broker, EventFactory, head_seq, main, wait_for

AGENCY = "bappeda"
ROUNDS = int(os.environ.get("KABAR_FAULT_ROUNDS", "3"))


def own_events(n, prefix):
    f = EventFactory(seed=11, prefix=prefix)
    return [f.make(i, source=AGENCY) for i in range(n)]


class AgentFaultTest(AgentTestCase):
    def check_log(self, broker, events):
        log = self.replay_all(broker)
        ids = [e["id"] for e in log]
        self.assertEqual(len(ids), len(set(ids)), "no event twice in the log")
        self.assertEqual(ids, [e["id"] for e in events], "every event once, in the agent's order")
        self.assertEqual([e["seq"] for e in log], list(range(1, len(log) + 1)))

    def test_sigkill_while_forwarding(self):
        listen = fixed_broker_listen()
        broker = Broker(os.path.join(self.tmp, "data"), listen=listen)
        self.addCleanup(self._stop_broker, broker)
        agent = self.start_agent(AGENCY, listen)
        events = own_events(6000 * ROUNDS, "kf")
        replies = agent.submit_many(events)
        self.assertTrue(all(r and r["ok"] for r in replies), "all accepted while the broker is down")

        broker.start()
        last = 0
        kills_mid_way = 0
        for rnd in range(ROUNDS):
            # Wait for forwarding progress, then crash the agent.
            last = wait_for(lambda: (lambda h: h if h > last else None)(head_seq(broker.endpoint)),
                            300, 0.01, "forwarding progress in round %d" % rnd)
            agent.kill()
            if last < len(events):
                kills_mid_way += 1
            agent.start()
        agent.wait_outbox_empty()
        print("%d of %d kills hit the middle of forwarding" % (kills_mid_way, ROUNDS))
        self.assertGreater(kills_mid_way, 0, "at least one kill hit the middle of forwarding")
        self.check_log(broker, events)
        st = agent.status()
        self.assertEqual(st["last_acked_seq"], len(events))
        self.assertEqual(st["rejected"], 0)

    def test_broker_killed_while_forwarding(self):
        listen = fixed_broker_listen()
        broker = Broker(os.path.join(self.tmp, "data"), listen=listen)
        self.addCleanup(self._stop_broker, broker)
        agent = self.start_agent(AGENCY, listen)
        events = own_events(6000 * ROUNDS, "kb")
        replies = agent.submit_many(events)
        self.assertTrue(all(r and r["ok"] for r in replies))
        broker.start()
        last = 0
        kills_mid_way = 0
        for rnd in range(ROUNDS):
            last = wait_for(lambda: (lambda h: h if h > last else None)(head_seq(broker.endpoint)),
                            300, 0.01, "forwarding progress in round %d" % rnd)
            broker.kill()
            if last < len(events):
                kills_mid_way += 1
            broker.start()
        agent.wait_outbox_empty()
        self.assertGreater(kills_mid_way, 0, "at least one kill hit the middle of forwarding")
        self.check_log(broker, events)
        self.assertIn("KABAR-AGENT-BROKER-UP", agent.log_text())

    def test_sigkill_while_accepting(self):
        broker = self.start_broker()
        agent = self.start_agent(AGENCY, broker.endpoint)
        events = own_events(4000 * ROUNDS, "ka")
        chunks = [events[i::ROUNDS] for i in range(ROUNDS)]
        acked = {}
        for rnd, chunk in enumerate(chunks):
            out = {}
            crashed = threading.Event()

            def crash(n):
                # Crash the agent in the middle of this chunk, with requests in flight.
                if n == len(chunk) // 3 and not crashed.is_set():
                    agent.proc.kill()
                    crashed.set()

            def submit():
                out["replies"] = agent.submit_many(chunk, timeout=300, idle=10, on_reply=crash)

            t = threading.Thread(target=submit)
            t.start()
            self.assertTrue(crashed.wait(300), "the submitter reached the crash point")
            agent.kill()  # reap it
            agent.start()
            t.join()
            for e, r in zip(chunk, out["replies"]):
                if r is not None:
                    self.assertTrue(r["ok"], r)
                    acked[e["id"]] = True
            # What was not answered is submitted again, with the same ids.
            again = [e for e, r in zip(chunk, out["replies"]) if r is None]
            print("round %d: %d answered, %d not" % (rnd, len(chunk) - len(again), len(again)))
            for r in agent.submit_many(again):
                self.assertTrue(r and r["ok"], r)
        agent.wait_outbox_empty()
        log = self.replay_all(broker)
        ids = [e["id"] for e in log]
        self.assertEqual(len(ids), len(set(ids)), "no event twice in the log")
        self.assertEqual(set(ids), set(e["id"] for e in events), "no event lost")
        self.assertTrue(set(acked) <= set(ids))
        self.assertEqual([e["seq"] for e in log], list(range(1, len(log) + 1)))


if __name__ == "__main__":
    main()
