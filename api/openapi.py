"""The OpenAPI 3.1 document, built with apispec from the app's routes and marshmallow schemas.

Each route of the app is looked up in ``OPERATIONS`` (keyed by its Flask endpoint name); a
view's docstring may also carry OpenAPI YAML after a ``---`` line, which wins over the table, so
whoever edits a blueprint can document the change beside it. A route with neither makes the
document incomplete, and tests/api/test_openapi.py fails.

Served at ``/openapi.json``; Swagger UI at ``/docs`` from the assets of the flask-swagger-ui
wheel, so the browser loads nothing from anywhere else.
"""

from __future__ import annotations

import re
from copy import deepcopy
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_operations_from_docstring
from flask import Blueprint, Flask, current_app, jsonify, redirect
from marshmallow import Schema

from api import contract
from api.account_settings import SettingsSchema
from api.credentials import PORTAL_NAME, CredentialsSchema, PortalSchema
from api.idempotency import REPLAYED_HEADER
from api.profiles import ProfileBodySchema
from api.sops import SopBodySchema
from api.tasks import InputSchema, ReviewSchema, TaskBatchSchema, TaskCreateSchema
from api.webhooks import EndpointSchema, MessageFilterSchema, RecoverSchema
from shared.sop.task_types import TASK_TYPES
from shared.tasks import TaskStatus
from shared.versions import HISTORY_SHOWN, VERSIONS_PAGE_MAX

# Routes that are not part of the API itself.
# Not operations of the API: the document itself, its page, and /metrics (Prometheus text for a
# scraper, described in the README's "Metrics").
UNDOCUMENTED = frozenset(
    {"static", "openapi.spec", "openapi.docs_root", "openapi_docs.show", "metrics.scrape"}
)
# The operator console's pages (/console) are for people, not part of the API either.
CONSOLE = "console."

# One example of `data` per task type, each one a sandbox test member that completes.
TASK_EXAMPLES: dict[str, str] = {
    "check_eligibility": "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15",
    "submit_claim": "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15\n"
    "provider_npi: 1234567893\nline 1: 99213, J06.9, 125.00, 2025-03-20",
    "submit_prior_authorization": "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15\n"
    "provider_npi: 1234567893\ncpt: 72148\nicd10: M54.5\n"
    "clinical_notes: Low back pain for 8 weeks despite therapy.",
    "submit_appeal": "claim_number: CLM-DENY-0003\nmember_id: W100000001\n"
    "reason: Service was medically necessary",
    "check_claim_status": "claim_number: CLM-PAID-0001",
}

REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "TaskCreate": TaskCreateSchema,
    "TaskBatchCreate": TaskBatchSchema,
    "TaskInput": InputSchema,
    "ReviewDecision": ReviewSchema,
    "AccountSettingsIn": SettingsSchema,
    "CredentialsIn": CredentialsSchema,
    "PortalIn": PortalSchema,
    "WebhookEndpointIn": EndpointSchema,
    "Recover": RecoverSchema,
    "SopBody": SopBodySchema,
    "ProfileBody": ProfileBodySchema,
}

