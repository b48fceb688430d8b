"""Settings are checked where a process starts: a value that cannot work fails there, naming
its variable, rather than busy-looping, never getting ready, or failing on the first request."""

from __future__ import annotations

import pytest

from shared.settings import SettingsError, load_settings


def test_the_defaults_pass_their_own_checks():
    settings = load_settings({})
    assert settings.task_heartbeat_s < settings.task_lease_s


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("TASK_LEASE_S", "0", "seconds > 0"),
        ("TASK_LEASE_S", "-5", "seconds > 0"),
        ("TASK_LEASE_S", "nan", "finite"),
        ("SCHEDULER_INTERVAL_S", "0", "seconds > 0"),
        ("READY_TIMEOUT_S", "nan", "finite"),
        ("READY_TIMEOUT_S", "-1", "seconds > 0"),
        ("DB_POOL_TIMEOUT_S", "-1", "seconds > 0"),
        ("DB_RETRY_S", "inf", "finite"),
        ("API_WORKERS", "0", ">= 1"),
        ("TASK_MAX_ATTEMPTS", "0", ">= 1"),
        ("MAX_REQUEST_BYTES", "-1", ">= 1"),
        ("MAX_FILES", "-1", ">= 0"),
        ("MAX_SOP_VERSIONS", "1", ">= 2"),
        ("WEBHOOK_JITTER", "5", "from 0 to 1"),
        ("PORT", "99999", "a port"),
        ("METRICS_PORT", "0", "a port"),
        ("TASK_HEARTBEAT_S", "120", "shorter than TASK_LEASE_S"),
        ("LOG_LEVEL", "VERBOSE", "one of DEBUG"),
        ("ENCRYPTION_KEYS", "notakey", "Fernet keys"),
    ],
)
def test_a_value_that_cannot_work_fails_at_start_naming_its_variable(name, value, says):
    with pytest.raises(SettingsError, match=name) as refused:
        load_settings({name: value})
    assert says in str(refused.value)
    assert "notakey" not in str(refused.value)  # a key, even a bad one, is never repeated


def test_values_at_the_edges_are_taken():
    edges = {"MAX_FILES": "0", "PORTAL_RETRY_ATTEMPTS": "0", "DB_RETRY_S": "0",
             "WEBHOOK_JITTER": "0", "PORT": "65535", "LOG_LEVEL": "debug",
             "MAX_SOP_VERSIONS": "2"}  # fmt: skip
    settings = load_settings(edges)
    assert (settings.max_files, settings.api_port, settings.db_retry_s) == (0, 65535, 0.0)
    assert settings.max_sop_versions == 2
