"""kabartest: shared helpers for kabar's system tests (tests/test_*.py).

The system tests run the real `kabard` and `kabar` binaries of a build as
separate processes on loopback, each in its own temporary directory:

    from kabartest import KabarTestCase, Broker, EventFactory

    class T(KabarTestCase):
        def test_x(self):
            b = self.start_broker()                  # wildcard port, waits for the endpoint file
            events = EventFactory(seed=1).make_many(100)
            res = self.publish(b, events)            # `kabar publish`, parsed result lines
            out = self.cli("replay", "--broker", b.endpoint)

Brokers are secure by default (CURVE, signed events), as in production:
before its first start a Broker registers the test principals in its data
directory (`kabar keygen`, `kabar agency add --data`): an `agent` for each
agency of AGENCIES but setda, setda as `oversight`, ADMIN (`admin`) and
AUDITOR (`auditor`). The keys live in one KeyRing per test run (KEYS).
The CLI run through run_cli/Tail/cli_popen with `--broker EP` of a broker
started here speaks as ADMIN (env KABAR_KEY and KABAR_SERVER_KEY), and
`kabar publish` then signs each event with its source agency's key
(`--key-dir`), which an admin may publish; pass env=broker.env(PRINCIPAL)
to speak as another principal. RawClient speaks CURVE and signs its PUBs
(design: RFC 9162 batch tree). Broker(insecure=True) is plaintext, for the
tests about plaintext.

Environment (set by ctest, see cmake/KabarTests.cmake):
    KABAR_BUILD_DIR    where kabard and kabar are (default: <repo>/build)
    KABAR_SOURCE_DIR   the repository (default: this file's parent's parent)
    KABAR_KEEP_TMP=1   keep the temporary directories (their paths are printed)

Rules these helpers follow so that tests are robust on a slow, busy 2-core
machine: nothing asserts on timing; every wait polls a condition with a
generous deadline; every process started here is killed at the end of its
test (and, as a last resort, at interpreter exit), so no test leaves a
broker behind.
"""

import atexit
import base64
import datetime
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

try:
    import msgpack
    import nacl.bindings
    import nacl.signing
    import zmq
    import zmq.utils.z85
except ImportError as e:  # pragma: no cover - reported as a clear failure
    sys.stderr.write(
        "kabartest: python3 modules missing (%s): apt-get install python3-zmq python3-msgpack"
        " python3-nacl\n" % e
    )
    raise

SOURCE_DIR = os.environ.get("KABAR_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))
)
BUILD_DIR = os.environ.get("KABAR_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
KABARD = os.path.join(BUILD_DIR, "kabard")
KABAR = os.path.join(BUILD_DIR, "kabar")

# Generous: a loaded CI machine may be 10x slower than a laptop.
START_TIMEOUT = 60.0  # broker up and endpoint file written
STOP_TIMEOUT = 60.0  # broker exits after SIGTERM
CLI_TIMEOUT = 600.0  # one CLI run

PROTOCOL_VERSION = 1

# ---------------------------------------------------------------------------
# Processes: every Popen made here is remembered and killed at exit.

_live = set()
_live_lock = threading.Lock()


def _track(p):
    with _live_lock:
        _live.add(p)
    return p


def _reap_all():
    with _live_lock:
        procs = list(_live)
        _live.clear()
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=10)
            except Exception:
                pass


atexit.register(_reap_all)


def popen(args, **kw):
    """subprocess.Popen that is killed at the end of the test run at the latest."""
    return _track(subprocess.Popen(args, **kw))