RESPONSE_SCHEMAS: dict[str, type[Schema]] = {
    "FieldError": contract.FieldErrorSchema,
    "Error": contract.ErrorSchema,
    "Task": contract.TaskSchema,
    "TaskPage": contract.TaskPageSchema,
    "TaskBatch": contract.TaskBatchSchema,
    "Batch": contract.BatchSchema,
    "Trajectory": contract.TrajectorySchema,
    "SopList": contract.SopListSchema,
    "Sop": contract.SopSchema,
    "SopVersion": contract.SopVersionSchema,
    "SopVersionPage": contract.SopVersionPageSchema,
    "SopValidation": contract.SopValidationSchema,
    "TaskTypeList": contract.TaskTypeListSchema,
    "TaskTypeRemoved": contract.TaskTypeRemovedSchema,
    "Portal": contract.PortalOutSchema,
    "PortalProfile": contract.ProfileSchema,
    "PortalProfileVersion": contract.ProfileVersionSchema,
    "PortalProfileVersionPage": contract.ProfileVersionPageSchema,
    "PortalProfileValidation": contract.ProfileValidationSchema,
    "PortalList": contract.PortalListSchema,
    "Credentials": contract.CredentialsOutSchema,
    "CredentialsList": contract.CredentialsListSchema,
    "WebhookEndpoint": contract.EndpointOutSchema,
    "RotatedSecret": contract.RotatedSecretSchema,
    "WebhookMessage": contract.MessageSchema,
    "WebhookMessageDetail": contract.MessageDetailSchema,
    "WebhookMessagePage": contract.MessagePageSchema,
    "Recovered": contract.RecoveredSchema,
    "AuditPage": contract.AuditPageSchema,
    "Health": contract.HealthSchema,
    "TaskFinishedEnvelope": contract.TaskFinishedEnvelope,
    "PingEnvelope": contract.PingEnvelope,
    "TaskWaitingForInputEnvelope": contract.TaskWaitingForInputEnvelope,
    "TaskPendingReviewEnvelope": contract.TaskPendingReviewEnvelope,
    "TaskWaitingForPortalEnvelope": contract.TaskWaitingForPortalEnvelope,
    "BatchFinishedEnvelope": contract.BatchFinishedEnvelope,
    "AccountSettings": contract.AccountSettingsSchema,
}

# The error responses, each with the codes it can carry (the `code` field of the error shape).
ERRORS: dict[int, tuple[str, str, list[str]]] = {
    400: ("BadRequest", "The request could not be read",
          ["malformed_json", "malformed_body", "invalid_text", "bad_cursor", "bad_limit",
           "bad_request"]),
    401: ("Unauthorized", "No API key, an unknown one, or a revoked one", ["unauthorized"]),
    404: ("NotFound", "No such resource for this account", ["not_found"]),
    409: ("Conflict", "The resource's state does not allow it", [
        "idempotency_conflict", "task_finished", "not_waiting", "input_pending", "no_webhook_url",
        "endpoint_disabled", "ping_pending", "message_pending", "not_pending_review",
        "changed_meanwhile", "limit_exceeded", "not_retryable", "may_have_submitted"]),
    413: ("PayloadTooLarge", "A body or a file over the limit", ["payload_too_large"]),
    408: ("RequestTimeout", "The request did not arrive within API_READ_TIMEOUT_S (its headers"
          " or body sent too slowly); the connection is closed", ["read_timeout"]),
    414: ("UriTooLong", "The request line is over MAX_URL_BYTES (the server refuses it before"
          " the API reads it)", ["uri_too_long"]),
    415: ("UnsupportedMediaType", "Another media type", ["unsupported_media_type"]),
    431: ("HeadersTooLarge", "A header over MAX_HEADER_BYTES, or more than MAX_HEADERS (the"
          " server refuses them before the API reads them)", ["headers_too_large"]),
    429: ("RateLimited", "Over the rate limit: wait the Retry-After seconds", ["rate_limited"]),
    503: ("ServiceUnavailable", "The database is down or failing over, the request ran too"
          " long, or every host name lookup waits on a DNS server; nothing was changed: retry"
          " after Retry-After seconds (with the same Idempotency-Key)",
          ["service_unavailable", "request_timeout"]),
    422: ("ValidationFailed", "Content that fails validation; details lists every problem",
          ["validation_failed", "builtin_portal", "not_builtin", "credentials_missing",
           "sop_refused", "limit_exceeded"]),
}  # fmt: skip

_JSON = "application/json"
_YAML = "application/yaml"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(name: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref(name)}}}


