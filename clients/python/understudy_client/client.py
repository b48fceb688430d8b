"""The client: one method per operation of the OpenAPI document, retries, pages and waiting."""

from __future__ import annotations

import email.utils
import math
import mimetypes
import os
import random
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TypedDict
from urllib.parse import quote, urljoin

import requests
from urllib3.exceptions import NewConnectionError

from understudy_client.errors import (
    ApiConnectionError,
    RateLimitedError,
    ServiceUnavailableError,
    UnderstudyError,
    WaitTimeout,
    error_for,
)

FINAL_STATUSES = frozenset({"completed", "completed_with_issues", "failed", "canceled"})
# Answers after which any request is sent again: the server says it changed nothing.
RETRY_STATUSES = frozenset({429, 503})
# A gateway's answers (a proxy in front of the server): the request may have been carried out,
# so only a request that is safe to repeat is sent again.
GATEWAY_STATUSES = frozenset({502, 504})
# The POSTs that change nothing. With GET, PUT and any request with an Idempotency-Key, they
# are safe to repeat when their answer is lost.
CHECKS = frozenset({"validate_sop", "validate_profile"})

# operationId -> (method, path) as in the OpenAPI document; a test fails when the two drift.
OPERATIONS: dict[str, tuple[str, str]] = {
    "healthz": ("GET", "/healthz"),
    "readyz": ("GET", "/readyz"),
    "create_task": ("POST", "/tasks"),
    "create_tasks": ("POST", "/tasks/batch"),
    "read_batch": ("GET", "/batches/{batch_id}"),
    "list_tasks": ("GET", "/tasks"),
    "read_task": ("GET", "/tasks/{task_id}"),
    "cancel_task": ("POST", "/tasks/{task_id}/cancel"),
    "retry_task": ("POST", "/tasks/{task_id}/retry"),
    "give_input": ("POST", "/tasks/{task_id}/input"),
    "review_task": ("POST", "/tasks/{task_id}/review"),
    "get_settings": ("GET", "/settings"),
    "put_settings": ("PUT", "/settings"),
    "read_trajectory": ("GET", "/tasks/{task_id}/trajectory"),
    "read_artifact": ("GET", "/artifacts/{artifact_id}"),
    "list_sops": ("GET", "/sops"),
    "list_task_types": ("GET", "/task-types"),
    "read_sop": ("GET", "/sops/{task_type}"),
    "list_sop_versions": ("GET", "/sops/{task_type}/versions"),
    "read_sop_version": ("GET", "/sops/{task_type}/versions/{version}"),
    "read_task_sop": ("GET", "/tasks/{task_id}/sop"),
    "put_sop": ("PUT", "/sops/{task_type}"),
    "revert_sop": ("DELETE", "/sops/{task_type}"),
    "validate_sop": ("POST", "/sops/validate"),
    "list_portals": ("GET", "/portals"),
    "put_portal": ("PUT", "/portals/{name}"),
    "delete_portal": ("DELETE", "/portals/{name}"),
    "read_profile": ("GET", "/portals/{name}/profile"),
    "list_profile_versions": ("GET", "/portals/{name}/profile/versions"),
    "read_profile_version": ("GET", "/portals/{name}/profile/versions/{version}"),
    "put_profile": ("PUT", "/portals/{name}/profile"),
    "revert_profile": ("DELETE", "/portals/{name}/profile"),
    "validate_profile": ("POST", "/portals/profiles/validate"),
    "list_portal_credentials": ("GET", "/credentials"),
    "put_portal_credentials": ("PUT", "/credentials/{portal}"),
    "delete_portal_credentials": ("DELETE", "/credentials/{portal}"),
    "get_endpoint": ("GET", "/webhook-endpoint"),
    "put_endpoint": ("PUT", "/webhook-endpoint"),
    "test_endpoint": ("POST", "/webhook-endpoint/test"),
    "rotate_secret": ("POST", "/webhook-endpoint/rotate-secret"),
    "list_messages": ("GET", "/webhooks/messages"),
    "get_message": ("GET", "/webhooks/messages/{ref}"),
    "redeliver": ("POST", "/webhooks/messages/{ref}/redeliver"),
    "recover": ("POST", "/webhooks/recover"),
    "list_audit_log": ("GET", "/audit-log"),
}


