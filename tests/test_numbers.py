"""
Phone numbers through libphonenumber: formats, regions, reasons, strictness, and where they apply.

Numbers come from the library's own example numbers, so a metadata update cannot make the tests
test numbers that stopped existing. The hooks must refuse before any request: the simulator counts
requests. The library must not be imported when a DAG file imports the provider's classes.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import phonenumbers
import pytest
import requests
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from airflow_provider_octopods._http import api_settings
from airflow_provider_octopods._outgoing import SendRules, send_rules
from airflow_provider_octopods.utils.phone import normalize_phone, parse_region, parse_strict
from airflow_provider_octopods.exceptions import OctopodsInputError
from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook, OctopodsHook
from airflow_provider_octopods.models import validate_phone
from airflow_provider_octopods.testing.simulator import (
    DELIVERED_NUMBER,
    FAILURE_REASONS,
    MAGIC_NUMBERS,
    check_destination,
)

SEND = "/api/v1/sms/messages"
#: Regions of every continent, with national formats that differ (trunk prefix 0, none, 8 ...).
REGIONS = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "AU", "NG", "ZA", "MX", "ES", "CN", "SG"]


def _example(region: str) -> phonenumbers.PhoneNumber:
    number = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    assert number is not None, region
    return number


@pytest.mark.parametrize("region", REGIONS)
def test_example_numbers_in_every_format_normalise_to_e164(region):
    number = _example(region)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)

    assert normalize_phone(e164) == e164
    assert normalize_phone(international) == e164
    assert normalize_phone(f"  {international}\n") == e164
    assert normalize_phone(national, default_region=region) == e164
    assert normalize_phone(national, default_region=region.lower()) == e164
    # An international number is read as such whatever the default region.
    assert normalize_phone(international, default_region="US" if region != "US" else "GB") == e164


@pytest.mark.parametrize(
    ("value", "region", "reason"),
    [
        ("+999 1234 5678", None, "has an invalid country code"),
        ("+0123456789", None, "has an invalid country code"),
        ("+1555", None, r"is too short for \+1 \(US\)"),
        ("+33 6 12 34 56", None, r"is too short for \+33 \(FR\)"),
        ("123", "US", "is too short"),
        ("+1 201 555 0123 4", None, r"is too long for \+1 \(US\)"),
        ("+4474001234567", None, r"is too long for \+44 \(GB\)"),
        (
            "+1 555 123 4567",
            None,
            r"is not a valid number for US: .*\(a valid one looks like \+1 201-555-0123\)",
        ),
        ("+44 7400 12345", None, "is not a valid number for GB"),
        ("+12345678", None, "is a local number only; add the area code"),
        ("020 7946 0958", None, "has no country code; .* or set default_region"),
        ("1", None, "is not a phone number"),
        ("+1 201 555 0123?x=1", None, "holds characters a phone number does not"),
        ("+12015550123\r\nX-Evil: 1", None, "holds characters a phone number does not"),
        (
            "+\uff11\uff12\uff10\uff11\uff15\uff15\uff15\uff10\uff11\uff12\uff13",
            None,
            "holds characters a phone number does not",
        ),
        ("", None, "pass the recipient's phone number"),
        (None, None, "pass the recipient's phone number"),
        (12015550123, None, "pass the recipient's phone number"),
    ],
)
def test_invalid_numbers_fail_with_the_reason_in_plain_words(value, region, reason):
    with pytest.raises(OctopodsInputError, match=rf"^Invalid destination_phone: .*{reason}") as err:
        validate_phone(value, default_region=region)
    assert err.value.field == "destination_phone"


def test_possible_but_not_valid_numbers_pass_with_a_warning_when_not_strict(caplog, capfd):
    with caplog.at_level(logging.WARNING, logger="airflow_provider_octopods.utils.phone"):
        assert normalize_phone("+1 (555) 123-4567", strict=False) == "+15551234567"
    # Airflow 2's logging setup may print the record through its own handler instead of caplog's.
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "is not a valid number for US" in logged
    assert "sending to +15551234567 anyway (strict_numbers is off)" in logged


@pytest.mark.parametrize("strict", [True, False])
def test_impossible_numbers_fail_even_when_not_strict(strict):
    with pytest.raises(OctopodsInputError, match="too short"):
        normalize_phone("+1555", strict=strict)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("XX", "is not a region libphonenumber knows"),
        ("GBR", "is not a region code"),
        (44, "is not a region code"),
    ],
)
def test_bad_default_region_names_the_setting(value, problem):
    with pytest.raises(OctopodsInputError, match=rf"^Invalid default_region: .*{problem}"):
        normalize_phone("+12015550123", default_region=value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(None, True), (True, True), ("", True), ("true", True), (" On ", True), ("1", True)],
        *[(False, False), ("false", False), ("FALSE", False), ("off", False), ("no", False), ("0", False)],
    ],
)
def test_strict_numbers_is_off_only_when_explicitly_off(value, expected):
    assert parse_strict(value) is expected


def test_an_unreadable_strict_numbers_fails_closed():
    with pytest.raises(OctopodsInputError, match=r"^Invalid strict_numbers: 'maybe' is not a boolean"):
        parse_strict("maybe")
    assert parse_region(" gb ") == "GB"
    assert parse_region("") is None


class _Conn:
    conn_id = "sms"
    host = None
    port = None

    def __init__(self, **extra: object) -> None:
        self.extra = json.dumps(extra)
        self.extra_dejson = extra


def _rules(conn: _Conn, *args: object) -> SendRules:
    """The rules of a send with ``args``, on the connection's settings as the hooks read them."""
    return send_rules(api_settings(conn), *args)  # type: ignore[arg-type]