def _json_body(name: str, **examples: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": _ref(name)}
    if examples:
        content["examples"] = {k: {"value": v} for k, v in examples.items()}
    return {"required": True, "content": {_JSON: content}}


_SOP_BODY = {
    "required": True,
    "content": {
        _YAML: {"schema": {"type": "string"}},
        "text/plain": {"schema": {"type": "string"}},
        _JSON: {"schema": _ref("SopBody")},
    },
}
_PROFILE_BODY = {
    "required": True,
    "content": {
        _YAML: {"schema": {"type": "string"}},
        "text/plain": {"schema": {"type": "string"}},
        _JSON: {"schema": _ref("ProfileBody")},
    },
}
_LIST_PARAMS = [
    {"in": "query", "name": "limit", "schema": {"type": "integer", "minimum": 1}},
    {"in": "query", "name": "cursor", "schema": {"type": "string"}},
]

# A page of versions is longer than other lists' (the history shows HISTORY_SHOWN): its own
# maximum, which the document keeps.
_VERSION_PARAMS = [
    {"in": "query", "name": "limit", "description": f"default {HISTORY_SHOWN}",
     "schema": {"type": "integer", "minimum": 1, "maximum": VERSIONS_PAGE_MAX}},
    {"in": "query", "name": "cursor", "schema": {"type": "string"}},
]  # fmt: skip


def _csv_param(name: str, values: list[str]) -> dict[str, Any]:
    return {
        "in": "query",
        "name": name,
        "description": f"comma-separated, any of: {', '.join(values)}",
        "schema": {"type": "string"},
    }


def _task_create_body() -> dict[str, Any]:
    examples = {
        task_type: {"summary": task_type, "value": {"type": task_type, "data": data}}
        for task_type, data in TASK_EXAMPLES.items()
    }
    examples["json_object_data"] = {
        "summary": "data as a JSON object",
        "value": {
            "type": "check_eligibility",
            "data": {"member_id": "W100000001", "patient": "Jane Doe", "dob": "1990-01-15"},
        },
    }
    return {
        "required": True,
        "content": {
            _JSON: {"schema": _ref("TaskCreate"), "examples": examples},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        # a built-in type, or one the account defined (GET /task-types)
                        "type": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 200,
                            "examples": list(TASK_TYPES),
                        },
                        "data": {"type": "string"},
                        "files": {
                            "type": "array",
                            "items": {
                                "type": "string",
                                "contentMediaType": "application/octet-stream",
                            },
                        },
                    },
                }
            },
        },
    }


def _task_links() -> dict[str, Any]:
    """What a client can do next with a task it was given (stateful testers follow these)."""
    by_id = {"task_id": "$response.body#/id"}
    return {
        name: {"operationId": op, "parameters": dict(by_id)}
        for name, op in (
            ("ReadTask", "read_task"),
            ("CancelTask", "cancel_task"),
            ("GiveInput", "give_input"),
            ("ReadTrajectory", "read_trajectory"),
            ("ReadTaskSop", "read_task_sop"),
        )
    }