def stop_process(p, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
    """Send `sig` to p (if alive) and wait; SIGKILL after `timeout`. Returns the exit code."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=30)
    with _live_lock:
        _live.discard(p)
    return p.returncode


def wait_for(cond, timeout=120.0, interval=0.05, what="condition"):
    """Poll cond() until it returns a true value, which is returned; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (for a broker that restarts)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_status(pid):
    """The fields of /proc/PID/status as a dict of str -> str ({} when gone)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def proc_kib(pid, field):
    """A /proc/PID/status memory field (VmRSS, RssAnon, ...) in KiB, or 0."""
    v = proc_status(pid).get(field, "0 kB").split()
    return int(v[0]) if v else 0


# ---------------------------------------------------------------------------
# Keys and principals (design: one Ed25519 key per principal; its Curve25519
# form is the CURVE key; `kabar keygen` writes FILE (0600) and FILE.pub)

ADMIN = "kominfo"  # the operator (Dinas Komunikasi dan Informatika): role admin
AUDITOR = "bpk"  # the national audit board: role auditor
OVERSIGHT = "setda"  # the secretariat: role oversight
ROLES = ("agent", "oversight", "auditor", "admin")

# Official names and organisation codes (DOMAIN.md "Identifiers") of the
# principals the tests register; others get a generated name.
_NAMES = {
    "kominfo": ("Dinas Komunikasi dan Informatika", "2.16.0.00.0.00.01.0000"),
    "bpk": ("BPK Perwakilan Sumatera Barat", "0.00.0.00.0.00.00.0000"),
    "setda": ("Sekretariat Daerah", "4.01.0.00.0.00.01.0000"),
    "inspektorat": ("Inspektorat", "6.01.0.00.0.00.01.0000"),
    "dinkes": ("Dinas Kesehatan", "1.02.0.00.0.00.01.0000"),
    "disdik": ("Dinas Pendidikan", "1.01.0.00.0.00.01.0000"),
    "bappeda": ("Badan Perencanaan Pembangunan Daerah", "5.01.0.00.0.00.01.0000"),
    "bpkad": ("Badan Pengelolaan Keuangan dan Aset Daerah", "5.02.0.00.0.00.01.0000"),
}


def default_role(agency):
    return {ADMIN: "admin", AUDITOR: "auditor", OVERSIGHT: "oversight"}.get(agency, "agent")


def key_id(pk):
    """The 16-hex key id of a 32-byte Ed25519 public key."""
    return hashlib.sha256(pk).hexdigest()[:16]


def public_text(pk):
    """`ed25519:` + base64 of the 32-byte public key."""
    return "ed25519:" + base64.b64encode(pk).decode()


def parse_public(text):
    text = text.strip()
    if not text.startswith("ed25519:"):
        raise ValueError("not an ed25519 public key: %r" % text)
    pk = base64.b64decode(text[len("ed25519:") :], validate=True)
    if len(pk) != 32:
        raise ValueError("public key of %d bytes" % len(pk))
    return pk


def read_public(path):
    """A public key file's (or broker.pub's) 32 bytes."""
    with open(path) as f:
        return parse_public(f.read())


def load_secret(path):
    """A secret key file -> nacl SigningKey (from its `ed25519-secret:` seed line)."""
    seeds = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("ed25519-secret:"):
                seeds.append(base64.b64decode(line[len("ed25519-secret:") :], validate=True))
    if len(seeds) != 1 or len(seeds[0]) != 32:
        raise AssertionError("%s is not a kabar secret key file" % path)
    return nacl.signing.SigningKey(seeds[0])


def curve_keys(sk):
    """nacl SigningKey -> (curve public, curve secret) in Z85 for CURVE."""
    pk = sk.verify_key.encode()
    cpk = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(pk)
    csk = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(sk.encode() + pk)
    return zmq.utils.z85.encode(cpk), zmq.utils.z85.encode(csk)


def curve_public(pk):
    return zmq.utils.z85.encode(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(pk))


def keygen(path, force=False):
    """`kabar keygen --out PATH`: returns the public key bytes (also in PATH.pub)."""
    args = ["keygen", "--out", path] + (["--force"] if force else [])
    r = run_cli(*args, env=dict(os.environ))
    if r.rc != 0:
        raise AssertionError("kabar %s failed: %r" % (" ".join(args), r))
    pk = read_public(path + ".pub")
    if r.text.strip() and parse_public(r.text.strip().split()[-1]) != pk:
        raise AssertionError("kabar keygen printed %r but wrote %s" % (r.text, path + ".pub"))
    return pk


class KeyRing:
    """A directory of secret key files NAME.key (and NAME.key.pub), made with
    `kabar keygen` the first time a name is asked for. For an agency NAME is
    its id, so the directory is what `kabar publish --key-dir` reads."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self._sk = {}
        self._lock = threading.Lock()

    def path(self, name):
        p = os.path.join(self.dir, name + ".key")
        with self._lock:
            if not os.path.exists(p):
                keygen(p)
        return p

    def pub_path(self, name):
        return self.path(name) + ".pub"

    def signing_key(self, name):
        p = self.path(name)
        with self._lock:
            if name not in self._sk:
                self._sk[name] = load_secret(p)
            return self._sk[name]

    def public(self, name):
        return self.signing_key(name).verify_key.encode()

    def replace(self, name):
        """A fresh key under NAME (rotation); the old key file is kept as NAME.key.old-N."""
        p = self.path(name)
        n = 1
        while os.path.exists("%s.old-%d" % (p, n)):
            n += 1
        old = "%s.old-%d" % (p, n)
        os.rename(p, old)
        os.rename(p + ".pub", old + ".pub")
        with self._lock:
            self._sk.pop(name, None)
        self.path(name)
        return old


_keys = None


def keys():
    """The test run's key ring (one keygen per principal per process)."""
    global _keys
    if _keys is None:
        d = tempfile.mkdtemp(prefix="kabar-keys-")
        if not os.environ.get("KABAR_KEEP_TMP"):
            atexit.register(shutil.rmtree, d, True)
        _keys = KeyRing(d)
    return _keys


def sign_batch(sk, frames):
    """[key bin32, sig bin64] of a PUB of these event frames (PROTOCOL.md "Signed batches"):
    Ed25519 over b"kabar-batch-v1\\n" + n (uint32 BE) + the RFC 9162 root of the frames."""
    root = merkle_root([merkle_leaf(bytes(f)) for f in frames])
    msg = b"kabar-batch-v1\n" + len(frames).to_bytes(4, "big") + root
    return [sk.verify_key.encode(), sk.sign(msg).signature]


def merkle_leaf(data):
    return hashlib.sha256(b"\x00" + data).digest()