class Task(TypedDict, total=False):
    """The task object (GET /tasks/{id}); the reference API's fields first."""

    id: int
    accountId: int  # noqa: N815 - the API's name
    task_number: int
    status: str
    handler: str
    title: str
    instructions: str
    startedAt: str | None  # noqa: N815
    completedAt: str | None  # noqa: N815
    failedAt: str | None  # noqa: N815
    notes: str | None
    createdAt: str  # noqa: N815
    updatedAt: str  # noqa: N815
    type: str
    data: str | None  # a JSON object sent is its JSON text
    files: list[dict[str, Any]]
    result: dict[str, Any] | None
    trajectory_id: str
    canceledAt: str | None  # noqa: N815
    attempts: int
    sop: dict[str, Any]
    profile: dict[str, Any] | None
    links: dict[str, str]
    input_request: dict[str, Any] | None
    review: dict[str, Any] | None
    retry_of: int | None
    retried_as: list[int]
    batch_id: int | None


class Page(TypedDict):
    data: list[Task]
    has_more: bool
    next_cursor: str | None


FileArg = str | Path | tuple[str, bytes | BinaryIO, str]


def _given(**fields: Any) -> dict[str, Any]:
    """A body of the fields given (not None): what a partial update sends."""
    return {name: value for name, value in fields.items() if value is not None}


def _safe_to_repeat(operation: str, method: str, headers: Mapping[str, str] | None) -> bool:
    """Whether sending a request twice does what sending it once does: a read, a PUT (the same
    state again), a check, or a request the server answers once for its Idempotency-Key."""
    return method in ("GET", "PUT") or operation in CHECKS or "Idempotency-Key" in (headers or {})


def _iso(when: datetime | str | None) -> str | None:
    """A time as the API's filters take it: ISO 8601 text as given, or an aware datetime."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("give an aware datetime (with its timezone), such as UTC's")
        return when.isoformat()
    return when


def _keyed(idempotency_key: str | None) -> dict[str, str]:
    """The headers of a call the server carries out once per key: the key given, or a new one,
    so that a retry after a lost answer gets the first answer and changes nothing more."""
    return {"Idempotency-Key": idempotency_key or f"uc-{uuid.uuid4()}"}


def _segments(path_params: Mapping[str, Any]) -> dict[str, str]:
    """Each value as one segment of the path, so that "acme#2" names that portal, never
    "acme". A value the server would read as another path ("a/b", "..") names nothing."""
    segments = {}
    for name, value in path_params.items():
        text = str(value)
        if "/" in text or text in ("", ".", ".."):
            raise UnderstudyError(0, "invalid_argument", f"{name} {text!r} names nothing")
        segments[name] = quote(text, safe="")
    return segments


def _never_sent(err: requests.RequestException) -> bool:
    """Whether the request surely never reached the server: no connection was made."""
    if isinstance(err, requests.ConnectTimeout):
        return True
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return isinstance(reason, NewConnectionError)  # refused, or no such host


def _refusal(
    method: str, url: str, response: requests.Response, *, repeated: bool
) -> UnderstudyError:
    """The exception for an answer of 400 or more. The API's own error (``{"error": {...}}``)
    is its typed exception; so is any 429 or 503 (nothing was changed). A gateway's own 502 or
    504 means the answer was lost on the way: :class:`ApiConnectionError`, ``maybe_applied``.
    Any other answer is not the API's: ``invalid_response`` (a wrong address's 404 is no
    ``NotFoundError``)."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if (isinstance(error, dict) and "code" in error) or status in RETRY_STATUSES:
        return error_for(status, body if body is not None else response.text)
    if status in GATEWAY_STATUSES:
        why = (
            "after the client's retries" if repeated
            else "and it was not sent again since repeating it is not safe"
        )  # fmt: skip
        return ApiConnectionError(
            f"{method} {url}: a gateway answered {status}, {why}. The request may have been"
            " carried out: read what it changes before you repeat it",
            maybe_applied=True,
        )
    return UnderstudyError(
        status,
        "invalid_response",
        f"{method} {url} answered {status} with {response.headers.get('Content-Type') or 'a body'}"
        " that is not the API's error: a proxy's own page, or is this the API's address?",
    )


