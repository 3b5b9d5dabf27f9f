"""The email that tells a user their export ended, sent over SMTP (none, STARTTLS or TLS)."""

from __future__ import annotations

import smtplib
import ssl
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from flows.control.errors import NotificationFailed, NotificationUnavailable
from flows.control.job_view import friendly_name
from flows.control.jobs import Job
from flows.control.settings import Settings
from flows.control.storage import Storage
from flows.control.webhooks import tls_context

MAX_LINK_SECONDS = 7 * 24 * 3600


def human_bytes(size: int | None) -> str:
    """1,234,567 → '1.2 MB' (decimal units, as file managers show them)."""
    value = float(size or 0)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value):,} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def compose(job: Job, settings: Settings, storage: Storage) -> EmailMessage:
    """The message for the ended `job`: its rows, size and a download link until the file
    expires, or why it failed or was cancelled."""
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = job.options["notify"]["address"]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    what = f"Your {job.module} export ({job.format.upper()})"
    if job.status == "completed":
        left = int((job.expires_at - datetime.now(UTC)).total_seconds()) if job.expires_at else 0
        # S3 presigned links live at most a week.
        ttl = min(max(1, left), MAX_LINK_SECONDS)
        link = storage.sign(job.file_key, ttl, filename=friendly_name(job))
        cut = ttl < left  # the link ends before the file does
        until = datetime.now(UTC) + timedelta(seconds=ttl) if cut else job.expires_at
        until = until.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        msg["Subject"] = f"{what} is ready: {job.processed_rows:,} rows"
        body = (
            f"{what} is ready.\n\n"
            f"Rows: {job.processed_rows:,}\n"
            f"Size: {human_bytes(job.file_bytes)}\n"
            f"File: {friendly_name(job)}\n\n"
            f"Download it here (the link works until {until}, when the file is deleted):\n"
            f"{link}\n"
        )
    else:
        verb = "was cancelled" if job.status == "cancelled" else "failed"
        msg["Subject"] = f"{what} {verb}"
        body = (
            f"{what} {verb} after {job.processed_rows:,} rows.\n\n"
            f"Code: {job.error_code}\nReason: {job.error}\n\n"
            "Start the export again, changed as the reason says, to get a file.\n"
        )
    msg.set_content(f"{body}\nExport id: {job.id}\n")
    return msg


def send(msg: EmailMessage, settings: Settings) -> None:
    """Send `msg`; NotificationUnavailable (retry) for a temporary failure or a lost
    connection, NotificationFailed for a refusal (5xx, bad credentials, bad certificate)."""
    try:
        with _connect(settings) as smtp:
            if settings.smtp_user:
                secret = settings.smtp_password
                smtp.login(settings.smtp_user, secret.get_secret_value() if secret else "")
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        temporary = any(400 <= code < 500 for code in codes)
        cls = NotificationUnavailable if temporary else NotificationFailed
        raise cls(f"the mail server refused the recipient ({codes[0]})") from None
    except smtplib.SMTPResponseException as exc:
        cls = NotificationUnavailable if 400 <= exc.smtp_code < 500 else NotificationFailed
        raise cls(f"the mail server answered {exc.smtp_code}") from None
    except smtplib.SMTPNotSupportedError:
        raise NotificationFailed("the mail server does not offer STARTTLS") from None
    except ssl.SSLError as exc:
        raise NotificationFailed(f"TLS with the mail server failed ({exc.reason})") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise NotificationUnavailable(
            f"the mail server could not be reached ({type(exc).__name__})"
        ) from None


def _connect(settings: Settings) -> smtplib.SMTP:
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.notify_timeout_seconds
    if settings.smtp_security == "tls":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=tls_context(settings))
    smtp = smtplib.SMTP(host, port, timeout=timeout)
    if settings.smtp_security == "starttls":
        try:
            smtp.starttls(context=tls_context(settings))
        except BaseException:
            smtp.close()
            raise
    return smtp
