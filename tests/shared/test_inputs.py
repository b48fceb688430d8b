"""Task data parsing and the input normalisers SOPs use."""

from __future__ import annotations

import pytest

from shared.inputs import (
    InputError,
    norm_cpt,
    norm_date,
    norm_icd10,
    norm_identifier,
    norm_money,
    norm_name,
    norm_npi,
    norm_service_lines,
    parse_task_data,
    us_date,
)


def test_text_lines_with_mixed_key_styles() -> None:
    # given free text as a person types it
    raw = "Member ID: W100000001\n\n  patient :  Jane Doe  \nDOB: 01/15/1990\nMEMBER-ID: W1\n"

    # when it is parsed
    data = parse_task_data(raw)

    # then keys are snake_case, blank lines and spaces are ignored, the last value wins
    assert data == {"member_id": "W1", "patient": "Jane Doe", "dob": "01/15/1990"}


def test_key_aliases() -> None:
    data = parse_task_data("Date of Birth: 1990-01-15\nNPI: 1234567893\nClaim No: CLM-1")
    assert data == {"dob": "1990-01-15", "provider_npi": "1234567893", "claim_number": "CLM-1"}


def test_lines_without_a_key_continue_the_previous_value() -> None:
    data = parse_task_data("clinical_notes: first line\nsecond line, with more\nmember_id: W1")
    assert data["clinical_notes"] == "first line\nsecond line, with more"
    assert data["member_id"] == "W1"


def test_json_object_values_become_text() -> None:
    data = parse_task_data('{"Member ID": "W1", "units": 2, "urgent": true, "skip": null}')
    assert data == {"member_id": "W1", "units": "2", "urgent": "true"}


def test_mapping_input_is_accepted() -> None:
    assert parse_task_data({"DOB": "1990-01-15"}) == {"dob": "1990-01-15"}
    assert parse_task_data(None) == {}


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]"])
def test_bad_json_is_an_input_error(raw: str) -> None:
    with pytest.raises(InputError):
        parse_task_data(raw)


def test_service_lines_as_json_list() -> None:
    data = parse_task_data(
        '{"service_lines": [{"CPT": "99213", "ICD-10": "J06.9", "charge": 125, '
        '"service_date": "2025-03-20"}]}'
    )
    assert data["service_lines"] == [
        {"cpt": "99213", "icd10": "J06.9", "charge": "125", "service_date": "2025-03-20"}
    ]


def test_service_lines_as_text_lines_keep_thousands_separators() -> None:
    data = parse_task_data(
        "line 1: 99213, J06.9, 125.00, 2025-03-20\nLine 2: 87880, J02.0, $1,200.50, 03/20/2025"
    )
    assert data["service_lines"] == [
        {"cpt": "99213", "icd10": "J06.9", "charge": "125.00", "service_date": "2025-03-20"},
        {"cpt": "87880", "icd10": "J02.0", "charge": "$1,200.50", "service_date": "03/20/2025"},
    ]


def test_service_lines_as_numbered_keys() -> None:
    data = parse_task_data(
        "cpt_1: 99213\nicd10_1: J06.9\ncharge_1: 125\nservice_date_1: 2025-03-20\n"
        "CPT 2: 87880\nICD-10 2: J02.0\nCharge 2: 40\nService Date 2: 2025-03-21"
    )
    assert [line["cpt"] for line in data["service_lines"]] == ["99213", "87880"]
    assert data["service_lines"][1]["icd10"] == "J02.0"
    assert "cpt_1" not in data


@pytest.mark.parametrize(
    "raw",
    [
        "1990-01-15",
        "01/15/1990",
        "1/15/1990",
        "15 Jan 1990",
        "January 15, 1990",
        "19900115",
        "Jan 15th, 1990",
        "01-15-1990",
    ],
)
def test_dates_in_common_formats(raw: str) -> None:
    assert norm_date(raw) == "1990-01-15"


@pytest.mark.parametrize("raw", ["13/45/1990", "yesterday", "1990-02-30", "", "01/01/1800"])
def test_invalid_dates(raw: str) -> None:
    with pytest.raises(InputError):
        norm_date(raw)


@pytest.mark.parametrize("raw", ["Jane Doe", "Doe, Jane", "DOE, JANE", "jane doe", " Jane  Doe "])
def test_names_in_either_order(raw: str) -> None:
    name = norm_name(raw)
    assert (name.first, name.last, str(name)) == ("Jane", "Doe", "Jane Doe")


def test_name_keeps_mixed_case_and_middle_names() -> None:
    name = norm_name("Mary Ann McDonald")
    assert (name.first, name.last) == ("Mary Ann", "McDonald")


@pytest.mark.parametrize("raw", ["Jane", "", "Doe,"])
def test_name_needs_two_parts(raw: str) -> None:
    with pytest.raises(InputError):
        norm_name(raw)


def test_npi_luhn_with_80840_prefix() -> None:
    assert norm_npi("1234567893") == "1234567893"
    assert norm_npi("1234-567-893") == "1234567893"
    with pytest.raises(InputError, match="check digit"):
        norm_npi("1234567890")
    with pytest.raises(InputError, match="10 digits"):
        norm_npi("12345")


def test_codes_ids_and_money() -> None:
    assert norm_cpt(" 99213 ") == "99213"
    assert norm_cpt("j3420") == "J3420"
    assert norm_icd10("j069") == "J06.9"
    assert norm_icd10("G43.909") == "G43.909"
    assert norm_icd10("E11") == "E11"
    assert norm_identifier(" w100000001 ") == "W100000001"
    assert norm_money("$1,200.5") == "1200.50"
    assert norm_money("125") == "125.00"
    bad_values = [
        (norm_cpt, "9921"),
        (norm_icd10, "123"),
        (norm_money, "-5"),
        (norm_money, "ten"),
        (norm_identifier, "W 1 !"),
    ]
    for fn, bad in bad_values:
        with pytest.raises(InputError):
            fn(bad)


def test_service_lines_normalise_each_field_and_report_every_problem() -> None:
    lines = norm_service_lines(
        [{"cpt": "99213", "icd10": "j069", "charge": "$1,250", "service_date": "3/20/2025"}]
    )
    assert lines == [
        {"cpt": "99213", "icd10": "J06.9", "charge": "1250.00", "service_date": "2025-03-20"}
    ]
    with pytest.raises(InputError) as exc:
        norm_service_lines([{"cpt": "1", "charge": "x", "service_date": "2025-03-20"}])
    message = str(exc.value)
    assert "line 1: cpt" in message and "icd10 is required" in message and "charge" in message
    with pytest.raises(InputError):
        norm_service_lines([])


def test_us_date() -> None:
    assert us_date("1990-01-15") == "01/15/1990"
