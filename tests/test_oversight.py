"""kabar-oversight and `kabar oversight report` against a real broker.

A scenario of 22 events whose report is worked out by hand below; the
report of the live state must equal it exactly, and a state rebuilt from
the broker and from the log directory must give the same report.
"""

import copy
import json

import kabartest
from kabartest import to_jsonl
from oversighttest import OversightTestCase, overdue_events, report_json

NOW = "2023-09-01"  # the agent's and the report's clock (a date: 00:00 WIB)


def ev(type, id, source, body, at=None, targets=None):
    e = {"type": type, "id": id, "source": source, "body": body}
    if at:
        e["occurred_at"] = at
    if targets:
        e["targets"] = targets
    return e


def rec(*ids):
    return [{"rec_id": r, "text": "Recommendation " + r} for r in ids]


def raised(fid, auditee, received, due, recs):
    return ev("finding.raised", "insp-" + fid, "inspektorat", {
        "finding_id": fid, "auditee": auditee, "auditor": "inspektorat",
        "condition": "Travel expenses paid without complete receipts",
        "recommendations": rec(*recs), "report_received": received, "due": due},
        at=received + "T08:30:00+07:00")


def reviewed(fid, r, status, at):
    return ev("finding.reviewed", "rev-%s-%s-%s" % (fid, r, status), "inspektorat", {
        "finding_id": fid, "rec_id": r, "status": status, "reviewer": "Inspektur Pembantu II"},
        at=at)


SCENARIO = [
    ev("visit.scheduled", "v1-s", "setda", {"visit_id": "V1", "host": "bappeda", "visitor": "Wali Kota",
       "date": "2023-04-27", "program": "Kamis Berseri", "team": "Tim 1"}),
    ev("visit.completed", "v1-c", "setda", {"visit_id": "V1", "host": "bappeda", "date": "2023-04-27",
       "attendance": {"present": 58, "total": 64}}),
    ev("visit.scheduled", "v2-s", "setda", {"visit_id": "V2", "host": "dinkes", "visitor": "Wali Kota",
       "date": "2023-05-04", "program": "Kamis Berseri"}),
    ev("visit.scheduled", "v3-s", "setda", {"visit_id": "V3", "host": "disdik", "visitor": "Sekda",
       "date": "2023-09-07", "program": "Kamis Berseri"}),
    # F-A (dinkes): R1 S, R2 BS then TD on 30 June -> resolved in 59 days.
    raised("F-A", "dinkes", "2023-05-02", "2023-07-01", ["R1", "R2"]),
    ev("finding.responded", "tl-F-A-R1", "dinkes", {"finding_id": "F-A", "rec_id": "R1",
       "action": "Electronic attendance register installed"}, at="2023-06-12T14:10:00+07:00"),
    reviewed("F-A", "R1", "S", "2023-06-26T09:00:00+07:00"),
    reviewed("F-A", "R2", "BS", "2023-06-26T09:05:00+07:00"),
    reviewed("F-A", "R2", "TD", "2023-06-30T10:00:00+07:00"),
    # F-B (dinsos): never answered, due 14 July -> overdue.
    raised("F-B", "dinsos", "2023-05-15", "2023-07-14", ["R1"]),
    # F-C (bpkad): both S, the last on 11 July -> 40 days.
    raised("F-C", "bpkad", "2023-06-01", "2023-07-31", ["R1", "R2"]),
    reviewed("F-C", "R1", "S", "2023-06-20T08:00:00+07:00"),
    reviewed("F-C", "R2", "S", "2023-07-11T16:00:00+07:00"),
    # F-D (disdik): received before the period, resolved in it (50 days).
    raised("F-D", "disdik", "2023-03-01", "2023-04-30", ["R1"]),
    reviewed("F-D", "R1", "S", "2023-04-20T11:00:00+07:00"),
    ev("innovation.submitted", "inov-1", "dinkes", {"innovation_id": "I-1", "owner": "dinkes",
       "unit": "Puskesmas Andalas", "acronym": "BUAH SABAR", "name": "Buang Air Limbah Sehat dan Benar",
       "category": "health", "stage": "applied", "started": "2021-03-01", "competition": "KIPP 2023"},
       at="2023-05-10T09:00:00+07:00"),
    ev("innovation.advanced", "inov-1-adv", "setda", {"innovation_id": "I-1", "competition": "KIPP 2023",
       "stage": "shortlisted"}, at="2023-06-15T09:00:00+07:00"),
    ev("innovation.awarded", "inov-1-awd", "setda", {"innovation_id": "I-1", "competition": "KIPP 2023",
       "award": "Top 45", "rank": 12}, at="2023-07-20T09:00:00+07:00"),
    ev("innovation.submitted", "inov-2", "disdik", {"innovation_id": "I-2", "owner": "disdik",
       "acronym": "PAPA SEHAT", "name": "Papan Kontrol Kesehatan Anak Sekolah", "category": "education",
       "stage": "trial", "started": "2022-01-10", "competition": "KIPP 2023"},
       at="2023-05-12T09:00:00+07:00"),
    ev("innovation.advanced", "inov-2-adv", "setda", {"innovation_id": "I-2", "competition": "KIPP 2023",
       "stage": "rejected"}, at="2023-06-15T09:00:00+07:00"),
    ev("attendance.reported", "abs-bappeda", "bappeda", {"agency": "bappeda", "date": "2023-04-26",
       "total": 64, "present": 60}),
    ev("attendance.reported", "abs-dinkes", "dinkes", {"agency": "dinkes", "date": "2023-04-26",
       "total": 212, "present": 199}),
    ev("attendance.reported", "abs-dinkes-old", "dinkes", {"agency": "dinkes", "date": "2023-03-27",
       "total": 200, "present": 100}),
]

