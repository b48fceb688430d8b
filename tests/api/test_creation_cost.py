"""What a creation does not redo: an SOP version is parsed once per process, not per task."""

from __future__ import annotations

import yaml

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def test_creating_tasks_parses_the_sop_once_not_per_task(client, account, monkeypatch):
    # given YAML documents counted as they are read
    built = []
    compose = yaml.composer.Composer.compose_document

    def counted(self):
        built.append(1)
        return compose(self)

    monkeypatch.setattr(yaml.composer.Composer, "compose_document", counted)
    body = {"type": "check_eligibility", "data": ELIGIBILITY}
    assert client.post("/tasks", json=body, headers=account.headers).status_code == 200
    after_first = len(built)
    # when more tasks of the type are created
    for _ in range(5):
        assert client.post("/tasks", json=body, headers=account.headers).status_code == 200
    # then none of them parsed a YAML document again
    assert len(built) == after_first
