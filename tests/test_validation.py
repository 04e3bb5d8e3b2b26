"""System test: bad input is refused with the documented code and a message
naming the field, through the CLI (client-side validation) and raw over
ZeroMQ (the broker's authoritative validation); garbage at the protocol
level is answered with ERR or dropped. After each, the broker serves the
next client normally.
"""

import copy
import random
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
import kabartest as kt  # noqa: E402

MAX_BATCH = 1024  # KABAR_MAX_BATCH in proto/wire.h

BASE = {
    "id": "insp-2023-014",
    "type": "finding.raised",
    "v": 1,
    "source": "inspektorat",
    "targets": ["dinkes"],
    "occurred_at": "2023-05-02T08:30:00+07:00",
    "corr": "F-2023-014",
    "body": {
        "finding_id": "F-2023-014",
        "auditee": "dinkes",
        "auditor": "inspektorat",
        "condition": "Attendance register not kept at two Puskesmas",
        "group": "internal_control",
        "amount_idr": 42500000,
        "recommendations": [{"rec_id": "R1", "text": "Introduce the electronic attendance register"}],
        "report_received": "2023-05-02",
        "due": "2023-07-01",
    },
}


def variant(fn, id_suffix):
    ev = copy.deepcopy(BASE)
    ev["id"] = BASE["id"] + "-" + id_suffix
    fn(ev)
    return ev


def _del(path):
    def f(ev):
        d = ev
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]

    return f


def _set(path, value):
    def f(ev):
        d = ev
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return f


def _big(ev):
    # Every string and array within its own limit; the whole over 64 KiB.
    ev["body"]["recommendations"] = [{"rec_id": "R%d" % i, "text": "x" * 4000} for i in range(1, 21)]


# (name, event, code, words the message must contain)
BAD_EVENTS = [
    ("unknown type", variant(_set(["type"], "finding.deleted"), "t"), "UNKNOWN_TYPE", ["finding.deleted"]),
    ("missing required body field", variant(_del(["body", "condition"]), "m"), "MISSING_FIELD", ["condition"]),
    ("missing required nested field", variant(_del(["body", "recommendations", 0, "rec_id"]), "mn"), "MISSING_FIELD", ["rec_id"]),
    ("missing body", variant(_del(["body"]), "mb"), "MISSING_FIELD", ["body"]),
    ("unknown body field", variant(_set(["body", "kondisi"], "typo of condition"), "u"), "UNKNOWN_FIELD", ["kondisi"]),
    ("unknown envelope field", variant(_set(["priority"], 1), "ue"), "UNKNOWN_FIELD", ["priority"]),
    ("wrong type", variant(_set(["body", "amount_idr"], "42500000"), "w"), "WRONG_TYPE", ["amount_idr"]),
    ("wrong type of array", variant(_set(["body", "recommendations"], "R1"), "wa"), "WRONG_TYPE", ["recommendations"]),
    ("bad date format", variant(_set(["body", "due"], "01/07/2023"), "d1"), "BAD_VALUE", ["due"]),
    ("impossible date", variant(_set(["body", "due"], "2023-02-30"), "d2"), "BAD_VALUE", ["due"]),
    ("bad enum value", variant(_set(["body", "group"], "other"), "e"), "BAD_VALUE", ["group"]),
    # (the CLI copies a target field into targets, so its message may name either place; the value identifies it)
    ("bad agency id in body", variant(_set(["body", "auditee"], "Dinas Kesehatan"), "a1"), "BAD_VALUE", [("auditee", "Dinas Kesehatan")]),
    ("bad agency id as source", variant(_set(["source"], "Inspektorat!"), "a2"), "BAD_VALUE", ["source"]),
    ("bad agency id in targets", variant(_set(["targets"], ["dinkes", "-x"]), "a3"), "BAD_VALUE", ["targets"]),
    ("negative amount", variant(_set(["body", "amount_idr"], -5), "n"), "BAD_VALUE", ["amount_idr"]),
    ("too big", variant(_big, "big"), "TOO_BIG", []),
]


