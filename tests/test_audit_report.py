"""`kabar audit report`: the oversight figures computed from the log, in every
format, and the HTML report rendered in headless Chromium.

A real kabard's log holds the demo's April 2023 (scripts/demo-events/) and a
finding whose id and recommendation try HTML injection. The JSON report must
hold what the demo's story says (worked out by hand below), agree with `kabar
oversight report --rebuild` (the same apply code), be the same offline and
online, and the HTML page rendered by Chromium must show the same figures in
its tables and charts, run no script, and make a non-blank screenshot.

Needs Debian's `chromium` (scripts/setup installs it); without it the HTML
rendering tests are skipped with a message, the others still run.
"""

import datetime
import glob
import html.parser
import json
import os
import shutil
import struct
import subprocess
import zlib

import kabartest
from kabartest import ADMIN, AGENCIES, AUDITOR, KabarTestCase, SOURCE_DIR, run_cli

SINCE, UNTIL, NOW = "2023-04-01", "2023-05-01", "2023-05-01"
PERIOD = ["--since", SINCE, "--until", UNTIL, "--now", NOW]

INJECT_FID = 'F-<script>alert("fid")</script>&amp;'
INJECT_REC = 'R1"><img src=x onerror=alert(2)>'

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = (
    "chromium is not installed: the HTML report is not rendered "
    "(install it with scripts/setup, or apt-get install chromium fonts-dejavu-core)"
)


def demo_events():
    files = sorted(glob.glob(os.path.join(SOURCE_DIR, "scripts", "demo-events", "0*.jsonl")))
    assert files, "scripts/demo-events/*.jsonl missing"
    out = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


def injection_events():
    """A finding raised in March, due 10 April, never answered: overdue on 30 April."""
    return [{
        "type": "finding.raised", "id": "insp-inject", "source": "inspektorat",
        "targets": ["dinsos"], "occurred_at": "2023-03-10T10:00:00+07:00",
        "body": {"finding_id": INJECT_FID, "auditee": "dinsos", "auditor": "inspektorat",
                 "condition": "<b>bold</b> claims", "recommendations": [
                     {"rec_id": INJECT_REC, "text": "<script>document.title='x'</script>"}],
                 "report_received": "2023-03-10", "due": "2023-04-10"}}]


def day(s):
    return datetime.date.fromisoformat(s)


def figures_only(model):
    """The oversight report's part of a model (no charts, no provenance)."""
    return {k: v for k, v in model.items() if k not in ("charts", "source", "generated_at", "agency")}