ZERO = {
    "visits_scheduled": 0, "visits_completed": 0,
    "findings_raised": 0, "findings_open": 0, "findings_resolved": 0, "findings_overdue": 0,
    "median_days_to_resolve": None,
    "innovations_submitted": 0, "innovations_advanced": 0, "innovations_awarded": 0,
    "attendance_present": 0, "attendance_total": 0, "attendance_rate": None,
}


def figures(**kw):
    f = copy.deepcopy(ZERO)
    f.update(kw)
    return f


def agency(name, **kw):
    a = {"agency": name}
    a.update(figures(**kw))
    return a


# The period April-August 2023: [2023-04-01, 2023-09-01), as of 31 August.
EXPECTED_PERIOD = {
    "as_of": "2023-08-31",
    "zone": "+07:00",
    "since": "2023-04-01",
    "until": "2023-09-01",
    # V3 (disdik) is on 7 September: outside the period.
    "agencies_without_visit": ["bpkad", "dinsos", "disdik", "inspektorat", "setda"],
    # F-B: due 14 July, 48 days late on 31 August; the agent has notified it.
    "findings_overdue": [{"finding_id": "F-B", "auditee": "dinsos", "auditor": "inspektorat",
                          "due": "2023-07-14", "days_overdue": 48, "open_recs": ["R1"],
                          "notified": True}],
    "agencies": [
        # 60/64 = 93.75% -> 93.8 (the visit's own 58/64 head count is not an attendance report)
        agency("bappeda", visits_scheduled=1, visits_completed=1,
               attendance_present=60, attendance_total=64, attendance_rate=93.8),
        # 2023-06-01 -> 2023-07-11 = 40 days
        agency("bpkad", findings_raised=1, findings_resolved=1, median_days_to_resolve=40),
        # 2023-05-02 -> 2023-06-30 = 59 days; 199/212 = 93.87% -> 93.9 (the March report is outside)
        agency("dinkes", visits_scheduled=1, findings_raised=1, findings_resolved=1,
               median_days_to_resolve=59, innovations_submitted=1, innovations_advanced=1,
               innovations_awarded=1, attendance_present=199, attendance_total=212,
               attendance_rate=93.9),
        agency("dinsos", findings_raised=1, findings_open=1, findings_overdue=1),
        # F-D received 1 March (before the period), resolved 20 April: 50 days;
        # I-2 was rejected: not advanced
        agency("disdik", findings_resolved=1, median_days_to_resolve=50, innovations_submitted=1),
        agency("inspektorat"),
        agency("setda"),
    ],
    # median of 40, 50, 59; 259/276 = 93.84% -> 93.8
    "totals": figures(visits_scheduled=2, visits_completed=1, findings_raised=3, findings_open=1,
                      findings_resolved=3, findings_overdue=1, median_days_to_resolve=50,
                      innovations_submitted=2, innovations_advanced=1, innovations_awarded=1,
                      attendance_present=259, attendance_total=276, attendance_rate=93.8),
}


