"""oversighttest: helpers for the kabar-oversight system tests (tests/test_oversight*.py).

Builds on kabartest (brokers, the CLI, events):

    from oversighttest import OversightTestCase

    class T(OversightTestCase):
        def test_x(self):
            b = self.start_broker()
            o = self.start_oversight(b.endpoint, "--now", "2023-09-01")
            self.publish(b, events)
            self.wait_caught_up(o, b)                   # the state holds the whole log
            rep = self.report(o, "--since", "2023-04-01")   # `kabar oversight report --json`

The agent runs as setda (role oversight) with its key and the broker's
server key (kabartest.client_security_args). Every oversight agent started
here is stopped at the end of its test.
"""

import json
import os
import signal
import subprocess

from kabartest import (BUILD_DIR, KabarTestCase, client_security_args, head_seq, popen, run_cli,
                       stop_process, wait_for)

KABAR_OVERSIGHT = os.path.join(BUILD_DIR, "kabar-oversight")


class Oversight:
    """One kabar-oversight process on a data directory; its log is DATA.oversight.log."""

    def __init__(self, data_dir, agency, broker, args=(), env=None):
        self.data_dir = data_dir
        self.agency = agency
        self.broker = broker
        self.args = list(args)
        self.env = env
        self.proc = None
        self.starts = 0
        self.log_path = data_dir.rstrip("/") + ".oversight.log"

    def command(self):
        return ([KABAR_OVERSIGHT, "--agency", self.agency, "--data", self.data_dir,
                 "--broker", self.broker]
                + client_security_args(self.broker, self.agency) + self.args)

    def start(self, wait=True, env=None):
        assert self.proc is None or self.proc.poll() is not None, "oversight already running"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(b"==== start %d: %s\n" % (self.starts, " ".join(self.command()).encode()))
        log.flush()
        full_env = None
        if env or self.env:
            full_env = dict(os.environ)
            full_env.update(self.env or {})
            full_env.update(env or {})
        self.proc = popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                          env=full_env)
        log.close()
        if wait:
            want = self.starts

            def ready():
                if self.proc.poll() is not None:
                    raise AssertionError("kabar-oversight exited with %d before it was ready:\n%s"
                                         % (self.proc.returncode, self.log_text()[-4000:]))
                return self.count("KABAR-OVERSIGHT-READY") >= want

            wait_for(ready, 60, what="kabar-oversight's READY line")
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=60.0):
        return stop_process(self.proc, signal.SIGTERM, timeout) if self.proc else None

    def kill(self):
        return stop_process(self.proc, signal.SIGKILL, 30) if self.proc else None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def count(self, code):
        """Lines with this log code, over every run."""
        return self.log_text().count(" " + code + " ")

    def count_this_run(self, code):
        """Lines with this log code since the latest start."""
        text = self.log_text()
        return text[text.rfind("==== start "):].count(" " + code + " ")


def report_json(*args):
    """`kabar oversight report ARGS --json`, parsed; fails on a non-zero exit."""
    r = run_cli("oversight", "report", *args, "--format", "json")
    if r.rc != 0:
        raise AssertionError("kabar oversight report failed: %r" % r)
    return json.loads(r.out)


def overdue_events(broker):
    """The finding.overdue events in the log (kabar replay)."""
    r = run_cli("replay", "--broker", broker.endpoint, "--type", "finding.overdue")
    if r.rc != 0:
        raise AssertionError("kabar replay failed: %r" % r)
    return r.json_lines()


class OversightTestCase(KabarTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.access(KABAR_OVERSIGHT, os.X_OK):
            raise AssertionError("%s not built" % KABAR_OVERSIGHT)

    def start_oversight(self, broker_endpoint, *args, agency="setda", name="oversight", env=None,
                        wait=True):
        o = Oversight(os.path.join(self.tmp, name), agency, broker_endpoint, args, env)
        self.addCleanup(self._stop_oversight, o)
        return o.start(wait=wait)

    def _stop_oversight(self, o):
        if o.running():
            o.stop()

    def report(self, o, *args):
        return report_json("--data", o.data_dir, *args)

    def wait_caught_up(self, o, broker, *report_args, timeout=300.0):
        """Wait until the agent's state holds every event of the log and a check
        ran on it; returns the report (with report_args) read at that point."""

        def done():
            head = head_seq(broker.endpoint)
            rep = self.report(o, *report_args)
            if rep["position"] == head and o.count_this_run("KABAR-OVERSIGHT-CAUGHT-UP") >= 1:
                return rep
            return None

        return wait_for(done, timeout, 0.2, "kabar-oversight to catch up with the log")
