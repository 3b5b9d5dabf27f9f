"""Notifications through export_flow in Prefect's harness: their own task runs after the file
is committed, retried on their own, recorded on the job, and never failing the export."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prefect.states import Cancelled, Crashed
from pydantic import SecretStr

from flows.control.job_view import final_view, notification_statuses
from flows.control.webhooks import SIGNATURE_HEADER, verify
from flows.orchestration import export_flow as export_module
from flows.orchestration.export_flow import export_flow
from flows.orchestration.reconcile import reconcile_flow
from tests.flows.helpers import ended_run, new_job, set_row, task_runs

SECRET = "whsec-flow-test"
ADDRESS = "ann@example.com"


@pytest.fixture
def notifying(rt, monkeypatch, ca_file, smtp_server):
    """The flows' settings pointed at the loopback receivers, with short retry pauses."""
    port, inbox = smtp_server
    values = {
        "webhook_allowed_hosts": ["localhost"],
        "webhook_allow_private_addresses": True,
        "webhook_secret": SecretStr(SECRET),
        "notify_ca_file": ca_file,
        "notify_retry_delays": [0.1, 0.1],
        "notify_timeout_seconds": 5,
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "secret_key": SecretStr("flow-test-secret-0123456789abcdef"),
    }
    for name, value in values.items():
        monkeypatch.setattr(rt.settings, name, value)
    return inbox


def channels(job) -> dict[str, tuple[str, int, str | None]]:
    return {n.channel: (n.status, n.attempts, n.last_error) for n in notification_statuses(job)}


def test_a_completed_export_emails_and_posts_the_status_resource(rt, notifying, webhook_receiver):
    job = new_job(rt, notify={"email": True, "address": ADDRESS, "webhook": webhook_receiver.url()})
    assert channels(rt.jobs.get(job.id)) == {"email": ("pending", 0, None),
                                             "webhook": ("pending", 0, None)}  # fmt: skip
    state = export_flow(str(job.id), return_state=True)
    assert state.is_completed()
    done = rt.jobs.get(job.id)
    assert done.status == "completed"
    assert channels(done) == {"email": ("delivered", 1, None), "webhook": ("delivered", 1, None)}
    [got] = webhook_receiver.received
    assert verify(got.body, got.headers[SIGNATURE_HEADER], SECRET)
    payload = got.json()
    assert payload["event"] == "export.completed"
    expected = final_view(done, rt.settings).model_dump(mode="json", by_alias=True)
    # Sent while its own delivery was pending; the rest is the status endpoint's resource.
    sent_notifications = payload["job"].pop("notifications")
    sent = {n["channel"]: n["status"] for n in sent_notifications}
    assert sent["webhook"] == "pending" and sent["email"] in ("pending", "delivered")
    expected.pop("notifications")
    assert payload["job"] == expected and payload["job"]["fileBytes"] == done.file_bytes
    [mail] = notifying.messages
    assert mail["To"] == ADDRESS and "2,000 rows" in mail["Subject"]
    names = {t.name: t.state.name for t in task_runs(state.state_details.flow_run_id)}
    assert names[f"notify-email-{job.id}"] == "Completed"
    assert names[f"notify-webhook-{job.id}"] == "Completed"


def test_a_5xx_is_retried_and_delivered_on_the_second_attempt(rt, notifying, webhook_receiver):
    webhook_receiver.script = [500]
    job = new_job(rt, notify={"webhook": webhook_receiver.url()})
    assert export_flow(str(job.id), return_state=True).is_completed()
    done = rt.jobs.get(job.id)
    assert channels(done) == {"webhook": ("delivered", 2, None)}
    assert [(a["attempt"], a["outcome"], a["statusCode"]) for a in done.notifications] == [
        (1, "retrying", 500),
        (2, "delivered", 200),
    ]
    assert len(webhook_receiver.received) == 2


def test_a_4xx_fails_after_one_attempt_and_the_export_stays_completed(
    rt, notifying, webhook_receiver
):
    webhook_receiver.script = [400]
    job = new_job(rt, notify={"webhook": webhook_receiver.url()})
    state = export_flow(str(job.id), return_state=True)
    assert state.is_completed()
    done = rt.jobs.get(job.id)
    assert done.status == "completed"
    assert channels(done) == {"webhook": ("failed", 1, "the webhook answered 400 (a refusal)")}
    assert len(webhook_receiver.received) == 1
    runs = {t.name: t.state for t in task_runs(state.state_details.flow_run_id)}
    assert runs[f"notify-webhook-{job.id}"].is_failed()


def test_a_refused_address_fails_the_notification_not_the_export(
    rt, notifying, webhook_receiver, monkeypatch
):
    monkeypatch.setattr(rt.settings, "webhook_allow_private_addresses", False)
    job = new_job(rt, notify={"webhook": webhook_receiver.url()})
    assert export_flow(str(job.id), return_state=True).is_completed()
    done = rt.jobs.get(job.id)
    status, attempts, error = channels(done)["webhook"]
    assert (done.status, status, attempts) == ("completed", "failed", 1)
    assert "may not reach" in error and webhook_receiver.received == []


def test_a_failed_export_notifies_its_code_and_message(
    rt, notifying, webhook_receiver, monkeypatch
):
    monkeypatch.setattr(rt.settings, "background_timeout_seconds", 0.001)
    job = new_job(rt, notify={"email": True, "address": ADDRESS, "webhook": webhook_receiver.url()})
    assert export_flow(str(job.id), return_state=True).is_failed()
    failed = rt.jobs.get(job.id)
    assert failed.status == "failed"
    payload = webhook_receiver.received[0].json()
    assert payload["event"] == "export.failed"
    assert payload["job"]["error"] == {"code": failed.error_code, "message": failed.error}
    [mail] = notifying.messages
    assert mail["Subject"] == "Your products export (CSV) failed"
    assert f"Code: {failed.error_code}" in mail.get_content()
    assert channels(failed) == {"email": ("delivered", 1, None), "webhook": ("delivered", 1, None)}


def test_a_cancelled_run_notifies_from_its_cancellation_hook(rt, notifying, webhook_receiver):
    job = new_job(rt, notify={"webhook": webhook_receiver.url()})
    run = SimpleNamespace(parameters={"job_id": str(job.id), "attempt": job.attempt})
    export_module._on_cancellation(export_flow, run, Cancelled(message="by the user"))
    assert rt.jobs.get(job.id).status == "cancelled"
    assert webhook_receiver.received[0].json()["event"] == "export.cancelled"
    # Cancelling again ends nothing, so nothing is sent twice.
    export_module._on_cancellation(export_flow, run, Cancelled(message="by the user"))
    assert len(webhook_receiver.received) == 1


def test_a_job_the_reconciler_gives_up_on_is_notified(rt, notifying, webhook_receiver):
    job = new_job(rt, notify={"webhook": webhook_receiver.url()})
    run = ended_run(job, Crashed(message="killed"))
    attempts = rt.settings.max_resume_attempts
    set_row(rt, job.id, "flow_run_id = %s, attempt = %s", str(run.id), attempts)
    assert reconcile_flow()["failed"] == 1
    [got] = webhook_receiver.received
    assert verify(got.body, got.headers[SIGNATURE_HEADER], SECRET)
    assert got.json()["event"] == "export.failed"
    assert got.json()["job"]["error"]["code"] == "crashed"
    assert channels(rt.jobs.get(job.id))["webhook"] == ("delivered", 1, None)
