"""System test: subscriptions through `kabar tail` and raw over ZeroMQ.

Live tail, catch-up from a seq then live with no gap or duplicate at the
switch, durable consumers that resume after their last ack (also across a
broker restart), and targeted subscriptions (--target X: events that
target X, and broadcasts).
"""

import sys

sys.dont_write_bytecode = True  # keep the source tree clean
import kabartest as kt  # noqa: E402


class Subscribe(kt.KabarTestCase):
    def setUp(self):
        super().setUp()
        self.b = self.start_broker()
        self.factory = kt.EventFactory(seed=5, prefix="sub")
        self.n = 0
        self.probes = 0

    def events(self, n, **kw):
        evs = self.factory.make_many(n, start=self.n, **kw)
        self.n += n
        return evs

    def publish_ok(self, evs):
        res = self.publish(self.b, evs)
        for r in res:
            self.assertNotIn("error", r, r)
        return [r["seq"] for r in res]

    def wait_subscribed(self, tail, target=None):
        """Publish probe events until the tail shows one: it is then live."""
        for _ in range(120):
            self.probes += 1
            probe = self.factory.make(10_000_000 + self.probes, type="attendance.reported", source="setda")
            probe["id"] = "probe-%d" % self.probes
            if target:
                probe["targets"] = sorted({target, "setda"})
            self.publish_ok([probe])
            e = tail.next(timeout=2.0)
            if e is not None:
                self.assertTrue(e["id"].startswith("probe-"), "tail showed an event published before it subscribed: %r" % e)
                return
            if tail.proc.poll() is not None:
                self.fail("kabar tail exited with %s: %s" % (tail.proc.returncode, tail.errtext()))
        self.fail("kabar tail never showed a probe event")

    def collect_until(self, tail, last_id, timeout=300):
        """Events shown by tail up to and including last_id, probes left out."""
        out = []
        while True:
            e = tail.take(1, timeout)[0]
            if e["id"].startswith("probe-"):
                continue
            out.append(e)
            if e["id"] == last_id:
                return out

    # -- live ------------------------------------------------------------------

    def test_live_tail(self):
        self.publish_ok(self.events(5))  # history that --new must not show
        tail = kt.Tail("--broker", self.b.endpoint, "--new")
        self.addCleanup(tail.stop)
        self.wait_subscribed(tail)
        evs = self.events(300)
        seqs = self.publish_ok(evs)
        got = self.collect_until(tail, evs[-1]["id"])
        self.assertEqual([e["id"] for e in got], [e["id"] for e in evs], "live events missing or out of order")
        self.assertEqual([e["seq"] for e in got], seqs)
        for g, e in zip(got, evs):
            self.assertEqual(g["body"], e["body"])

    # -- catch-up then live -----------------------------------------------------

    def test_catchup_then_live_cli(self):
        first = self.events(3000)
        self.publish_ok(first)
        later = self.events(3000)
        tail = kt.Tail("--broker", self.b.endpoint, "--from", "1001", "--count", "5000")
        self.addCleanup(tail.stop)
        # publish while it is catching up, in small pieces
        for k in range(0, len(later), 100):
            p = kt.cli_popen(
                ["publish", "-", "--broker", self.b.endpoint],
                stdin=kt.subprocess.PIPE,
                stdout=kt.subprocess.DEVNULL,
                stderr=kt.subprocess.PIPE,
            )
            p.communicate(kt.to_jsonl(later[k : k + 100]), timeout=300)
            self.assertEqual(p.returncode, 0)
        got = tail.take(5000)
        self.assertEqual(tail.wait(), 0, tail.errtext())
        self.assertEqual([e["seq"] for e in got], list(range(1001, 6001)), "gap or duplicate at the switch")
        self.assertEqual([e["id"] for e in got], [e["id"] for e in (first + later)[1000:]])

    def test_catchup_then_live_raw_small_credit(self):
        # A raw subscriber with little credit is behind while new events are
        # committed: the broker must continue from the log, then live.
        self.publish_ok(self.events(1000))
        c = self.raw(self.b)
        c.send("SUB", 1, {"start": "seq", "seq": 1, "credit": 50})
        seqs = []
        subok = False
        deadline = kt.time.monotonic() + 300
        pending = 50
        published_more = False
        while len(seqs) < 3000:
            self.assertLess(kt.time.monotonic(), deadline, "raw subscriber got %d of 3000" % len(seqs))
            m = c.recv(timeout=5)
            if m is None:
                c.send("PING", 999)
                continue
            hdr, frames = m
            if hdr[1] == "SUBOK":
                subok = True
                continue
            if hdr[1] in ("PONG",):
                continue
            self.assertEqual(hdr[1], "EVT", hdr)
            self.assertTrue(subok, "EVT before SUBOK")
            recs = kt.parse_records(frames[0])
            self.assertEqual(len(recs), hdr[3])
            pending -= len(recs)
            self.assertGreaterEqual(pending, 0, "the broker sent more than the granted credit")
            seqs += [r[0] for r in recs]
            if not published_more and len(seqs) >= 50:
                published_more = True
                self.publish_ok(self.events(2000))  # while the subscriber is behind
            if pending == 0:
                c.send("CREDIT", 1, 50)
                pending = 50
        self.assertEqual(seqs, list(range(1, 3001)))

    # -- durable consumers -----------------------------------------------------

    def durable(self, name, count):
        r = self.cli("tail", "--broker", self.b.endpoint, "--durable", name, "--count", str(count))
        self.assertEqual(r.rc, 0, r)
        return [e["seq"] for e in r.json_lines()]

    def test_durable_resumes(self):
        self.publish_ok(self.events(100))
        self.assertEqual(self.durable("oversight", 30), list(range(1, 31)))
        self.assertEqual(self.durable("oversight", 30), list(range(31, 61)), "did not resume after its last ack")
        self.assertEqual(self.durable("audit-2023", 10), list(range(1, 11)), "consumers are independent")
        self.assertEqual(self.b.stop(), 0)
        self.b.start()
        self.assertEqual(self.durable("oversight", 30), list(range(61, 91)), "lost its position in a broker restart")
        self.publish_ok(self.events(20))
        self.assertEqual(self.durable("oversight", 30), list(range(91, 121)), "catch-up then new events")
        st = self.cli_ok("status", "--broker", self.b.endpoint, "--json")
        self.assertIn("oversight", st.text, "status should list the durable consumers")
        self.assertIn("audit-2023", st.text)
        # the offline view knows them too
        st = self.cli_ok("status", "--data", self.b.data_dir, "--json")
        self.assertIn("oversight", st.text)

    def test_durable_live_after_catchup(self):
        self.publish_ok(self.events(10))
        tail = kt.Tail("--broker", self.b.endpoint, "--durable", "inbox-dinkes", "--count", "25")
        self.addCleanup(tail.stop)
        got = tail.take(10)
        self.assertEqual([e["seq"] for e in got], list(range(1, 11)))
        self.publish_ok(self.events(15))
        got += tail.take(15)
        self.assertEqual(tail.wait(), 0, tail.errtext())
        self.assertEqual([e["seq"] for e in got], list(range(1, 26)))
        self.publish_ok(self.events(5))
        self.assertEqual(self.durable("inbox-dinkes", 5), list(range(26, 31)), "live events were not acked")

    # -- targeted ----------------------------------------------------------------

    def test_target_from_log(self):
        evs = self.events(400)
        seqs = self.publish_ok(evs)
        sentinel = self.factory.make(99_999, type="finding.raised")
        sentinel["targets"] = ["dinkes"]
        sentinel["body"]["auditee"] = "dinkes"
        sentinel["id"] = "sentinel-1"
        seqs += self.publish_ok([sentinel])
        evs.append(sentinel)
        expected = [s for s, e in zip(seqs, evs) if kt.event_matches(e, target="dinkes")]
        self.assertTrue(any(not evs[s - 1].get("targets") for s in expected), "the sample needs broadcasts")
        self.assertLess(len(expected), len(evs), "the sample needs events for others")
        r = self.cli("tail", "--broker", self.b.endpoint, "--target", "dinkes", "--from", "1", "--count", str(len(expected)))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual([e["seq"] for e in r.json_lines()], expected)

    def test_target_live(self):
        tail = kt.Tail("--broker", self.b.endpoint, "--target", "bpkad", "--new")
        self.addCleanup(tail.stop)
        self.wait_subscribed(tail, target="bpkad")
        evs = self.events(400)
        sentinel = self.factory.make(99_998, type="visit.scheduled")
        sentinel["body"]["host"] = "bpkad"
        sentinel["targets"] = ["bpkad"]
        sentinel["id"] = "sentinel-2"
        evs.append(sentinel)
        seqs = self.publish_ok(evs)
        expected = [s for s, e in zip(seqs, evs) if kt.event_matches(e, target="bpkad")]
        got = self.collect_until(tail, "sentinel-2")
        self.assertEqual([e["seq"] for e in got], expected)
        for e in got:
            tg = e.get("targets") or []
            self.assertTrue(not tg or "bpkad" in tg, e)


if __name__ == "__main__":
    kt.main()
