"""Files sent with a task: every file up to MAX_FILE_BYTES is taken, whatever its bytes (a text
letter, a scan), and the text fields keep their own limit (MAX_DATA_BYTES)."""

from __future__ import annotations

import io
import os

import pytest

APPEAL = (
    "claim_number: CLM-DENY-0003\nmember_id: W100000001\nreason: Service was medically necessary"
)


def _send(client, account, files, data: str = APPEAL):
    return client.post(
        "/tasks",
        data={"type": "submit_appeal", "data": data, "files": files},
        content_type="multipart/form-data",
        headers=account.headers,
    )


def _random_without_line_breaks(size: int) -> bytes:
    return os.urandom(size).replace(b"\n", b"x").replace(b"\r", b"y")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"Dear reviewer,\r\n" * 12_500, id="a 200 kB text letter"),
        pytest.param(b"a\n" * 1_000_000, id="2 MB of short lines"),
        # A scan: random bytes, some of them line breaks, as in any binary file.
        pytest.param(os.urandom(1_000_000), id="a 1 MB binary scan"),
        pytest.param(_random_without_line_breaks(3_000_000), id="3 MB without line breaks"),
    ],
)
def test_a_file_within_max_file_bytes_is_taken_whatever_its_bytes(client, account, content):
    response = _send(client, account, [(io.BytesIO(content), "letter.pdf", "application/pdf")])
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    (stored,) = response.get_json()["files"]
    assert stored["size"] == len(content), stored


def test_ten_files_of_a_megabyte_each_are_taken(client, account, runtime):
    files = [
        (io.BytesIO(os.urandom(1_000_000)), f"scan{i}.png", "image/png")
        for i in range(runtime.settings.max_files)
    ]
    response = _send(client, account, files)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert len(response.get_json()["files"]) == runtime.settings.max_files


def test_multipart_data_over_its_limit_is_still_a_413_naming_it(client, account, runtime):
    data = APPEAL + "\nnotes: " + "x\n" * (runtime.settings.max_data_bytes // 2 + 10)
    response = _send(client, account, [], data=data)
    assert response.status_code == 413, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["details"]["limit"] == "MAX_DATA_BYTES"