def merkle_node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaves):
    """RFC 9162 MTH of leaf hashes (n >= 1)."""
    n = len(leaves)
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return merkle_node(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


# Brokers started by this process, by endpoint and listen address: the CLI
# helpers find the broker of a `--broker EP` argument here.
_brokers = {}


def broker_for(endpoint):
    return _brokers.get(endpoint)


# ---------------------------------------------------------------------------
# The broker


class Broker:
    """One kabard process on a data directory.

    start() waits until the broker has written DATA/kabard.endpoint (its
    bound endpoint; with the default wildcard listen address the port is
    chosen by the kernel) and returns self. stop() sends SIGTERM and
    returns the exit code; kill() is SIGKILL (a crash). The broker's
    stderr goes to a log file next to the data directory: log_text().

    Secure unless insecure=True: before the first start the principals
    (default: every agency of AGENCIES, ADMIN and AUDITOR, with
    default_role) are registered offline in the data directory with keys
    of `keys` (default: the run's KeyRing); kabard writes its own key
    DATA/broker.key and DATA/broker.pub (server_key_path) on first start.
    env(PRINCIPAL) is the environment in which the CLI speaks as PRINCIPAL.
    """

    def __init__(self, data_dir, listen="tcp://127.0.0.1:*", args=(), insecure=False, keys=None,
                 principals=None):
        self.data_dir = data_dir
        self.listen = listen
        self.args = list(args)
        self.insecure = insecure
        self._keys = keys
        self.principals = dict(principals) if principals is not None else None
        self.registered = set()
        self.proc = None
        self.endpoint = None
        self.starts = 0
        self.log_path = data_dir.rstrip("/") + ".kabard.log"
        _brokers[listen] = self

    @property
    def keys(self):
        if self._keys is None:
            self._keys = keys()
        return self._keys

    @property
    def server_key_path(self):
        """DATA/broker.pub: the broker's public key that clients pin."""
        return os.path.join(self.data_dir, "broker.pub")

    def server_key(self):
        return read_public(self.server_key_path)

    def default_principals(self):
        ps = {a: default_role(a) for a in AGENCIES}
        ps[ADMIN] = "admin"
        ps[AUDITOR] = "auditor"
        return ps

    def provision(self):
        """Register the principals offline (once per data directory)."""
        if self.insecure:
            return
        if self.principals is None:
            self.principals = self.default_principals()
        for agency, role in self.principals.items():
            if agency not in self.registered:
                self.add_agency_offline(agency, role)

    def agency_args(self, agency, role, key=None):
        name, org = _NAMES.get(agency, ("Perangkat Daerah " + agency, "9.99.0.00.0.00.01.0000"))
        region = "73.05" if agency.endswith("-takalar") else "13.71"
        return ["agency", "add", agency, "--name", name, "--region", region, "--org", org,
                "--role", role, "--key", key or self.keys.pub_path(agency)]

    def add_agency_offline(self, agency, role="agent", key=None):
        os.makedirs(self.data_dir, exist_ok=True)
        r = run_cli(*self.agency_args(agency, role, key), "--data", self.data_dir, env=dict(os.environ))
        if r.rc != 0 and key is None and "already registered" in r.errtext:
            show = run_cli("agency", "show", agency, "--data", self.data_dir, "--format", "json", env=dict(os.environ))
            if show.rc == 0 and public_text(self.keys.public(agency)) in show.text:
                self.registered.add(agency)  # a data directory used before, with this key
                return r
        if r.rc != 0:
            raise AssertionError("registering %s (%s) in %s: %r" % (agency, role, self.data_dir, r))
        self.registered.add(agency)
        return r

    def add_agency(self, agency, role="agent", key=None):
        """Register an agency: online as ADMIN when the broker runs, else offline."""
        if self.principals is not None:
            self.principals[agency] = role
        if not self.running():
            return self.add_agency_offline(agency, role, key)
        r = run_cli(*self.agency_args(agency, role, key), "--broker", self.endpoint, env=self.env(ADMIN))
        if r.rc != 0:
            raise AssertionError("registering %s (%s) online: %r" % (agency, role, r))
        self.registered.add(agency)
        return r

    def ensure_server_key(self):
        """DATA/broker.pub exists (a first start and stop if needed): for a
        client that is configured before the broker runs."""
        if self.insecure or os.path.exists(self.server_key_path):
            return
        self.start()
        self.stop()

    def env(self, principal=ADMIN, server_key=None, key=None):
        """os.environ plus KABAR_KEY (principal's key file, or `key`) and
        KABAR_SERVER_KEY (this broker's, or `server_key`); a plaintext broker
        gets neither."""
        e = dict(os.environ)
        e.pop("KABAR_KEY", None)
        e.pop("KABAR_SERVER_KEY", None)
        if not self.insecure:
            if key is None and principal is not None:
                key = self.keys.path(principal)
            if key is not None:
                e["KABAR_KEY"] = key
            e["KABAR_SERVER_KEY"] = server_key or self.server_key_path
        return e

    def raw(self, principal=ADMIN, **kw):
        """A RawClient speaking as principal (CURVE unless insecure)."""
        return RawClient(self.endpoint, broker=self, principal=principal, **kw)

    @property
    def endpoint_file(self):
        return os.path.join(self.data_dir, "kabard.endpoint")

    @property
    def pid(self):
        return self.proc.pid

    def command(self):
        cmd = [KABARD, "--data", self.data_dir, "--listen", self.listen]
        if self.insecure:
            cmd.append("--insecure")
        return cmd + self.args

    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.provision()
        # A killed broker leaves its endpoint file: remove it so that we wait
        # for the new process's own.
        try:
            os.unlink(self.endpoint_file)
        except FileNotFoundError:
            pass
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(b"==== start %d: %s\n" % (self.starts, " ".join(self.command()).encode()))
        log.flush()
        self.proc = popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        self.endpoint = None
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(
                    "kabard exited with %d before it was ready; its log:\n%s"
                    % (self.proc.returncode, self.log_text()[-4000:])
                )
            try:
                with open(self.endpoint_file) as f:
                    ep = f.read().strip()
            except FileNotFoundError:
                return None
            return ep if re.match(r"^(tcp|ipc)://.+", ep) and not ep.endswith("*") else None

        self.endpoint = wait_for(ready, timeout, what="kabard's endpoint file")
        _brokers[self.endpoint] = self
        return self.endpoint

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT):
        if self.proc is None:
            return None
        return stop_process(self.proc, signal.SIGTERM, timeout)

    def kill(self):
        if self.proc is None:
            return None
        return stop_process(self.proc, signal.SIGKILL, 30)

    def restart(self):
        self.stop()
        return self.start()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def rss_kib(self, field="VmRSS"):
        return proc_kib(self.proc.pid, field)


