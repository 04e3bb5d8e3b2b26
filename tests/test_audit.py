#!/usr/bin/env python3
"""System tests of `kabar audit` and verifiable exports (issue 5) with a real
kabard (secure: CURVE and signed events, through tests/kabartest.py).

One broker is started for the class and a few hundred events published in
several PUBs, some seconds apart, so that the log has several signed
batches, checkpoints and receive times. Tamper tests work on copies of the
data directory (mdb_copy while kabard runs), edited with lmdb-utils'
mdb_dump/mdb_load: change one byte of an event, delete an event, swap two,
change an index entry, replace a checkpoint; `kabar audit verify` must exit
1 and name the right seq each time. Proofs and exports are checked with
the log key only, and the checkpoint text is rebuilt byte for byte in
Python from the records (RFC 9162 and C2SP signed-note, independently of
the C code).
"""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import unittest

import kabartest as kt

# KABAR_AUDIT_TEST_INSECURE=1 runs the same tests against a kabard
# --insecure (unsigned events): for working on the audit tools while the
# secure transport is being changed. ctest runs them secure.
INSECURE = bool(os.environ.get("KABAR_AUDIT_TEST_INSECURE"))

N_FIRST = 120  # events before the auditor saves a checkpoint
N_TOTAL = 320


# ---------------------------------------------------------------------------
# The data directory, through mdb_dump / mdb_load


class Dump:
    """Every named database of DIR/log.mdb as {name: (header, [(key, value)])}."""

    def __init__(self, path):
        out = subprocess.run(
            ["mdb_dump", "-n", "-a", path], check=True, stdout=subprocess.PIPE
        ).stdout.decode()
        self.dbs = {}
        self.order = []
        lines = out.split("\n")
        i = 0
        while i < len(lines):
            if not lines[i].startswith("VERSION="):
                i += 1
                continue
            header = []
            while lines[i] != "HEADER=END":
                header.append(lines[i])
                i += 1
            i += 1
            name = [h.split("=", 1)[1] for h in header if h.startswith("database=")][0]
            pairs = []
            while lines[i] != "DATA=END":
                pairs.append([bytes.fromhex(lines[i][1:]), bytes.fromhex(lines[i + 1][1:])])
                i += 2
            self.dbs[name] = (header, pairs)
            self.order.append(name)

    def pairs(self, name):
        return self.dbs[name][1]

    def write(self, path):
        """Replace the log at path with this content (a fresh environment)."""
        text = []
        for name in self.order:
            header, pairs = self.dbs[name]
            # What mdb_load does not read back (it keeps dupsort/dupfixed).
            text.extend(h for h in header if not h.startswith(("db_pagesize=", "duplicates=")))
            text.append("HEADER=END")
            for k, v in pairs:
                text.append(" " + k.hex())
                text.append(" " + v.hex())
            text.append("DATA=END")
        for p in (path, path + "-lock"):
            if os.path.exists(p):
                os.unlink(p)
        subprocess.run(
            ["mdb_load", "-n", "-f", "/dev/stdin", path],
            input=("\n".join(text) + "\n").encode(),
            check=True,
        )


def load_json(path):
    with open(path) as f:
        return json.load(f)


def save_json(doc, path):
    with open(path, "w") as f:
        json.dump(doc, f)


