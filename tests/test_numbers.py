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

from airflow_provider_octopods.exceptions import OctopodsInputError
from airflow_provider_octopods.hooks.octopods import (
    ApiSettings,
    Call,
    OctopodsAsyncHook,
    OctopodsHook,
    connection_settings,
    send_call,
)
from airflow_provider_octopods.testing.simulator import (
    DELIVERED_NUMBER,
    FAILURE_REASONS,
    MAGIC_NUMBERS,
    check_destination,
)
from airflow_provider_octopods.utils.phone import normalize_phone, parse_region, parse_strict
from airflow_provider_octopods.utils.segments import measure

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
        normalize_phone(value, default_region=region)
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
    password = "sms-test-key"

    def __init__(self, **extra: object) -> None:
        self.extra = json.dumps(extra)
        self.extra_dejson = extra


def _settings(conn: _Conn) -> ApiSettings:
    """The connection's settings, as the hooks read them."""
    return connection_settings(conn)


def _sent_to(call: Call) -> str:
    """The number a send's call would send to (its JSON body is ``call.body``)."""
    assert call.body is not None
    return json.loads(call.body)["destination_phone"]


def _national(region: str) -> str:
    return phonenumbers.format_number(_example(region), PhoneNumberFormat.NATIONAL)


def _e164(region: str) -> str:
    return phonenumbers.format_number(_example(region), PhoneNumberFormat.E164)


FICTIONAL = "+1 555 123 4567"  # possible, not valid: refused only when strict


def test_rules_come_from_the_arguments_then_the_connection_then_the_defaults():
    # The connection's extras: national numbers of GB, and numbers not valid let through.
    settings = _settings(_Conn(default_region="gb", strict_numbers="false"))
    assert (settings.default_region, settings.strict_numbers) == ("GB", False)
    call, _ = send_call(_national("GB"), "hi", settings)
    assert _sent_to(call) == _e164("GB")
    assert _sent_to(send_call(FICTIONAL, "hi", settings)[0]) == "+15551234567"
    send_call("+12015550123", "x" * 1600, settings)  # no max_segments: only the 1,600 limit

    # The arguments win: national numbers of DE, strict, at most 2 segments.
    options = {"default_region": "de", "strict_numbers": True, "max_segments": 2}
    assert _sent_to(send_call(_national("DE"), "hi", settings, **options)[0]) == _e164("DE")
    with pytest.raises(OctopodsInputError, match=r"^Invalid destination_phone: .*not a valid number for US"):
        send_call(FICTIONAL, "hi", settings, **options)
    assert send_call("+12015550123", "x" * 306, settings, **options)[0].body is not None
    with pytest.raises(OctopodsInputError, match=r"^Invalid body: .*3 segments .*more than max_segments=2"):
        send_call("+12015550123", "x" * 307, settings, **options)
    # An argument strict_numbers=False turns off a strict connection too.
    assert _sent_to(send_call(FICTIONAL, "hi", _settings(_Conn()), strict_numbers=False)[0]) == "+15551234567"

    # Neither: international numbers only, strict, no segment limit.
    settings = _settings(_Conn())
    assert (settings.default_region, settings.strict_numbers) == (None, True)
    with pytest.raises(OctopodsInputError, match=r"^Invalid destination_phone: .*has no country code"):
        send_call(_national("GB"), "hi", settings)
    with pytest.raises(OctopodsInputError, match=r"^Invalid destination_phone: .*not a valid number for US"):
        send_call(FICTIONAL, "hi", settings)

    with pytest.raises(
        OctopodsInputError, match=r"^Invalid extra 'strict_numbers' of connection 'sms': 'yes please'"
    ):
        _settings(_Conn(strict_numbers="yes please"))
    with pytest.raises(OctopodsInputError, match=r"^Invalid extra 'default_region' of connection 'sms'"):
        _settings(_Conn(default_region="Britain"))
    with pytest.raises(OctopodsInputError, match=r"^Invalid max_segments"):
        send_call("+12015550123", "hi", settings, default_region="US", strict_numbers=True, max_segments=0)
    with pytest.raises(OctopodsInputError, match=r"^Invalid default_region"):
        send_call("+12015550123", "hi", settings, default_region="Britain")
    with pytest.raises(OctopodsInputError, match=r"^Invalid strict_numbers: 'maybe' is not a boolean"):
        send_call("+12015550123", "hi", settings, strict_numbers="maybe")  # type: ignore[typeddict-item]


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


# -- the cost of one character outside GSM-7 -----------------------------------------------------

#: 97 characters: 1 segment in GSM-7 (160 septets at most), 2 in UCS-2 (70 code units at most).
GSM7_TEXT = (
    "Your nightly report is ready: 42 tables loaded, 0 errors. Open the dashboard for details, please."
)


def _send_logged(body: str, caplog, capfd, client: str = "sync") -> tuple[object, str]:
    """Send ``body`` with a hook's ``send_sms``; return the answer and every line it logged."""
    with caplog.at_level(logging.WARNING):
        sent = send(client, "+12015550123", body)
    # Airflow 3 prints the hook's records to stdout; Airflow 2's reach caplog (tests/conftest.py).
    out, err = capfd.readouterr()
    return sent, caplog.text + out + err


@pytest.mark.parametrize("client", CLIENTS)
def test_one_curly_apostrophe_warns_with_the_character_and_the_segments(client, octopods_conn, caplog, capfd):
    body = GSM7_TEXT.replace("Open", "Don\u2019t wait: open")
    cost_gsm7 = measure(body.replace("\u2019", ""))
    cost = measure(body)
    assert (cost.encoding, cost.segments, cost_gsm7.segments) == ("UCS-2", 2, 1)

    sent, logged = _send_logged(body, caplog, capfd, client)

    assert (sent.encoding, sent.segments) == ("UCS-2", 2)
    position = body.index("\u2019") + 1
    assert (
        f"The SMS text is sent in UCS-2 because of '\u2019' (U+2019) at position {position}: it costs "
        "2 segments instead of 1 in GSM-7." in logged
    )
    assert logged.count("U+2019") == 1  # once per send
    assert octopods_conn.request_count(SEND) == 1  # a warning, not a refusal


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(GSM7_TEXT, id="plain GSM-7"),
        pytest.param(GSM7_TEXT + " \u2018Done\u2019 \u2014 ok", id="several characters outside GSM-7"),
        # One segment either way: the character costs nothing, so nothing is said.
        pytest.param("It\u2019s done.", id="one character outside GSM-7 that costs no segment"),
    ],
)
def test_no_ucs2_warning_for_gsm7_or_several_characters_outside_it(body, octopods_conn, caplog, capfd):
    sent, logged = _send_logged(body, caplog, capfd)

    assert sent.segments == measure(body).segments
    assert "sent in UCS-2 because of" not in logged
    assert octopods_conn.request_count(SEND) == 1


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
