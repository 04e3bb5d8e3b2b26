"""System test: a slow consumer costs the broker no memory and loses nothing.

A raw ZeroMQ subscriber grants a small credit, reads that much, then stops
reading (it keeps sending PING, as a live client does) while 100,000
events of about 1 KiB each are published. The broker must not send past
the credit, and its anonymous memory (RssAnon in /proc/PID/status: heap
and buffers, which is what a queued backlog would occupy; VmRSS also
counts the log's file pages that LMDB maps) must not grow with the
backlog: the bound is +50 MiB for a backlog of about 100 MiB. When the
consumer reads again it gets every event, in order.
"""

import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
import kabartest as kt  # noqa: E402

N = int(os.environ.get("KABAR_SLOW_EVENTS", "100000"))
CREDIT = 16
GROWTH_LIMIT_KIB = 50 * 1024


class SlowConsumer(kt.KabarTestCase):
    def test_stalled_subscriber(self):
        b = self.start_broker()
        c = self.raw(b)
        c.send("SUB", 7, {"start": "first", "credit": CREDIT})
        m = c.recv(timeout=60)
        self.assertIsNotNone(m, "no answer to SUB")
        self.assertEqual(m[0][1], "SUBOK", m[0])
        self.assertEqual(m[0][2], 7)

        factory = kt.EventFactory(seed=9, prefix="slow")
        evs = []
        for i in range(N):
            e = factory.make(i, type="innovation.submitted")
            e["body"]["summary"] = ("%07d " % i) + "Pengelolaan air limbah rumah tangga bersama warga. " * 18
            evs.append(e)
        path = os.path.join(self.tmp, "events.jsonl")
        with open(path, "wb") as f:
            f.write(kt.to_jsonl(evs))
        del evs

        base_anon = b.rss_kib("RssAnon")
        base_rss = b.rss_kib("VmRSS")
        peak_anon, peak_rss = base_anon, base_rss
        out = open(path + ".out", "wb")
        errf = open(path + ".err", "wb")
        pub = kt.cli_popen(["publish", path, "--broker", b.endpoint], stdout=out, stderr=errf)
        out.close()
        errf.close()
        ping = 1000
        while pub.poll() is None:
            # alive but not reading: the broker must keep the subscription
            ping += 1
            c.send("PING", ping)
            peak_anon = max(peak_anon, b.rss_kib("RssAnon"))
            peak_rss = max(peak_rss, b.rss_kib("VmRSS"))
            kt.time.sleep(0.25)
        with open(path + ".err", "rb") as f:
            err = f.read().decode("utf-8", "replace")
        self.assertEqual(pub.wait(), 0, "kabar publish failed: " + err[-2000:])
        with open(path + ".out", "rb") as f:
            self.assertEqual(sum(1 for l in f if b'"error"' not in l and l.strip()), N)
        peak_anon = max(peak_anon, b.rss_kib("RssAnon"))
        peak_rss = max(peak_rss, b.rss_kib("VmRSS"))
        growth = peak_anon - base_anon
        kt.sys.stderr.write(
            "kabard memory with a stalled subscriber and %d events of backlog (%d MiB of log): "
            "RssAnon %d -> %d KiB, VmRSS %d -> %d KiB\n"
            % (N, sum(os.path.getsize(os.path.join(b.data_dir, f)) for f in os.listdir(b.data_dir) if f.endswith(".mdb")) >> 20, base_anon, peak_anon, base_rss, peak_rss)
        )
        self.assertLess(
            growth,
            GROWTH_LIMIT_KIB,
            "kabard's anonymous memory grew by %d KiB with a stalled subscriber (VmRSS %d -> %d KiB)"
            % (growth, base_rss, peak_rss),
        )

        # Now read what was sent while stalled: never more than the credit.
        seqs = []
        ids = [None] * (N + 1)

        def take(payload):
            for seq, _, ev in kt.parse_records(payload):
                seqs.append(seq)
                if 1 <= seq <= N:
                    ids[seq] = kt.msgpack.unpackb(ev, raw=False, timestamp=3)["id"]

        while True:
            m = c.recv(timeout=1.0)
            if m is None:
                break
            hdr, frames = m
            if hdr[1] == "EVT":
                take(frames[0])
            else:
                self.assertEqual(hdr[1], "PONG", hdr)
        self.assertLessEqual(len(seqs), CREDIT, "the broker sent more than the granted credit")
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))

        # Resume: grant credit as we go; everything comes, in order.
        granted = CREDIT
        received = len(seqs)
        chunk = 2000
        deadline = kt.time.monotonic() + 600
        while received < N:
            self.assertLess(kt.time.monotonic(), deadline, "got %d of %d events after resuming" % (received, N))
            if granted - received < chunk // 2:
                c.send("CREDIT", 7, chunk)
                granted += chunk
            m = c.recv(timeout=5.0)
            if m is None:
                c.send("PING", 1)
                continue
            hdr, frames = m
            if hdr[1] != "EVT":
                self.assertIn(hdr[1], ("PONG",), hdr)
                continue
            take(frames[0])
            received = len(seqs)
            self.assertLessEqual(received, granted, "the broker sent more than the granted credit")
        self.assertEqual(seqs, list(range(1, N + 1)), "events lost, repeated or out of order")
        with open(path, "rb") as f:
            for i, line in enumerate(f):
                want = kt.json.loads(line)["id"]
                if ids[i + 1] != want:
                    self.fail("seq %d holds %r, published %r" % (i + 1, ids[i + 1], want))
        self.assertLess(b.rss_kib("RssAnon") - base_anon, GROWTH_LIMIT_KIB)


if __name__ == "__main__":
    kt.main()