def read_text(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def seq_key(seq):
    return seq.to_bytes(8, "big")


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def mth(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k < len(leaves) - k:
        k <<= 1
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def inclusion_path(leaves, m):
    """RFC 9162 PATH(m, D[n]) over leaf hashes, bottom first."""
    if len(leaves) == 1:
        return []
    k = 1
    while k < len(leaves) - k:
        k <<= 1
    if m < k:
        return inclusion_path(leaves[:k], m) + [mth(leaves[k:])]
    return inclusion_path(leaves[k:], m - k) + [mth(leaves[:k])]


PROBLEM = re.compile(r"^seq (\d+): ")


def problem_seqs(lines):
    return [int(m.group(1)) for m in (PROBLEM.match(l) for l in lines) if m]


class AuditTest(kt.KabarTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ctmp = kt.make_tmpdir()
        cls.b = kt.Broker(os.path.join(cls.ctmp, "data"), args=["--checkpoint-events", "100"],
                           insecure=INSECURE)
        cls.b.start()
        fac = kt.EventFactory(seed=5)
        # Sources that are agents only (an agent signs its own events; the
        # harness provisions setda as oversight).
        events = [e for e in fac.make_many(3 * N_TOTAL) if kt.default_role(e["source"]) == "agent"]
        events = events[:N_TOTAL]
        assert len(events) == N_TOTAL
        cls.events = events
        ep = cls.b.endpoint

        def publish(evs):
            kt.ensure_sources(cls.b, evs)
            r = kt.run_cli("publish", "-", "--broker", ep, input=kt.to_jsonl(evs))
            if r.rc != 0:
                raise AssertionError("publish failed: %r" % r)

        auditor = cls.b.env(kt.AUDITOR)
        publish(events[:60])
        time.sleep(0.05)
        publish(events[60:N_FIRST])
        r = kt.run_cli("audit", "checkpoint", "--new", "--broker", ep, env=auditor)
        if r.rc != 0:
            raise AssertionError("audit checkpoint --new: %r" % r)
        cls.early_note = r.out
        cls.early = os.path.join(cls.ctmp, "early.checkpoint")
        with open(cls.early, "wb") as f:
            f.write(r.out)
        # Three more PUBs with distinct receive times for the period tests.
        for a, z in ((N_FIRST, 200), (200, 260), (260, N_TOTAL)):
            time.sleep(0.3)
            publish(events[a:z])
        r = kt.run_cli("audit", "checkpoint", "--new", "--broker", ep, env=auditor)
        if r.rc != 0:
            raise AssertionError("audit checkpoint --new: %r" % r)
        cls.latest = os.path.join(cls.ctmp, "latest.checkpoint")
        with open(cls.latest, "wb") as f:
            f.write(r.out)
        cls.vkey = os.path.join(cls.b.data_dir, "broker.vkey")

    @classmethod
    def tearDownClass(cls):
        if cls.b.running():
            cls.b.stop()
        if not os.environ.get("KABAR_KEEP_TMP"):
            shutil.rmtree(cls.ctmp, True)
        super().tearDownClass()

    # -- helpers ------------------------------------------------------------

    def copy(self):
        """A copy of the running broker's data directory (mdb_copy)."""
        d = os.path.join(self.tmp, "copy%d" % len(os.listdir(self.tmp)))
        os.mkdir(d)
        subprocess.run(
            ["mdb_copy", "-n", os.path.join(self.b.data_dir, "log.mdb"), os.path.join(d, "log.mdb")],
            check=True,
        )
        for f in ("broker.pub", "broker.vkey"):
            shutil.copy(os.path.join(self.b.data_dir, f), d)
        return d

    def verify(self, data, *extra):
        r = self.cli("audit", "verify", "--data", data, *extra)
        self.assertIn(r.rc, (0, 1), r)
        return r

    def assert_fails_naming(self, r, seq, what=None):
        self.assertEqual(r.rc, 1, r)
        lines = r.lines()
        self.assertTrue(lines, r)
        self.assertEqual(problem_seqs(lines)[:1], [seq], "first problem must name seq %d:\n%s" % (seq, r.text))
        if what:
            self.assertIn(what, lines[0])
        return lines

    def auditor(self):
        return self.b.env(kt.AUDITOR)

    # -- intact -------------------------------------------------------------

    def test_verify_intact_offline_and_online(self):
        d = self.copy()
        r = self.verify(d)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, b"", r)
        self.assertIn("ok: %d events" % N_TOTAL, r.errtext)
        # Live data directory (read-only, kabard running) and online as the auditor.
        r = self.verify(self.b.data_dir)
        self.assertEqual(r.rc, 0, r)
        key = ["--log-key", self.vkey] if INSECURE else []  # secure: the pinned server key
        r = self.cli("audit", "verify", "--broker", self.b.endpoint, *key, env=self.auditor())
        self.assertEqual(r.rc, 0, r)
        self.assertIn("ok: %d events" % N_TOTAL, r.errtext)
        # The saved checkpoint is extended by the log.
        r = self.verify(d, "--since-checkpoint", self.early)
        self.assertEqual(r.rc, 0, r)

    @unittest.skipIf(INSECURE, "every peer may do everything in --insecure mode")
    def test_agent_may_not_verify_online(self):
        agent = next(a for a in self.b.registered if kt.default_role(a) == "agent")
        r = self.cli("audit", "verify", "--broker", self.b.endpoint, env=self.b.env(agent))
        self.assertEqual(r.rc, 2, r)
        self.assertEqual(r.out, b"", r)  # no verdict printed
        self.assertRegex(r.errtext, r"audit\.\w+", r)  # the refused call is named

    # -- tampering ----------------------------------------------------------

    def test_changed_byte(self):
        d = self.copy()
        dump = Dump(os.path.join(d, "log.mdb"))
        ev = dump.pairs("events")
        i = [k for k, _ in ev].index(seq_key(123))
        v = bytearray(ev[i][1])
        v[len(v) - 5] ^= 0x01  # inside the event's bytes (the body)
        ev[i][1] = bytes(v)
        dump.write(os.path.join(d, "log.mdb"))
        lines = self.assert_fails_naming(self.verify(d), 123)
        self.assertNotIn(122, problem_seqs(lines))
        self.assertNotIn(124, problem_seqs(lines))
        # The saved early checkpoint (size 120) is still extended; a later one is not.
        r = self.verify(d, "--since-checkpoint", self.latest)
        self.assertTrue(any("no longer extends the saved checkpoint" in l for l in r.lines()), r)

    def test_changed_receive_time(self):
        d = self.copy()
        dump = Dump(os.path.join(d, "log.mdb"))
        ev = dump.pairs("events")
        i = [k for k, _ in ev].index(seq_key(50))
        v = bytearray(ev[i][1])
        v[8] ^= 0x01  # the low byte of received_at: only the tree can tell
        ev[i][1] = bytes(v)
        dump.write(os.path.join(d, "log.mdb"))
        r = self.verify(d)
        self.assertEqual(r.rc, 1, r)
        # Seq 50 is leaf 49, paired with seq 49 under one tree node: the line names both.
        self.assertIn("seq 50", r.lines()[0])
        r = self.verify(d, "--since-checkpoint", self.early)
        self.assertTrue(any("no longer extends the saved checkpoint of size %d" % N_FIRST in l for l in r.lines()), r)

    @unittest.skipIf(INSECURE, "no signed batches in --insecure mode")
    def test_changed_batch_signature(self):
        d = self.copy()
        dump = Dump(os.path.join(d, "log.mdb"))
        batches = dump.pairs("batches")
        self.assertGreaterEqual(len(batches), 2, "the PUBs were stored as signed batches")
        bid = int.from_bytes(batches[1][0], "big")
        v = bytearray(batches[1][1])
        v[32 + 10] ^= 0x40  # inside the Ed25519 signature
        batches[1][1] = bytes(v)
        dump.write(os.path.join(d, "log.mdb"))
        # Record format 2: batch id at offset 9.
        seqs = [int.from_bytes(k, "big") for k, val in dump.pairs("events")
                if int.from_bytes(val[9:17], "big") == bid]
        self.assertTrue(seqs)
        r = self.verify(d)
        lines = self.assert_fails_naming(r, min(seqs), "does not verify")
        self.assertEqual(sorted(set(problem_seqs(lines))), seqs)
        # replay --verify says so for those events only.
        recs = self.replay("--data", d, "--verify", "--from", str(min(seqs) - 1), "--to", str(max(seqs)))
        bad = [x["seq"] for x in recs if x["signature"] != "valid"]
        self.assertEqual(bad, seqs)

    def test_deleted_event(self):
        d = self.copy()
        dump = Dump(os.path.join(d, "log.mdb"))
        ev = dump.pairs("events")
        ev[:] = [p for p in ev if p[0] != seq_key(150)]
        dump.write(os.path.join(d, "log.mdb"))
        self.assert_fails_naming(self.verify(d), 150, "missing")

    def test_deleted_last_event(self):
        d = self.copy()
        dump = Dump(os.path.join(d, "log.mdb"))
        ev = dump.pairs("events")
        ev[:] = [p for p in ev if p[0] != seq_key(N_TOTAL)]
        dump.write(os.path.join(d, "log.mdb"))
        r = self.verify(d)
        self.assertEqual(r.rc, 1, r)
        self.assertIn(N_TOTAL, problem_seqs(r.lines()), r)

    def test_swapped_events(self):
        d = self.copy()
        dump = Dump(os.path.join(d, "log.mdb"))
        ev = dump.pairs("events")
        keys = [k for k, _ in ev]
        a, z = keys.index(seq_key(70)), keys.index(seq_key(170))
        ev[a][1], ev[z][1] = ev[z][1], ev[a][1]
        dump.write(os.path.join(d, "log.mdb"))
        lines = self.assert_fails_naming(self.verify(d), 70)
        self.assertIn(170, problem_seqs(lines))

    def test_changed_index_entry(self):
        d = self.copy()
        dump = Dump(os.path.join(d, "log.mdb"))
        by_source = dump.pairs("by_source")
        # Move one entry of agency A to a seq published by another agency.
        src_a, seq_a = by_source[0][0], int.from_bytes(by_source[0][1], "big")
        other = next(p for p in by_source if p[0] != src_a)
        seq_b = int.from_bytes(other[1], "big")
        by_source[0][1] = seq_key(seq_b)
        by_source.sort()
        dump.write(os.path.join(d, "log.mdb"))
        r = self.verify(d)
        self.assertEqual(r.rc, 1, r)
        bad = [l for l in r.lines() if "by_source" in l]
        self.assertTrue(any(l.startswith("seq %d: " % seq_b) for l in bad), r)  # where it points
        self.assertTrue(any(l.startswith("seq %d: " % seq_a) for l in bad), r)  # what lost it

    def test_dedup_key_without_nul(self):
        """A dedup key is "source NUL id"; one with no NUL at all is named as
        malformed at the seq it points at (and not read past its end)."""
        d = self.copy()
        dump = Dump(os.path.join(d, "log.mdb"))
        dedup = dump.pairs("dedup")
        i = next(j for j, (k, v) in enumerate(dedup) if int.from_bytes(v, "big") == 77)
        src, eid = dedup[i][0].split(b"\x00", 1)
        dedup[i][0] = src + b"|" + eid
        dedup.sort()
        dump.write(os.path.join(d, "log.mdb"))
        r = self.verify(d)
        self.assertEqual(r.rc, 1, r)
        want = 'seq 77: the dedup entry "%s|%s" points at this seq, but is malformed' % (
            src.decode(), eid.decode())
        self.assertTrue(any(l.startswith(want) for l in r.lines()), r)
        self.assertEqual(set(problem_seqs(r.lines())), {77}, r)

    def test_replaced_checkpoint(self):
        d = self.copy()
        dump = Dump(os.path.join(d, "log.mdb"))
        cps = dump.pairs("checkpoints")
        self.assertGreaterEqual(len(cps), 2, "the broker made checkpoints")
        size = int.from_bytes(cps[0][0], "big")
        lines = cps[0][1].split(b"\n")
        lines[2] = base64.b64encode(hashlib.sha256(b"another root").digest())  # the root line
        cps[0][1] = b"\n".join(lines)
        dump.write(os.path.join(d, "log.mdb"))
        self.assert_fails_naming(self.verify(d), size, "checkpoint")

    def test_checkpoint_signed_by_another_key(self):
        d = self.copy()
        dump = Dump(os.path.join(d, "log.mdb"))
        cps = dump.pairs("checkpoints")
        size = int.from_bytes(cps[-1][0], "big")
        origin, n, root = cps[-1][1].split(b"\n")[:3]
        other = kt.nacl.signing.SigningKey.generate()
        cps[-1][1] = c2sp_note(origin.decode(), int(n), base64.b64decode(root), other)
        dump.write(os.path.join(d, "log.mdb"))
        self.assert_fails_naming(self.verify(d), size, "does not verify")

    # -- proofs -------------------------------------------------------------

    def test_proofs_check_against_saved_checkpoints(self):
        t = self.tmp
        for fmt in ("text", "json"):
            for src in (["--broker", self.b.endpoint], ["--data", self.b.data_dir]):
                r = self.cli("audit", "prove", "77", "--size", str(N_FIRST), "--format", fmt, *src,
                             env=self.auditor())
                self.assertEqual(r.rc, 0, r)
                p = os.path.join(t, "p77." + fmt)
                with open(p, "wb") as f:
                    f.write(r.out)
                r = self.cli("audit", "check-proof", p, "--checkpoint", self.early, "--log-key", self.vkey)
                self.assertEqual(r.rc, 0, r)
                self.assertIn("seq 77 is in the log", r.text)
        # The text form, field by field.
        text = read_text(os.path.join(t, "p77.text")).split("\n")
        self.assertEqual(text[0], "kabar-proof inclusion")
        self.assertEqual(text[2:4], ["size %d" % N_FIRST, "seq 77"])
        # A changed hash fails; so does a checkpoint of another size.
        bad = [l if not l.startswith("hash ") else "hash " + base64.b64encode(b"\x00" * 32).decode()
               for l in text]
        with open(os.path.join(t, "bad"), "w") as f:
            f.write("\n".join(bad))
        r = self.cli("audit", "check-proof", os.path.join(t, "bad"), "--checkpoint", self.early,
                     "--log-key", self.vkey)
        self.assertEqual(r.rc, 1, r)
        r = self.cli("audit", "check-proof", os.path.join(t, "p77.text"), "--checkpoint", self.latest,
                     "--log-key", self.vkey)
        self.assertEqual(r.rc, 1, r)
        # Consistency from the saved checkpoint to the latest, with the log key as broker.pub too.
        size_latest = int(read_text(self.latest).split("\n")[1])
        r = self.cli("audit", "consistency", str(N_FIRST), str(size_latest), "--broker", self.b.endpoint,
                     env=self.auditor())
        self.assertEqual(r.rc, 0, r)
        with open(os.path.join(t, "c"), "wb") as f:
            f.write(r.out)
        for key in (self.vkey, os.path.join(self.b.data_dir, "broker.pub")):
            r = self.cli("audit", "check-proof", os.path.join(t, "c"), "--checkpoint", self.early,
                         "--checkpoint", self.latest, "--log-key", key)
            self.assertEqual(r.rc, 0, r)
            self.assertIn("extends", r.text)

    def test_checkpoint_text_byte_exact(self):
        """The printed checkpoint is exactly the C2SP note rebuilt in Python
        from the stored records and the broker's key."""
        d = self.copy()
        r = self.cli("audit", "checkpoint", "--data", d)
        self.assertEqual(r.rc, 0, r)
        note = r.out
        size = int(note.split(b"\n")[1])
        dump = Dump(os.path.join(d, "log.mdb"))
        records = [v for _, v in dump.pairs("events")][:size]
        root = mth([leaf_hash(v) for v in records])
        origin = note.split(b"\n")[0].decode()
        sk = kt.load_secret(os.path.join(self.b.data_dir, "broker.key"))
        self.assertEqual(note, c2sp_note(origin, size, root, sk))
        # The golden vector of docs/MERKLE.md has the same layout.
        golden = read_text(os.path.join(kt.SOURCE_DIR, "proto", "vectors", "checkpoint.golden"), "rb")
        self.assertRegex(golden, rb"^[^\n]+\n\d+\n[A-Za-z0-9+/]{43}=\n\n\xe2\x80\x94 [^ ]+ [A-Za-z0-9+/=]+\n$")
        self.assertRegex(note, rb"^[^\n]+\n\d+\n[A-Za-z0-9+/]{43}=\n\n\xe2\x80\x94 [^ ]+ [A-Za-z0-9+/=]+\n$")

    # -- exports ------------------------------------------------------------

    def export(self, name, *filters, online=True):
        path = os.path.join(self.tmp, name)
        src = ["--broker", self.b.endpoint] if online else ["--data", self.b.data_dir]
        r = self.cli("replay", *src, "--with-proof", path, *filters, env=self.auditor())
        self.assertEqual(r.rc, 0, r)
        return path

    def check_export(self, path):
        return self.cli("audit", "check-export", path, "--log-key", self.vkey)

    def test_filtered_export(self):
        source = self.events[10]["source"]
        path = self.export("by_source.json", "--source", source)
        r = self.check_export(path)
        self.assertEqual(r.rc, 0, r)
        doc = load_json(path)
        marked = [x for x in doc["records"] if x["match"]]
        want = [e["id"] for e in self.events if e["source"] == source]
        self.assertEqual(len(marked), len(want))
        self.assertTrue(all(("signature" in x) != INSECURE for x in marked))
        # One matching event removed: the range proof and the count fail.
        drop = doc["records"].index(marked[len(marked) // 2])
        bad = dict(doc, records=doc["records"][:drop] + doc["records"][drop + 1 :])
        p2 = os.path.join(self.tmp, "removed.json")
        save_json(bad, p2)
        r = self.check_export(p2)
        self.assertEqual(r.rc, 1, r)
        # The same event kept but not marked: named as left out.
        doc2 = load_json(path)
        doc2["records"][drop]["match"] = False
        p3 = os.path.join(self.tmp, "unmarked.json")
        save_json(doc2, p3)
        r = self.check_export(p3)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("seq %d: matches the filter but is not marked" % doc2["records"][drop]["seq"], r.text)
        # A changed record.
        doc3 = load_json(path)
        raw = bytearray(base64.b64decode(doc3["records"][drop]["record"]))
        raw[-3] ^= 1
        doc3["records"][drop]["record"] = base64.b64encode(bytes(raw)).decode()
        p4 = os.path.join(self.tmp, "changed.json")
        save_json(doc3, p4)
        r = self.check_export(p4)
        self.assertEqual(r.rc, 1, r)

    def test_period_export(self):
        recs = self.replay("--data", self.b.data_dir, "--from", str(N_FIRST + 1), "--to", "261")
        since = recs[0]["received_at"]  # seq 121, the first of the third PUB
        until = recs[-1]["received_at"]  # seq 261, the first of the last PUB
        path = self.export("period.json", "--type", "finding.", "--since", since, "--until", until,
                           online=False)
        r = self.check_export(path)
        self.assertEqual(r.rc, 0, r)
        doc = load_json(path)
        self.assertEqual((doc["first"], doc["last"]), (N_FIRST + 1, 260))
        seqs = [x["seq"] for x in doc["records"]]
        self.assertEqual(seqs, list(range(N_FIRST, 262)))  # with the two boundary records
        # Without the lower boundary record the export cannot prove where the period starts.
        bad = dict(doc, records=doc["records"][1:])
        p2 = os.path.join(self.tmp, "noboundary.json")
        save_json(bad, p2)
        self.assertEqual(self.check_export(p2).rc, 1)

    def registry(self):
        """The auditor's registry file: `kabar agency list --format json`."""
        path = os.path.join(self.tmp, "registry.jsonl")
        r = self.cli("agency", "list", "--format", "json", "--data", self.b.data_dir)
        self.assertEqual(r.rc, 0, r)
        with open(path, "wb") as f:
            f.write(r.out)
        return path

    @staticmethod
    def forge_signature(rec, sk, agency):
        """A signature object for the export record rec: a fake batch of
        index+1 events signed by sk, the record's event at its index, and
        the claim that the key is agency's."""
        raw = base64.b64decode(rec["record"])
        index = int.from_bytes(raw[17:21], "big")
        leaves = [hashlib.sha256(b"fake %d" % i).digest() for i in range(index + 1)]
        leaves[index] = leaf_hash(raw[21:])
        msg = b"kabar-batch-v1\n" + len(leaves).to_bytes(4, "big") + mth(leaves)
        pk = bytes(sk.verify_key)
        return {"key": kt.public_text(pk), "key_id": kt.key_id(pk), "agency": agency,
                "valid_from": None, "revoked_at": None,
                "sig": base64.b64encode(sk.sign(msg).signature).decode(),
                "n": len(leaves), "index": index,
                "path": [base64.b64encode(h).decode() for h in inclusion_path(leaves, index)]}

    @unittest.skipIf(INSECURE, "unsigned events carry no signature to forge")
    def test_export_signer_checked_against_the_auditors_registry(self):
        """The signature object of an export is not committed by the tree: an
        exporter can sign a fake one-event batch with a key of their own and
        claim any agency. check-export takes whose key it is from --registry
        (or --agency-key) only, and says so when it was not given."""
        import nacl.signing

        source = self.events[10]["source"]
        path = self.export("signed.json", "--source", source)
        reg = self.registry()
        # Genuine: verified against the registry.
        r = self.cli("audit", "check-export", path, "--log-key", self.vkey, "--registry", reg)
        self.assertEqual(r.rc, 0, r)
        doc = load_json(path)
        marked = [x for x in doc["records"] if x["match"]]
        self.assertIn("; %d signatures verified" % len(marked), r.text)
        self.assertNotIn("NOT VERIFIED", r.text)
        # Genuine without a registry: the Merkle checks pass, the agencies are not verified.
        r = self.check_export(path)
        self.assertEqual(r.rc, 0, r)
        notes = [l for l in r.lines() if "agency NOT VERIFIED (no --registry)" in l]
        self.assertEqual(problem_seqs(notes), [x["seq"] for x in marked], r)
        self.assertIn("agency signatures NOT VERIFIED", r.lines()[-1])
        self.assertNotIn("signatures verified", r.text)
        # Forged by the exporter's own unregistered key, claiming the source agency.
        victim = marked[len(marked) // 2]
        forged = load_json(path)
        at = forged["records"].index(victim)
        mallory = nacl.signing.SigningKey.generate()
        forged["records"][at]["signature"] = self.forge_signature(victim, mallory, source)
        p2 = os.path.join(self.tmp, "forged.json")
        save_json(forged, p2)
        r = self.cli("audit", "check-export", p2, "--log-key", self.vkey, "--registry", reg)
        self.assertEqual(r.rc, 1, r)
        mid = kt.key_id(bytes(mallory.verify_key))
        self.assertIn("seq %d: signed by key %s, which is not in the registry you gave"
                      % (victim["seq"], mid), r.text)
        # Without a registry the forgery cannot be told, and the output does not pretend.
        r = self.check_export(p2)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("seq %d: signature valid by key %s, agency NOT VERIFIED (no --registry)"
                      % (victim["seq"], mid), r.text)
        # Forged by a registered key of another agency (the auditor's own).
        other = self.b.keys.signing_key(kt.AUDITOR)
        forged["records"][at]["signature"] = self.forge_signature(victim, other, source)
        save_json(forged, p2)
        r = self.cli("audit", "check-export", p2, "--log-key", self.vkey, "--registry", reg)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("seq %d: signed by key %s of agency %s (per the registry you gave), but its "
                      "source is %s" % (victim["seq"], kt.key_id(bytes(other.verify_key)),
                                        kt.AUDITOR, source), r.text)
        # --agency-key: the source's real key passes, another key for it does not.
        r = self.cli("audit", "check-export", path, "--log-key", self.vkey,
                     "--agency-key", "%s=%s" % (source, self.b.keys.pub_path(source)))
        self.assertEqual(r.rc, 0, r)
        self.assertIn("; %d signatures verified" % len(marked), r.text)
        r = self.cli("audit", "check-export", path, "--log-key", self.vkey,
                     "--agency-key", "%s=%s" % (source, self.b.keys.pub_path(kt.AUDITOR)))
        self.assertEqual(r.rc, 1, r)
        # A registry that is not one is refused, not taken as empty.
        bad = os.path.join(self.tmp, "notregistry.json")
        with open(bad, "w") as f:
            f.write('{"agencies": []}\n')
        r = self.cli("audit", "check-export", path, "--log-key", self.vkey, "--registry", bad)
        self.assertEqual(r.rc, 2, r)
        self.assertIn("not an agency", r.errtext)

    def test_export_filter_seq_bounds_checked(self):
        """A filter seq bound that is not a seq (negative, 0, a string) is
        refused, not read as a huge number that makes the covered range empty."""
        path = self.export("bounds.json", "--from", "5", "--to", "9")
        self.assertEqual(self.check_export(path).rc, 0)
        for bad in (-1, 0, "5"):
            doc = load_json(path)
            doc["filter"]["from"] = bad
            doc["records"] = []
            doc["range_proof"] = []
            p2 = os.path.join(self.tmp, "bounds-bad.json")
            save_json(doc, p2)
            r = self.check_export(p2)
            self.assertEqual(r.rc, 2, r)
            self.assertIn("filter.from and filter.to must be null or seqs", r.errtext)

    def test_replay_verify_shows_signers(self):
        for src in (["--broker", self.b.endpoint], ["--data", self.b.data_dir]):
            recs = self.replay(*src, "--verify", "--to", "30")
            self.assertEqual(len(recs), 30)
            for x in recs:
                if INSECURE:
                    self.assertEqual(x["signature"], "unsigned", x)
                    continue
                self.assertEqual(x["signature"], "valid", x)
                self.assertEqual(x["agency"], x["source"])
                self.assertRegex(x["key_id"], r"^[0-9a-f]{16}$")
        # It says whose word the key -> agency mapping is.
        r = self.cli("replay", "--data", self.b.data_dir, "--verify", "--to", "3")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("--verify checks each signer against the registry stored in the log (the "
                      "operator's statement", r.errtext)


def c2sp_note(origin, size, root, sk):
    """The C2SP signed note of a checkpoint, signed with nacl key sk."""
    text = ("%s\n%d\n%s\n" % (origin, size, base64.b64encode(root).decode())).encode()
    pk = bytes(sk.verify_key)
    key_id = hashlib.sha256(origin.encode() + b"\n\x01" + pk).digest()[:4]
    sig = sk.sign(text).signature
    return text + b"\n" + ("\u2014 %s %s\n" % (origin, base64.b64encode(key_id + sig).decode())).encode()


if __name__ == "__main__":
    kt.main()