def _op(
    summary: str,
    tag: str,
    ok: dict[int, dict[str, Any]],
    errors: tuple[int, ...] = (),
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": dict(ok)}
    if _IDEMPOTENCY_KEY in (params or []):
        for status, answer in ok.items():
            op["responses"][status] = {**answer, "headers": {REPLAYED_HEADER: _REPLAYED}}
        # the key reused with another request, or over MAX_IDEMPOTENCY_KEY_CHARS
        errors = tuple(sorted({*errors, 409, 422}))
    # 408, 414 and 431: any request the server cannot take in, before any operation is chosen
    for status in (*errors, 408, 414, 431, *(() if public else (401, 429, 503))):
        op["responses"][status] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
    if body:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


_BODY_ERRORS = (400, 413, 415, 422)
# The header of every call that changes something (api.idempotency), and of its replayed answer.
_REPLAYED = {
    "description": "true when this is the stored answer of an earlier call under the same"
    " Idempotency-Key (nothing was done now)",
    "schema": {"type": "string", "enum": ["true"]},
}
_IDEMPOTENCY_KEY = {
    "in": "header", "name": "Idempotency-Key", "schema": {"type": "string"},
    "description": "for 24 hours, the same key and request replay the first answer (with the"
    " header Idempotent-Replayed: true) and change nothing more; another request under the"
    " key is a 409 idempotency_conflict",
}  # fmt: skip
_RETRY_AFTER = {
    "description": "the seconds to wait before sending the request again",
    "schema": {"type": "integer", "minimum": 0},
}
# Creations that may find the account at one of its quotas (MAX_CUSTOM_TYPES, MAX_PORTALS,
# MAX_SOP_VERSIONS).
_QUOTA_ERRORS = (*_BODY_ERRORS, 409)

# Flask endpoint -> the OpenAPI operation (without the path parameters, which come from the rule).
OPERATIONS: dict[str, dict[str, Any]] = {
    "health.healthz": _op("Liveness: the API process answers", "health", {200: _ok("Health")},
                   public=True),
    "health.readyz": _op("Readiness: the API can reach its database and queue", "health",
                  {200: _ok("Health"), 503: {"$ref": "#/components/responses/ServiceUnavailable"}},
                  public=True),
    "tasks.create_task": _op(
        "Create a task (JSON, or multipart with files); honours Idempotency-Key", "tasks",
        {200: {**_ok("Task", "The created task (or the replayed answer of its Idempotency-Key)"),
               "links": _task_links()}},
        (400, 409, 413, 415, 422), body=_task_create_body(),
        params=[_IDEMPOTENCY_KEY],
    ),
    "tasks.create_tasks": _op(
        "Create up to MAX_BATCH_TASKS tasks (JSON) in one call, all or none: a 422 lists every"
        " problem of every task (field tasks.N...., task N) and stores nothing; honours"
        " Idempotency-Key", "tasks",
        {200: _ok("TaskBatch", "The created tasks in the order sent (or the replayed answer of"
                  " its Idempotency-Key)")},
        (400, 409, 413, 415, 422), body=_json_body("TaskBatchCreate", checks={"tasks": [
            {"type": "check_eligibility", "data": TASK_EXAMPLES["check_eligibility"]},
            {"type": "check_eligibility", "data": {
                "member_id": "W200000002", "patient": "John Roe", "dob": "1985-06-30"}},
            {"type": "check_claim_status", "data": TASK_EXAMPLES["check_claim_status"]},
        ]}),
        params=[_IDEMPOTENCY_KEY],
    ),
    "tasks.read_task": _op("Read a task", "tasks", {200: _ok("Task")}, (404,)),
    "tasks.read_batch": _op(
        "Read a batch: its tasks in order, how many are in each status, whether all ended",
        "tasks", {200: _ok("Batch")}, (404,),
    ),
    "tasks.list_tasks": _op(
        "List tasks, newest first", "tasks", {200: _ok("TaskPage")}, (400, 422),
        params=[_csv_param("status", [s.value for s in TaskStatus]),
                _csv_param("type", list(TASK_TYPES)),
                {"in": "query", "name": "batch", "description": "one batch's tasks",
                 "schema": {"type": "integer", "minimum": 0}},
                {"in": "query", "name": "created_since", "description": "tasks created at"
                 " or after this time (ISO 8601 with its offset, or a date: its start in UTC)",
                 "schema": {"type": "string", "format": "date-time"}},
                {"in": "query", "name": "created_before", "description": "tasks created"
                 " before this time (ISO 8601 with its offset, or a date: its start in UTC)",
                 "schema": {"type": "string", "format": "date-time"}}, *_LIST_PARAMS],
    ),
    "tasks.cancel_task": _op(
        "Cancel a task: a queued one ends at once, a running one at its next step", "tasks",
        {200: _ok("Task", "Canceled"), 202: _ok("Task", "Cancellation requested")}, (404, 409),
        params=[_IDEMPOTENCY_KEY],
    ),
    "tasks.retry_task": _op(
        "Send an ended task (failed, canceled or completed_with_issues) again as a new task:"
        " its type, data and files, under today's SOP; never one whose run reached a submit"
        " step (409 may_have_submitted); honours Idempotency-Key", "tasks",
        {200: _ok("Task", "The new task, its retry_of naming this one (or the replayed answer"
                       " of its Idempotency-Key)")},
        (404, 409, 422),
        params=[_IDEMPOTENCY_KEY],
    ),
    "tasks.give_input": _op(
        "Give a waiting task the one-time code it asked for", "tasks",
        {202: _ok("Task", "The task resumes")}, (*_BODY_ERRORS, 404, 409),
        body=_json_body("TaskInput", code={"code": "123456"}), params=[_IDEMPOTENCY_KEY],
    ),
    "tasks.review_task": _op(
        "Approve or reject a task that is pending_review: approved, it resumes and submits;"
        " rejected, it ends completed_with_issues with the note", "tasks",
        {200: _ok("Task", "The decision is recorded")}, (*_BODY_ERRORS, 404, 409),
        body=_json_body("ReviewDecision", approve={"decision": "approve"},
                        reject={"decision": "reject", "note": "Wrong CPT code on line 2"}),
        params=[_IDEMPOTENCY_KEY],
    ),
    "account_settings.get_settings": _op("The account's settings", "settings",
                                         {200: _ok("AccountSettings")}),
    "account_settings.put_settings": _op(
        "Set the settings the body names (the task types that require review, how many days"
        " ended tasks are kept); the others stay", "settings",
        {200: _ok("AccountSettings")}, _BODY_ERRORS,
        body=_json_body("AccountSettingsIn",
                        claims={"review_required_types": ["submit_claim"]},
                        retention={"retention_days": 30}),
    ),
    "trajectories.read_trajectory": _op(
        "Every step the agent took, per attempt", "tasks", {200: _ok("Trajectory")}, (404,)
    ),
    "trajectories.read_artifact": _op(
        "A step's screenshot", "tasks",
        {200: {"description": "The image",
               "content": {"image/png": {"schema": {"type": "string",
                                                    "contentMediaType": "image/png"}}}}},
        (404,),
    ),
    "sops.list_sops": _op("The active SOP of each task type", "sops", {200: _ok("SopList")}),
    "sops.read_sop": _op(f"The active SOP of a type and its newest {HISTORY_SHOWN} versions",
                         "sops", {200: _ok("Sop")}, (404,)),
    "sops.list_sop_versions": _op(
        "The account's versions of a type's SOP, newest first (a removed type's too)", "sops",
        {200: _ok("SopVersionPage")}, (400, 404), params=_VERSION_PARAMS,
    ),
    "sops.read_sop_version": _op("One stored version of a type's SOP, with its text", "sops",
                                 {200: _ok("SopVersion")}, (404,)),
    "sops.read_task_sop": _op(
        "The SOP version a task runs or ran (the account's or the built-in one), with its text",
        "tasks", {200: _ok("SopVersion")}, (404,),
    ),
    "sops.put_sop": _op(
        "Store a new SOP version (201), or nothing if the text is the active one (200);"
        " a new snake_case name defines a task type of the account's own", "sops",
        {200: _ok("Sop", "Unchanged"), 201: _ok("Sop", "Stored")}, _QUOTA_ERRORS,
        body=_SOP_BODY,
    ),
    "sops.revert_sop": _op(
        "Go back to the built-in SOP; for a type of the account's own, remove the type", "sops",
        {200: {"description": "The built-in SOP, or the removed type",
               "content": {_JSON: {"schema": {"oneOf": [_ref("Sop"), _ref("TaskTypeRemoved")]}}}}},
        (404, 409), params=[_IDEMPOTENCY_KEY],
    ),
    "sops.list_task_types": _op(
        "The task types the account can use, built-in then its own, with their inputs", "sops",
        {200: _ok("TaskTypeList")},
    ),
    "sops.validate_sop": _op(
        "Check an SOP without storing it", "sops", {200: _ok("SopValidation")}, _BODY_ERRORS,
        body=_SOP_BODY,
    ),
    "credentials.put_portal_credentials": _op(
        "Store the portal login (encrypted; never returned)", "credentials",
        {200: _ok("Credentials")}, _QUOTA_ERRORS,
        body=_json_body("CredentialsIn", login={"username": "provider@sandbox",
                                                "password": "sandbox-pass-1",
                                                "totp_secret": "JBSWY3DPEHPK3PXP"}),
    ),
    "credentials.list_portal_credentials": _op(
        "Which portals have a login (usernames only)", "credentials",
        {200: _ok("CredentialsList")},
    ),
    "credentials.delete_portal_credentials": _op(
        "Delete a portal's login", "credentials", {204: {"description": "Deleted"}},
        (404, 409, 422), params=[_IDEMPOTENCY_KEY],
    ),
    "credentials.put_portal": _op(
        "Register a portal's base URL", "portals", {200: _ok("Portal")}, _QUOTA_ERRORS,
        body=_json_body("PortalIn", portal={"base_url": "https://portal.example.com"}),
    ),
    "credentials.list_portals": _op("The portals (the sandbox first)", "portals",
                                    {200: _ok("PortalList")}),
    "credentials.delete_portal": _op("Forget a portal", "portals",
                                     {204: {"description": "Deleted"}}, (404, 409, 422),
                                     params=[_IDEMPOTENCY_KEY]),
    "profiles.read_profile": _op(
        "The portal's profile in force (yours or the built-in one) and your versions", "portals",
        {200: _ok("PortalProfile")}, (404, 422),
    ),
    "profiles.list_profile_versions": _op(
        "The account's versions of the portal's profile, newest first", "portals",
        {200: _ok("PortalProfileVersionPage")}, (400, 404, 422), params=_VERSION_PARAMS,
    ),
    "profiles.read_profile_version": _op(
        "One stored version of the portal's profile, with its text", "portals",
        {200: _ok("PortalProfileVersion")}, (404, 422),
    ),
    "profiles.put_profile": _op(
        "Store a new profile version (201), or nothing if the text is the active one (200);"
        " a base_url in it sets the portal's address", "portals",
        {200: _ok("PortalProfile", "Unchanged"), 201: _ok("PortalProfile", "Stored")},
        _QUOTA_ERRORS, body=_PROFILE_BODY,
    ),
    "profiles.revert_profile": _op(
        "Go back to a built-in portal's built-in profile", "portals",
        {200: _ok("PortalProfile")}, (409, 422), params=[_IDEMPOTENCY_KEY],
    ),
    "profiles.validate_profile": _op(
        "Check a portal profile without storing it", "portals",
        {200: _ok("PortalProfileValidation")}, _BODY_ERRORS, body=_PROFILE_BODY,
    ),
    "webhooks.get_endpoint": _op("The webhook endpoint", "webhooks",
                                 {200: _ok("WebhookEndpoint")}, (404,)),
    "webhooks.put_endpoint": _op(
        "Set the URL and/or enable or disable the endpoint", "webhooks",
        {200: _ok("WebhookEndpoint"), 201: _ok("WebhookEndpoint", "Made, with its secret")},
        (*_BODY_ERRORS, 409), params=[_IDEMPOTENCY_KEY],
        body=_json_body("WebhookEndpointIn", url={"url": "https://example.com/hook"},
                        enable={"enabled": True},
                        events={"filter_types": ["task_finished", "task.pending_review",
                                                 "task.waiting_for_input"]}),
    ),
    "webhooks.test_endpoint": _op("Queue a ping message", "webhooks",
                                  {202: _ok("WebhookMessage", "Queued")}, (409,),
                                  params=[_IDEMPOTENCY_KEY]),
    "webhooks.rotate_secret": _op(
        "A new signing secret; the old one keeps signing for the overlap", "webhooks",
        {200: _ok("RotatedSecret")}, (404, 409), params=[_IDEMPOTENCY_KEY],
    ),
    "audit.list_audit_log": _op(
        "The audit log, newest first: every console action and mutating API call", "audit",
        {200: _ok("AuditPage")}, (400,), params=_LIST_PARAMS,
    ),
    "webhooks.list_messages": _op(
        "The webhook message log, newest first", "webhooks", {200: _ok("WebhookMessagePage")},
        (400, 422), params=[{"in": "query", "schema": MessageFilterSchema}],
    ),
    "webhooks.get_message": _op(
        "One message (by id or msg_id) with every delivery attempt", "webhooks",
        {200: _ok("WebhookMessageDetail")}, (404,),
    ),
    "webhooks.redeliver": _op(
        "Send a message again, same webhook-id, fresh retry budget", "webhooks",
        {202: _ok("WebhookMessage", "Queued")}, (404, 409), params=[_IDEMPOTENCY_KEY],
    ),
    "webhooks.recover": _op(
        "Queue again every failed message created since a time", "webhooks",
        {202: _ok("Recovered", "Queued")}, (*_BODY_ERRORS, 409), params=[_IDEMPOTENCY_KEY],
        body=_json_body("Recover", since={"since": "2026-11-29T00:00:00Z"},
                        window={"since": "2026-11-29T00:00:00Z",
                                "until": "2026-11-30T00:00:00Z"}),
    ),
}  # fmt: skip

_WEBHOOK_HEADERS = [
    {"in": "header", "name": name, "required": True, "schema": {"type": "string"},
     "description": description}
    for name, description in (
        ("webhook-id", "the message id, the same on every retry: deduplicate on it"),
        ("webhook-timestamp", "Unix seconds when this attempt was signed"),
        ("webhook-signature", "v1,<base64 HMAC-SHA256 of 'id.timestamp.body'>"),
    )
]  # fmt: skip


def _webhook(summary: str, envelope: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": deepcopy(_WEBHOOK_HEADERS),
            "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(envelope)}}},
            "responses": {"2XX": {"description": "Acknowledged; anything else is retried"}},
        }
    }


