"""System test: the broker's life: start, refuse, stop, fill up.

One data directory has one broker; SIGTERM is a clean exit (0) that
removes the endpoint file; kabard is secure (CURVE) unless plaintext is
asked for, and plaintext is refused on a non-loopback endpoint; bad flags give
usage and exit 2; a full disk (a 20 MiB tmpfs, when this runs as root and
may mount) or the --max-size cap gives publishers a clear DISK_FULL while
everything acked stays in the log and the broker keeps answering.
"""

import json
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
import kabartest as kt  # noqa: E402


def run(args, timeout=120):
    p = kt.popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError("%s did not exit within %d s" % (" ".join(args), timeout))
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def big_events(n, prefix, size=3000):
    """Findings of about `size` bytes each, from inspektorat."""
    f = kt.EventFactory(seed=3, prefix=prefix)
    out = []
    for i in range(n):
        e = f.make(i, type="finding.raised", source="inspektorat")
        e["body"]["condition"] = ("%06d " % i) + "Kartu persediaan obat tidak dimutakhirkan. " * (size // 44)
        out.append(e)
    return out


class Lifecycle(kt.KabarTestCase):
    def test_second_broker_refused(self):
        b = self.start_broker()
        rc, out, err = run(b.command())
        self.assertEqual(rc, 2, "a second kabard on the same data dir: exit %d, stderr: %s" % (rc, err))
        self.assertIn(b.data_dir, err, "the message should name the data directory: %r" % err)
        self.assertTrue(b.running(), "the first broker died")
        c = self.raw(b)
        self.assertTrue(c.ping())
        with open(b.endpoint_file) as f:
            self.assertEqual(f.read().strip(), b.endpoint, "the second broker overwrote the endpoint file")

    def test_sigterm_is_clean(self):
        b = self.start_broker()
        res = self.publish(b, kt.EventFactory(seed=1).make_many(50))
        self.assertEqual(b.stop(), 0, "SIGTERM: " + b.log_text()[-2000:])
        self.assertFalse(os.path.exists(b.endpoint_file), "the endpoint file is left behind after a clean exit")
        # the log is intact and the data dir usable again
        out = self.replay("--data", b.data_dir)
        self.assertEqual([e["seq"] for e in out], [r["seq"] for r in res])
        b.start()
        self.assertEqual(kt.head_seq(b.endpoint), 50)
        self.assertEqual(b.stop(), 0)
        self.assertIn("KABARD-READY", b.log_text(), "the log should carry the stable code KABARD-READY")

    def test_plaintext_must_be_asked_for(self):
        # Without --insecure kabard speaks CURVE only: it made its key on
        # first start, a plaintext client gets no answer, a registered one does.
        b = self.start_broker()
        self.assertNotIn("--insecure", b.command())
        key = os.path.join(b.data_dir, "broker.key")
        self.assertTrue(os.path.exists(key), "kabard made no DATA/broker.key on first start")
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600, "DATA/broker.key must be private (0600)")
        pub = b.server_key()
        plain = self.raw(b, plaintext=True)
        self.assertFalse(plain.answers(3.0), "a plaintext client was answered by a broker without --insecure")
        self.assertTrue(self.raw(b).ping(), "a registered CURVE client gets no answer")
        self.assertEqual(b.stop(), 0)
        b.start()
        self.assertEqual(b.server_key(), pub, "the broker's key changed on restart")
        self.assertTrue(self.raw(b).ping())

    def test_insecure_only_on_loopback(self):
        # Plaintext to the network is refused at start, with a message.
        for listen in ("tcp://0.0.0.0:*", "tcp://10.1.2.3:7000", "tcp://*:*"):
            with self.subTest(listen):
                d = os.path.join(self.tmp, "data-%d" % len(listen))
                rc, out, err = run([kt.KABARD, "--data", d, "--insecure", "--listen", listen])
                self.assertEqual(rc, 2, "kabard --insecure --listen %s: exit %d, %s" % (listen, rc, err))
                self.assertTrue(
                    "loopback" in err.lower() or listen in err,
                    "the message should say plaintext needs a loopback or ipc endpoint: %r" % err,
                )
        # On loopback (and ipc) it runs, with a warning in its log, and accepts unsigned events.
        for listen in ("tcp://127.0.0.1:*", "ipc://" + os.path.join(self.tmp, "kabard.sock")):
            with self.subTest(listen):
                b = self.start_broker(name="plain-%d" % len(listen), listen=listen, insecure=True)
                own = b.log_text()[b.log_text().rfind("==== start"):].split("\n", 1)[1]
                self.assertIn("insecure", own.lower(), "kabard --insecure should warn in its log: %r" % own)
                c = self.raw(b)
                self.assertFalse(c.secure)
                ev = kt.event_msgpack(kt.EventFactory(seed=2, prefix="plain").make(0))
                self.assertGreater(c.publish([ev], sign=None)[0][0], 0, "an unsigned event under --insecure")

    def test_bad_usage(self):
        d = os.path.join(self.tmp, "data")
        cases = [
            ([kt.KABARD, "--no-such-flag"], "--help"),
            ([kt.KABARD, "--data", d, "--insecure", "--listen", "tcp://127.0.0.1:*", "--max-size", "lots"], "max-size"),
            ([kt.KABARD, "--data", d, "--insecure", "--listen", "tcp://127.0.0.1:*", "extra-argument"], "--help"),
            ([kt.KABARD, "--data", d, "--insecure", "--listen", "no-such-transport://x"], "no-such-transport://x"),
            ([kt.KABAR, "no-such-command"], "--help"),
            ([kt.KABAR, "publish", "--no-such-flag"], "--help"),
            ([kt.KABAR, "replay", "--data", d, "--format", "xml"], "format"),
        ]
        for args, word in cases:
            with self.subTest(" ".join(args[1:])):
                rc, out, err = run(args)
                self.assertEqual(rc, 2, "%s: exit %d, %s" % (args, rc, err))
                self.assertIn(word.lower(), err.lower(), "%s: stderr %r" % (args, err))
        rc, out, err = run([kt.KABARD, "--help"])
        self.assertEqual(rc, 0, err)
        for flag in ("--data", "--listen", "--insecure", "--max-size", "--schema"):
            self.assertIn(flag, out + err, "kabard --help should document " + flag)

    def test_one_version(self):
        # Every program and the STATUS reply give the release that
        # CMakeLists.txt's project(kabar VERSION ...) names.
        with open(os.path.join(kt.SOURCE_DIR, "CMakeLists.txt")) as f:
            m = re.search(r"project\(kabar VERSION ([0-9][0-9.]*)", f.read())
        self.assertIsNotNone(m, "no project(kabar VERSION ...) in CMakeLists.txt")
        want = m.group(1)
        progs = [kt.KABARD, kt.KABAR]
        progs += [p for p in (os.path.join(kt.BUILD_DIR, n) for n in ("kabar-agent", "kabar-oversight")) if os.path.exists(p)]
        for prog in progs:
            with self.subTest(os.path.basename(prog)):
                rc, out, err = run([prog, "--version"])
                self.assertEqual(rc, 0, "%s --version: exit %d, %s" % (prog, rc, err))
                words = out.split()
                self.assertEqual(words[:2], [os.path.basename(prog), want], "%s --version: %r" % (prog, out))
        b = self.start_broker()
        st = self.cli("status", "--broker", b.endpoint, "--json")
        self.assertEqual(st.rc, 0, st)
        self.assertEqual(json.loads(st.text)["version"], want, st)

    def test_cli_cannot_reach_broker(self):
        port = kt.free_port()
        r = self.cli(
            "publish", "-", "--broker", "tcp://127.0.0.1:%d" % port, input=kt.to_jsonl(kt.EventFactory().make_many(1))
        )
        self.assertEqual(r.rc, 2, r)
        self.assertTrue(r.errtext.strip(), "no message: %r" % r)

    # -- full disk -----------------------------------------------------------------

    def fill_and_check(self, b, what):
        evs = big_events(12000, "full")
        r = self.cli("publish", "-", "--broker", b.endpoint, input=kt.to_jsonl(evs))
        self.assertEqual(r.rc, 1, "%s: publish should report rejections: %r" % (what, r))
        res = r.json_lines()
        self.assertEqual(len(res), len(evs), r)
        acked = {x["id"]: x["seq"] for x in res if "error" not in x}
        full = [x for x in res if x.get("error") == "DISK_FULL"]
        other = [x for x in res if "error" in x and x["error"] != "DISK_FULL"]
        self.assertEqual(other, [], "%s: only DISK_FULL expected" % what)
        self.assertGreater(len(acked), 100, "%s: events should fit before the disk is full" % what)
        self.assertTrue(full, "%s: no DISK_FULL" % what)
        msg = full[0]["message"].lower()
        self.assertTrue(any(w in msg for w in ("full", "limit", "space")), "%s: unclear message %r" % (what, full[0]))
        # the broker keeps answering: a small batch may still fit, or is refused clearly
        c = self.raw(b)
        self.assertTrue(c.ping())
        self.assertEqual(c.head()["seq"], len(acked))
        again = self.publish(b, big_events(5, "more"), expect_rc=None)
        for x in again:
            if "error" in x:
                self.assertEqual(x["error"], "DISK_FULL", x)
            else:
                acked[x["id"]] = x["seq"]
        st = self.cli("status", "--broker", b.endpoint)
        self.assertEqual(st.rc, 0, st)
        # every acked event is there; nothing rejected is
        log = self.replay("--broker", b.endpoint)
        self.assertEqual({e["id"]: e["seq"] for e in log}, acked, "%s: the log differs from what was acked" % what)
        self.assertEqual([e["seq"] for e in log], list(range(1, len(log) + 1)))
        # a clean stop, and the log reads back offline
        self.assertEqual(b.stop(), 0, b.log_text()[-2000:])
        off = self.replay("--data", b.data_dir)
        self.assertEqual({e["id"]: e["seq"] for e in off}, acked)

    def test_max_size_cap(self):
        b = self.start_broker(args=["--max-size", str(8 * 1024 * 1024)])
        self.fill_and_check(b, "--max-size 8 MiB")

    def test_max_size_cap_raw(self):
        # The broker's side alone, with a raw client keeping 4 batches in flight.
        b = self.start_broker(args=["--max-size", str(8 * 1024 * 1024)])
        c = self.raw(b)
        evs = big_events(5000, "raw")
        frames = [kt.event_msgpack(e) for e in evs]
        acked, full, k, bid = {}, 0, 0, 100
        while k < len(frames):
            pending = {}
            for _ in range(4):
                if k < len(frames):
                    bid += 1
                    c.send_pub(bid, frames[k : k + 64])
                    pending[bid] = k
                    k += 64
            while pending:
                m = c.recv(timeout=60)
                self.assertIsNotNone(m, "no ACK for batches %s" % sorted(pending))
                hdr, _ = m
                self.assertEqual(hdr[1], "ACK", hdr)
                first = pending.pop(hdr[2])
                for i, res in enumerate(hdr[3]):
                    if res[0] > 0:
                        acked[evs[first + i]["id"]] = res[0]
                    else:
                        self.assertEqual(res[2], "DISK_FULL", res)
                        full += 1
        self.assertGreater(len(acked), 100)
        self.assertGreater(full, 0, "8 MiB cannot hold 5000 events of 3 KB")
        self.assertTrue(c.ping())
        log = self.replay("--broker", b.endpoint)
        self.assertEqual({e["id"]: e["seq"] for e in log}, acked, "the log differs from what was acked")
        self.assertEqual(b.stop(), 0, b.log_text()[-2000:])

    def test_log_does_not_bloat_without_subscribers(self):
        # 2000 commits of one small event each with nobody subscribed: the log
        # holds about 1 MiB of data. A broker whose read snapshot stays on an
        # old commit keeps LMDB from reusing freed pages, and the file grows by
        # the copied pages of every commit (it reached 64 MiB here).
        b = self.start_broker()
        c = self.raw(b)
        for ev in kt.EventFactory(seed=5, prefix="bloat").make_many(2000):
            res = c.publish([kt.event_msgpack(ev)])
            self.assertGreater(res[0][0], 0, res)
        size = os.path.getsize(os.path.join(b.data_dir, "log.mdb"))
        self.assertLess(size, 16 << 20, "log.mdb is %d KiB for 2000 small events" % (size >> 10))

    def test_disk_full_tmpfs(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a small tmpfs")
        mnt = os.path.join(self.tmp, "small")
        os.mkdir(mnt)
        rc, out, err = run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", mnt], timeout=60)
        if rc != 0:
            self.skipTest("cannot mount a tmpfs here (%s)" % err.strip())
        self.addCleanup(run, ["umount", "-l", mnt], 60)
        b = kt.Broker(os.path.join(mnt, "data"))
        b.log_path = os.path.join(self.tmp, "kabard-tmpfs.log")  # not on the full disk
        self.addCleanup(self._stop_broker, b)
        b.start()
        self.fill_and_check(b, "20 MiB tmpfs")


if __name__ == "__main__":
    kt.main()
