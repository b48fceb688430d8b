"""The marshmallow schemas of what the API answers, for the OpenAPI document (api/openapi.py).

The request schemas live beside their views (``TaskCreateSchema`` in api/tasks.py and so on);
these describe the JSON the views build by hand, so the document can state every response.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from shared.sop.task_types import TASK_TYPES
from shared.tasks import ReviewDecision, TaskStatus
from shared.versions import HISTORY_SHOWN
from shared.webhooks import EVENTS, FILTER_TYPES, MessageStatus

_TIME = {"format": "date-time", "description": "ISO 8601 UTC with milliseconds and Z"}


def _time(description: str = "", *, nullable: bool = True) -> fields.String:
    meta = dict(_TIME)
    if description:
        meta["description"] = f"{description} ({_TIME['description']})"
    return fields.String(required=True, allow_none=nullable, metadata=meta)


class FieldErrorSchema(Schema):
    field = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "the field, dotted for nested ones; null for the whole body"},
    )
    message = fields.String(required=True)
    line = fields.Integer(allow_none=True, metadata={"description": "an SOP's line, if known"})
    path = fields.String(metadata={"description": "an SOP's key path"})
    task = fields.Integer(
        metadata={"description": "in a batch, the index of the task (from 0) the problem is in"}
    )
    code = fields.String(
        metadata={"description": "in a batch, the error code the task alone would get"}
    )
    version = fields.Integer(metadata={"description": "sop_refused: the SOP version refused"})
    problems = fields.List(
        fields.Nested(lambda: ProblemSchema()),
        metadata={"description": "sop_refused: what this release refuses in it"},
    )


class ErrorBodySchema(Schema):
    code = fields.String(
        required=True, metadata={"description": "stable, machine-readable: branch on it"}
    )
    message = fields.String(required=True, metadata={"description": "for a person to read"})
    details = fields.Raw(
        required=True,
        metadata={
            "description": "null; for validation_failed, credentials_missing and sop_refused a"
            " list of {field, message}; otherwise an object naming what the error is about"
            " (limit and max for a limit, the task's status for a 409)",
            "oneOf": [
                {"type": "null"},
                {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
                {"type": "object"},
            ],
        },
    )


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class TaskFileSchema(Schema):
    id = fields.Integer(required=True)
    filename = fields.String(required=True)
    content_type = fields.String(required=True)
    size = fields.Integer(required=True)


class TaskSopSchema(Schema):
    id = fields.Integer(required=True)
    version = fields.Integer(required=True)
    builtin = fields.Boolean(required=True)


class TaskProfileSchema(Schema):
    portal = fields.String(required=True)
    version = fields.Integer(
        required=True, allow_none=True, metadata={"description": "the account's; null if built-in"}
    )
    builtin = fields.Boolean(required=True)


class TaskLinksSchema(Schema):
    self = fields.String(required=True)
    trajectory = fields.String(required=True)
    sop = fields.String(required=True, metadata={"description": "the SOP version it runs"})


class TaskInputRequestSchema(Schema):
    kind = fields.String(required=True, metadata={"examples": ["one_time_code"]})
    requested_at = _time()
    expires_at = _time("after this the task fails")
    submit = fields.String(required=True, metadata={"description": "where to send it"})


class TaskReviewSchema(Schema):
    step = fields.String(required=True, allow_none=True, metadata={"description": "paused before"})
    requested_at = _time()
    expires_at = _time("undecided by then, the task ends completed_with_issues")
    decision = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf([str(d) for d in ReviewDecision]),
        metadata={"description": "expired: nobody decided before expires_at"},
    )
    reviewer = fields.String(required=True, allow_none=True)
    decided_at = _time()
    note = fields.String(required=True, allow_none=True)


class TaskSchema(Schema):
    """The task object: the reference API's fields first, with their exact names and types."""

    id = fields.Integer(required=True)
    accountId = fields.Integer(required=True)  # noqa: N815 - the reference API's name
    task_number = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in TaskStatus]))
    handler = fields.String(required=True, metadata={"examples": ["agent"]})
    title = fields.String(required=True)
    instructions = fields.String(required=True)
    startedAt = _time()  # noqa: N815
    completedAt = _time()  # noqa: N815
    failedAt = _time()  # noqa: N815
    notes = fields.String(required=True, allow_none=True)
    createdAt = _time(nullable=False)  # noqa: N815
    updatedAt = _time(nullable=False)  # noqa: N815
    # A built-in type, or one the account defined with its own SOP (GET /task-types lists them).
    type = fields.String(required=True, metadata={"examples": list(TASK_TYPES)})
    data = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "the data as text: as sent, or a JSON object sent as its JSON text;"
            " sensitive inputs as ***"
        },
    )
    files = fields.List(fields.Nested(TaskFileSchema), required=True)
    result = fields.Dict(
        required=True, allow_none=True, metadata={"description": "what the agent extracted"}
    )
    trajectory_id = fields.String(required=True)
    canceledAt = _time()  # noqa: N815
    attempts = fields.Integer(required=True)
    sop = fields.Nested(TaskSopSchema, required=True)
    profile = fields.Nested(
        TaskProfileSchema,
        required=True,
        allow_none=True,
        metadata={"description": "the portal profile the latest run signed in with"},
    )
    links = fields.Nested(TaskLinksSchema, required=True)
    input_request = fields.Nested(
        TaskInputRequestSchema,
        required=True,
        allow_none=True,
        metadata={"description": "while waiting_for_input: what it waits for, until when"},
    )
    review = fields.Nested(
        TaskReviewSchema,
        required=True,
        allow_none=True,
        metadata={"description": "the review point and the decision; null if never paused"},
    )
    retry_of = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "the task this one sends again (POST /tasks/{id}/retry)"},
    )
    retried_as = fields.List(
        fields.Integer(),
        required=True,
        metadata={"description": "the tasks that send this one again, oldest first"},
    )
    batch_id = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "the batch that created it (POST /tasks/batch); else null"},
    )