class Validation(kt.KabarTestCase):
    def setUp(self):
        super().setUp()
        self.b = self.start_broker()
        self.good_n = 0

    def good_event(self):
        self.good_n += 1
        return variant(lambda ev: None, "good-%d" % self.good_n)

    def assert_serves_next_client(self):
        """A new CLI client publishes a valid event and gets a new seq."""
        res = self.publish(self.b, [self.good_event()])
        self.assertNotIn("error", res[0], res[0])
        self.assertGreater(res[0]["seq"], 0)
        self.assertIs(res[0]["duplicate"], False)
        return res[0]["seq"]

    def assert_rejection(self, r, code, words, what):
        self.assertEqual(r.get("error"), code, "%s: %r" % (what, r))
        self.assertEqual(r.get("seq", 0), 0, "%s: a rejected event has no seq: %r" % (what, r))
        msg = r.get("message") or ""
        self.assertTrue(msg.strip(), "%s: no message: %r" % (what, r))
        self.assert_names(msg, words, what)

    def assert_names(self, msg, words, what):
        # each word must be in the message; a tuple means one of its words
        for w in words:
            alts = w if isinstance(w, tuple) else (w,)
            self.assertTrue(any(a in msg for a in alts), "%s: the message should name %r: %r" % (what, w, msg))

    # -- through the CLI -----------------------------------------------------

    def test_cli_rejections(self):
        for name, ev, code, words in BAD_EVENTS:
            with self.subTest(name):
                res = self.publish(self.b, [ev], expect_rc=1)
                self.assert_rejection(res[0], code, words, name)
                self.assert_serves_next_client()

    def test_cli_mixed_batch(self):
        # Good and bad events in one input: each gets its own answer, in order.
        evs = [self.good_event(), BAD_EVENTS[1][1], self.good_event(), BAD_EVENTS[6][1], self.good_event()]
        res = self.publish(self.b, evs, expect_rc=1)
        self.assertEqual([("error" in r) for r in res], [False, True, False, True, False], res)
        seqs = [r["seq"] for r in res if "error" not in r]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), 3)
        self.assertEqual(kt.head_seq(self.b.endpoint), 3, "rejected events must not be stored")

    def test_cli_bad_json(self):
        good = kt.to_jsonl([self.good_event()])
        r = self.cli("publish", "-", "--broker", self.b.endpoint, input=b'{"id": "x", "type": \n' + good)
        self.assertEqual(r.rc, 1, r)
        res = r.json_lines()
        self.assertEqual(len(res), 2, r)
        self.assertEqual(res[0].get("error"), "BAD_JSON", res)
        self.assertTrue(res[0].get("message"), res)
        self.assertNotIn("error", res[1], res)

    # -- raw over ZeroMQ: the broker's own validation ---------------------------

    def raw_reject(self, frames_list, code, words, what):
        c = kt.RawClient(self.b.endpoint)
        try:
            head = c.head()["seq"]
            results = c.publish(frames_list)
            self.assertEqual(len(results), len(frames_list), what)
            for res in results:
                # rejected: [0, false, "CODE", "text"]
                self.assertEqual(res[0], 0, "%s: %r" % (what, res))
                self.assertIs(res[1], False, "%s: %r" % (what, res))
                codes = code if isinstance(code, tuple) else (code,)
                self.assertIn(res[2], codes, "%s: %r" % (what, res))
                self.assertTrue(res[3].strip(), "%s: empty message" % what)
                self.assert_names(res[3], words, what)
            self.assertEqual(c.head()["seq"], head, "%s: a rejected event was stored" % what)
            # the same connection still works
            good = c.publish([kt.event_msgpack(self.good_event())])
            self.assertGreater(good[0][0], head, "%s: then a good event: %r" % (what, good))
        finally:
            c.close()
        self.assert_serves_next_client()

    def test_raw_rejections(self):
        for name, ev, code, words in BAD_EVENTS:
            with self.subTest(name):
                self.raw_reject([kt.event_msgpack(ev)], code, words, name)

    def test_raw_good_event_is_accepted(self):
        # The test's own canonical encoder agrees with the broker.
        c = self.raw(self.b)
        res = c.publish([kt.event_msgpack(self.good_event())])
        self.assertEqual(len(res), 1)
        self.assertEqual(res[0][:2], [1, False], res)

    def test_raw_not_canonical(self):
        good = kt.event_msgpack(self.good_event())
        # "v": 1 as a uint16 instead of a fixint
        self.assertIn(b"\xa1v\x01", good)
        wide_int = good.replace(b"\xa1v\x01", b"\xa1v\xcd\x00\x01", 1)
        self.raw_reject([wide_int], "NOT_CANONICAL", [], "integer in a wider form than needed")
        # "type" key as str8 instead of fixstr
        str8 = good.replace(b"\xa4type", b"\xd9\x04type", 1)
        self.raw_reject([str8], "NOT_CANONICAL", [], "string in a wider form than needed")
        # map keys out of order
        ev = self.good_event()
        unsorted = kt.msgpack.packb(
            {"type": ev["type"], "body": kt._sorted_for_pack(ev["body"]), "id": ev["id"], "v": 1, "source": ev["source"], "targets": ev["targets"]},
            use_bin_type=True,
        )
        self.raw_reject([unsorted], "NOT_CANONICAL", [], "map keys not sorted")

    def test_raw_garbage_event(self):
        rng = random.Random(7)
        garbage = bytes(rng.getrandbits(8) for _ in range(200))
        self.raw_reject([b"\xc1"], "MALFORMED", [], "the never-used msgpack byte 0xc1")
        self.raw_reject([b"\x85\xa2id"], "MALFORMED", [], "truncated map")
        # text: "n" reads as an integer, so "not a map" is as right as "trailing bytes"
        self.raw_reject([b"not msgpack at all, just text"], ("MALFORMED", "WRONG_TYPE"), [], "text")
        # random bytes: any clear rejection code, but a rejection
        c = kt.RawClient(self.b.endpoint)
        try:
            res = c.publish([garbage, b"", b"\xdf\xff\xff\xff\xff"])
            self.assertEqual(len(res), 3)
            for r in res:
                self.assertEqual(r[0], 0, r)
                self.assertIn(r[2], ("MALFORMED", "NOT_CANONICAL", "WRONG_TYPE", "LIMIT", "TOO_BIG"), r)
        finally:
            c.close()
        self.assert_serves_next_client()

    def test_raw_too_big_frame(self):
        ev = self.good_event()
        ev["body"]["condition"] = "y" * 4000
        big = kt.event_msgpack(ev) + b"z" * 70000  # trailing bytes too: size is checked first
        self.raw_reject([big], "TOO_BIG", [], "a frame over 64 KiB")

    # -- protocol garbage --------------------------------------------------------

    def assert_err_or_silence(self, c, frames, what, codes=None, want_id=None):
        """Send raw frames; the answer must be ERR (with one of codes) or nothing."""
        c.send_raw(frames)
        m = c.recv(timeout=3.0)
        if m is not None:
            hdr, _ = m
            self.assertIsInstance(hdr, list, "%s: unreadable answer" % what)
            self.assertEqual(hdr[0], 1, "%s: %r" % (what, hdr))
            self.assertEqual(hdr[1], "ERR", "%s: answered with %r" % (what, hdr))
            if codes:
                self.assertIn(hdr[3], codes, "%s: %r" % (what, hdr))
            if want_id is not None:
                self.assertEqual(hdr[2], want_id, "%s: %r" % (what, hdr))
        # the same connection still works, and so does a new client
        self.assertTrue(c.ping(), "%s: no PONG after" % what)

    def test_protocol_garbage(self):
        rng = random.Random(11)
        c = self.raw(self.b)
        head = c.head()["seq"]
        hdr_codes = ("MALFORMED", "PROTOCOL", "LIMIT")
        for i in range(20):
            frames = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))) for _ in range(rng.randint(1, 4))]
            if frames[0][:1] in (b"\x93", b"\x94", b"\x95", b"\x92"):
                frames[0] = b"\xc1" + frames[0]
            self.assert_err_or_silence(c, frames, "random frames #%d" % i, hdr_codes)
        pk = kt.canonical_packb
        self.assert_err_or_silence(c, [pk({"cmd": "PING"})], "a map as header", hdr_codes)
        self.assert_err_or_silence(c, [pk(["1", "PING", 3])], "version as a string", hdr_codes + ("BAD_VERSION",))
        self.assert_err_or_silence(c, [pk([1, "PING", "three"])], "id as a string", hdr_codes)
        self.assert_err_or_silence(c, [pk([1])], "header too short", hdr_codes)
        self.assert_err_or_silence(c, [b"\x93\x01"], "truncated header", hdr_codes)
        self.assert_err_or_silence(c, [pk([1, "PING", 4, "x" * 5000])], "header over 4 KiB", hdr_codes)
        self.assert_err_or_silence(c, [b""], "empty message", hdr_codes)
        self.assert_err_or_silence(c, [pk([1, "FROB", 7])], "unknown command", ("UNKNOWN_COMMAND",), 7)
        self.assert_err_or_silence(c, [pk([1, "ACK", 8, []])], "a broker-only command", ("UNKNOWN_COMMAND", "PROTOCOL"))
        # Version and command are checked. Another version's header layout is
        # unknown, so its ERR may carry id 0 (PROTOCOL.md "ERR").
        for ver, rid in ((2, 5), (0, 6), (99, 9)):
            c.send("PING", rid, version=ver)
            m = c.recv(timeout=30)
            self.assertIsNotNone(m, "version %d: no answer" % ver)
            self.assertEqual(m[0][:2], [1, "ERR"], "version %d" % ver)
            self.assertIn(m[0][2], (0, rid), "version %d" % ver)
            self.assertEqual(m[0][3], "BAD_VERSION", "version %d" % ver)
        c.send("FROB", 10)
        m = c.recv(timeout=30)
        self.assertIsNotNone(m, "unknown command: no answer")
        self.assertEqual(m[0][:4], [1, "ERR", 10, "UNKNOWN_COMMAND"])
        # Too many frames in one PUB: refused as a whole, nothing stored.
        good = [kt.event_msgpack(variant(lambda e: None, "many-%d" % i)) for i in range(MAX_BATCH + 1)]
        c.send_pub(12, good)
        m = c.recv(timeout=60)
        if m is not None:
            self.assertEqual(m[0][1], "ERR", "PUB of %d events: %r" % (len(good), m[0][:4]))
            self.assertEqual(m[0][2], 12)
        # Bad SUB options are refused, not half-accepted.
        self.assert_err_or_silence(c, [pk([1, "SUB", 13, {"start": "yesterday"}])], "SUB with a bad start")
        self.assert_err_or_silence(c, [pk([1, "SUB", 14, {"target": "Not An Agency"}])], "SUB with a bad target")
        self.assertEqual(c.head()["seq"], head, "garbage must not store anything")
        self.assert_serves_next_client()


if __name__ == "__main__":
    kt.main()