_CONVERTER = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>\w+)>")


# Path parameters whose form the views check (a portal's name is a 422 otherwise).
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "portal": {"type": "string", "pattern": PORTAL_NAME.pattern},
    "name": {"type": "string", "pattern": PORTAL_NAME.pattern},
}


def _openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """``/tasks/<int:task_id>`` as ``/tasks/{task_id}`` plus its path parameters."""
    params = []
    for match in _CONVERTER.finditer(rule):
        kind = "integer" if match["conv"] == "int" else "string"
        schema = _PATH_SCHEMAS.get(match["name"], {"type": kind})
        params.append({"in": "path", "name": match["name"], "required": True, "schema": schema})
    return _CONVERTER.sub(r"{\g<name>}", rule), params


def operation_for(app: Flask, endpoint: str, method: str) -> dict[str, Any] | None:
    """The documented operation of a route: its docstring YAML, else the table."""
    view = app.view_functions[endpoint]
    from_doc = load_operations_from_docstring(view.__doc__ or "").get(method.lower())
    if from_doc is not None:
        return deepcopy(from_doc)
    op = OPERATIONS.get(endpoint)
    return deepcopy(op) if op is not None else None


def undocumented_routes(app: Flask) -> list[str]:
    """Every route of the app that the document would leave out."""
    return [
        f"{method} {rule.rule}"
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in UNDOCUMENTED and not rule.endpoint.startswith(CONSOLE)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        if operation_for(app, rule.endpoint, method) is None
    ]


