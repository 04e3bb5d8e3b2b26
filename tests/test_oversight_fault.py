"""kabar-oversight under faults: finding.overdue is published exactly once
across a clean restart, across a SIGKILL right after publishing, and across
a broker restart; a fresh data directory for a known durable consumer still
gets the whole log."""

import agenttest
import kabartest
from oversighttest import OversightTestCase, overdue_events, report_json

NOW = "2023-09-01"


def finding(fid, auditee="dinsos", due="2023-07-14"):
    return {"type": "finding.raised", "id": "insp-" + fid, "source": "inspektorat",
            "occurred_at": "2023-05-15T08:30:00+07:00",
            "body": {"finding_id": fid, "auditee": auditee, "auditor": "inspektorat",
                     "condition": "Grant recipients not verified before disbursement",
                     "recommendations": [{"rec_id": "R1", "text": "Verify every recipient"},
                                         {"rec_id": "R2", "text": "Recover unverified grants"}],
                     "report_received": "2023-05-15", "due": due}}


def resolved(fid, rec):
    return {"type": "finding.reviewed", "id": "rev-%s-%s" % (fid, rec), "source": "inspektorat",
            "occurred_at": "2023-06-01T10:00:00+07:00",
            "body": {"finding_id": fid, "rec_id": rec, "status": "S", "reviewer": "Irban III"}}


class OversightFaultTest(OversightTestCase):
    def count_overdue(self, broker, fid):
        return len([e for e in overdue_events(broker) if e["body"]["finding_id"] == fid])

    def test_exactly_once_across_a_restart(self):
        b = self.start_broker()
        # F-1 is overdue (R2 open); F-2 was resolved before its due date.
        self.publish(b, [finding("F-1"), resolved("F-1", "R1"), finding("F-2"),
                         resolved("F-2", "R1"), resolved("F-2", "R2")])
        o = self.start_oversight(b.endpoint, "--now", NOW)
        rep = self.wait_caught_up(o, b, "--now", NOW)
        self.assertEqual([f["finding_id"] for f in rep["findings_overdue"]], ["F-1"])
        self.assertTrue(rep["findings_overdue"][0]["notified"])
        ev = overdue_events(b)
        self.assertEqual(len(ev), 1, ev)
        self.assertEqual(ev[0]["body"]["open_recs"], ["R2"])
        self.assertEqual(ev[0]["body"]["days_overdue"], 49)
        self.assertEqual(o.stop(), 0)
        self.assertIn("KABAR-OVERSIGHT-STOP", o.log_text())
        o.start()
        self.wait_caught_up(o, b, "--now", NOW)
        self.assertEqual(self.count_overdue(b, "F-1"), 1)
        self.assertEqual(o.count("KABAR-OVERSIGHT-OVERDUE"), 1)

    def test_exactly_once_when_killed_right_after_publishing(self):
        b = self.start_broker()
        self.publish(b, [finding("F-9", auditee="dishub")])
        # The hook SIGKILLs the agent once the broker acked finding.overdue,
        # before the agent recorded it in its state.
        o = self.start_oversight(b.endpoint, "--now", NOW,
                                 env={"KABAR_OVERSIGHT_TEST_KILL_AFTER_PUBLISH": "1"})
        kabartest.wait_for(lambda: o.proc.poll() is not None, 120, what="the agent to be killed")
        self.assertEqual(o.proc.returncode, -9)
        self.assertEqual(self.count_overdue(b, "F-9"), 1)
        # Published, but the crash came before the state recorded it.
        rep = self.report(o, "--now", NOW)
        self.assertEqual([(f["finding_id"], f["notified"]) for f in rep["findings_overdue"]],
                         [("F-9", False)])
        o.env = None
        o.start(env={"KABAR_OVERSIGHT_TEST_KILL_AFTER_PUBLISH": "0"})
        rep = self.wait_caught_up(o, b, "--now", NOW)
        self.assertEqual([(f["finding_id"], f["notified"]) for f in rep["findings_overdue"]],
                         [("F-9", True)])
        self.assertEqual(self.count_overdue(b, "F-9"), 1)
        # The rebuilt state agrees with the recovered one.
        self.assertEqual(report_json("--rebuild", "--log", b.data_dir, "--now", NOW), rep)

    def test_broker_restart(self):
        b = self.start_broker(listen=agenttest.fixed_broker_listen())
        self.publish(b, [finding("F-3")])
        o = self.start_oversight(b.endpoint, "--now", NOW)
        self.wait_caught_up(o, b, "--now", NOW)
        b.stop()
        kabartest.wait_for(lambda: o.count("KABAR-OVERSIGHT-BROKER-DOWN") >= 1, 120,
                           what="the agent to notice the broker is down")
        b.start()
        self.publish(b, [finding("F-4", auditee="bpkad")])
        kabartest.wait_for(lambda: self.count_overdue(b, "F-4") == 1, 300,
                           what="finding.overdue for F-4 after the broker restart")
        rep = self.wait_caught_up(o, b, "--now", NOW)
        self.assertEqual(sorted(f["finding_id"] for f in rep["findings_overdue"]), ["F-3", "F-4"])
        self.assertEqual(self.count_overdue(b, "F-3"), 1)
        self.assertTrue(o.running())

    def test_fresh_data_dir_for_a_known_consumer(self):
        b = self.start_broker()
        self.publish(b, [finding("F-5"), resolved("F-5", "R1")])
        o = self.start_oversight(b.endpoint, "--now", NOW, name="first")
        self.wait_caught_up(o, b, "--now", NOW)
        self.assertEqual(o.stop(), 0)
        self.publish(b, [resolved("F-5", "R2"), finding("F-6")])
        # Same agency (same durable consumer), empty state: it must not start mid-log.
        o2 = self.start_oversight(b.endpoint, "--now", NOW, name="second")
        rep = self.wait_caught_up(o2, b, "--now", NOW)
        self.assertIn("KABAR-OVERSIGHT-GAP", o2.log_text())
        self.assertEqual(rep, report_json("--rebuild", "--broker", b.endpoint, "--now", NOW))
        self.assertEqual(rep["totals"]["findings_raised"], 2)
        self.assertEqual(rep["totals"]["findings_resolved"], 1)


if __name__ == "__main__":
    kabartest.main()
