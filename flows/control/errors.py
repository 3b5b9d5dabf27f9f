"""One exception hierarchy: every failure has a stable code; transient ones are retried."""

from __future__ import annotations


class ExportflowError(Exception):
    """Base of every exportflow error."""

    code = "export_error"
    transient = False

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # What operators need (hosts, SQL, driver text): logged, never shown to users.
        self.detail = detail

    def to_dict(self) -> dict[str, str]:
        """The error as the API and CLI show it."""
        return {"code": self.code, "message": self.message}


class InvalidRequest(ExportflowError):
    """The request cannot be served as asked; the caller must change it."""

    code = "invalid_request"


class UnknownModule(InvalidRequest):
    """No dataset of that name is declared."""

    code = "unknown_module"


class ColumnNotAllowed(InvalidRequest):
    """A column is not on the module's allow-list or is sensitive."""

    code = "column_not_allowed"


class EmptyColumns(InvalidRequest):
    """The column list is empty."""

    code = "empty_columns"


class FilterNotAllowed(InvalidRequest):
    """A filter names a column that is not allowed."""

    code = "filter_not_allowed"


class UnknownOperator(InvalidRequest):
    """A filter operator is not one the request model lists."""

    code = "unknown_operator"


class InvalidFilterValue(InvalidRequest):
    """A filter value does not fit the column's type."""

    code = "invalid_filter_value"


class SortNotAllowed(InvalidRequest):
    """A sort names a column that is not allowed, or names one twice."""

    code = "sort_not_allowed"


class SortNotIndexed(InvalidRequest):
    """A sort has no index to read the rows in that order from."""

    code = "sort_not_indexed"


class InvalidDate(InvalidRequest):
    """A date is not an ISO date or date-time."""

    code = "invalid_date"


class InvalidDateRange(InvalidRequest):
    """`from` is after `to`, or the module has no date column."""

    code = "invalid_date_range"


class InvalidTimezone(InvalidRequest):
    """The time zone is not an IANA name."""

    code = "invalid_timezone"


class TooManyIds(InvalidRequest):
    """More selected ids than the configured cap."""

    code = "too_many_ids"


class UnsupportedFormat(InvalidRequest):
    """The format is not csv or xlsx."""

    code = "unsupported_format"


class InvalidOption(InvalidRequest):
    """A writer option (delimiter, ...) is out of range."""

    code = "invalid_option"


class UnknownLocale(InvalidOption):
    """The locale preset is not one the settings define."""

    code = "unknown_locale"


class InvalidPattern(InvalidOption):
    """A date or timestamp pattern uses something outside the documented tokens."""

    code = "invalid_pattern"


class UnknownRelation(InvalidRequest):
    """A related sheet the request names is not declared for the module, or is named twice."""

    code = "unknown_relation"


class InvalidCron(InvalidRequest):
    """A schedule's cron is not five fields of minute, hour, day, month and weekday."""

    code = "invalid_cron"


class CronTooFrequent(InvalidRequest):
    """A schedule's cron fires more often than the configured minimum interval allows."""

    code = "cron_too_frequent"


class IdempotencyKeyReused(InvalidRequest):
    """An Idempotency-Key already named a different request of the same user."""

    code = "idempotency_key_reused"


class InvalidOutput(InvalidRequest):
    """The output path cannot be written (missing folder, a folder, no permission)."""

    code = "invalid_output"


class PermissionDenied(ExportflowError):
    """The caller may not read this module."""

    code = "permission_denied"


class PermissionRevoked(PermissionDenied):
    """A schedule's owner no longer holds the permission its export needs."""

    code = "permission_revoked"


class TooManySchedules(ExportflowError):
    """The user already has as many schedules as allowed."""

    code = "too_many_schedules"


class ScheduleNotFound(ExportflowError):
    """No schedule with that id belongs to the caller."""

    code = "schedule_not_found"


