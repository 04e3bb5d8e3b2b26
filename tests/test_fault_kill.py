"""Fault test: SIGKILL the broker while four publishers are sending.

Each round: four `kabar publish` processes send distinct events (one source
agency each) to a broker on a fixed loopback port; when a good part of them
is in the log the broker is killed with SIGKILL and restarted at once on
the same data directory and port. The publishers either carry on (the
client re-sends what was not acked) or give up with a connection error;
then the same inputs are published again, which must be idempotent. Then:

  - every event acked before the kill is in the log, at the seq it was
    acked with, exactly once;
  - seqs are gap-free 1..head and the log holds each (source, id) once;
  - every event of every round is in the log, and one source's events are
    in the order it published them.

KABAR_FAULT_ROUNDS (default 3) rounds; KABAR_FAULT_EVENTS events per
publisher per round (default 3000).
"""

import os
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
import kabartest as kt  # noqa: E402

ROUNDS = int(os.environ.get("KABAR_FAULT_ROUNDS", "3"))
PER_PUBLISHER = int(os.environ.get("KABAR_FAULT_EVENTS", "3000"))
SOURCES = ["dinkes", "bappeda", "inspektorat", "kec-padang-barat"]
GIVE_UP_CODES = ("CONNECT", "TIMEOUT", "SHUTTING_DOWN")


def parse_results(path):
    """Result lines of a publisher's stdout: {id: result}."""
    out = {}
    with open(path, "rb") as f:
        for line in f.read().decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            r = kt.json.loads(line)
            out[r["id"]] = r
    return out


class FaultKill(kt.KabarTestCase):
    def test_kill_during_publish(self):
        port = kt.free_port()
        b = kt.Broker(os.path.join(self.tmp, "data"), listen="tcp://127.0.0.1:%d" % port)
        self.addCleanup(self._stop_broker, b)
        b.start()
        all_events = []  # every event published, in order per source
        for rnd in range(1, ROUNDS + 1):
            with self.subTest(round=rnd):
                all_events += self.one_round(b, rnd)
        self.assertEqual(b.stop(), 0, "kabard did not exit cleanly after the rounds:\n" + b.log_text()[-3000:])

    def one_round(self, b, rnd):
        factory = kt.EventFactory(seed=rnd, prefix="r%d" % rnd)
        inputs = {}
        for k, src in enumerate(SOURCES):
            evs = [factory.make(k * PER_PUBLISHER + i, source=src) for i in range(PER_PUBLISHER)]
            path = os.path.join(self.tmp, "r%d-%s.jsonl" % (rnd, src))
            with open(path, "wb") as f:
                f.write(kt.to_jsonl(evs))
            inputs[src] = (path, evs)

        start_head = kt.head_seq(b.endpoint)
        total = len(SOURCES) * PER_PUBLISHER
        procs = {}
        for src, (path, _) in inputs.items():
            out = open(path + ".out", "wb")
            err = open(path + ".err", "wb")
            procs[src] = kt.cli_popen(
                ["publish", path, "--broker", b.endpoint], stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
            out.close()
            err.close()

        # Kill when about a third is in the log (or everything, on a machine
        # so fast that the publishers are done first).
        def progressed():
            if all(p.poll() is not None for p in procs.values()):
                return True
            return kt.head_seq(b.endpoint) - start_head >= total // 3

        kt.wait_for(progressed, timeout=600, interval=0.01, what="publishers to make progress")
        b.kill()
        killed_at = kt.head_seq_offline(b.data_dir)
        b.start()

        acked_first = {}
        exits = []
        for src, p in procs.items():
            try:
                rc = p.wait(timeout=600)
            except subprocess.TimeoutExpired:
                p.kill()
                self.fail("kabar publish (%s) hung after the broker was restarted" % src)
            path = inputs[src][0]
            with open(path + ".err", "rb") as f:
                err = f.read().decode("utf-8", "replace")
            exits.append(rc)
            self.assertIn(rc, (0, 2), "publisher %s exited %d after the crash: %s" % (src, rc, err[-2000:]))
            res = parse_results(path + ".out")
            for i, r in res.items():
                if "error" in r:
                    self.assertIn(r["error"], GIVE_UP_CODES, "publisher %s: %r" % (src, r))
                else:
                    self.assertGreater(r["seq"], 0, r)
                    acked_first[(src, i)] = r["seq"]

        kt.sys.stderr.write(
            "round %d: SIGKILL with %d of %d events in the log, %d acked to the publishers, "
            "publishers exited %s\n" % (rnd, killed_at - start_head, total, len(acked_first), exits)
        )

        # Publish the same inputs again: idempotent, everything accepted.
        for src, (path, evs) in inputs.items():
            r = self.cli("publish", path, "--broker", b.endpoint)
            self.assertEqual(r.rc, 0, r)
            res = r.json_lines()
            self.assertEqual(len(res), len(evs), r)
            for ev, x in zip(evs, res):
                self.assertEqual(x["id"], ev["id"])
                self.assertNotIn("error", x, x)
                key = (src, ev["id"])
                if key in acked_first:
                    self.assertEqual(x["seq"], acked_first[key], "acked before the crash at another seq: %r" % x)
                    self.assertIs(x["duplicate"], True, x)

        # The whole log: gap-free, each (source, id) once, acked ones where acked.
        log = self.replay("--broker", b.endpoint)
        head = kt.head_seq(b.endpoint)
        self.assertEqual([e["seq"] for e in log], list(range(1, head + 1)), "seqs are not gap-free 1..head")
        by_key = {}
        for e in log:
            key = (e["source"], e["id"])
            self.assertNotIn(key, by_key, "stored twice: %r at seqs %d and %d" % (key, by_key.get(key, 0), e["seq"]))
            by_key[key] = e["seq"]
        for key, seq in acked_first.items():
            self.assertEqual(by_key.get(key), seq, "acked event %r lost or moved" % (key,))
        self.assertEqual(head - start_head, total, "round %d: the log should have grown by %d" % (rnd, total))
        for src, (_, evs) in inputs.items():
            seqs = [by_key.get((src, ev["id"])) for ev in evs]
            self.assertNotIn(None, seqs, "events of %s missing" % src)
            self.assertEqual(seqs, sorted(seqs), "events of %s are not in publishing order" % src)
        # The offline view agrees.
        off = self.cli_ok("replay", "--data", b.data_dir)
        on = self.cli_ok("replay", "--broker", b.endpoint)
        self.assertEqual(off.out, on.out)
        # A SIGKILL in the middle of a commit leaves a log whose Merkle tree,
        # checkpoints, signatures and indexes all still hold.
        v = self.cli("audit", "verify", "--data", b.data_dir)
        self.assertEqual(v.rc, 0, "round %d: kabar audit verify after the kill:\n%s" % (rnd, v))
        return [ev for _, evs in inputs.values() for ev in evs]


if __name__ == "__main__":
    kt.main()