def _http_date_in(header: str) -> float:
    """The seconds until the HTTP date of a Retry-After header; NaN if it is not one."""
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return math.nan
    return when.timestamp() - time.time()


class Understudy:
    """A client for one account. Thread-safe as far as ``requests.Session`` is."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_retry_wait_s: float = 60.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_retry_wait_s = max_retry_wait_s
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.session.headers["User-Agent"] = "understudy-client/1.0"

    @classmethod
    def from_env(cls, **kwargs: Any) -> Understudy:
        """From ``UNDERSTUDY_URL`` (default http://127.0.0.1:8000) and ``UNDERSTUDY_API_KEY``."""
        url = os.environ.get("UNDERSTUDY_URL", "http://127.0.0.1:8000")
        return cls(url, os.environ.get("UNDERSTUDY_API_KEY", ""), **kwargs)

    # --- transport ---------------------------------------------------------------------------

    def _retry_wait(self, attempt: int, response: requests.Response | None) -> float:
        header = response.headers.get("Retry-After") if response is not None else None
        wait = self.backoff_s * 2**attempt * (0.5 + random.random() / 2)
        if header:
            try:
                given = float(header)
            except ValueError:
                given = _http_date_in(header)
            if math.isfinite(given):  # else a header of no meaning: the backoff's wait
                wait = given
        return min(max(wait, 0.0), self.max_retry_wait_s)

    def request(
        self,
        operation: str,
        *,
        path_params: Mapping[str, Any] | None = None,
        expect_json: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Call one operation of the document. A request the server never got (no connection,
        or a 429 or 503, after which the server changed nothing) is sent again. One whose answer
        was lost on the way back (a timeout, a dropped connection, a gateway's 502 or 504) is
        sent again only if it is safe to repeat (:func:`_safe_to_repeat`); otherwise
        ApiConnectionError says it may have been carried out."""
        method, template = OPERATIONS[operation]
        url = self.base_url + template.format(**_segments(path_params or {}))
        kwargs.setdefault("timeout", self.timeout_s)
        # A redirected write is not followed: a 301 or 302 would turn it into a GET (a
        # creation into a list of tasks), and a write goes only to the address it was given.
        kwargs.setdefault("allow_redirects", method == "GET")
        repeatable = _safe_to_repeat(operation, method, kwargs.get("headers"))
        files = kwargs.get("files")
        for attempt in range(self.max_retries + 1):
            for _, (_name, handle, _type) in files or []:
                if hasattr(handle, "seek"):
                    handle.seek(0)  # a retry sends the files from their start again
            try:
                response = self.session.request(method, url, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as err:
                unsent = _never_sent(err)
                if not (unsent or repeatable):
                    raise ApiConnectionError(
                        f"{method} {url}: {err}. The request was sent and its answer lost: it"
                        " may have been carried out, and it was not sent again since repeating"
                        " it is not safe. Read what it changes before you repeat it",
                        maybe_applied=True,
                    ) from err
                if attempt == self.max_retries:
                    raise ApiConnectionError(
                        f"{method} {url}: {err}", maybe_applied=not unsent
                    ) from err
                time.sleep(self._retry_wait(attempt, None))
                continue
            except requests.RequestException as err:  # no address to call, redirects in a loop
                raise ApiConnectionError(f"{method} {url}: {err}") from err
            again = response.status_code in RETRY_STATUSES or (
                repeatable and response.status_code in GATEWAY_STATUSES
            )
            if again and attempt < self.max_retries:
                time.sleep(self._retry_wait(attempt, response))
                continue
            break
        if response.is_redirect:
            raise UnderstudyError(
                response.status_code,
                "redirected",
                f"{method} {url} was redirected to {urljoin(url, response.headers['Location'])};"
                " it was not followed: give the client the API's own address",
            )
        if response.status_code >= 400:
            raise _refusal(method, url, response, repeated=repeatable)
        if response.status_code == 204:
            return None
        if not expect_json:
            return response.content
        try:
            return response.json()
        except ValueError:  # not the API: a wrong UNDERSTUDY_URL, a proxy's own page
            raise UnderstudyError(
                response.status_code,
                "invalid_response",
                f"{method} {url} answered {response.headers.get('Content-Type') or 'a body'}"
                " that is not JSON: is this the API's address?",
            ) from None

    def _each(
        self,
        operation: str,
        params: dict[str, Any],
        path_params: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every entry of a paged list, fetching page after page as you iterate."""
        params = dict(params)
        while True:
            page = self.request(operation, path_params=path_params, params=params)
            yield from page["data"]
            if not page["has_more"]:
                return
            params["cursor"] = page["next_cursor"]

    # --- tasks -------------------------------------------------------------------------------

    def create_task(
        self,
        task_type: str,
        data: str | Mapping[str, Any] | None = None,
        *,
        files: Sequence[FileArg] = (),
        idempotency_key: str | None = None,
    ) -> Task:
        """Create a task. An Idempotency-Key is made unless given, so retries are safe."""
        headers = _keyed(idempotency_key)
        if not files:
            body = {"type": task_type, "data": data}
            return self.request("create_task", json=body, headers=headers)
        if data is not None and not isinstance(data, str):
            raise TypeError("with files, data must be text of 'key: value' lines")
        parts = []
        opened = []
        for item in files:
            if isinstance(item, tuple):
                parts.append(("files", item))
            else:
                handle = open(item, "rb")  # noqa: SIM115 - closed below, after the retries
                opened.append(handle)
                name = Path(item).name
                content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
                parts.append(("files", (name, handle, content_type)))
        form = {"type": task_type, **({"data": data} if data is not None else {})}
        try:
            return self.request("create_task", data=form, files=parts, headers=headers)
        finally:
            for handle in opened:
                handle.close()

    def create_tasks(
        self,
        tasks: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> list[Task]:
        """Create up to the server's ``MAX_BATCH_TASKS`` tasks in one call, all or none: each
        ``{"type": ..., "data": ...}``. The created tasks come back in the order given. An
        Idempotency-Key is made unless given, so retries are safe."""
        return self.create_batch(tasks, idempotency_key=idempotency_key)["data"]

    def create_batch(
        self,
        tasks: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """:meth:`create_tasks`, answering ``{"batch_id": ..., "data": [the tasks]}``: the
        batch can then be read (:meth:`get_batch`) or waited for (:meth:`wait_batch`)."""
        headers = _keyed(idempotency_key)
        body = {"tasks": [{"type": t["type"], "data": t.get("data")} for t in tasks]}
        return self.request("create_tasks", json=body, headers=headers)

    def get_batch(self, batch_id: int) -> dict[str, Any]:
        """A batch: ``task_ids`` in order, ``counts`` by status, ``finished`` once all ended."""
        return self.request("read_batch", path_params={"batch_id": batch_id})

    def get_task(self, task_id: int) -> Task:
        return self.request("read_task", path_params={"task_id": task_id})

    def list_tasks_page(
        self,
        *,
        status: Sequence[str] = (),
        type: Sequence[str] = (),  # noqa: A002 - the API's name
        limit: int | None = None,
        cursor: str | None = None,
        batch: int | None = None,
        created_since: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> Page:
        """One page of tasks, newest first; ``created_since`` (inclusive) and ``created_before``
        bound when they were created (an aware datetime, or ISO 8601 text: a date is its start
        in UTC)."""
        params = {
            "status": ",".join(status) or None,
            "type": ",".join(type) or None,
            "batch": batch,
            "created_since": _iso(created_since),
            "created_before": _iso(created_before),
            "limit": limit,
            "cursor": cursor,
        }
        return self.request("list_tasks", params=params)

    def list_tasks(
        self,
        *,
        status: Sequence[str] = (),
        type: Sequence[str] = (),  # noqa: A002
        page_size: int | None = None,
        batch: int | None = None,
        created_since: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> Iterator[Task]:
        """Every matching task, newest first (``batch``: of that batch only; the creation
        bounds as :meth:`list_tasks_page` takes them), fetching page after page as you
        iterate."""
        cursor = None
        while True:
            page = self.list_tasks_page(
                status=status, type=type, limit=page_size, cursor=cursor, batch=batch,
                created_since=created_since, created_before=created_before,
            )  # fmt: skip
            yield from page["data"]
            if not page["has_more"]:
                return
            cursor = page["next_cursor"]

    def cancel_task(self, task_id: int, *, idempotency_key: str | None = None) -> Task:
        """Cancel a task (an Idempotency-Key is made unless given, as for every change)."""
        return self.request(
            "cancel_task", path_params={"task_id": task_id}, headers=_keyed(idempotency_key)
        )

    def retry_task(self, task_id: int, *, idempotency_key: str | None = None) -> Task:
        """Send a task that ended failed, canceled or completed_with_issues again, as a new
        task (its ``retry_of`` names this one). An Idempotency-Key is made unless given."""
        headers = _keyed(idempotency_key)
        return self.request("retry_task", path_params={"task_id": task_id}, headers=headers)

    def give_input(self, task_id: int, code: str, *, idempotency_key: str | None = None) -> Task:
        """The one-time code a task ``waiting_for_input`` asked for."""
        return self.request(
            "give_input", path_params={"task_id": task_id}, json={"code": code},
            headers=_keyed(idempotency_key),
        )  # fmt: skip

    def review_task(
        self,
        task_id: int,
        decision: str,
        *,
        note: str | None = None,
        reviewer: str | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """Approve (``"approve"``) or reject (``"reject"``) a task that is ``pending_review``."""
        body = _given(decision=decision, note=note, reviewer=reviewer)
        return self.request(
            "review_task", path_params={"task_id": task_id}, json=body,
            headers=_keyed(idempotency_key),
        )  # fmt: skip

    def get_settings(self) -> dict[str, Any]:
        """The account's settings: ``review_required_types``, ``review_timeout_hours`` and
        ``retention_days``."""
        return self.request("get_settings")

    def update_settings(
        self,
        *,
        review_required_types: list[str] | None = None,
        review_timeout_hours: int | None = None,
        retention_days: int | None = None,
    ) -> dict[str, Any]:
        """Set the settings given, the others stay: the task types whose tasks a person must
        approve before submitting, how many hours such a task waits for it, and how many days
        ended tasks are kept."""
        body = _given(
            review_required_types=review_required_types,
            review_timeout_hours=review_timeout_hours,
            retention_days=retention_days,
        )
        return self.request("put_settings", json=body)

    def wait(self, task: Task | int, timeout: float = 300.0, *, poll_s: float = 1.0) -> Task:
        """Poll until the task reaches a final status; WaitTimeout after ``timeout`` seconds."""
        task_id = task if isinstance(task, int) else task["id"]
        return self._poll(
            lambda: self.get_task(task_id), lambda t: t["status"] in FINAL_STATUSES, timeout, poll_s
        )

    def wait_batch(
        self, batch: dict[str, Any] | int, timeout: float = 600.0, *, poll_s: float = 2.0
    ) -> dict[str, Any]:
        """Poll until every task of the batch has ended; WaitTimeout after ``timeout`` s."""
        # create_batch's answer names it batch_id; get_batch's, id
        batch_id: int = batch if isinstance(batch, int) else batch.get("batch_id") or batch["id"]
        return self._poll(
            lambda: self.get_batch(batch_id), lambda b: b["finished"], timeout, poll_s
        )

    @staticmethod
    def _poll(read: Any, done: Any, timeout: float, poll_s: float) -> Any:
        """``read()`` every ``poll_s`` until ``done`` of it; WaitTimeout after ``timeout``.

        Once a read has answered (so the address and the key are right), a server that cannot
        answer for a while (restarting, failing over, over its rate limit) does not end the
        wait: the read is tried again until the timeout, and its last error is raised then.
        A timeout that is no number of seconds (NaN, below 0), or a ``poll_s`` that is not a
        finite number above 0, is refused before anything is read."""
        if not timeout >= 0 or not 0 < poll_s < math.inf:
            raise UnderstudyError(
                0,
                "invalid_argument",
                f"a wait needs a timeout of 0 s or more and a poll_s above 0 s (got {timeout!r}"
                f" and {poll_s!r})",
            )
        deadline = time.monotonic() + timeout
        current = read()
        while not done(current):
            if time.monotonic() >= deadline:
                raise WaitTimeout(dict(current), timeout)
            time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))
            try:
                current = read()
            except (ApiConnectionError, RateLimitedError, ServiceUnavailableError):
                if time.monotonic() >= deadline:
                    raise
        return current

    def get_trajectory(self, task_id: int) -> dict[str, Any]:
        return self.request("read_trajectory", path_params={"task_id": task_id})

    def download_artifact(self, artifact_id: int, to: str | Path | None = None) -> bytes:
        """A step's screenshot (PNG bytes); also written to ``to`` if given."""
        content: bytes = self.request(
            "read_artifact", path_params={"artifact_id": artifact_id}, expect_json=False
        )
        if to is not None:
            Path(to).write_bytes(content)
        return content

    # --- SOPs --------------------------------------------------------------------------------

    def list_sops(self) -> list[dict[str, Any]]:
        return self.request("list_sops")["data"]

    def list_task_types(self) -> list[dict[str, Any]]:
        """The built-in task types and the account's own, each with the inputs it takes."""
        return self.request("list_task_types")["data"]

    def get_sop(self, task_type: str, version: int | None = None) -> dict[str, Any]:
        """The active SOP and its history; with ``version``, that stored version's text."""
        if version is None:
            return self.request("read_sop", path_params={"task_type": task_type})
        params = {"task_type": task_type, "version": version}
        return self.request("read_sop_version", path_params=params)

    def list_sop_versions(
        self, task_type: str, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every stored version of the type's SOP (version, digest, created_at), newest first:
        ``get_sop`` shows only the newest 100."""
        path_params = {"task_type": task_type}
        return self._each("list_sop_versions", {"limit": page_size}, path_params)

    def get_task_sop(self, task_id: int) -> dict[str, Any]:
        """The SOP version a task runs or ran, the built-in one included, with its text."""
        return self.request("read_task_sop", path_params={"task_id": task_id})

    def put_sop(self, task_type: str, text: str) -> dict[str, Any]:
        """Store a new version (a 422 ValidationError lists each problem with its line)."""
        return self.request("put_sop", path_params={"task_type": task_type}, json={"sop": text})

    def validate_sop(self, text: str) -> dict[str, Any]:
        return self.request("validate_sop", json={"sop": text})

    def revert_sop(self, task_type: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self.request(
            "revert_sop", path_params={"task_type": task_type}, headers=_keyed(idempotency_key)
        )

    # --- portals and credentials -------------------------------------------------------------

    def list_portals(self) -> list[dict[str, Any]]:
        return self.request("list_portals")["data"]

    def put_portal(
        self, name: str, base_url: str, *, allowed_origins: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Set a portal's address, and the other origins its pages need (a sign-in host, a
        CDN): the agent's browser reaches those and nothing else. The call sets both, so
        origins left out are dropped."""
        body = {"base_url": base_url, "allowed_origins": list(allowed_origins)}
        return self.request("put_portal", path_params={"name": name}, json=body)

    def delete_portal(self, name: str, *, idempotency_key: str | None = None) -> None:
        self.request("delete_portal", path_params={"name": name}, headers=_keyed(idempotency_key))

    def get_profile(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The portal's profile in force (docs/portals.md) and your version history; with
        ``version``, that stored version's text (a task's ``profile`` names one)."""
        if version is None:
            return self.request("read_profile", path_params={"name": name})
        params = {"name": name, "version": version}
        return self.request("read_profile_version", path_params=params)

    def list_profile_versions(
        self, portal: str, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every stored version of the portal's profile, newest first: ``get_profile`` shows
        only the newest 100."""
        return self._each("list_profile_versions", {"limit": page_size}, {"name": portal})

    def put_profile(self, name: str, text: str) -> dict[str, Any]:
        """Store a new profile version (a 422 ValidationError lists each problem with its line)."""
        return self.request("put_profile", path_params={"name": name}, json={"profile": text})

    def validate_profile(self, text: str) -> dict[str, Any]:
        return self.request("validate_profile", json={"profile": text})

    def revert_profile(self, name: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self.request(
            "revert_profile", path_params={"name": name}, headers=_keyed(idempotency_key)
        )

    def list_credentials(self) -> list[dict[str, Any]]:
        return self.request("list_portal_credentials")["data"]

    def set_credentials(
        self, portal: str, username: str, password: str, totp_secret: str | None = None
    ) -> dict[str, Any]:
        body = {"username": username, "password": password, "totp_secret": totp_secret}
        return self.request("put_portal_credentials", path_params={"portal": portal}, json=body)

    def delete_credentials(self, portal: str, *, idempotency_key: str | None = None) -> None:
        self.request(
            "delete_portal_credentials", path_params={"portal": portal},
            headers=_keyed(idempotency_key),
        )  # fmt: skip

    # --- webhooks ----------------------------------------------------------------------------

    def get_webhook_endpoint(self) -> dict[str, Any]:
        return self.request("get_endpoint")

    def update_webhook_endpoint(
        self,
        *,
        url: str | None = None,
        enabled: bool | None = None,
        filter_types: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Set the endpoint. An account without one gets it made, and its ``secret`` in this
        answer only: sent again after a lost answer, the call's Idempotency-Key shows it."""
        body = _given(url=url, enabled=enabled, filter_types=filter_types)
        return self.request("put_endpoint", json=body, headers=_keyed(idempotency_key))

    def test_webhook_endpoint(self, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue a ``ping`` message to the endpoint."""
        return self.request("test_endpoint", headers=_keyed(idempotency_key))

    def rotate_webhook_secret(self, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """A new signing secret; the old one stays valid for the overlap. Sent again after a
        lost answer, it answers the same secret under its key: one rotation."""
        return self.request("rotate_secret", headers=_keyed(idempotency_key))

    def list_webhook_messages(
        self,
        *,
        status: str | None = None,
        task_id: int | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every matching message, newest first, page after page."""
        params: dict[str, Any] = {
            "status": status,
            "task_id": task_id,
            "since": since.isoformat() if isinstance(since, datetime) else since,
            "until": until.isoformat() if isinstance(until, datetime) else until,
            "limit": page_size,
        }
        return self._each("list_messages", params)

    def get_webhook_message(self, ref: str | int) -> dict[str, Any]:
        return self.request("get_message", path_params={"ref": ref})

    def redeliver_webhook_message(
        self, ref: str | int, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self.request("redeliver", path_params={"ref": ref}, headers=_keyed(idempotency_key))

    def recover_webhook_messages(
        self,
        since: datetime | str,
        until: datetime | str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Queue again every failed message created in the window; how many were queued."""
        body = {
            "since": since.isoformat() if isinstance(since, datetime) else since,
            "until": until.isoformat() if isinstance(until, datetime) else until,
        }
        return int(self.request("recover", json=body, headers=_keyed(idempotency_key))["count"])

    # --- audit log ---------------------------------------------------------------------------

    def audit_log(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Who did what and when, newest first, fetching page after page as you iterate."""
        return self._each("list_audit_log", {"limit": page_size})

    # --- health ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.request("healthz")


__all__ = ["FINAL_STATUSES", "OPERATIONS", "Page", "Task", "Understudy", "UnderstudyError"]