def test_rules_come_from_the_arguments_then_the_connection_then_the_defaults():
    conn = _Conn(default_region="gb", strict_numbers="false")
    assert _rules(conn) == SendRules("GB", False, None)
    assert _rules(conn, "de", True, 2) == SendRules("DE", True, 2)
    assert _rules(_Conn()) == SendRules(None, True, None)
    with pytest.raises(
        OctopodsInputError, match=r"^Invalid extra 'strict_numbers' of connection 'sms': 'yes please'"
    ):
        _rules(_Conn(strict_numbers="yes please"))
    with pytest.raises(OctopodsInputError, match=r"^Invalid extra 'default_region' of connection 'sms'"):
        _rules(_Conn(default_region="Britain"))
    with pytest.raises(OctopodsInputError, match=r"^Invalid max_segments"):
        _rules(_Conn(), "US", True, 0)
    with pytest.raises(OctopodsInputError, match=r"^Invalid default_region"):
        _rules(_Conn(), "Britain")


# -- the hooks: one table, both clients -----------------------------------------------------------


def _use_extra(monkeypatch: pytest.MonkeyPatch, simulator, **extra: object) -> None:
    conn = {**simulator.connection_extra(), "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(conn))


def send(client: str, phone, body="hello", **kwargs):
    if client == "sync":
        hook = OctopodsHook()
        try:
            return hook.send_sms(phone, body, **kwargs)
        finally:
            hook.close()

    async def go():
        async with OctopodsAsyncHook() as hook:
            return await hook.send_sms(phone, body, **kwargs)

    import asyncio

    return asyncio.run(go())


CLIENTS = ["sync", "async"]
REFUSED = [
    ("+1 555 123 4567", {}, "not a valid number for US"),
    ("(201) 555-0123", {}, "has no country code"),
    ("+1555", {"strict_numbers": False}, "too short"),
    ("+12015550123", {"default_region": "ZZZ"}, "Invalid default_region"),
    ("+12015550123", {"max_segments": 1, "body": "x" * 161}, "takes 2 segments in GSM-7"),
    ("+12015550123", {"max_segments": 1, "body": "🚨" + "x" * 69}, "takes 2 segments in UCS-2"),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("phone", "kwargs", "problem"), REFUSED)
def test_hooks_refuse_before_any_request(client, phone, kwargs, problem, octopods_conn):
    kwargs = dict(kwargs)
    body = kwargs.pop("body", "hello")
    with pytest.raises(OctopodsInputError, match=problem):
        send(client, phone, body, **kwargs)
    assert octopods_conn.request_count() == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_hooks_send_the_e164_number_and_report_encoding_and_segments(client, octopods_conn):
    sent = send(client, "+1 (201) 555-0123", "Cost: 5€ {ok} " + "x" * 150, max_segments=2)

    assert (sent.destination_phone, sent.encoding, sent.segments) == ("+12015550123", "GSM-7", 2)
    assert octopods_conn.messages[sent.message_id].phone_number == "+12015550123"
    assert sent.to_dict()["segments"] == 2


@pytest.mark.parametrize("client", CLIENTS)
def test_hooks_take_default_region_and_strictness_from_the_connection(client, octopods_conn, monkeypatch):
    _use_extra(monkeypatch, octopods_conn, default_region="gb", strict_numbers="false")

    sent = send(client, "07400 123456")
    fictional = send(client, "+1 555 123 4567")
    overridden = send(client, "(201) 555-0123", default_region="US")

    assert sent.destination_phone == "+447400123456"
    assert fictional.destination_phone == "+15551234567"
    assert overridden.destination_phone == "+12015550123"
    with pytest.raises(OctopodsInputError, match="not a valid number for US"):
        send(client, "+1 555 123 4567", strict_numbers=True)
    assert octopods_conn.request_count(SEND) == 3


# -- the simulator applies the rules it documents ------------------------------------------------


def _post(simulator, phone) -> requests.Response:
    return requests.post(
        simulator.url + SEND,
        json={"destination_phone": phone, "body": "hi"},
        headers={"X-Octopods-Auth": simulator.api_key},
        timeout=10,
    )


@pytest.mark.parametrize("phone", ["+1555", "12015550123", "+1 201 555 0123", "+99912345678", 12015550123])
def test_simulator_refuses_numbers_not_e164_or_impossible_with_error_code_3(phone, simulator):
    answer = _post(simulator, phone)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == 3


def test_simulator_fails_possible_but_not_valid_numbers_as_a_carrier_would(simulator):
    answer = _post(simulator, "+15551234567")
    assert answer.status_code == 201
    message = simulator.messages[answer.json()["message_id"]]
    assert message.timeline[-1][1].failure_reason == FAILURE_REASONS["invalid_number"]


def test_the_simulators_magic_numbers_are_valid_numbers():
    assert check_destination(DELIVERED_NUMBER) is None
    assert not any(DELIVERED_NUMBER.endswith(suffix) for suffix in MAGIC_NUMBERS)
    for suffix in MAGIC_NUMBERS:
        assert check_destination("+1201555" + suffix) is None, suffix


# -- DAG parsing does not pay for the library ----------------------------------------------------


def test_importing_the_provider_classes_does_not_import_phonenumbers():
    # What Airflow itself imports is the baseline: on Airflow 3.1, sqlalchemy_utils (loaded by
    # Airflow's models) imports phonenumbers when it is installed. Only what ours adds counts.
    program = (
        "import sys\n"
        "import airflow.providers.common.compat.sdk, airflow.providers.http.hooks.http, airflow.triggers.base\n"
        "import airflow.models\n"
        "before = {m for m in sys.modules if m.split('.')[0] == 'phonenumbers'}\n"
        "import airflow_provider_octopods.operators.octopods\n"
        "import airflow_provider_octopods.sensors.octopods\n"
        "import airflow_provider_octopods.notifications.octopods\n"
        "import airflow_provider_octopods.hooks.octopods\n"
        "import airflow_provider_octopods.models\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'phonenumbers' and m not in before))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
