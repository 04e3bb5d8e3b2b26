"""The README's demo, run as a new user runs it: scripts/demo.

It is the first thing a new user sees, so it is tested like a feature: it
must exit 0 and show what it promises: every step's events in the log, the
online and offline replays identical, a retry stored once, bad events
refused, the overdue finding published by the oversight agent and reaching
the agency's inbox, the oversight report, and every process stopped
cleanly. And since issue 4 it runs secure, as a real deployment would: a key
per principal registered before kabard starts, kabard without --insecure
(its log says CURVE), every agent on CURVE with its own key, and the broker
refusing an event sent in another agency's name and any event from the
auditors' key. Since issue 5 it ends with the auditors' part: a signed
checkpoint, `kabar audit verify` passing online and then offline on the
stopped log (with the same root), and the HTML audit report written.
"""

import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
import kabartest as kt  # noqa: E402


class Demo(kt.KabarTestCase):
    def test_demo_runs_and_shows_the_month(self):
        # Keep the demo's directory to look at the HTML report it wrote.
        env = dict(os.environ, KABAR_BUILD_DIR=kt.BUILD_DIR, KABAR_DEMO_KEEP="1")
        p = subprocess.run(
            [os.path.join(kt.SOURCE_DIR, "scripts", "demo")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=900,
        )
        out = p.stdout.decode("utf-8", "replace")
        report = re.search(r"-> (\S+/audit-report\.html)", out)
        if report:
            self.addCleanup(shutil.rmtree, os.path.dirname(report.group(1)), True)
        self.assertEqual(p.returncode, 0, "scripts/demo failed:\n" + out[-4000:])
        for promise in [
            "36 principals registered offline, before the broker starts",
            "34 agents ready, each on CURVE with its own key",
            "online and offline replays are identical",
            "the broker answered each with its original seq",
            'body.due: "27/06/2023" is not a valid date',
            "nothing was stored or sent",
            "finding.overdue      F-2023-009",
            "and Disdukcapil's agent put it in its inbox",
            "Findings past due: 1",
            "F-2023-009  disdukcapil  2023-04-28",
            "every process exited cleanly (0)",
        ]:
            self.assertIn(promise, out, "the demo no longer shows %r:\n%s" % (promise, out[-4000:]))
        self.assertNotIn("Traceback", out)

        # kabard ran secure: its real command line, and its own log line.
        running = [l for l in out.splitlines() if l.startswith("kabard (pid ") and "running: " in l]
        self.assertEqual(len(running), 1, "the demo no longer shows kabard's command line:\n" + out[:4000])
        cmdline = running[0].split("running: ", 1)[1]
        self.assertIn("--listen", cmdline)
        self.assertNotIn("--insecure", cmdline)
        said = [l for l in out.splitlines() if l.startswith("  kabard: ")]
        self.assertTrue(said and "CURVE" in said[0], "kabard's log does not say CURVE:\n" + out[:4000])

        # The broker refused both events of the "who may do what" step, for their rule.
        refusals = [l for l in out.splitlines() if l.startswith("  REJECTED") and "dpupr" in l]
        self.assertEqual(len(refusals), 2, "expected two refused forged events:\n" + out[-4000:])
        self.assertIn("NOT_OWN_SOURCE", refusals[0])
        self.assertIn("CANNOT_PUBLISH", refusals[1])
        self.assertIn("both refused, counted and logged by the broker", out)

        # The auditors' part: a checkpoint, verify online and offline over the same log.
        verified = re.findall(r"kabar audit verify: ok: (\d+) events \(root (\S+)\)", out)
        self.assertEqual(len(verified), 2, "expected verify online and offline to pass:\n" + out[-4000:])
        self.assertEqual(verified[0], verified[1], "online and offline verify saw different logs")
        self.assertGreaterEqual(int(verified[0][0]), 130, "verify checked too few events")
        self.assertIn("(online: the stored tree, indexes, dedup and consumers are checked with --data)", out)
        self.assertIsNotNone(report, "the demo does not say where the HTML report is:\n" + out[-4000:])
        with open(report.group(1), encoding="utf-8") as f:
            html = f.read()
        self.assertIn("<svg", html, "the HTML report has no chart")
        self.assertNotIn("<script", html, "the HTML report must need no script")


if __name__ == "__main__":
    kt.main()
