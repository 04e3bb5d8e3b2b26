"""System test: publish 100,000 events, replay them back exactly.

One broker for the whole file (publishing 100,000 events through fsync'd
group commits is the expensive part); every test reads that log, and the
republishing test adds nothing to it (duplicates).
"""

import bisect
import os
import shutil
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
import kabartest as kt  # noqa: E402

N = int(os.environ.get("KABAR_REPLAY_EVENTS", "100000"))


class PublishReplay(kt.KabarTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmpdir = kt.make_tmpdir()
        cls.broker = kt.Broker(os.path.join(cls.tmpdir, "data")).start()
        cls.events = kt.EventFactory(seed=42, prefix="pr").make_many(N)
        cls.input_path = os.path.join(cls.tmpdir, "events.jsonl")
        with open(cls.input_path, "wb") as f:
            f.write(kt.to_jsonl(cls.events))
        r = kt.run_cli("publish", cls.input_path, "--broker", cls.broker.endpoint)
        cls.publish_result = r
        cls.results = r.json_lines() if r.rc == 0 else None
        online = kt.run_cli("replay", "--broker", cls.broker.endpoint)
        cls.online = online.json_lines() if online.rc == 0 else None
        cls.online_result = online

    @classmethod
    def tearDownClass(cls):
        cls.broker.stop()
        if not os.environ.get("KABAR_KEEP_TMP"):
            shutil.rmtree(cls.tmpdir, True)

    def setUp(self):
        self.assertEqual(self.publish_result.rc, 0, self.publish_result)
        self.assertIsNotNone(self.online, self.online_result)

    # -- publishing ---------------------------------------------------------

    def test_all_acked_in_order(self):
        res = self.results
        self.assertEqual(len(res), N)
        for i, (ev, r) in enumerate(zip(self.events, res)):
            self.assertNotIn("error", r, "event %d rejected: %r" % (i, r))
            self.assertEqual(r["id"], ev["id"])
            self.assertEqual(r["seq"], i + 1, "event %d got seq %r" % (i, r["seq"]))
            self.assertIs(r["duplicate"], False)
        self.assertEqual(kt.head_seq(self.broker.endpoint), N)

    # -- replay -------------------------------------------------------------

    def assert_same_event(self, got, ev, seq):
        self.assertEqual(got["seq"], seq)
        for k in ("id", "type", "v", "source", "corr", "body"):
            self.assertEqual(got.get(k), ev.get(k), "seq %d: field %s differs" % (seq, k))
        self.assertEqual(sorted(got.get("targets") or []), ev.get("targets", []), "seq %d targets" % seq)
        self.assertEqual(
            kt.parse_instant(got["occurred_at"]),
            kt.parse_instant(ev["occurred_at"]),
            "seq %d occurred_at" % seq,
        )
        self.assertTrue(got["occurred_at"].endswith("Z"), got["occurred_at"])
        kt.parse_instant(got["received_at"])

    def test_online_replay_is_the_input(self):
        out = self.online
        self.assertEqual(len(out), N)
        for i, (got, ev) in enumerate(zip(out, self.events)):
            self.assert_same_event(got, ev, i + 1)
        # received_at never goes back in seq order (time ranges are seq ranges)
        rat = [kt.parse_instant(e["received_at"]) for e in out]
        self.assertTrue(all(a <= b for a, b in zip(rat, rat[1:])), "received_at decreases somewhere")

    def test_offline_replay_equals_online(self):
        off = self.cli_ok("replay", "--data", self.broker.data_dir)
        on = self.cli_ok("replay", "--broker", self.broker.endpoint)
        self.assertEqual(len(off.lines()), N)
        self.assertEqual(off.out, on.out, "offline and online JSON replays differ")

    def test_msgpack_online_equals_offline(self):
        on = self.cli_ok("replay", "--broker", self.broker.endpoint, "--format", "msgpack")
        off = self.cli_ok("replay", "--data", self.broker.data_dir, "--format", "msgpack")
        self.assertGreater(len(on.out), N * 100, "msgpack replay is too short to hold %d events" % N)
        self.assertEqual(on.out, off.out, "msgpack bytes differ between online and offline replay")

    def test_csv_has_a_row_per_event(self):
        r = self.cli_ok("replay", "--data", self.broker.data_dir, "--format", "csv", "--type", "attendance.")
        rows = [l for l in r.text.splitlines() if l.strip()]
        expected = sum(1 for e in self.events if e["type"] == "attendance.reported")
        self.assertEqual(len(rows), expected + 1, "CSV: a header row and one row per event")

    # -- filters ------------------------------------------------------------

    def expected(self, lo=1, hi=None, **filt):
        hi = hi or N
        return [
            i + 1
            for i, e in enumerate(self.events)
            if lo <= i + 1 <= hi and kt.event_matches(e, **filt)
        ]

    def check_filter(self, args, expect):
        for where in (("--broker", self.broker.endpoint), ("--data", self.broker.data_dir)):
            got = self.replay(*where, *args)
            seqs = [g["seq"] for g in got]
            self.assertEqual(len(seqs), len(expect), "replay %s %s: count" % (where[0], " ".join(args)))
            self.assertEqual(seqs, expect, "replay %s %s: seqs" % (where[0], " ".join(args)))
            for g in got:
                self.assert_same_event(g, self.events[g["seq"] - 1], g["seq"])

    def test_filter_type_prefix(self):
        self.check_filter(["--type", "finding."], self.expected(type_prefix="finding."))
        self.check_filter(["--type", "visit.scheduled"], self.expected(type_prefix="visit.scheduled"))
        self.check_filter(["--type", "innovation"], self.expected(type_prefix="innovation"))

    def test_filter_source(self):
        self.check_filter(["--source", "inspektorat"], self.expected(source="inspektorat"))
        self.check_filter(["--source", "dinkes-takalar"], self.expected(source="dinkes-takalar"))
        self.check_filter(["--source", "no-such-agency"], [])

    def test_filter_target(self):
        # "concerns X": X among the targets, or a broadcast
        exp = self.expected(target="dinkes")
        self.assertTrue(any(not self.events[s - 1].get("targets") for s in exp))
        self.check_filter(["--target", "dinkes"], exp)
        self.check_filter(["--target", "kec-koto-tangah"], self.expected(target="kec-koto-tangah"))

    def test_filter_seq_range(self):
        self.check_filter(["--from", "4321", "--to", "5678"], self.expected(4321, 5678))
        self.check_filter(["--from", str(N)], [N])
        self.check_filter(
            ["--from", "1000", "--to", "60000", "--type", "finding.", "--source", "inspektorat", "--target", "bpkad"],
            self.expected(1000, 60000, type_prefix="finding.", source="inspektorat", target="bpkad"),
        )

    def test_filter_time_range(self):
        rat = [kt.parse_instant(e["received_at"]) for e in self.online]
        present = set(rat)

        def cut(i):
            # An instant just after event i's received_at that no event has
            # exactly, so that "at or after" and "before" are unambiguous.
            t = rat[i] + 1
            while t in present:
                t += 1
            return t, bisect.bisect_left(rat, t)

        since, lo = cut(N // 4)
        until, hi = cut(3 * N // 4)
        self.assertLess(lo, hi, "received_at does not advance; cannot cut the log by time")
        # events with since <= received_at < until: indexes lo .. hi-1
        exp = list(range(lo + 1, hi + 1))
        self.check_filter(["--since", kt.format_instant(since), "--until", kt.format_instant(until)], exp)
        self.check_filter(
            ["--since", kt.format_instant(since), "--until", kt.format_instant(until), "--type", "attendance."],
            self.expected(lo + 1, hi, type_prefix="attendance."),
        )
        # a period after the last event is empty
        self.check_filter(["--since", kt.format_instant(rat[-1] + 1)], [])

    # -- idempotent republishing -------------------------------------------

    def test_republish_is_duplicate(self):
        size_before = self.log_bytes()
        r = self.cli("publish", self.input_path, "--broker", self.broker.endpoint)
        self.assertEqual(r.rc, 0, r)
        res = r.json_lines()
        self.assertEqual(len(res), N)
        for i, x in enumerate(res):
            self.assertEqual(x.get("seq"), i + 1, "republished event %d: %r" % (i, x))
            self.assertIs(x.get("duplicate"), True, "republished event %d: %r" % (i, x))
        self.assertEqual(kt.head_seq(self.broker.endpoint), N, "the log grew on republishing")
        count = kt.RawClient(self.broker.endpoint)
        try:
            self.assertEqual(count.head()["count"], N)
        finally:
            count.close()
        # The data file does not grow by the size of a second copy.
        self.assertLess(self.log_bytes(), size_before + 4 * 1024 * 1024)

    def log_bytes(self):
        return sum(
            os.path.getsize(os.path.join(self.broker.data_dir, f))
            for f in os.listdir(self.broker.data_dir)
            if f.endswith(".mdb")
        )


if __name__ == "__main__":
    kt.main()