# ---------------------------------------------------------------------------
# The CLI


class CliResult:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    @property
    def text(self):
        return self.out.decode("utf-8", "replace")

    @property
    def errtext(self):
        return self.err.decode("utf-8", "replace")

    def lines(self):
        return [l for l in self.out.decode("utf-8").split("\n") if l.strip()]

    def json_lines(self):
        return [json.loads(l) for l in self.lines()]

    def __repr__(self):
        return "kabar %s -> exit %s; stderr: %s" % (
            " ".join(self.args),
            self.rc,
            self.errtext[-2000:],
        )


def cli_env(args, env=None):
    """(args, env) to run `kabar ARGS` with: when env is None and ARGS name
    (--broker EP) a secure broker started here, as ADMIN with that broker's
    server key, and a `kabar publish` to it signs each event with its
    source's key (--key-dir of the key ring)."""
    args = list(args)
    if env is not None:
        return args, env
    b = None
    if "--broker" in args:
        i = args.index("--broker")
        if i + 1 < len(args):
            b = broker_for(args[i + 1])
    if b is None or b.insecure:
        return args, None
    if args and args[0] == "publish" and "--agent" not in args and "--key-dir" not in args:
        args = args[:1] + ["--key-dir", b.keys.dir] + args[1:]
    return args, b.env(ADMIN)


def cli_popen(args, **kw):
    """popen of `kabar ARGS` with cli_env's principal (kw: Popen's, env= overrides)."""
    args, env = cli_env(args, kw.pop("env", None))
    return popen([KABAR] + args, env=env, **kw)


def run_cli(*args, input=None, timeout=CLI_TIMEOUT, env=None):
    """Run `kabar ARGS...` to completion; input is bytes/str for stdin.

    Without env, a command for a secure broker of this process runs as
    ADMIN (cli_env); pass env=broker.env(PRINCIPAL) for another principal."""
    if isinstance(input, str):
        input = input.encode()
    args, env = cli_env(args, env)
    p = popen(
        [KABAR] + list(args),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        out, err = p.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(
            "kabar %s did not finish within %.0f s; stderr: %s"
            % (" ".join(args), timeout, err.decode("utf-8", "replace")[-2000:])
        )
    finally:
        with _live_lock:
            _live.discard(p)
    return CliResult(list(args), p.returncode, out, err)


def to_jsonl(events):
    """Events (dicts) as JSON Lines bytes, the input of `kabar publish`."""
    return "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in events).encode()


# ---------------------------------------------------------------------------
# Time


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


def parse_instant(s):
    """RFC 3339 text -> int nanoseconds since the epoch, UTC (exact)."""
    m = _RFC3339.match(s)
    if not m:
        raise ValueError("not an RFC 3339 instant: %r" % s)
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    dt = datetime.datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), tzinfo=datetime.timezone.utc)
    ns = int(dt.timestamp()) * 10**9 + int((frac or "0").ljust(9, "0"))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        ns -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * 10**9
    return ns