def build_spec(app: Flask) -> dict[str, Any]:
    spec = APISpec(
        title="Understudy API",
        version="1.0.0",
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={
            "description": "Payer-portal work done by a computer agent; outcomes by signed"
            ' webhook. Every error is {"error": {"code", "message", "details"}}.'
        },
        servers=[{"url": "/"}],
        security=[{"bearerAuth": []}],
    )
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "an API key, us_..."}
    )
    for name, schema in {**REQUEST_SCHEMAS, **RESPONSE_SCHEMAS}.items():
        spec.components.schema(name, schema=schema)
    for status, (name, description, codes) in ERRORS.items():
        response = {
            "description": f"{description}. Codes: {', '.join(codes)}.",
            "content": {_JSON: {"schema": _ref("Error")}},
        }
        if status in (429, 503):
            response["headers"] = {"Retry-After": _RETRY_AFTER}
        spec.components.response(name, response)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in UNDOCUMENTED or rule.endpoint.startswith(CONSOLE):
            continue
        path, path_params = _openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = operation_for(app, rule.endpoint, method)
            if op is None:
                continue
            op.setdefault("operationId", rule.endpoint.rpartition(".")[2])
            if path_params:
                op["parameters"] = [*deepcopy(path_params), *op.get("parameters", [])]
            paths.setdefault(path, {})[method.lower()] = op
    runtime = app.extensions.get("understudy")
    for path, operations in paths.items():
        for op in operations.values():
            for param in op.get("parameters", []):
                limit = param.get("name") == "limit" and "maximum" not in param["schema"]
                if limit and runtime is not None:
                    param["schema"] = {
                        "type": "integer", "minimum": 1,
                        "maximum": runtime.settings.page_size_max,
                    }  # fmt: skip
                if param.get("name") == "Idempotency-Key" and runtime is not None:
                    longest = runtime.settings.max_idempotency_key_chars
                    param["schema"] = {"type": "string", "maxLength": longest}
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    document["webhooks"] = {
        "task_finished": _webhook("A task reached a final state", "TaskFinishedEnvelope"),
        "ping": _webhook("A test event (POST /webhook-endpoint/test)", "PingEnvelope"),
        "task.waiting_for_input": _webhook(
            "Opt-in (filter_types): a task waits for a one-time code; data.input_request says"
            " until when",
            "TaskWaitingForInputEnvelope",
        ),
        "task.pending_review": _webhook(
            "Opt-in (filter_types): a task paused for a person's review before an irreversible"
            " step; approve or reject with POST /tasks/{id}/review",
            "TaskPendingReviewEnvelope",
        ),
        "task.waiting_for_portal": _webhook(
            "Opt-in (filter_types): a task waits for its portal, found down at the sign-in; the"
            " task's notes say since when and when the next try is. Once per wait",
            "TaskWaitingForPortalEnvelope",
        ),
        "batch.finished": _webhook(
            "Opt-in (filter_types): every task of a batch (POST /tasks/batch) has ended; data is"
            " the batch, with its tasks by status. Each task's own events are sent as well",
            "BatchFinishedEnvelope",
        ),
    }
    return document


bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def spec():
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    document = app.extensions.get("understudy_openapi")
    if document is None:
        document = app.extensions["understudy_openapi"] = build_spec(app)
    return jsonify(document)


@bp.get("/docs")
def docs_root():
    return redirect("/docs/", code=308)


def register(app: Flask) -> None:
    """Serve /openapi.json and the docs. Call after every other blueprint is registered."""
    from flask_swagger_ui import get_swaggerui_blueprint

    app.register_blueprint(bp)
    app.register_blueprint(
        get_swaggerui_blueprint(
            "/docs",
            "/openapi.json",
            # validatorUrl None: no badge fetched from a public validator; nothing leaves.
            config={"app_name": "Understudy API", "validatorUrl": None, "layout": "BaseLayout"},
            blueprint_name="openapi_docs",
        )
    )