class TaskPageSchema(Schema):
    data = fields.List(fields.Nested(TaskSchema), required=True)
    has_more = fields.Boolean(required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class TaskBatchSchema(Schema):
    batch_id = fields.Integer(required=True, metadata={"description": "GET /batches/{id}"})
    data = fields.List(
        fields.Nested(TaskSchema),
        required=True,
        metadata={"description": "the created tasks, in the order sent"},
    )


class BatchSchema(Schema):
    id = fields.Integer(required=True)
    accountId = fields.Integer(required=True)  # noqa: N815 - the API's name
    size = fields.Integer(required=True, metadata={"description": "tasks in the batch"})
    unfinished = fields.Integer(required=True, metadata={"description": "tasks yet to end"})
    finished = fields.Boolean(required=True, metadata={"description": "every task has ended"})
    createdAt = _time(nullable=False)  # noqa: N815
    finishedAt = _time()  # noqa: N815
    counts = fields.Dict(
        keys=fields.String(), values=fields.Integer(), required=True,
        metadata={"description": "tasks by their status now, e.g. {\"completed\": 98,"
                                 " \"failed\": 2}"},
    )  # fmt: skip
    task_ids = fields.List(
        fields.Integer(), required=True, metadata={"description": "in the order sent"}
    )
    links = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class ScreenshotSchema(Schema):
    id = fields.Integer(required=True)
    url = fields.String(required=True)


class StepSchema(Schema):
    seq = fields.Integer(required=True)
    attempt = fields.Integer(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True)
    message = fields.String(required=True, allow_none=True)
    started_at = _time()
    duration_ms = fields.Integer(required=True, allow_none=True)
    screenshot = fields.Nested(ScreenshotSchema, required=True, allow_none=True)


class TrajectorySchema(Schema):
    task_id = fields.Integer(required=True)
    trajectory_id = fields.String(required=True)
    steps = fields.List(fields.Nested(StepSchema), required=True)


class SopHistoryEntrySchema(Schema):
    version = fields.Integer(required=True)
    digest = fields.String(required=True)
    created_at = _time()


def _history(entry: type[Schema]) -> fields.List:
    return fields.List(
        fields.Nested(entry),
        required=True,
        metadata={
            "description": f"the account's newest {HISTORY_SHOWN} versions, newest first; every"
            " version is in the /versions list"
        },
    )


def _history_has_more() -> fields.Boolean:
    return fields.Boolean(
        required=True,
        metadata={"description": "whether older versions than the history's are stored"},
    )


def _version_page(entry: type[Schema], name: str) -> type[Schema]:
    """A page of a /versions list (SOP or profile): the list envelope of ``entry``s."""
    return Schema.from_dict(
        {
            "data": fields.List(fields.Nested(entry), required=True),
            "has_more": fields.Boolean(required=True),
            "next_cursor": fields.String(required=True, allow_none=True),
        },
        name=name,
    )


SopVersionPageSchema = _version_page(SopHistoryEntrySchema, "SopVersionPageSchema")


class ProblemSchema(Schema):
    message = fields.String(required=True)
    line = fields.Integer(required=True, allow_none=True)
    path = fields.String(required=True)


_REFUSED = "null for a version this release refuses (see problems)"


def _problems() -> fields.List:
    return fields.List(
        fields.Nested(ProblemSchema),
        required=True,
        metadata={
            "description": "what this release of Understudy refuses in a version stored under"
            " earlier rules, each with its line: such a version is shown, but no task can use"
            " it until a new version is stored (empty: it runs)"
        },
    )


class SopEntrySchema(Schema):
    task_type = fields.String(required=True, metadata={"examples": list(TASK_TYPES)})
    version = fields.Integer(required=True)
    builtin = fields.Boolean(required=True)
    portal = fields.String(required=True, allow_none=True, metadata={"description": _REFUSED})
    title = fields.String(required=True, allow_none=True, metadata={"description": _REFUSED})
    summary = fields.String(required=True, allow_none=True, metadata={"description": _REFUSED})
    created_at = _time()
    problems = _problems()


class SopListSchema(Schema):
    data = fields.List(fields.Nested(SopEntrySchema), required=True)


class SopSchema(SopEntrySchema):
    body = fields.String(required=True, metadata={"description": "the YAML document"})
    history = _history(SopHistoryEntrySchema)
    history_has_more = _history_has_more()
    warnings = fields.List(
        fields.String(),
        metadata={
            "description": "PUT only: what would most likely go wrong at run time: a name its"
            " templates read that no input or step gives (its line first), what its portal lacks"
        },
    )


class SopVersionSchema(SopEntrySchema):
    body = fields.String(required=True, metadata={"description": "the YAML document"})


class TaskTypeInputSchema(Schema):
    name = fields.String(required=True)
    required = fields.Boolean(required=True)
    format = fields.String(required=True, allow_none=True)
    sensitive = fields.Boolean(required=True)
    aliases = fields.List(fields.String(), required=True)
    description = fields.String(required=True, allow_none=True)


class TaskTypeSchema(Schema):
    name = fields.String(required=True, metadata={"examples": list(TASK_TYPES)})
    builtin = fields.Boolean(required=True, metadata={"description": "false: the account's own"})
    title = fields.String(required=True, allow_none=True, metadata={"description": _REFUSED})
    portal = fields.String(required=True, allow_none=True, metadata={"description": _REFUSED})
    inputs = fields.List(fields.Nested(TaskTypeInputSchema), required=True)
    require_one_of = fields.List(fields.List(fields.String()), required=True)
    problems = _problems()


class TaskTypeListSchema(Schema):
    data = fields.List(fields.Nested(TaskTypeSchema), required=True)


class TaskTypeRemovedSchema(Schema):
    task_type = fields.String(required=True)
    removed = fields.Boolean(required=True)


class SopValidationSchema(Schema):
    valid = fields.Boolean(required=True)
    task_type = fields.String(required=True)
    title = fields.String(required=True)
    summary = fields.String(required=True)
    warnings = fields.List(
        fields.String(),
        required=True,
        metadata={
            "description": "valid, but most likely a slip: a name its templates read that no"
            " input or step gives (its line first), what its portal lacks"
        },
    )


class PortalOutSchema(Schema):
    name = fields.String(required=True)
    base_url = fields.String(required=True)
    allowed_origins = fields.List(
        fields.String(), required=True, metadata={"description": "other origins it may open"}
    )
    builtin = fields.Boolean(required=True)
    has_credentials = fields.Boolean(required=True)
    has_profile = fields.Boolean(
        required=True, metadata={"description": "whether a profile (docs/portals.md) is in force"}
    )
    created_at = _time()
    updated_at = _time()


class ProfileHistoryEntrySchema(Schema):
    version = fields.Integer(required=True)
    digest = fields.String(required=True)
    created_at = _time()


ProfileVersionPageSchema = _version_page(ProfileHistoryEntrySchema, "ProfileVersionPageSchema")


class ProfileVersionSchema(Schema):
    portal = fields.String(required=True)
    version = fields.Integer(required=True)
    builtin = fields.Boolean(required=True)
    title = fields.String(required=True, allow_none=True, metadata={"description": _REFUSED})
    summary = fields.String(required=True, allow_none=True, metadata={"description": _REFUSED})
    body = fields.String(required=True, metadata={"description": "the YAML document"})
    created_at = _time()
    problems = _problems()


class ProfileSchema(Schema):
    portal = fields.String(required=True)
    version = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null for a built-in profile"}
    )
    builtin = fields.Boolean(required=True)
    title = fields.String(required=True, allow_none=True, metadata={"description": _REFUSED})
    base_url = fields.String(
        required=True, allow_none=True, metadata={"description": "the address in force"}
    )
    allowed_origins = fields.List(fields.String(), required=True)
    summary = fields.String(required=True, allow_none=True, metadata={"description": _REFUSED})
    body = fields.String(required=True, metadata={"description": "the YAML document"})
    created_at = _time()
    problems = _problems()
    history = _history(ProfileHistoryEntrySchema)
    history_has_more = _history_has_more()
    warnings = fields.List(
        fields.String(), metadata={"description": "PUT only: what would stop a task on it"}
    )