def format_instant(ns):
    """int ns -> RFC 3339 UTC text with all 9 fraction digits."""
    s, frac = divmod(ns, 10**9)
    dt = datetime.datetime.fromtimestamp(s, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % frac


# ---------------------------------------------------------------------------
# Realistic events of all ten types (EVENTS.md)

EVENT_TYPES = [
    "visit.scheduled",
    "visit.completed",
    "finding.raised",
    "finding.responded",
    "finding.reviewed",
    "finding.overdue",
    "innovation.submitted",
    "innovation.advanced",
    "innovation.awarded",
    "attendance.reported",
]

# Kota Padang's agencies (slugs), plus two of Takalar's.
AGENCIES = [
    "setda",
    "bappeda",
    "inspektorat",
    "dinkes",
    "disdik",
    "bpkad",
    "dinsos",
    "dishub",
    "dpmptsp",
    "kec-padang-barat",
    "kec-koto-tangah",
    "dinkes-takalar",
    "disdik-takalar",
]
OPDS = [a for a in AGENCIES if a not in ("setda", "inspektorat")]
CATEGORIES = [
    "poverty",
    "education",
    "health",
    "food_security",
    "economy_jobs",
    "empowerment",
    "gender_responsive",
    "environment",
    "governance",
    "law_enforcement",
]
INNOVATIONS = [
    ("BUAH SABAR", "Buang Air Limbah Sehat dan Benar", "Puskesmas Ko'mara"),
    ("PAPA SEHAT", "Papan Kontrol Kesehatan Anak Sekolah", "SMPN 2 Galesong Utara"),
    ("SI CEPAT", "Sistem Cepat Perizinan Terpadu", "Mal Pelayanan Publik"),
    ("LAPOR BU", "Layanan Pengaduan Online Bantuan Usaha", "Bidang UMKM"),
    ("KARTU SEHAT", "Kartu Sehat Keluarga Miskin", "Puskesmas Andalas"),
]
CONDITIONS = [
    "Attendance register not kept at two Puskesmas",
    "Travel expenses paid without complete receipts",
    "Asset inventory not reconciled with the finance records",
    "Procurement of medical equipment split to avoid tender",
    "Grant recipients not verified before disbursement",
]
PROBLEMS = [
    "Budget for road maintenance cut by 20 percent",
    "Two field staff positions vacant",
    "Data from kelurahan arrive late every month",
    "Network outage at the district office",
]
PLANS = [
    "Digitise the planning documents by December",
    "Train kelurahan staff on the new reporting app",
    "Coordinate with BPKAD on the revised budget",
]


def _date(base, days):
    return (base + datetime.timedelta(days=days)).isoformat()


class EventFactory:
    """Deterministic, valid, realistic events in EVENTS.md's JSON form.

    make(i) gives event number i (type cycles through all ten types, sources
    and targets vary); ids are unique per source ("<prefix>-<source>-<i>").
    Every agency a body names as concerned (visit host, finding auditee,
    innovation owner, attendance agency) is also listed in `targets`, so
    the stored targets equal the input's whatever the schema adds; the
    finding.responded/reviewed and innovation.advanced/awarded events are
    broadcasts (no targets) half of the time.
    """

    def __init__(self, seed=1, prefix="ev", base=datetime.datetime(2023, 4, 26, 8, 30)):
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.base = base

    def occurred(self, i):
        t = self.base + datetime.timedelta(seconds=37 * i)
        return t.strftime("%Y-%m-%dT%H:%M:%S") + "+07:00"

    def make(self, i, type=None, source=None, targets=None):
        r = self.rng
        t = type or EVENT_TYPES[i % len(EVENT_TYPES)]
        day = datetime.date(2023, 1, 2) + datetime.timedelta(days=i % 700)
        opd = r.choice(OPDS)
        ev = {"type": t, "v": 1, "occurred_at": self.occurred(i)}
        body = {}
        tg = []
        src = source
        if t == "visit.scheduled":
            src = src or "setda"
            vid = "V-%s-%d" % (self.prefix, i)
            body = {
                "visit_id": vid,
                "host": opd,
                "visitor": r.choice(["Wali Kota", "Wakil Wali Kota", "Sekda"]),
                "date": _date(day, 3),
                "program": r.choice(["Kamis Berseri", "post-holiday inspection"]),
                "team": "Tim %d" % r.randint(1, 9),
                "agenda": ["Programs and achievements", "Problems and plans"],
            }
            tg = [opd]
            ev["corr"] = vid
        elif t == "visit.completed":
            src = src or "setda"
            vid = "V-%s-%d" % (self.prefix, i - 1)
            total = r.randint(40, 200)
            body = {
                "visit_id": vid,
                "host": opd,
                "date": day.isoformat(),
                "attendance": {"present": total - r.randint(0, 15), "total": total},
                "programs": ["Integrated service counter", "Stunting prevention"],
                "achievements": [
                    {"indicator": "Service satisfaction index", "target": 85, "realised": r.randint(70, 95)},
                    {"indicator": "Budget realisation (%)", "target": 90.5, "realised": 87.25},
                ],
                "problems": r.sample(PROBLEMS, 2),
                "plans": r.sample(PLANS, 2),
                "directives": ["Report progress to the Sekda every month"],
            }
            tg = [opd]
            ev["corr"] = vid
        elif t == "finding.raised":
            src = src or "inspektorat"
            fid = "F-%s-%d" % (self.prefix, i)
            body = {
                "finding_id": fid,
                "auditee": opd,
                "auditor": "inspektorat",
                "condition": r.choice(CONDITIONS),
                "criterion": "Permendagri 77/2020 on regional financial management",
                "cause": "The head of unit did not supervise the process",
                "effect": "Risk of unaccountable spending",
                "group": r.choice(["compliance", "internal_control", "3e"]),
                "amount_idr": r.randint(1, 900) * 1_000_000,
                "recommendations": [
                    {"rec_id": "R1", "text": "Recover the overpayment to the regional treasury"},
                    {"rec_id": "R2", "text": "Issue a written warning to the officer in charge"},
                ],
                "report_received": day.isoformat(),
                "due": _date(day, 60),
            }
            tg = [opd]
            ev["corr"] = fid
        elif t == "finding.responded":
            src = src or opd
            fid = "F-%s-%d" % (self.prefix, i - 1)
            body = {
                "finding_id": fid,
                "rec_id": r.choice(["R1", "R2"]),
                "action": "Overpayment deposited to the regional treasury",
                "evidence": ["STS-%d.pdf" % i, "bukti-setor-%d.jpg" % i],
                "deposit_idr": r.randint(1, 50) * 1_000_000,
            }
            tg = ["inspektorat"] if i % 2 else []
            ev["corr"] = fid
        elif t == "finding.reviewed":
            src = src or "inspektorat"
            fid = "F-%s-%d" % (self.prefix, i - 2)
            body = {
                "finding_id": fid,
                "rec_id": "R1",
                "status": r.choice(["S", "BS", "BD", "TD"]),
                "reason": "Evidence of deposit verified",
                "reviewer": "Inspektur Pembantu II",
            }
            tg = [opd] if i % 2 else []
            ev["corr"] = fid
        elif t == "finding.overdue":
            src = src or "setda"
            fid = "F-%s-%d" % (self.prefix, i - 3)
            body = {
                "finding_id": fid,
                "auditee": opd,
                "due": day.isoformat(),
                "days_overdue": r.randint(1, 120),
                "open_recs": ["R1", "R2"],
            }
            tg = [opd]
            ev["corr"] = fid
        elif t == "innovation.submitted":
            src = src or opd
            acr, name, unit = r.choice(INNOVATIONS)
            iid = "INOV-%s-%d" % (self.prefix, i)
            body = {
                "innovation_id": iid,
                "owner": src,
                "unit": unit,
                "acronym": acr,
                "name": name,
                "category": r.choice(CATEGORIES),
                "stage": r.choice(["initiative", "trial", "applied"]),
                "digital": bool(i % 3),
                "started": _date(datetime.date(2020, 1, 1), i % 900),
                "competition": r.choice(["KOINYANLIK 2022", "KIPP 2023"]),
                "sdgs": sorted(r.sample(range(1, 18), 3)),
                "summary": "A simple scheme run by the unit with the community",
            }
            tg = [src, "setda"]
            ev["corr"] = iid
        elif t == "innovation.advanced":
            src = src or "setda"
            iid = "INOV-%s-%d" % (self.prefix, i - 1)
            body = {
                "innovation_id": iid,
                "competition": "KIPP 2023",
                "stage": r.choice(["admin_passed", "rejected", "shortlisted", "finalist"]),
                "ref": "B/%d/KIPP/2023" % i,
            }
            tg = [opd] if i % 2 else []
            ev["corr"] = iid
        elif t == "innovation.awarded":
            src = src or "setda"
            iid = "INOV-%s-%d" % (self.prefix, i - 2)
            body = {
                "innovation_id": iid,
                "competition": "KIPP 2023",
                "award": r.choice(["Top 99", "Top 45", "Juara 1"]),
                "rank": r.randint(1, 99),
                "decree": "KEPMENPANRB %d/2023" % (i % 500),
            }
            tg = [opd] if i % 2 else []
            ev["corr"] = iid
        elif t == "attendance.reported":
            src = src or opd
            total = r.randint(30, 400)
            absent = {
                "sick": r.randint(0, 5),
                "leave": r.randint(0, 5),
                "duty": r.randint(0, 5),
                "study": r.randint(0, 2),
                "unexplained": r.randint(0, 4),
            }
            body = {
                "agency": src,
                "date": day.isoformat(),
                "total": total,
                "present": total - sum(absent.values()),
                "absent": absent,
                "occasion": "first day after Eid 2023",
            }
            tg = [src, "setda"]
        else:
            raise ValueError(t)
        ev["source"] = src
        ev["id"] = "%s-%s-%d" % (self.prefix, src, i)
        if targets is not None:
            tg = targets
        # The agency a body names stays a target even when the caller overrides.
        for k in ("host", "auditee", "owner", "agency"):
            if k in body and body[k] not in tg:
                tg = tg + [body[k]]
        if tg:
            ev["targets"] = sorted(set(tg))
        ev["body"] = body
        return ev

    def make_many(self, n, start=0, **kw):
        return [self.make(i, **kw) for i in range(start, start + n)]


def event_matches(ev, type_prefix=None, source=None, target=None):
    """The filter rule of store_filter: what a --type/--source/--target replay returns."""
    if type_prefix is not None and not ev["type"].startswith(type_prefix):
        return False
    if source is not None and ev["source"] != source:
        return False
    if target is not None:
        tg = ev.get("targets") or []
        if tg and target not in tg:
            return False
    return True


# ---------------------------------------------------------------------------
# Canonical msgpack (PROTOCOL.md "Canonical encoding") for raw-socket tests


def _sorted_for_pack(o):
    if isinstance(o, dict):
        return {k: _sorted_for_pack(o[k]) for k in sorted(o, key=lambda k: k.encode("utf-8"))}
    if isinstance(o, (list, tuple)):
        return [_sorted_for_pack(x) for x in o]
    return o


def canonical_packb(o):
    """msgpack with map keys sorted bytewise and the smallest encodings (no floats here)."""
    return msgpack.packb(_sorted_for_pack(o), use_bin_type=True)


def event_msgpack(ev):
    """One JSON-form event dict -> the canonical msgpack bytes of the event (raw publishing).

    occurred_at becomes a msgpack timestamp; seq/received_at are dropped.
    """
    d = {k: v for k, v in ev.items() if k not in ("seq", "received_at")}
    if "occurred_at" in d:
        ns = parse_instant(d["occurred_at"])
        d["occurred_at"] = msgpack.Timestamp.from_unix_nano(ns)
    return canonical_packb(d)


class RawClient:
    """A raw DEALER speaking the wire protocol of proto/wire.h with python's zmq and msgpack.

    send(cmd, id, *args, frames=()) sends [version, cmd, id, args...] plus
    frames; recv() returns (header list, [frames]) or None on timeout.

    To a secure broker started here (found by endpoint, or broker=) it
    speaks CURVE as `principal` (default ADMIN) with the principal's key of
    the broker's key ring; key= (a nacl SigningKey) and server_key= (the
    broker's 32-byte Ed25519 public key) override them, plaintext=True
    connects without CURVE. publish()/send_pub() sign each PUB (sign="auto":
    with the key of the first event's source when the key ring has one,
    else the client's own key; a SigningKey: that key; None: unsigned).
    """

    def __init__(self, endpoint, ctx=None, broker=None, principal=ADMIN, key=None, server_key=None,
                 plaintext=False):
        self.ctx = ctx or zmq.Context.instance()
        self.broker = broker or broker_for(endpoint)
        self.principal = principal
        self.key = key
        self.secure = not plaintext and (
            key is not None or server_key is not None or (self.broker is not None and not self.broker.insecure)
        )
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        if self.secure:
            if self.key is None:
                self.key = self.broker.keys.signing_key(principal)
            if server_key is None:
                server_key = self.broker.server_key()
            cpk, csk = curve_keys(self.key)
            self.sock.curve_serverkey = curve_public(server_key)
            self.sock.curve_publickey = cpk
            self.sock.curve_secretkey = csk
        self.sock.connect(endpoint)
        self.next_id = 1

    def close(self):
        self.sock.close(0)

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def send_raw(self, frames):
        self.sock.send_multipart([bytes(f) for f in frames])

    def send(self, cmd, id, *args, frames=(), version=PROTOCOL_VERSION):
        hdr = canonical_packb([version, cmd, id] + list(args))
        self.send_raw([hdr] + list(frames))

    def recv(self, timeout=30.0):
        if not self.sock.poll(int(timeout * 1000)):
            return None
        frames = self.sock.recv_multipart()
        try:
            hdr = msgpack.unpackb(frames[0], raw=False, timestamp=3, strict_map_key=False)
        except Exception:
            hdr = None
        return hdr, frames[1:]

    def request(self, cmd, *args, frames=(), timeout=60.0, skip=("PONG", "EVT", "SUBOK", "END")):
        """Send a request with a fresh id and return the reply carrying that id."""
        rid = self.new_id()
        self.send(cmd, rid, *args, frames=frames)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply to %s within %.0f s" % (cmd, timeout))
            m = self.recv(left)
            if m is None:
                continue
            hdr, rest = m
            if isinstance(hdr, list) and len(hdr) >= 3 and hdr[2] == rid:
                return hdr, rest
            # replies to other requests (or stray PONGs) are skipped

    def ping(self, timeout=60.0):
        """True when the broker answers PING with PONG."""
        hdr, _ = self.request("PING", timeout=timeout)
        return hdr[1] == "PONG"

    def head(self, timeout=60.0):
        """HEADOK map: {"seq", "count", "last_received_at"}."""
        hdr, _ = self.request("HEAD", timeout=timeout)
        if hdr[1] != "HEADOK":
            raise AssertionError("HEAD answered with %r" % (hdr,))
        return hdr[3]

    def signer_for(self, frames, sign="auto"):
        """The SigningKey a PUB of these frames is signed with (None: unsigned)."""
        if sign != "auto":
            return sign or None
        if not self.secure:
            return None
        source = None
        for f in frames:
            try:
                source = msgpack.unpackb(bytes(f), raw=False, timestamp=3, strict_map_key=False)["source"]
                break
            except Exception:
                continue
        b = self.broker
        if b is not None and isinstance(source, str) and source in b.registered:
            return b.keys.signing_key(source)
        return self.key

    def pub_args(self, frames, sign="auto"):
        """The PUB header's arguments after the id: [] or [[key, sig]]."""
        sk = self.signer_for(frames, sign)
        return [sign_batch(sk, frames)] if sk is not None and frames else []

    def send_pub(self, id, frames, sign="auto"):
        self.send("PUB", id, *self.pub_args(frames, sign), frames=frames)

    def publish_reply(self, event_bytes_list, sign="auto", timeout=60.0):
        """PUB one batch; returns the whole reply header (ACK or ERR)."""
        hdr, _ = self.request("PUB", *self.pub_args(event_bytes_list, sign), frames=event_bytes_list,
                              timeout=timeout)
        return hdr

    def publish(self, event_bytes_list, sign="auto", timeout=60.0):
        """PUB one batch (signed as signer_for says); returns the ACK's results list."""
        hdr = self.publish_reply(event_bytes_list, sign, timeout)
        if hdr[1] != "ACK":
            raise AssertionError("PUB answered with %r" % (hdr,))
        return hdr[3]

    def call(self, method, params=None, timeout=60.0):
        """CALL method params -> the reply header: [1, "RESULT", id, map] or [1, "ERR", id, code, text]."""
        hdr, _ = self.request("CALL", method, params or {}, timeout=timeout)
        return hdr

    def answers(self, timeout=5.0):
        """True when a PING is answered within timeout (a refused CURVE client gets nothing)."""
        rid = self.new_id()
        self.send("PING", rid)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            m = self.recv(left)
            if m is None:
                return False
            hdr = m[0]
            if isinstance(hdr, list) and len(hdr) >= 3 and hdr[2] == rid:
                return hdr[1] == "PONG"


def parse_records(payload):
    """An EVT payload frame -> [(seq, received_at, event bytes)]."""
    u = msgpack.Unpacker(raw=False, timestamp=3, strict_map_key=False)
    u.feed(payload)
    out = []
    for rec in u:
        seq, rat, ev = rec
        out.append((seq, rat, ev))
    return out


def head_seq_offline(data_dir):
    """The head of a log read offline (`kabar status --data DIR --json`)."""
    r = run_cli("status", "--data", data_dir, "--json")
    if r.rc != 0:
        raise AssertionError("kabar status --data %s: %r" % (data_dir, r))
    return json.loads(r.out)["head"]


def head_seq(endpoint):
    c = RawClient(endpoint)
    try:
        return c.head()["seq"]
    finally:
        c.close()


# ---------------------------------------------------------------------------
# The test case base


class KabarTestCase(unittest.TestCase):
    """A TestCase with a temporary directory, broker and CLI helpers and cleanup."""

    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        for exe in (KABARD, KABAR):
            if not os.access(exe, os.X_OK):
                raise AssertionError(
                    "%s not built: build first (scripts/setup) or set KABAR_BUILD_DIR" % exe
                )

    def setUp(self):
        self.tmp = make_tmpdir(self)

    def start_broker(self, name="data", **kw):
        b = Broker(os.path.join(self.tmp, name), **kw)
        self.addCleanup(self._stop_broker, b)
        return b.start()

    def _stop_broker(self, b):
        if b.running():
            rc = b.stop()
            if rc not in (0, None):
                sys.stderr.write(
                    "warning: kabard exited with %s at cleanup; its log:\n%s\n"
                    % (rc, b.log_text()[-3000:])
                )

    def cli(self, *args, **kw):
        return run_cli(*args, **kw)

    def cli_ok(self, *args, **kw):
        r = run_cli(*args, **kw)
        self.assertEqual(r.rc, 0, r)
        return r

    def publish(self, broker, events, expect_rc=0, extra=()):
        """`kabar publish -` of the events; returns the parsed result lines (one per event)."""
        ensure_sources(broker, events)
        r = run_cli("publish", "-", "--broker", broker.endpoint, *extra, input=to_jsonl(events))
        if expect_rc is not None:
            self.assertEqual(r.rc, expect_rc, r)
        res = r.json_lines()
        self.assertEqual(len(res), len(events), "one result line per event: %r" % r)
        return res

    def replay(self, *args):
        """`kabar replay ARGS` (JSON Lines) -> list of event dicts."""
        r = self.cli_ok("replay", *args)
        return r.json_lines()

    def raw(self, broker, principal=ADMIN, **kw):
        c = RawClient(broker.endpoint, broker=broker, principal=principal, **kw)
        self.addCleanup(c.close)
        return c


def client_security_args(endpoint, agency):
    """The --key/--server-key (or --insecure) arguments of kabar-agent or
    kabar-oversight for agency's client of the broker at endpoint (a
    broker of this process, found by endpoint or listen address)."""
    b = broker_for(endpoint)
    if b is None:
        raise AssertionError("no broker of this test run at %s" % endpoint)
    if b.insecure:
        return ["--insecure"]
    if agency not in b.registered:
        b.add_agency(agency, default_role(agency))
    b.ensure_server_key()
    return ["--key", b.keys.path(agency), "--server-key", b.server_key_path]


_AGENCY_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")


def ensure_sources(broker, events):
    """Register (as agents) the source agencies of events that a secure broker
    does not know yet, so that their keys can sign them."""
    if broker.insecure:
        return
    for ev in events:
        src = ev.get("source") if isinstance(ev, dict) else None
        if isinstance(src, str) and _AGENCY_ID.match(src) and src not in broker.registered:
            broker.add_agency(src, default_role(src))


def make_tmpdir(case=None):
    d = tempfile.mkdtemp(prefix="kabar-test-")
    keep = os.environ.get("KABAR_KEEP_TMP")
    if keep:
        sys.stderr.write("kabartest: keeping %s\n" % d)
    elif case is not None:
        case.addCleanup(shutil.rmtree, d, True)
    return d


def main():
    # ctest kills a test file after its TIMEOUT (600 s): say where it hung first.
    import faulthandler

    faulthandler.dump_traceback_later(float(os.environ.get("KABAR_TEST_STACK_AFTER", "570")), exit=False)
    unittest.main(verbosity=2)


class Tail:
    """A running `kabar tail ...` whose stdout lines are read by a thread.

    next(timeout) returns the next JSON line as a dict (None on timeout);
    stop() ends it (SIGTERM) and returns the exit code; wait() waits for it
    to exit by itself (--count) and returns the exit code.
    """

    def __init__(self, *args, env=None):
        import queue

        self.args = list(args)
        self.q = queue.Queue()
        self.proc = cli_popen(
            ["tail"] + self.args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.err = b""
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self._te = threading.Thread(target=self._read_err, daemon=True)
        self._te.start()

    def _read(self):
        for line in self.proc.stdout:
            self.q.put(line)
        self.proc.stdout.close()
        self.q.put(None)

    def _read_err(self):
        self.err = self.proc.stderr.read()
        self.proc.stderr.close()

    def next(self, timeout=60.0):
        import queue

        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            self.q.put(None)  # stays at end
            return None
        return json.loads(line)

    def take(self, n, timeout=300.0):
        """The next n events; fails if they do not all come within timeout."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            e = self.next(max(left, 0.01))
            if e is None:
                raise AssertionError(
                    "kabar tail %s: got %d of %d events (exit %s); stderr: %s"
                    % (" ".join(self.args), len(out), n, self.proc.poll(), self.errtext()[-2000:])
                )
            out.append(e)
        return out

    def errtext(self):
        return self.err.decode("utf-8", "replace")

    def wait(self, timeout=300.0):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("kabar tail %s did not exit" % " ".join(self.args))
        self._te.join(10)
        with _live_lock:
            _live.discard(self.proc)
        return rc

    def stop(self):
        rc = stop_process(self.proc, signal.SIGTERM, 30)
        self._te.join(10)
        self._t.join(10)
        return rc