class OversightReportTest(OversightTestCase):
    maxDiff = None

    def setUp(self):
        super().setUp()
        self.broker = self.start_broker()
        res = self.publish(self.broker, SCENARIO)
        self.assertTrue(all("seq" in r for r in res), res)
        # Started after the events are in: its first check sees the whole log.
        self.o = self.start_oversight(self.broker.endpoint, "--now", NOW)
        self.live = self.wait_caught_up(self.o, self.broker, "--now", NOW)

    def period(self, *extra):
        return ("--now", NOW, "--since", "2023-04-01", "--until", "2023-09-01") + extra

    def test_report_matches_the_hand_made_one(self):
        # The overdue event is in the log, published once by setda to dinsos.
        ovd = overdue_events(self.broker)
        self.assertEqual(len(ovd), 1, ovd)
        self.assertEqual(ovd[0]["id"], "overdue-F-B")
        self.assertEqual(ovd[0]["source"], "setda")
        self.assertEqual(ovd[0]["targets"], ["dinsos"])
        self.assertEqual(ovd[0]["body"], {"finding_id": "F-B", "auditee": "dinsos", "due": "2023-07-14",
                                          "days_overdue": 49, "open_recs": ["R1"]})
        got = self.report(self.o, *self.period())
        head = kabartest.head_seq(self.broker.endpoint)
        self.assertEqual(head, len(SCENARIO) + 1)
        want = dict(EXPECTED_PERIOD, position=head)
        self.assertEqual(got, want)

    def test_all_dates_and_empty_period(self):
        rep = self.report(self.o, "--now", NOW)
        self.assertEqual(rep["as_of"], NOW)
        self.assertIsNone(rep["since"])
        # V3 on 7 September counts when there is no end: every OPD but bpkad/dinsos was visited.
        self.assertEqual(rep["agencies_without_visit"], ["bpkad", "dinsos", "inspektorat", "setda"])
        self.assertEqual([(f["finding_id"], f["days_overdue"]) for f in rep["findings_overdue"]],
                         [("F-B", 49)])
        # The March attendance report counts now: (60+199+100)/(64+212+200) = 75.4%
        self.assertEqual(rep["totals"]["attendance_rate"], 75.4)
        self.assertEqual(rep["totals"]["findings_raised"], 4)
        # A period where nothing happened: flows are zero, every agency is unvisited.
        empty = self.report(self.o, "--now", NOW, "--since", "2022-01-01", "--until", "2022-02-01")
        self.assertEqual(empty["totals"], figures())
        self.assertEqual(len(empty["agencies_without_visit"]), 7)
        self.assertEqual(empty["findings_overdue"], [])

    def test_rebuilt_reports_equal_the_live_one(self):
        for extra in ((), self.period()[2:]):
            live = self.report(self.o, "--now", NOW, *extra)
            online = report_json("--rebuild", "--broker", self.broker.endpoint, "--now", NOW, *extra)
            offline = report_json("--rebuild", "--log", self.broker.data_dir, "--now", NOW, *extra)
            self.assertEqual(online, live)
            self.assertEqual(offline, live)

    def test_text_and_csv(self):
        r = self.cli_ok("oversight", "report", "--data", self.o.data_dir, *self.period())
        text = r.text
        self.assertIn("Agencies with no visit in the period: 5", text)
        self.assertIn("Findings past due: 1", text)
        self.assertRegex(text, r"F-B\s+dinsos\s+2023-07-14\s+48\s+R1\s+yes")
        self.assertRegex(text, r"TOTAL\s+2\s+1\s+3\s+1\s+3\s+1\s+50\s+2\s+1\s+1\s+93\.8")
        r = self.cli_ok("oversight", "report", "--data", self.o.data_dir, "--format", "csv",
                        *self.period())
        rows = r.text.split("\r\n")
        self.assertEqual(rows[0].split(",")[0], "agency")
        self.assertEqual(len([x for x in rows if x]), 1 + 7)
        dinsos = [x for x in rows if x.startswith("dinsos,")][0].split(",")
        header = rows[0].split(",")
        row = dict(zip(header, dinsos))
        self.assertEqual(row["findings_overdue"], "1")
        self.assertEqual(row["median_days_to_resolve"], "")
        self.assertEqual(row["visited"], "no")

    def test_usage_errors(self):
        self.assertEqual(self.cli("oversight", "report").rc, 2)
        self.assertEqual(self.cli("oversight", "report", "--data", self.o.data_dir,
                                  "--since", "2023-13-01").rc, 2)
        self.assertEqual(self.cli("oversight", "report", "--rebuild").rc, 2)
        r = self.cli("oversight", "report", "--data", self.tmp + "/nothing-here")
        self.assertEqual(r.rc, 2)
        self.assertIn("no oversight state", r.errtext)
        # A second agent on the same directory is refused.
        o2 = kabartest.popen([self.o.command()[0]] + self.o.command()[1:],
                             stdout=kabartest.subprocess.PIPE, stderr=kabartest.subprocess.PIPE)
        out, err = o2.communicate(timeout=60)
        self.assertEqual(o2.returncode, 2)
        self.assertIn(b"in use by another kabar-oversight", err)


if __name__ == "__main__":
    kabartest.main()