class ProfileValidationSchema(Schema):
    valid = fields.Boolean(required=True)
    portal = fields.String(required=True)
    title = fields.String(required=True)
    summary = fields.String(required=True)
    warnings = fields.List(fields.String(), required=True)


class PortalListSchema(Schema):
    data = fields.List(fields.Nested(PortalOutSchema), required=True)


class CredentialsOutSchema(Schema):
    portal = fields.String(required=True)
    username = fields.String(required=True)
    has_totp = fields.Boolean(required=True)
    created_at = _time()
    updated_at = _time()


class CredentialsListSchema(Schema):
    data = fields.List(fields.Nested(CredentialsOutSchema), required=True)


class EndpointHealthSchema(Schema):
    consecutive_failures = fields.Integer(required=True)
    failing_since = _time()
    last_success_at = _time()
    circuit_open_until = _time()


class EndpointOutSchema(Schema):
    url = fields.String(required=True, allow_none=True)
    enabled = fields.Boolean(required=True)
    disabled_reason = fields.String(required=True, allow_none=True)
    filter_types = fields.List(
        fields.String(validate=validate.OneOf(FILTER_TYPES)),
        required=True,
        metadata={"description": "the event types it receives (a ping always)"},
    )
    previous_secret_expires_at = _time()
    health = fields.Nested(EndpointHealthSchema, required=True)
    created_at = _time()
    updated_at = _time()
    secret = fields.String(
        metadata={"description": "only when the endpoint is first made (201): shown once"}
    )


