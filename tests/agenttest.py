"""agenttest: helpers for the kabar-agent system tests (tests/test_agent*.py).

Builds on kabartest (brokers, the CLI, realistic events):

    from agenttest import Agent, AgentTestCase

    class T(AgentTestCase):
        def test_x(self):
            b = self.start_broker()
            a = self.start_agent("dinkes", b.endpoint, "--jsonl", path)
            replies = a.submit_many(events)          # over ipc://DIR/agent.sock

The agent speaks CURVE with its agency's key of the broker's key ring and
the broker's server key (kabartest.client_security_args); to a broker that
is not started yet, start_agent makes the broker create its key first.
            st = a.status()                          # `kabar agent status --json`

Every agent started here is killed at the end of its test (kabartest.popen).
"""

import json
import os
import re
import signal
import subprocess
import time

import zmq

import kabartest
from kabartest import BUILD_DIR, KabarTestCase, popen, run_cli, stop_process, wait_for

KABAR_AGENT = os.path.join(BUILD_DIR, "kabar-agent")


class Agent:
    """One kabar-agent process on a data directory.

    start() waits for the process's KABAR-AGENT-READY log line (its log is
    DATA.agent.log); stop() is SIGTERM, kill() SIGKILL (a crash).
    """

    def __init__(self, data_dir, agency, broker, args=()):
        self.data_dir = data_dir
        self.agency = agency
        self.broker = broker
        self.args = list(args)
        self.proc = None
        self.starts = 0
        self.log_path = data_dir.rstrip("/") + ".agent.log"
        self._ctx = zmq.Context.instance()

    @property
    def socket_path(self):
        return os.path.join(self.data_dir, "agent.sock")

    def command(self):
        return [
            KABAR_AGENT,
            "--agency",
            self.agency,
            "--data",
            self.data_dir,
            "--broker",
            self.broker,
        ] + kabartest.client_security_args(self.broker, self.agency) + self.args

    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(b"==== start %d: %s\n" % (self.starts, " ".join(self.command()).encode()))
        log.flush()
        self.proc = popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60.0):
        want = self.starts

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(
                    "kabar-agent exited with %d before it was ready; its log:\n%s"
                    % (self.proc.returncode, self.log_text()[-4000:])
                )
            return self.log_text().count("KABAR-AGENT-READY") >= want

        wait_for(ready, timeout, what="kabar-agent's READY line")

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

    # -- intake ------------------------------------------------------------

    def submit_many(self, events, window=500, timeout=120.0, raw=False, idle=None, on_reply=None):
        """Submit events (dicts in JSON form, or bytes when raw) with up to
        `window` requests in flight; returns the reply objects in event order.
        A request the agent never answered (it died) has reply None: the
        wait ends after `timeout` in all, or `idle` seconds without a reply.
        on_reply(n) is called after the n-th reply (fault tests crash the
        agent from there)."""
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.connect("ipc://" + self.socket_path)
        replies = [None] * len(events)
        sent = got = 0
        deadline = time.monotonic() + timeout
        try:
            while got < len(events):
                while sent < len(events) and sent - got < window:
                    body = events[sent] if raw else json.dumps(events[sent]).encode()
                    sock.send_multipart([b"%d" % sent, body])
                    sent += 1
                left = deadline - time.monotonic()
                if idle is not None:
                    left = min(left, idle)
                if left <= 0 or not sock.poll(int(left * 1000)):
                    break
                tag, reply = sock.recv_multipart()
                replies[int(tag)] = json.loads(reply)
                got += 1
                if on_reply is not None:
                    on_reply(got)
        finally:
            sock.close(0)
        return replies

    def submit(self, event, raw=False):
        r = self.submit_many([event], raw=raw)[0]
        if r is None:
            raise AssertionError("the agent did not answer a submit")
        return r

    # -- status ------------------------------------------------------------

    def env(self):
        """The CLI's environment as this agent's agency (`kabar agent status`
        asks the broker for its head with the agent's key)."""
        b = kabartest.broker_for(self.broker)
        return b.env(self.agency) if b is not None else None

    def status(self, *extra):
        r = run_cli("agent", "status", "--data", self.data_dir, "--json", *extra, env=self.env())
        if r.rc != 0:
            raise AssertionError("kabar agent status failed: %r" % r)
        return json.loads(r.out)

    def wait_outbox_empty(self, timeout=300.0):
        return wait_for(
            lambda: self.status()["outbox"]["depth"] == 0, timeout, 0.2, "the outbox to drain"
        )

    def dead_letters(self):
        r = run_cli("agent", "inbox", "--data", self.data_dir, "--dead", "--json")
        if r.rc != 0:
            raise AssertionError("kabar agent inbox --dead failed: %r" % r)
        return r.json_lines()


class AgentTestCase(KabarTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.access(KABAR_AGENT, os.X_OK):
            raise AssertionError("%s not built" % KABAR_AGENT)

    def start_agent(self, agency, broker_endpoint, *args, name=None, wait=True):
        a = Agent(os.path.join(self.tmp, name or ("agent-" + agency)), agency, broker_endpoint, args)
        self.addCleanup(self._stop_agent, a)
        return a.start(wait=wait)

    def _stop_agent(self, a):
        if a.running():
            a.stop()

    def replay_all(self, broker):
        return self.replay("--broker", broker.endpoint)


def fixed_broker_listen():
    """A tcp endpoint with a fixed port, so that a restarted broker is found again."""
    return "tcp://127.0.0.1:%d" % kabartest.free_port()


def wait_lines(path, n, timeout=300.0):
    """Wait until the file has at least n lines; returns them parsed as JSON."""

    def have():
        try:
            with open(path) as f:
                lines = [l for l in f.read().split("\n") if l.strip()]
        except FileNotFoundError:
            return None
        return lines if len(lines) >= n else None

    return [json.loads(l) for l in wait_for(have, timeout, 0.1, "%d lines in %s" % (n, path))]


def read_lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


ID_RE = re.compile(r"^[0-9a-f-]{36}$")