class OrchestratorUnavailable(ExportflowError):
    """Prefect could not be reached to change a schedule."""

    code = "orchestrator_unavailable"
    transient = True


class LimitExceeded(ExportflowError):
    """The caller has started too many exports; `retry_after` seconds until one is allowed."""

    code = "limit_exceeded"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class RateLimited(LimitExceeded):
    """More exports in the last hour than the hourly limit allows."""

    code = "rate_limited"


class TooManyActive(LimitExceeded):
    """As many background exports pending or processing as allowed at once."""

    code = "too_many_active"


class JobNotFound(ExportflowError):
    """No export job with that id belongs to the caller."""

    code = "job_not_found"


class Superseded(ExportflowError):
    """This run no longer owns its job: a newer attempt took over, or the job ended."""

    code = "superseded"


class Interrupted(ExportflowError):
    """The process running a direct or streamed export ended before the export did."""

    code = "interrupted"


class ConfigError(ExportflowError):
    """A setting is missing or unsafe (a storage URL, the default secret outside development)."""

    code = "config_error"


class DatasetConfigError(ExportflowError):
    """The dataset file is malformed or names a table or column that does not exist."""

    code = "dataset_config"


class SourceError(ExportflowError):
    """The database refused a query for a reason a retry will not fix."""

    code = "source_error"


class SourceTimeout(SourceError):
    """A read ran past the statement timeout."""

    code = "timeout"


class SourceUnavailable(ExportflowError):
    """The database could not be reached or dropped the connection."""

    code = "source_unavailable"
    transient = True


class StorageError(ExportflowError):
    """Storage refused a write or read for a reason a retry will not fix."""

    code = "storage_error"


class StorageFull(StorageError):
    """Storage has no room left for the file."""

    code = "storage_full"


class StorageUnavailable(ExportflowError):
    """Storage timed out or answered 5xx."""

    code = "storage_unavailable"
    transient = True


class StackError(ExportflowError):
    """A part of the `exportflow up` stack did not come up, or stopped on its own."""

    code = "stack_failed"

    def __init__(self, message: str, child: object | None = None) -> None:
        super().__init__(message)
        # The stack_process.Child that failed, whose log the CLI prints.
        self.child = child


class ApiUnavailable(ExportflowError):
    """The command line could not reach the exportflow API, or lost it mid-transfer."""

    code = "api_unavailable"
    transient = True


class ApiError(ExportflowError):
    """The API refused a request, or an export ended without a file: the server's code."""

    code = "api_error"  # each instance carries the server's own code

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ChecksumMismatch(ExportflowError):
    """A downloaded file's sha256 is not the one its export recorded."""

    code = "checksum_mismatch"


class InvalidNotify(InvalidRequest):
    """The `notify` option asks for nothing, or for email this service cannot send."""

    code = "invalid_notify"


class NotifyEmailUnavailable(InvalidRequest):
    """Email was asked for, but the token carries no address or no SMTP server is set."""

    code = "notify_email_unavailable"


class InvalidWebhookUrl(InvalidRequest):
    """The webhook URL is malformed or not https."""

    code = "invalid_webhook_url"


class WebhookHostNotAllowed(InvalidRequest):
    """The webhook's host is not on EXPORTFLOW_WEBHOOK_ALLOWED_HOSTS."""

    code = "webhook_host_not_allowed"


class NotificationFailed(ExportflowError):
    """A notification was refused for good (a 4xx, a redirect, a refused address)."""

    code = "notification_failed"


class WebhookAddressRefused(NotificationFailed):
    """The webhook's host resolved to an address webhooks may not reach."""

    code = "webhook_address_refused"


class NotificationUnavailable(ExportflowError):
    """The receiver or mail server answered 5xx, timed out or could not be reached."""

    code = "notification_unavailable"
    transient = True


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may succeed."""
    return isinstance(exc, ExportflowError) and exc.transient