class DomReader(html.parser.HTMLParser):
    """What the test reads from a page: figure cells, chart bars, svgs, scripts, texts."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.row = None  # data-agency of the current <tr>
        self.cell = None  # (agency, figure, value) of the current <td>
        self.cell_text = ""
        self.figures = {}  # (agency, figure) -> (data-value, text)
        self.svg = None
        self.svgs = []
        self.bars = {}  # svg id -> [(series, key, value)]
        self.scripts = 0
        self.tags = []  # every start tag's name
        self.attrs = set()  # every attribute name
        self.overdue_rows = []  # data-finding of <tbody id=overdue> rows
        self.meta = {}
        self.meta_key = None
        self.texts = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs.update(a)
        if tag == "script":
            self.scripts += 1
        if tag == "svg":
            self.svg = a.get("id")
            self.svgs.append(self.svg)
            self.bars[self.svg] = []
        if tag == "rect" and "bar" in (a.get("class") or "").split():
            self.bars[self.svg].append((a["data-series"], a["data-key"], int(a["data-value"])))
        if tag == "tr" and "data-agency" in a:
            self.row = a["data-agency"]
        if tag == "tr" and "data-finding" in a:
            self.overdue_rows.append(a["data-finding"])
        if tag == "td" and "data-figure" in a and self.row is not None:
            self.cell = (self.row, a["data-figure"], a["data-value"])
            self.cell_text = ""
        if tag == "dd" and "data-meta" in a:
            self.meta_key = a["data-meta"]
            self.meta[self.meta_key] = ""

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            agency, fig, value = self.cell
            self.figures[(agency, fig)] = (value, self.cell_text.strip())
            self.cell = None
        if tag == "tr":
            self.row = None
        if tag == "svg":
            self.svg = None
        if tag == "dd":
            self.meta_key = None

    def handle_data(self, data):
        self.texts.append(data)
        if self.cell is not None:
            self.cell_text += data
        if self.meta_key is not None:
            self.meta[self.meta_key] += data


def read_dom(text):
    r = DomReader()
    r.feed(text)
    r.close()
    return r


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w, h, ctype = 8, [], 0, 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), "unexpected PNG format %d/%d" % (depth, ctype)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    raw = zlib.decompress(b"".join(idat))
    bpp = 3 if ctype == 2 else 4
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ft == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif ft == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif ft == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ft == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


class AuditReportTest(KabarTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.events = demo_events() + injection_events()

    def setUp(self):
        super().setUp()
        # Every source is registered (offline, before the first start) with its
        # own key, which signs its events; bpk reads the log as the auditor.
        principals = {a: kabartest.default_role(a)
                      for a in set(AGENCIES) | {e["source"] for e in self.events}}
        principals.update({ADMIN: "admin", AUDITOR: "auditor"})
        self.b = self.start_broker(principals=principals)
        res = self.publish(self.b, self.events)
        self.assertTrue(all(r.get("seq") for r in res), res)

    def report(self, *args, online=False, expect_rc=0):
        where = (["--broker", self.b.endpoint] if online else ["--data", self.b.data_dir])
        env = self.b.env(AUDITOR) if online else None
        r = run_cli("audit", "report", *where, *args, env=env)
        self.assertEqual(r.rc, expect_rc, r)
        return r

    def report_json(self, *args, **kw):
        return json.loads(self.report("--format", "json", *args, **kw).out)

    # ---- figures ----

    def test_json_figures_from_the_demo(self):
        m = self.report_json(*PERIOD)
        self.assertEqual((m["since"], m["until"], m["as_of"], m["zone"]),
                         (SINCE, UNTIL, "2023-04-30", "+07:00"))
        self.assertEqual(m["position"], len(self.events))
        self.assertEqual(len(m["source"].pop("root")), 44, "a base64 SHA-256")
        self.assertEqual(m["source"], {"kind": "log", "where": self.b.data_dir,
                                       "records": len(self.events),
                                       "tree_size": len(self.events)})
        t = m["totals"]
        ags = {a["agency"]: a for a in m["agencies"]}
        # Findings (scripts/demo-events/steps.tsv): PUPR's F-2023-007 closed on
        # 27 April, Dinkes's F-2023-011 on 18 April, BPKAD's F-2023-018 raised
        # on 14 April and open, Disdukcapil's F-2023-009 due on the 28th and
        # unanswered, and the injected one against Dinsos due 10 April.
        self.assertEqual(t["findings_raised"], 1)
        self.assertEqual(t["findings_resolved"], 2)
        self.assertEqual(t["findings_open"], 3)
        self.assertEqual(t["findings_overdue"], 2)
        self.assertEqual(ags["dpupr"]["findings_resolved"], 1)
        self.assertEqual(ags["bpkad"]["findings_open"], 1)
        self.assertEqual(ags["bpkad"]["findings_overdue"], 0)
        od = {o["finding_id"]: o for o in m["findings_overdue"]}
        self.assertEqual(set(od), {"F-2023-009", INJECT_FID})
        self.assertEqual(od["F-2023-009"]["auditee"], "disdukcapil")
        self.assertEqual(od["F-2023-009"]["days_overdue"], 2)
        self.assertEqual(od[INJECT_FID]["days_overdue"], 20)
        self.assertEqual(od[INJECT_FID]["open_recs"], [INJECT_REC])
        self.assertEqual([o["finding_id"] for o in m["findings_overdue"]],
                         [INJECT_FID, "F-2023-009"], "most days overdue first")

        ch = m["charts"]
        # Days to resolve: the two resolved findings, from report received to closing review.
        raised = {e["body"]["finding_id"]: e["body"]["report_received"]
                  for e in self.events if e["type"] == "finding.raised"}
        days = [(day("2023-04-27") - day(raised["F-2023-007"])).days,
                (day("2023-04-18") - day(raised["F-2023-011"])).days]
        for b in ch["days_to_resolve"]:
            want = sum(1 for d in days if d >= b["from"] and (b["to"] is None or d <= b["to"]))
            self.assertEqual(b["count"], want, b)
        self.assertEqual(sum(b["count"] for b in ch["days_to_resolve"]), t["findings_resolved"])

        # Visits per week: the Mondays of April's weeks, counted by visit date.
        weeks = [w["week"] for w in ch["visits_per_week"]]
        self.assertEqual(weeks, ["2023-03-27", "2023-04-03", "2023-04-10", "2023-04-17",
                                 "2023-04-24"])
        want = {}
        for e in self.events:
            if e["type"] == "visit.scheduled" and SINCE <= e["body"]["date"] < UNTIL:
                d = day(e["body"]["date"])
                monday = (d - datetime.timedelta(days=d.weekday())).isoformat()
                want[monday] = want.get(monday, 0) + 1
        self.assertEqual({w["week"]: w["scheduled"] for w in ch["visits_per_week"]
                          if w["scheduled"]}, want)
        self.assertEqual(sum(w["scheduled"] for w in ch["visits_per_week"]),
                         t["visits_scheduled"])
        self.assertEqual(sum(w["completed"] for w in ch["visits_per_week"]),
                         t["visits_completed"])

        # Innovations by stage on 30 April: SIGAP BUNDA won (Juara 1), two more
        # shortlisted, two passed the administrative check, one rejected.
        stages = {s["stage"]: s["count"] for s in ch["innovations_by_stage"] if s["count"]}
        self.assertEqual(stages, {"awarded": 1, "shortlisted": 2, "admin_passed": 2,
                                  "rejected": 1})

    def test_agrees_with_oversight_rebuild_and_online(self):
        m = self.report_json(*PERIOD)
        # The same figures as the secretariat's report rebuilt from the same log.
        r = run_cli("oversight", "report", "--rebuild", "--log", self.b.data_dir, "--json",
                    *PERIOD)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(figures_only(m), json.loads(r.out))
        # The offline report names the Merkle root of the log it read: the
        # root the broker signs in a checkpoint of that size (C2SP note:
        # origin, size, base64 root).
        r = run_cli("audit", "checkpoint", "--new", "--broker", self.b.endpoint,
                    env=self.b.env(AUDITOR))
        self.assertEqual(r.rc, 0, r)
        note = r.text.split("\n")
        self.assertEqual(int(note[1]), len(self.events), r.text)
        self.assertEqual((m["source"]["tree_size"], m["source"]["root"]),
                         (len(self.events), note[2]))
        text = self.report(*PERIOD).text
        self.assertIn("Log tree of size %d, root %s" % (len(self.events), note[2]), text)
        # Online through the broker as the auditor (bpk): the same report.
        on = self.report_json(*PERIOD, online=True)
        self.assertEqual(on["source"]["kind"], "broker")
        self.assertEqual(on["source"]["records"], len(self.events))
        for k in ("source", "generated_at"):
            on.pop(k)
            m.pop(k)
        self.assertEqual(on, m)

    def test_one_agency_text_and_csv(self):
        full = self.report_json(*PERIOD)
        one = self.report_json(*PERIOD, "--agency", "disdukcapil")
        self.assertEqual(one["agency"], "disdukcapil")
        self.assertEqual([a["agency"] for a in one["agencies"]], ["disdukcapil"])
        row = next(a for a in full["agencies"] if a["agency"] == "disdukcapil")
        self.assertEqual(one["agencies"][0], row)
        self.assertEqual([o["finding_id"] for o in one["findings_overdue"]], ["F-2023-009"])
        # An id the log never names: zeros, and a warning that says so.
        r = self.report("--format", "json", *PERIOD, "--agency", "dinas-tidak-ada")
        self.assertIn("no event of the log names agency", r.errtext)
        self.assertEqual(json.loads(r.out)["totals"]["findings_raised"], 0)

        text = self.report(*PERIOD).text
        self.assertIn("Computed from the log", text)
        self.assertIn("F-2023-009", text)
        self.assertIn("TOTAL", text)
        csv = self.report("--format", "csv", *PERIOD).out.decode()
        lines = csv.split("\r\n")
        self.assertTrue(lines[0].startswith("agency,visits_scheduled,"), lines[0])
        self.assertEqual(len([x for x in lines[1:] if x]), len(full["agencies"]))

    def test_bad_usage(self):
        for args, what in ((["--format", "pdf"], "--format"), (["--since", "2023-02-30"], "--since"),
                           (["--until", "2023-01-01", "--since", "2023-02-01"], "before"),
                           (["--tz", "Mars"], "--tz"), (["--agency", "x" * 40], "--agency")):
            r = self.report(*args, expect_rc=2)
            self.assertIn(what, r.errtext)
        r = run_cli("audit", "report", "--data", os.path.join(self.tmp, "nothing-here"))
        self.assertEqual(r.rc, 2, r)
        self.assertIn("cannot read the log", r.errtext)

    # ---- HTML ----

    def html_report(self, *args):
        out = os.path.join(self.tmp, "report.html")
        r = self.report("--format", "html", "--out", out, *PERIOD, *args)
        self.assertEqual(r.out, b"", "with --out nothing goes to stdout")
        with open(out, encoding="utf-8") as f:
            return out, f.read()

    def test_html_is_self_contained_and_escaped(self):
        path, page = self.html_report()
        self.assertTrue(page.startswith("<!DOCTYPE html>"))
        dom = read_dom(page)
        # Nothing is fetched from anywhere: no element that loads, no attribute
        # that points elsewhere, no CSS import or url().
        for tag in ("script", "link", "img", "iframe", "object", "embed", "image", "use"):
            self.assertNotIn(tag, dom.tags)
        for attr in ("src", "href", "xlink:href", "srcset", "onerror", "onload"):
            self.assertNotIn(attr, dom.attrs)
        style = page[page.index("<style>"):page.index("</style>")].lower()
        self.assertFalse("@import" in style or "url(" in style, "the CSS loads something")
        # The only http:// is the SVG namespace name, which is never fetched.
        low = page.lower()
        self.assertEqual(low.count("http://"), low.count('xmlns="http://www.w3.org/2000/svg"'))
        self.assertEqual(low.count("https://"), 0)
        # The injected id is text, escaped once, and its rec too.
        self.assertIn("F-&lt;script&gt;alert(&quot;fid&quot;)&lt;/script&gt;&amp;amp;", page)
        self.assertIn("R1&quot;&gt;&lt;img src=x onerror=alert(2)&gt;", page)
        self.assertEqual(dom.scripts, 0)
        self.assertIn(INJECT_FID, dom.overdue_rows)
        self.assertIn(INJECT_FID, "".join(dom.texts))

    def chromium(self, *args):
        profile = os.path.join(self.tmp, "chromium-profile")
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--no-first-run", "--disable-extensions",
               "--user-data-dir=" + profile, "--proxy-server=127.0.0.1:9"] + list(args)
        env = dict(os.environ, HOME=self.tmp)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=180)
        self.assertEqual(p.returncode, 0, "chromium failed: %s" % p.stderr.decode()[-2000:])
        return p.stdout.decode("utf-8")

    def test_html_in_chromium(self):
        if CHROMIUM is None:
            self.skipTest(NO_CHROMIUM)
        m = self.report_json(*PERIOD)
        path, _ = self.html_report()
        dom = read_dom(self.chromium("--dump-dom", "file://" + path))

        # It rendered: four charts, and no script ran or was created.
        self.assertEqual(dom.svgs, ["chart-findings", "chart-resolve", "chart-visits",
                                    "chart-innovations"])
        self.assertEqual(dom.scripts, 0)
        self.assertNotIn("img", dom.tags)
        self.assertEqual(dom.overdue_rows, [o["finding_id"] for o in m["findings_overdue"]])
        self.assertEqual(dom.meta["as_of"], m["as_of"])
        self.assertEqual(dom.meta["position"], str(m["position"]))

        # Every figure of the table equals the JSON report's, as data and as text.
        rows = [(a["agency"], a) for a in m["agencies"]] + [("", m["totals"])]
        for agency, figs in rows:
            for key, want in figs.items():
                if key == "agency":
                    continue
                value, text = dom.figures[(agency, key)]
                self.assertEqual(json.loads(value), want, (agency, key))
                if want is None:
                    self.assertEqual(text, "\u2013")
                elif isinstance(want, float):
                    self.assertEqual(text, "%.1f" % want, (agency, key))
                else:
                    self.assertEqual(text, str(want), (agency, key))
        self.assertEqual(len([k for k in dom.figures if k[1] == "findings_open"]), len(rows))

        # The charts' bars are the JSON report's figures.
        want = []
        for a in m["agencies"]:
            if a["findings_resolved"] + a["findings_open"] > 0:
                want += [("resolved", a["agency"], a["findings_resolved"]),
                         ("open_not_due", a["agency"], a["findings_open"] - a["findings_overdue"]),
                         ("overdue", a["agency"], a["findings_overdue"])]
        self.assertEqual(dom.bars["chart-findings"], want)
        self.assertTrue(want, "the demo has findings to draw")
        ch = m["charts"]
        self.assertEqual([b[2] for b in dom.bars["chart-resolve"]],
                         [b["count"] for b in ch["days_to_resolve"]])
        self.assertEqual(dom.bars["chart-visits"],
                         [x for w in ch["visits_per_week"]
                          for x in (("scheduled", w["week"], w["scheduled"]),
                                    ("completed", w["week"], w["completed"]))])
        self.assertEqual(dom.bars["chart-innovations"],
                         [("count", s["stage"], s["count"]) for s in ch["innovations_by_stage"]])

        # A screenshot: a real PNG of the page, not blank, with the charts' colours.
        shot = os.path.join(self.tmp, "report.png")
        self.chromium("--screenshot=" + shot, "--window-size=1280,2000",
                      "--hide-scrollbars", "file://" + path)
        keep = os.environ.get("KABAR_REPORT_SCREENSHOT")
        if keep:
            shutil.copy(shot, keep)
        self.assertGreater(os.path.getsize(shot), 20000, "a near-empty screenshot")
        w, h, bpp, rows = png_pixels(shot)
        self.assertEqual((w, h), (1280, 2000))
        colours = set()
        for row in rows[::4]:
            for x in range(0, w * bpp, bpp * 2):
                colours.add(row[x:x + 3])
        self.assertGreater(len(colours), 20, "the screenshot is blank or nearly so")
        for name, rgb in (("resolved green", b"\x2e\x7d\x32"), ("overdue red", b"\xc6\x28\x28"),
                          ("visits blue", b"\x0d\x47\xa1")):
            self.assertIn(rgb, colours, "no %s bar in the screenshot" % name)


if __name__ == "__main__":
    kabartest.main()