class RotatedSecretSchema(Schema):
    secret = fields.String(required=True, metadata={"description": "whsec_...; shown once"})
    previous_secret_expires_at = _time()


class AttemptSchema(Schema):
    id = fields.Integer(required=True)
    attempted_at = _time()
    url = fields.String(required=True)
    status_code = fields.Integer(required=True, allow_none=True)
    latency_ms = fields.Integer(required=True, allow_none=True)
    error_class = fields.String(required=True, allow_none=True)
    error_detail = fields.String(required=True, allow_none=True)
    response_body = fields.String(required=True, allow_none=True)


class MessageSchema(Schema):
    id = fields.Integer(required=True)
    msg_id = fields.String(required=True, metadata={"description": "the webhook-id header"})
    event = fields.String(required=True, validate=validate.OneOf(EVENTS))
    task_id = fields.Integer(required=True, allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in MessageStatus]))
    held = fields.Boolean(
        required=True,
        metadata={
            "description": "pending, and held by the endpoint (disabled, or no URL): it is sent"
            " once the endpoint is enabled again, and has no next_attempt_at until then"
        },
    )
    attempt_count = fields.Integer(required=True)
    next_attempt_at = _time("null once delivered, failed or aborted, or while held")
    last_attempt_at = _time()
    delivered_at = _time()
    failed_at = _time()
    created_at = _time()
    updated_at = _time()
    data = fields.Dict(required=True, metadata={"description": "the envelope's data"})


