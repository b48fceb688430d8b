"""Every environment variable Understudy reads, converted and defaulted in one place.

No other module reads ``os.environ``. Tests pass overrides as a mapping.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Svix's schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_WEBHOOK_SCHEDULE_S = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


def _str(name: str, raw: str) -> str:
    return raw


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from exc


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from exc
    if not math.isfinite(value):  # "nan" and "inf" read as numbers; no setting means them
        raise SettingsError(f"{name} must be a finite number, not {raw!r}")
    return value


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _keys(name: str, raw: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in raw.split(",") if key.strip())


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _floats(name: str, raw: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(f"{name} must be comma-separated seconds, not {raw!r}") from exc
    if not values or any(v < 0 for v in values):
        raise SettingsError(f"{name} must list at least one non-negative delay")
    return values


@dataclass(frozen=True)
class Settings:
    """The process configuration. Build it with :func:`load_settings`."""

    # Services. None means "run the embedded server under run_dir".
    database_url: str | None = None
    redis_url: str | None = None
    run_dir: Path = Path(".run")
    embedded_redis_port: int = 6390
    # The Sentinel master name when REDIS_URL lists sentinels (sentinel://host:port;...).
    redis_sentinel_master: str = "mymaster"
    # The sentinels' own password, when they require one (the servers' is in REDIS_URL).
    redis_sentinel_password: str | None = dataclasses.field(default=None, repr=False)

    # Database faults. A request waits at most db_pool_timeout_s for a connection, then gets a
    # 503; a worker retries a database write for db_retry_s, then gives its claim up.
    db_connect_timeout_s: float = 3.0
    db_pool_timeout_s: float = 5.0
    db_retry_s: float = 60.0
    # /readyz's bound on each check (Postgres, Redis).
    ready_timeout_s: float = 2.0

    # Secrets. Comma-separated Fernet keys, newest first; empty means a key kept in run_dir.
    encryption_keys: tuple[str, ...] = ()

    # HTTP.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 2
    api_threads: int = 8
    api_request_timeout_s: float = 30.0  # the longest one request may hold a worker thread
    # The longest a request may take to arrive (its headers and body) once its first bytes have:
    # a client trickling its body is answered 408 then, not served a thread until the above.
    api_read_timeout_s: float = 10.0
    # How many proxies (load balancers, ingresses) in front of the API append to X-Forwarded-For
    # and set X-Forwarded-Proto: the client's address (rate limits, the console's sign-in
    # throttle) and scheme are read from them. 0: the peer is the client, those headers ignored.
    trusted_proxies: int = 0
    max_request_bytes: int = 25 * 1024 * 1024
    max_file_bytes: int = 10 * 1024 * 1024
    # Limits on what a tenant sends (README "Limits"): each over-limit is a 413 or 422 naming it.
    max_files: int = 10
    max_json_depth: int = 32
    max_data_bytes: int = 64 * 1024
    max_data_depth: int = 8
    max_batch_tasks: int = 100
    max_idempotency_key_chars: int = 255
    max_url_bytes: int = 4094
    max_header_bytes: int = 8190
    max_headers: int = 100
    max_sop_bytes: int = 256 * 1024
    max_sop_nodes: int = 20_000
    max_sop_depth: int = 32
    max_sop_steps: int = 500
    max_parses_in_flight: int = 2
    max_template_output_bytes: int = 64 * 1024
    # Name lookups (shared.lookup) of the hosts clients name: webhook receivers, portals. How
    # long the API waits for one request's, and how many may be in flight per process (the
    # dispatcher's and the API's): a lookup that outlives its wait keeps its thread until the
    # system resolver gives up.
    lookup_timeout_s: float = 5.0
    lookup_threads: int = 64
    # What a task keeps of its portal's pages (README "Limits"): the rows and the characters of
    # one extracted value, and its whole result as JSON. Over them, the task keeps the first
    # rows or characters (the result: its smaller values) and ends completed_with_issues.
    max_extract_rows: int = 1000
    max_extract_chars: int = 200_000
    max_result_bytes: int = 1024 * 1024
    # What one task stores of its trajectory, all its runs together (README "Limits"): its
    # steps, and its screenshots. Past the steps the task stops and fails; past the screenshots
    # it goes on, storing none, and ends completed_with_issues at best.
    max_task_steps: int = 2000
    max_task_screenshots: int = 200
    # What one account may keep (shared.quotas): task types of its own, portals, console users,
    # the stored versions of each type's SOP and of each portal's profile (shared.versions),
    # and the bytes of the files its kept tasks hold (until retention deletes them with their
    # tasks): a thousand files of MAX_FILE_BYTES, or 90 days of a clinic that sends 500 tasks a
    # day, each with 200 kB of letters and scans (9 GB).
    max_custom_types: int = 100
    max_portals: int = 100
    max_users: int = 1000
    max_sop_versions: int = 100
    max_stored_file_bytes: int = 10 * 1024**3
    # Tasks of one account not ended yet, in any status (README "Limits"): one more is refused
    # until some end, so that no client fills the queue for every other account.
    max_queued_tasks: int = 10_000
    template_timeout_s: float = 2.0
    # Per account, across every endpoint; the syntax of the `limits` library, ';' between limits.
    rate_limit: str = "100/second;3000/minute"
    page_size_default: int = 50
    page_size_max: int = 200

    # Sandbox portal.
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 8100
    sandbox_url: str = "http://127.0.0.1:8100"
    # Whether accounts may register portals on private addresses (the agent would browse them
    # and screenshot what it saw). The sandbox portal is the operator's own and always allowed.
    portal_allow_private: bool = False

    # Agent worker.
    chromium_path: str = "/usr/bin/chromium"
    chromedriver_path: str = "/usr/bin/chromedriver"
    selenium_remote_url: str | None = None
    headless: bool = True
    browser_max_tasks: int = 50
    # How long a page may take to load, and how much longer than that one WebDriver command may
    # take before the browser counts as hung and is stopped (worker.browser.new_driver).
    browser_page_load_timeout_s: float = 30.0
    browser_command_slack_s: float = 30.0
    # Keep a fresh browser started ahead for the next account's task (worker.browser.BrowserPool);
    # unset: on, except on a Selenium Grid, where a spare would hold a node's slot.
    browser_spare: bool = True
    screenshots: str = "failures"  # "failures" or "every_step"
    task_lease_s: float = 60.0
    task_heartbeat_s: float = 10.0
    task_time_limit_s: float = 600.0
    task_max_attempts: int = 3
    portal_retry_attempts: int = 3
    portal_retry_base_s: float = 2.0
    # A portal failing before the task's steps: how long a task waits for it to come back (0:
    # it fails at once, after the retries above), and when the first probe goes (shared.outages).
    portal_outage_wait_s: float = 4 * 3600.0
    portal_probe_after_s: float = 30.0
    input_timeout_s: float = 900.0
    worker_concurrency: int = 2
    # Private per-task and per-browser folders (task files, downloads, Chromium profiles).
    workspace_dir: Path = Path(tempfile.gettempdir()) / "understudy-work"
    # The browser's egress proxy: the address it listens on, and the host the browser is told
    # to use (a Selenium Grid node must reach it there). Empty means the listening address.
    egress_proxy_bind_host: str = "127.0.0.1"
    egress_proxy_host: str | None = None

    # Scheduler.
    scheduler_interval_s: float = 1.0
    pending_requeue_after_s: float = 30.0
    # How often the scheduler deletes what accounts no longer keep (shared.retention).
    retention_interval_s: float = 600.0
    # How long a purge statement waits for a row lock that live work holds before giving up
    # (the pass ends, logged, and the next one tries again).
    retention_lock_timeout_s: float = 5.0

    # Webhooks.
    webhook_schedule_s: tuple[float, ...] = DEFAULT_WEBHOOK_SCHEDULE_S
    webhook_jitter: float = 0.2
    webhook_timeout_s: float = 15.0
    webhook_retry_after_cap_s: float = 3600.0
    webhook_allow_private: bool = False
    webhook_secret_overlap_s: float = 24 * 3600.0
    webhook_disable_after_s: float = 5 * 24 * 3600.0
    webhook_endpoint_concurrency: int = 4
    webhook_breaker_failures: int = 5
    webhook_breaker_cooldown_s: float = 60.0
    dispatcher_concurrency: int = 16

    # Operator console (/console).
    console_session_ttl_s: float = 12 * 3600.0  # a sign-in lasts this long
    console_invite_ttl_s: float = 7 * 24 * 3600.0  # an invite link is good for this long
    # Mark the session cookie Secure (sent over https only). Set it when the console is behind
    # https; a request that arrives over https gets a Secure cookie either way.
    console_secure_cookie: bool = False
    # Sign-in attempts, per client address and per email; the syntax of RATE_LIMIT.
    console_login_rate_limit: str = "10/minute;50/hour"

    log_level: str = "INFO"
    # "json" (one object per line, the default) or "text"; `understudy run` picks text.
    log_format: str = "json"

    # Metrics. The folder every process of one host writes its metric files to (prometheus-client
    # multiprocess mode; the library reads the same variable); None keeps them in memory.
    prometheus_multiproc_dir: Path | None = None
    # A bearer token /metrics requires; None serves it to anyone who can reach the API.
    metrics_token: str | None = None
    # A port the agent worker and the dispatcher serve their own /metrics on, for hosts whose
    # API does not share their metrics folder (a pod per process); None serves none.
    metrics_port: int | None = None
    # The bound on each source /metrics reads when scraped (Redis queue lengths, Postgres).
    metrics_source_timeout_s: float = 1.0

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# Environment variable -> (field, converter).
_ENV: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "DATABASE_URL": ("database_url", _str),
    "REDIS_URL": ("redis_url", _str),
    "UNDERSTUDY_RUN_DIR": ("run_dir", _path),
    "EMBEDDED_REDIS_PORT": ("embedded_redis_port", _int),
    "REDIS_SENTINEL_MASTER": ("redis_sentinel_master", _str),
    "REDIS_SENTINEL_PASSWORD": ("redis_sentinel_password", _str),
    "DB_CONNECT_TIMEOUT_S": ("db_connect_timeout_s", _float),
    "DB_POOL_TIMEOUT_S": ("db_pool_timeout_s", _float),
    "DB_RETRY_S": ("db_retry_s", _float),
    "READY_TIMEOUT_S": ("ready_timeout_s", _float),
    "ENCRYPTION_KEYS": ("encryption_keys", _keys),
    "API_HOST": ("api_host", _str),
    "PORT": ("api_port", _int),
    "API_WORKERS": ("api_workers", _int),
    "API_THREADS": ("api_threads", _int),
    "TRUSTED_PROXIES": ("trusted_proxies", _int),
    "API_REQUEST_TIMEOUT_S": ("api_request_timeout_s", _float),
    "API_READ_TIMEOUT_S": ("api_read_timeout_s", _float),
    "MAX_REQUEST_BYTES": ("max_request_bytes", _int),
    "MAX_FILE_BYTES": ("max_file_bytes", _int),
    "MAX_FILES": ("max_files", _int),
    "MAX_JSON_DEPTH": ("max_json_depth", _int),
    "MAX_DATA_BYTES": ("max_data_bytes", _int),
    "MAX_DATA_DEPTH": ("max_data_depth", _int),
    "MAX_BATCH_TASKS": ("max_batch_tasks", _int),
    "MAX_IDEMPOTENCY_KEY_CHARS": ("max_idempotency_key_chars", _int),
    "MAX_URL_BYTES": ("max_url_bytes", _int),
    "MAX_HEADER_BYTES": ("max_header_bytes", _int),
    "MAX_HEADERS": ("max_headers", _int),
    "MAX_SOP_BYTES": ("max_sop_bytes", _int),
    "MAX_PARSES_IN_FLIGHT": ("max_parses_in_flight", _int),
    "MAX_SOP_NODES": ("max_sop_nodes", _int),
    "MAX_SOP_DEPTH": ("max_sop_depth", _int),
    "MAX_SOP_STEPS": ("max_sop_steps", _int),
    "MAX_TEMPLATE_OUTPUT_BYTES": ("max_template_output_bytes", _int),
    "LOOKUP_TIMEOUT_S": ("lookup_timeout_s", _float),
    "LOOKUP_THREADS": ("lookup_threads", _int),
    "MAX_EXTRACT_ROWS": ("max_extract_rows", _int),
    "MAX_EXTRACT_CHARS": ("max_extract_chars", _int),
    "MAX_RESULT_BYTES": ("max_result_bytes", _int),
    "MAX_TASK_STEPS": ("max_task_steps", _int),
    "MAX_TASK_SCREENSHOTS": ("max_task_screenshots", _int),
    "MAX_CUSTOM_TYPES": ("max_custom_types", _int),
    "MAX_PORTALS": ("max_portals", _int),
    "MAX_USERS": ("max_users", _int),
    "MAX_SOP_VERSIONS": ("max_sop_versions", _int),
    "MAX_STORED_FILE_BYTES": ("max_stored_file_bytes", _int),
    "MAX_QUEUED_TASKS": ("max_queued_tasks", _int),
    "TEMPLATE_TIMEOUT_S": ("template_timeout_s", _float),
    "RATE_LIMIT": ("rate_limit", _str),
    "SANDBOX_HOST": ("sandbox_host", _str),
    "SANDBOX_PORT": ("sandbox_port", _int),
    "SANDBOX_URL": ("sandbox_url", _str),
    "PORTAL_ALLOW_PRIVATE": ("portal_allow_private", _bool),
    "CHROMIUM_PATH": ("chromium_path", _str),
    "CHROMEDRIVER_PATH": ("chromedriver_path", _str),
    "SELENIUM_REMOTE_URL": ("selenium_remote_url", _str),
    "HEADLESS": ("headless", _bool),
    "BROWSER_MAX_TASKS": ("browser_max_tasks", _int),
    "BROWSER_SPARE": ("browser_spare", _bool),
    "BROWSER_PAGE_LOAD_TIMEOUT_S": ("browser_page_load_timeout_s", _float),
    "BROWSER_COMMAND_SLACK_S": ("browser_command_slack_s", _float),
    "SCREENSHOTS": ("screenshots", _str),
    "TASK_LEASE_S": ("task_lease_s", _float),
    "TASK_HEARTBEAT_S": ("task_heartbeat_s", _float),
    "TASK_TIME_LIMIT_S": ("task_time_limit_s", _float),
    "TASK_MAX_ATTEMPTS": ("task_max_attempts", _int),
    "PORTAL_RETRY_ATTEMPTS": ("portal_retry_attempts", _int),
    "PORTAL_RETRY_BASE_S": ("portal_retry_base_s", _float),
    "PORTAL_OUTAGE_WAIT_S": ("portal_outage_wait_s", _float),
    "PORTAL_PROBE_AFTER_S": ("portal_probe_after_s", _float),
    "INPUT_TIMEOUT_S": ("input_timeout_s", _float),
    "WORKER_CONCURRENCY": ("worker_concurrency", _int),
    "WORKSPACE_DIR": ("workspace_dir", _path),
    "EGRESS_PROXY_BIND_HOST": ("egress_proxy_bind_host", _str),
    "EGRESS_PROXY_HOST": ("egress_proxy_host", _str),
    "SCHEDULER_INTERVAL_S": ("scheduler_interval_s", _float),
    "PENDING_REQUEUE_AFTER_S": ("pending_requeue_after_s", _float),
    "RETENTION_INTERVAL_S": ("retention_interval_s", _float),
    "RETENTION_LOCK_TIMEOUT_S": ("retention_lock_timeout_s", _float),
    "WEBHOOK_SCHEDULE_S": ("webhook_schedule_s", _floats),
    "WEBHOOK_JITTER": ("webhook_jitter", _float),
    "WEBHOOK_TIMEOUT_S": ("webhook_timeout_s", _float),
    "WEBHOOK_RETRY_AFTER_CAP_S": ("webhook_retry_after_cap_s", _float),
    "WEBHOOK_ALLOW_PRIVATE": ("webhook_allow_private", _bool),
    "WEBHOOK_SECRET_OVERLAP_S": ("webhook_secret_overlap_s", _float),
    "WEBHOOK_DISABLE_AFTER_S": ("webhook_disable_after_s", _float),
    "WEBHOOK_ENDPOINT_CONCURRENCY": ("webhook_endpoint_concurrency", _int),
    "WEBHOOK_BREAKER_FAILURES": ("webhook_breaker_failures", _int),
    "WEBHOOK_BREAKER_COOLDOWN_S": ("webhook_breaker_cooldown_s", _float),
    "DISPATCHER_CONCURRENCY": ("dispatcher_concurrency", _int),
    "CONSOLE_SESSION_TTL_S": ("console_session_ttl_s", _float),
    "CONSOLE_INVITE_TTL_S": ("console_invite_ttl_s", _float),
    "CONSOLE_SECURE_COOKIE": ("console_secure_cookie", _bool),
    "CONSOLE_LOGIN_RATE_LIMIT": ("console_login_rate_limit", _str),
    "LOG_LEVEL": ("log_level", _str),
    "LOG_FORMAT": ("log_format", _str),
    "PROMETHEUS_MULTIPROC_DIR": ("prometheus_multiproc_dir", _path),
    "METRICS_TOKEN": ("metrics_token", _str),
    "METRICS_PORT": ("metrics_port", _int),
    "METRICS_SOURCE_TIMEOUT_S": ("metrics_source_timeout_s", _float),
}


# An empty DATABASE_URL or REDIS_URL means "use the embedded server", as if it were unset.
_BLANK_MEANS_UNSET = {
    "database_url",
    "redis_url",
    "redis_sentinel_password",
    "selenium_remote_url",
    "egress_proxy_host",
    "prometheus_multiproc_dir",
    "metrics_token",
    "metrics_port",
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read settings from ``environ`` (default: the process environment), then apply overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name, (field, converter) in _ENV.items():
        raw = env.get(name)
        if raw is None or (raw == "" and field in _BLANK_MEANS_UNSET):
            continue
        values[field] = converter(name, raw)
    for private in ("webhook_allow_private", "portal_allow_private"):
        if private not in values:
            # Local receivers and portals are the point of the embedded development stack;
            # anywhere with a real DATABASE_URL, private addresses must be allowed explicitly.
            values[private] = "database_url" not in values
    if "browser_spare" not in values:
        values["browser_spare"] = "selenium_remote_url" not in values
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.screenshots not in {"failures", "every_step"}:
        raise SettingsError("SCREENSHOTS must be 'failures' or 'every_step'")
    if settings.log_format not in {"json", "text"}:
        raise SettingsError("LOG_FORMAT must be 'json' or 'text'")
    for names, low, high, what in _RANGES:
        for name in names:
            value = getattr(settings, _ENV[name][0])
            if value is not None and not low <= value <= high:
                raise SettingsError(f"{name} must be {what}, not {value!r}")
    if not settings.task_heartbeat_s < settings.task_lease_s:
        raise SettingsError(
            "TASK_HEARTBEAT_S must be shorter than TASK_LEASE_S: a lease renewed less often than"
            " it lasts expires under a live worker"
        )
    if settings.log_level.upper() not in _LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}")
    from cryptography.fernet import Fernet

    for key in settings.encryption_keys:
        try:
            Fernet(key)
        except ValueError as exc:
            raise SettingsError(
                "ENCRYPTION_KEYS must list Fernet keys (32 url-safe base64-encoded bytes each,"
                " deploy/README.md shows how to make one); one of them is not"
            ) from exc
    _check_rate_limit(settings.rate_limit)
    _check_rate_limit(settings.console_login_rate_limit, "CONSOLE_LOGIN_RATE_LIMIT")
    return settings


_SECONDS = 10**9  # a bound no duration reaches: "more than 0" is the check that matters
# What each numeric setting may be, checked at start so that a typo fails there, naming it,
# rather than busy-looping (an interval of 0) or failing on the first request.
_RANGES: tuple[tuple[tuple[str, ...], float, float, str], ...] = (
    (("PORT", "SANDBOX_PORT", "EMBEDDED_REDIS_PORT", "METRICS_PORT"), 1, 65535,
     "a port, 1 to 65535"),
    (("API_WORKERS", "API_THREADS", "WORKER_CONCURRENCY", "DISPATCHER_CONCURRENCY",
      "WEBHOOK_ENDPOINT_CONCURRENCY", "WEBHOOK_BREAKER_FAILURES", "TASK_MAX_ATTEMPTS",
      "BROWSER_MAX_TASKS", "LOOKUP_THREADS", "MAX_REQUEST_BYTES", "MAX_FILE_BYTES",
      "MAX_JSON_DEPTH", "MAX_DATA_BYTES", "MAX_DATA_DEPTH", "MAX_IDEMPOTENCY_KEY_CHARS",
      "MAX_URL_BYTES", "MAX_HEADER_BYTES", "MAX_HEADERS", "MAX_SOP_BYTES", "MAX_SOP_NODES",
      "MAX_SOP_DEPTH", "MAX_SOP_STEPS", "MAX_TEMPLATE_OUTPUT_BYTES", "MAX_CUSTOM_TYPES",
      "MAX_PORTALS", "MAX_USERS", "MAX_QUEUED_TASKS", "MAX_EXTRACT_ROWS", "MAX_EXTRACT_CHARS",
      "MAX_RESULT_BYTES", "MAX_PARSES_IN_FLIGHT", "MAX_TASK_STEPS", "MAX_TASK_SCREENSHOTS",
      "MAX_STORED_FILE_BYTES"),
     1, 10**12, "a whole number >= 1"),
    (("MAX_BATCH_TASKS",), 1, 1000, "a number of tasks from 1 to 1000"),
    # A new version succeeds the active one, which is kept: one alone would refuse every save.
    (("MAX_SOP_VERSIONS",), 2, 10**12, "a whole number >= 2"),
    (("MAX_FILES", "PORTAL_RETRY_ATTEMPTS"), 0, 10**6, "a whole number >= 0"),
    (("TRUSTED_PROXIES",), 0, 10, "a number of proxies from 0 to 10"),
    (("DB_CONNECT_TIMEOUT_S", "DB_POOL_TIMEOUT_S", "READY_TIMEOUT_S", "API_REQUEST_TIMEOUT_S",
      "API_READ_TIMEOUT_S", "TEMPLATE_TIMEOUT_S", "LOOKUP_TIMEOUT_S", "BROWSER_PAGE_LOAD_TIMEOUT_S",
      "BROWSER_COMMAND_SLACK_S", "TASK_LEASE_S", "TASK_HEARTBEAT_S", "TASK_TIME_LIMIT_S",
      "PORTAL_RETRY_BASE_S", "PORTAL_PROBE_AFTER_S", "INPUT_TIMEOUT_S", "SCHEDULER_INTERVAL_S",
      "PENDING_REQUEUE_AFTER_S", "RETENTION_INTERVAL_S", "RETENTION_LOCK_TIMEOUT_S",
      "WEBHOOK_TIMEOUT_S", "WEBHOOK_BREAKER_COOLDOWN_S", "WEBHOOK_DISABLE_AFTER_S",
      "CONSOLE_SESSION_TTL_S", "CONSOLE_INVITE_TTL_S", "METRICS_SOURCE_TIMEOUT_S"), 1e-3, _SECONDS,
     "seconds > 0"),
    (("DB_RETRY_S", "WEBHOOK_RETRY_AFTER_CAP_S", "WEBHOOK_SECRET_OVERLAP_S"), 0, _SECONDS,
     "seconds >= 0"),
    (("PORTAL_OUTAGE_WAIT_S",), 0, _SECONDS, "seconds >= 0 (0: never wait)"),
    (("WEBHOOK_JITTER",), 0, 1, "a fraction from 0 to 1"),
)  # fmt: skip
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _check_rate_limit(value: str, name: str = "RATE_LIMIT") -> None:
    # Refuse a typo at start rather than on the first request.
    from limits import parse_many

    if value.strip().lower() in ("", "off"):
        return
    try:
        parse_many(value)
    except ValueError as exc:
        raise SettingsError(
            f"{name} must read like '100/second;3000/minute' (or 'off'), not {value!r}"
        ) from exc