class MessageDetailSchema(MessageSchema):
    attempts = fields.List(fields.Nested(AttemptSchema), required=True)


class MessagePageSchema(Schema):
    data = fields.List(fields.Nested(MessageSchema), required=True)
    has_more = fields.Boolean(required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class AuditEntrySchema(Schema):
    id = fields.Integer(required=True)
    actor = fields.String(
        required=True, metadata={"description": "a user's email, or api_key:<visible prefix>"}
    )
    action = fields.String(required=True, metadata={"description": "e.g. POST /tasks, sop.save"})
    target = fields.String(required=True, metadata={"description": "what it was done to"})
    detail = fields.Dict(required=True, allow_none=True)
    created_at = fields.String(required=True)


class AuditPageSchema(Schema):
    data = fields.List(fields.Nested(AuditEntrySchema), required=True)
    has_more = fields.Boolean(required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class AccountSettingsSchema(Schema):
    review_required_types = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "task types whose tasks a person approves before submitting"},
    )
    review_timeout_hours = fields.Integer(
        required=True,
        metadata={
            "description": "hours a task paused for review waits for a decision before it"
            " ends completed_with_issues"
        },
    )
    retention_days = fields.Integer(
        required=True,
        metadata={
            "description": "days an ended task is kept, with its data, files, screenshots"
            " and webhook messages, before it is deleted"
        },
    )


class RecoveredSchema(Schema):
    count = fields.Integer(required=True, metadata={"description": "messages queued again"})


class HealthSchema(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(
        keys=fields.String(), values=fields.String(),
        metadata={"description": "/readyz only: each dependency, ok or why not"},
    )  # fmt: skip


class PingDataSchema(Schema):
    message = fields.String(required=True)
    accountId = fields.Integer(required=True)  # noqa: N815


def _envelope(name: str, data: type[Schema], event: str) -> type[Schema]:
    return Schema.from_dict(
        {
            "signature": fields.String(
                required=True, metadata={"description": "HMAC of event, created_at and data"}
            ),
            "event": fields.String(required=True, validate=validate.OneOf([event])),
            "created_at": _time(nullable=False),
            "data": fields.Nested(data, required=True),
        },
        name=name,
    )


TaskFinishedEnvelope = _envelope("TaskFinishedEnvelope", TaskSchema, "task_finished")
PingEnvelope = _envelope("PingEnvelope", PingDataSchema, "ping")
TaskWaitingForInputEnvelope = _envelope(
    "TaskWaitingForInputEnvelope", TaskSchema, "task.waiting_for_input"
)
TaskPendingReviewEnvelope = _envelope(
    "TaskPendingReviewEnvelope", TaskSchema, "task.pending_review"
)
TaskWaitingForPortalEnvelope = _envelope(
    "TaskWaitingForPortalEnvelope", TaskSchema, "task.waiting_for_portal"
)
BatchFinishedEnvelope = _envelope("BatchFinishedEnvelope", BatchSchema, "batch.finished")
