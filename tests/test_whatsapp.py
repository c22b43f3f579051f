"""
The WhatsApp channel against the simulator over real HTTP on 127.0.0.1.

- Hooks: each template kind sent (sync and async hook alike) and what the simulator received;
  nothing sent when a check fails; the template list read once per hook; ``check_template=False``;
  Octopods' error codes per channel through the one mapping; status and list answers of both
  documented shapes, and hostile ones, read the same by both hooks; untrackable workspaces.
- Waits: the WhatsApp trigger (list first, by id for the rest), ``wait_for="read"``, the magic
  numbers, the list's 400 and 429; the sensor in poke mode and deferred in ``dag.test()``.
- The operator and the notifier in real ``dag.test()`` runs on the metadata database.
- The WhatsApp key, in none of the logs, errors, XCom, trigger kwargs or files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_octopods.exceptions import (
    OctopodsApiError,
    OctopodsAuthError,
    OctopodsBadRequestError,
    OctopodsDeliveryError,
    OctopodsError,
    OctopodsInputError,
    OctopodsTimeoutError,
    OctopodsTransientError,
)
from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook, OctopodsHook
from airflow_provider_octopods.models import WHATSAPP, reached
from airflow_provider_octopods.notifications.octopods import (
    OctopodsWhatsAppNotifier,
    send_octopods_whatsapp_notification,
)
from airflow_provider_octopods.operators.octopods import OctopodsSendWhatsAppTemplateOperator
from airflow_provider_octopods.sensors.octopods import OctopodsWhatsAppDeliverySensor
from airflow_provider_octopods.testing.simulator import (
    DELIVERED_NUMBER,
    STATUS_MESSAGES,
    TEMPLATE_BODY_ONLY,
    TEMPLATE_MEDIA_HEADER,
    TEMPLATE_NO_VARIABLES,
    TEMPLATE_PENDING,
    TEMPLATE_SECTIONS,
    TEMPLATE_SPANISH,
    WHATSAPP_FAILURE_REASONS,
    OctopodsSimulator,
    Reply,
    Status,
)
from airflow_provider_octopods.triggers.octopods import (
    OctopodsWhatsAppDeliveryTrigger,
    require_delivered,
    statuses_from_event,
)
from tests.conftest import AIRFLOW_HOME, AIRFLOW_VERSION, TEST_API_KEY
from tests.test_dag_runs import run_dag
from tests.test_trigger import first_event

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: The simulator's WhatsApp key in these tests: long and distinctive, so a leak is easy to grep for.
WA_KEY = "octo-wa-test-key-4e1d9b7c2a6f8e0d3b5c"
WA_CONN = "octopods_whatsapp_default"
SMS_CONN = "octopods_default"
TEMPLATES_PATH = "/api/v1/whatsapp/templates"
LIST_PATH = "/api/v1/whatsapp/messages"
PHONE = DELIVERED_NUMBER
CLIENTS = ["sync", "async"]
FAST = {"poll_interval": 0.05, "initial_delay": 0.0, "max_poll_interval": 0.1}
MULTI_VARIABLES = {"header": ["A-1"], "body": ["Alex", "Friday"], "footer": ["Acme"], "buttons": ["A-1"]}
pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[OctopodsSimulator]:
    """
    The simulator with both channels' connections pointing at it (``octopods_default``: the SMS
    key, ``octopods_whatsapp_default``: the WhatsApp key); WhatsApp messages are sent at 0.05 s,
    delivered at 0.1 s and read at 0.2 s.
    """
    with OctopodsSimulator(
        TEST_API_KEY, whatsapp_api_key=WA_KEY, sent_after=0.05, deliver_after=0.1, read_after=0.2
    ) as simulator:
        for conn_id, channel in ((WA_CONN, "whatsapp"), (SMS_CONN, "sms")):
            for name, value in simulator.connection_uri_env(conn_id, channel=channel).items():
                monkeypatch.setenv(name, value)
        yield simulator


# -- helpers -----------------------------------------------------------------------------------------


def sends(sim: OctopodsSimulator) -> int:
    """The send requests of both channels the simulator served, whatever their answer."""
    return sum(1 for r in sim.requests if r.method == "POST")


def template_reads(sim: OctopodsSimulator) -> int:
    return sim.request_count(TEMPLATES_PATH)


def list_reads(sim: OctopodsSimulator) -> int:
    return sim.request_count(LIST_PATH)


def polled_ids(sim: OctopodsSimulator) -> list[int]:
    """The ids asked for one by one, in order."""
    prefix = LIST_PATH + "/"
    return [int(r.path[len(prefix) :]) for r in sim.requests if r.path.startswith(prefix)]


def rounds(sim: OctopodsSimulator) -> list[list[str]]:
    """The requests of a batch wait, split into rounds: each round starts with a list request."""
    split: list[list[str]] = []
    for record in sim.requests:
        if record.path == LIST_PATH or not split:
            split.append([])
        split[-1].append(record.path)
    return split


def with_hook(client: str, conn_id: str, use: Callable[[Any], Any]) -> Any:
    """``use(hook)`` with the sync hook (requests) or the async hook (aiohttp, in ``asyncio.run``)."""
    if client == "sync":
        hook = OctopodsHook(conn_id, max_retries=0)
        try:
            return use(hook)
        finally:
            hook.close()

    async def run() -> Any:
        async with OctopodsAsyncHook(conn_id) as hook:
            return await use(hook)

    return asyncio.run(run())


def outcome(client: str, conn_id: str, use: Callable[[Any], Any]) -> tuple[str, Any, str]:
    """What a call came to, comparable between the hooks: (error type or "ok", error_code, text)."""
    try:
        result = with_hook(client, conn_id, use)
    except OctopodsError as err:  # the request_id differs per answer
        return (
            type(err).__name__,
            getattr(err, "error_code", None),
            re.sub(r" \(request_id [^)]*\)", "", str(err)),
        )
    return "ok", None, repr(result)


def send_wa(
    phone: str = PHONE,
    template_id: int = TEMPLATE_BODY_ONLY,
    variables: Any = ("Alex", "1234"),
    **kwargs: Any,
) -> int:
    """Send a WhatsApp template with the sync hook; return its message id."""
    sent = with_hook(
        "sync", WA_CONN, lambda h: h.send_whatsapp_template(template_id, phone, variables, **kwargs)
    )
    assert sent.message_id is not None
    return int(sent.message_id)


def trigger(ids: int | list[int], timeout: float = 10.0, **kwargs: Any) -> OctopodsWhatsAppDeliveryTrigger:
    many = isinstance(ids, list)
    return OctopodsWhatsAppDeliveryTrigger(
        message_id=None if many else ids,
        message_ids=ids if many else None,
        end_time=time.time() + timeout,
        **{**FAST, **kwargs},
    )


def no_key(text: str) -> None:
    assert WA_KEY not in text
    assert TEST_API_KEY not in text


def no_key_in_files() -> None:
    for path in AIRFLOW_HOME.rglob("*"):
        if path.is_file():
            assert WA_KEY.encode() not in path.read_bytes(), f"the WhatsApp key is in {path}"


def logged(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    out, err = capfd.readouterr()
    text = out + err + caplog.text
    no_key(text)
    return text


# -- sends: what the simulator receives -----------------------------------------------------------------

SEND_ROWS = [
    pytest.param(
        TEMPLATE_BODY_ONLY,
        ["Alex", 1234],
        {},
        ["Alex", "1234"],
        "Hi Alex, your order 1234 has shipped.",
        id="list",
    ),
    pytest.param(
        TEMPLATE_BODY_ONLY,
        {"2": "1234", "1": "Alex"},
        {},
        ["Alex", "1234"],
        "Hi Alex, your order 1234 has shipped.",
        id="numbered",
    ),
    pytest.param(
        TEMPLATE_BODY_ONLY,
        "['Alex', '1234']",
        {},
        ["Alex", "1234"],
        "Hi Alex, your order 1234 has shipped.",
        id="jinja-list",
    ),
    pytest.param(
        TEMPLATE_NO_VARIABLES, None, {}, None, "Thanks for subscribing to order updates!", id="no-variables"
    ),
    pytest.param(
        TEMPLATE_SECTIONS,
        MULTI_VARIABLES,
        {},
        MULTI_VARIABLES,
        "Hi Alex, your parcel arrives on Friday.",
        id="sections",
    ),
    pytest.param(
        TEMPLATE_SECTIONS,
        '{"BUTTONS": "A-1", "Footer": "Acme", "body": ["Alex", "Friday"], "header": ["A-1"]}',
        {},
        MULTI_VARIABLES,
        "Hi Alex, your parcel arrives on Friday.",
        id="sections-jinja-any-case",
    ),
    pytest.param(
        TEMPLATE_MEDIA_HEADER,
        "Alex",
        {"header_attachment_url": "  https://cdn.example.com/receipt.png "},
        ["Alex"],
        "Here is your receipt, Alex.",
        id="media-header",
    ),
    pytest.param(
        "544",
        ("Ana", 77),
        {"destination_user_name": "Ana", "open_intercom_conversation": True},
        ["Ana", "77"],
        "Hola Ana, tu pedido 77 ha sido enviado.",
        id="spanish-options",
    ),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("template_id", "variables", "options", "expected", "body"), SEND_ROWS)
def test_each_template_kind_reaches_octopods_in_the_documented_shape(
    client, template_id, variables, options, expected, body, sim
):
    sent = with_hook(
        client,
        WA_CONN,
        lambda h: h.send_whatsapp_template(template_id, " +1 201-555-0123 ", variables, **options),
    )

    message = sim.messages[sent.message_id]
    payload = {"destination_phone": PHONE}
    if expected is not None:
        payload["message_variables"] = expected
    if "header_attachment_url" in options:
        payload["header_attachment_url"] = options["header_attachment_url"].strip()
    for name in ("destination_user_name", "open_intercom_conversation"):
        if name in options:
            payload[name] = options[name]
    assert message.payload == payload
    assert message.variables == expected
    assert (message.channel, message.template_id, message.body) == ("whatsapp", int(template_id), body)
    assert (sent.channel, sent.template_id, sent.destination_phone) == ("whatsapp", int(template_id), PHONE)
    assert sent.to_dict() == {
        "message_id": sent.message_id,
        "request_id": sent.request_id,
        "channel_message_id": None,
        "destination_phone": PHONE,
        "template_id": int(template_id),
        "channel": "whatsapp",
    }
    assert (template_reads(sim), sends(sim)) == (1, 1)


def test_a_national_number_uses_the_default_region(sim):
    sent = with_hook(
        "sync",
        WA_CONN,
        lambda h: h.send_whatsapp_template(539, "(201) 555-0124", ["a", "b"], default_region="US"),
    )

    assert sim.messages[sent.message_id].payload["destination_phone"] == "+12015550124"


NOT_SENT_ROWS = [
    pytest.param(999, PHONE, ["a"], {}, "template_id", "no template 999", id="unknown-template"),
    pytest.param(TEMPLATE_PENDING, PHONE, ["May 1"], {}, "template_id", "is Pending", id="pending"),
    pytest.param(
        TEMPLATE_MEDIA_HEADER, PHONE, ["Alex"], {}, "header_attachment_url", "542", id="media-no-url"
    ),
    pytest.param(
        TEMPLATE_BODY_ONLY,
        PHONE,
        ["a", "b"],
        {"header_attachment_url": "https://cdn.example.com/a.png"},
        "header_attachment_url",
        "has no media header",
        id="url-no-media",
    ),
    pytest.param(
        TEMPLATE_MEDIA_HEADER,
        PHONE,
        ["Alex"],
        {"header_attachment_url": "javascript:alert(1)"},
        "header_attachment_url",
        "is not an http(s) URL",
        id="javascript-url",
    ),
    pytest.param(
        TEMPLATE_BODY_ONLY, PHONE, ["Alex"], {}, "message_variables", "expects body 2", id="one-of-two"
    ),
    pytest.param(
        TEMPLATE_SECTIONS,
        PHONE,
        ["Alex", "Friday"],
        {},
        "message_variables",
        "expects header 1, body 2, footer 1, buttons 1",
        id="list-for-sections",
    ),
    pytest.param(
        TEMPLATE_BODY_ONLY, PHONE, ["Alex", None], {}, "message_variables[1]", "NoneType", id="none"
    ),
    pytest.param("abc", PHONE, ["a", "b"], {}, "template_id", "integer id", id="template-id-text"),
    pytest.param(
        TEMPLATE_BODY_ONLY, "555-1234", ["a", "b"], {}, "destination_phone", "country code", id="phone"
    ),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("template_id", "phone", "variables", "options", "field", "said"), NOT_SENT_ROWS)
def test_a_failed_check_sends_nothing_and_names_the_field(
    client, template_id, phone, variables, options, field, said, sim
):
    with pytest.raises(OctopodsInputError) as refused:
        with_hook(
            client, WA_CONN, lambda h: h.send_whatsapp_template(template_id, phone, variables, **options)
        )

    assert refused.value.field == field
    assert said in str(refused.value)
    assert sends(sim) == 0
    assert sim.messages == {}
    assert sim.request_count() == template_reads(sim) <= 1


@pytest.mark.parametrize("client", CLIENTS)
def test_the_template_list_is_read_once_per_hook(client, sim):
    async def two_async(hook):
        first = await hook.send_whatsapp_template(539, PHONE, ["a", "b"])
        second = await hook.send_whatsapp_template(541, "+12015550124", MULTI_VARIABLES)
        return first, second

    def two_sync(hook):
        return (
            hook.send_whatsapp_template(539, PHONE, ["a", "b"]),
            hook.send_whatsapp_template(541, "+12015550124", MULTI_VARIABLES),
        )

    first, second = with_hook(client, WA_CONN, two_sync if client == "sync" else two_async)

    assert (template_reads(sim), sends(sim)) == (1, 2)
    assert {first.message_id, second.message_id} == set(sim.messages)
    with_hook(client, WA_CONN, lambda h: h.send_whatsapp_template(540, PHONE))  # a new hook reads them again
    assert (template_reads(sim), sends(sim)) == (2, 3)


@pytest.mark.parametrize("client", CLIENTS)
def test_check_template_false_sends_without_reading_templates(client, sim):
    sent = with_hook(
        client, WA_CONN, lambda h: h.send_whatsapp_template(539, PHONE, ["Alex", 7], check_template=False)
    )

    assert sim.messages[sent.message_id].variables == ["Alex", "7"]
    assert (template_reads(sim), sends(sim)) == (0, 1)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("template_id", "variables", "code"),
    [
        (TEMPLATE_SECTIONS, ["Alex", "Friday"], 9),
        (TEMPLATE_BODY_ONLY, ["Alex"], 9),
        (TEMPLATE_PENDING, ["x"], 10),
    ],
    ids=["list-for-sections", "one-of-two", "pending"],
)
def test_unchecked_sends_surface_octopods_own_refusal(client, template_id, variables, code, sim):
    with pytest.raises(OctopodsBadRequestError) as refused:
        with_hook(
            client,
            WA_CONN,
            lambda h: h.send_whatsapp_template(template_id, PHONE, variables, check_template=False),
        )

    assert refused.value.error_code == code
    assert f"Octopods refused the request (HTTP 400, error_code {code})" in str(refused.value)
    assert (template_reads(sim), sends(sim)) == (0, 1)
    assert sim.messages == {}


def test_a_template_with_two_url_buttons_can_be_sent_checked(sim):
    """Fixed in 9d82358: the check expected 1 button value, Octopods 2: every checked send was refused."""
    sim.templates[900] = {
        "template_id": 900,
        "template_name": "two_links",
        "template_body": "Hi {{1}}",
        "template_components": [
            {"type": "BODY", "text": "Hi {{1}}"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "URL", "text": "Track", "url": "https://example.com/track/{{1}}"},
                    {"type": "URL", "text": "Return", "url": "https://example.com/return/{{1}}"},
                ],
            },
        ],
        "template_status": "Accepted",
        "language": "en",
        "active": True,
    }
    variables = {"header": [], "body": ["Alex"], "footer": [], "buttons": ["A-1", "A-1"]}

    sent = with_hook("sync", WA_CONN, lambda h: h.send_whatsapp_template(900, PHONE, variables))

    assert sim.messages[sent.message_id].variables == variables


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("active", "lang", "expected"),
    [
        (None, None, [539, 540, 541, 542, 543, 544]),
        (True, None, [539, 540, 541, 542, 544]),
        (False, None, [543]),
        (None, "es", [544]),
        (True, "en&active=false", []),  # the language is one query value, never more parameters
    ],
)
def test_the_template_list_filters(client, active, lang, expected, sim):
    if client == "sync":
        templates = with_hook(client, WA_CONN, lambda h: h.list_whatsapp_templates(active, lang))
    else:
        from airflow_provider_octopods.hooks.octopods import templates_call

        templates = with_hook(client, WA_CONN, lambda h: h.call(templates_call(active, lang)))

    assert [t.template_id for t in templates] == expected
    assert template_reads(sim) == 1


@pytest.mark.parametrize(
    ("setup", "ok", "said"),
    [
        (lambda sim: None, True, "Octopods accepted the WhatsApp channel's API key"),
        (lambda sim: sim.revoke_key("whatsapp"), False, "was rotated or revoked"),
    ],
    ids=["whatsapp-key", "revoked"],
)
def test_test_connection_recognises_a_whatsapp_key(setup, ok, said, sim):
    setup(sim)

    result, message = OctopodsHook(WA_CONN).test_connection()

    assert result is ok
    assert said in message
    no_key(message)


# -- error codes: one mapping, per channel ----------------------------------------------------------------


def _reply(code: int) -> Callable[[OctopodsSimulator], None]:
    def inject(sim: OctopodsSimulator) -> None:
        sim.inject(Reply(400, {"request_id": "req-1", "error_code": code, "error": f"Error number {code}."}))

    return inject


def _revoke(channel: str) -> Callable[[OctopodsSimulator], None]:
    return lambda sim: sim.revoke_key(channel)  # type: ignore[arg-type]


ERROR_ROWS = [
    # WhatsApp: 5 is an invalid phone, 6 a revoked key.
    pytest.param("whatsapp", "send", _reply(5), "OctopodsBadRequestError", 5, id="wa-send-5-phone"),
    pytest.param("whatsapp", "send", _revoke("whatsapp"), "OctopodsAuthError", 6, id="wa-send-revoked"),
    pytest.param("whatsapp", "send", _reply(6), "OctopodsAuthError", 6, id="wa-send-6"),
    pytest.param("whatsapp", "status", _reply(6), "OctopodsAuthError", 6, id="wa-status-6"),
    pytest.param("whatsapp", "status", _reply(5), "OctopodsBadRequestError", 5, id="wa-status-5"),
    pytest.param("whatsapp", "status", _revoke("whatsapp"), "OctopodsAuthError", 6, id="wa-status-revoked"),
    pytest.param("whatsapp", "send", _reply(4), "OctopodsBadRequestError", 4, id="wa-send-4-not-a-provider"),
    pytest.param("whatsapp", "send", _reply(3), "OctopodsBadRequestError", 3, id="wa-send-3"),
    pytest.param("whatsapp", "send", _reply(8), "OctopodsBadRequestError", 8, id="wa-send-8-header"),
    # SMS: 3 is an invalid phone, 4 the provider, 5 a revoked key.
    pytest.param("sms", "send", _reply(5), "OctopodsAuthError", 5, id="sms-send-5"),
    pytest.param("sms", "send", _revoke("sms"), "OctopodsAuthError", 5, id="sms-send-revoked"),
    pytest.param("sms", "status", _reply(5), "OctopodsAuthError", 5, id="sms-status-5"),
    pytest.param("sms", "send", _reply(3), "OctopodsBadRequestError", 3, id="sms-send-3-phone"),
    pytest.param("sms", "send", _reply(6), "OctopodsBadRequestError", 6, id="sms-send-6-not-a-key"),
    pytest.param("sms", "send", _reply(4), "OctopodsApiError", 4, id="sms-send-4-provider"),
]


def _call(channel: str, request: str) -> Callable[[Any], Any]:
    if channel == "whatsapp":
        if request == "send":
            return lambda h: h.send_whatsapp_template(539, PHONE, ["a", "b"], check_template=False)
        return lambda h: h.get_whatsapp_status(4829174)
    if request == "send":
        return lambda h: h.send_sms(PHONE, "hi")
    return lambda h: h.get_sms_status(4829174)


@pytest.mark.parametrize(("channel", "request_", "setup", "error", "code"), ERROR_ROWS)
def test_error_codes_map_per_channel_the_same_in_both_hooks(channel, request_, setup, error, code, sim):
    conn_id = WA_CONN if channel == "whatsapp" else SMS_CONN
    seen = []
    for client in CLIENTS:
        setup(sim)
        seen.append(outcome(client, conn_id, _call(channel, request_)))

    assert seen[0] == seen[1]
    name, error_code, text = seen[0]
    assert (name, error_code) == (error, code)
    if name == "OctopodsAuthError":
        assert "the key was rotated or revoked (HTTP 400" in text
    else:
        assert f"(HTTP 400, error_code {code}" in text
    no_key(text)


def test_the_whatsapp_key_is_refused_on_the_sms_channel_and_back(sim, monkeypatch):
    """Each channel has its own key: the other one's gets HTTP 401, an auth error naming the connection."""
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(sim.connection_extra("whatsapp")))

    name, code, text = outcome("sync", SMS_CONN, lambda h: h.send_sms(PHONE, "hi"))

    assert (name, code) == ("OctopodsAuthError", None)
    assert "is missing or unknown (HTTP 401" in text
    assert sim.messages == {}


@pytest.mark.parametrize("client", CLIENTS)
def test_the_sms_key_in_the_whatsapp_connection_sends_nothing(client, sim, monkeypatch):
    """A tired user's mistake: the checked send stops at the template list (HTTP 401), before any send."""
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_WHATSAPP_DEFAULT", json.dumps(sim.connection_extra("sms")))

    name, code, text = outcome(client, WA_CONN, lambda h: h.send_whatsapp_template(539, PHONE, ["a", "b"]))

    assert (name, code) == ("OctopodsAuthError", None)
    assert "connection 'octopods_whatsapp_default': the key is missing or unknown (HTTP 401" in text
    assert sends(sim) == 0 and template_reads(sim) >= 1


@pytest.mark.parametrize("client", CLIENTS)
def test_an_sms_message_id_is_unknown_to_the_whatsapp_status(client, sim):
    sms_id = sim.add_message("delivered")

    name, code, text = outcome(client, WA_CONN, lambda h: h.get_whatsapp_status(sms_id))

    assert (name, code) == ("OctopodsBadRequestError", 7)
    assert f"Octopods does not know WhatsApp message {sms_id} (HTTP 400, error_code 7" in text
    assert sim.messages[sms_id].polls == 0


# -- untrackable workspaces ---------------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_an_untrackable_send_returns_no_message_id_and_its_request_id(client, channel, sim):
    sim.untrackable = True
    use = (
        (lambda h: h.send_sms(PHONE, "hi"))
        if channel == "sms"
        else (lambda h: h.send_whatsapp_template(539, PHONE, ["a", "b"]))
    )

    sent = with_hook(client, SMS_CONN if channel == "sms" else WA_CONN, use)

    assert sent.message_id is None
    assert isinstance(sent.request_id, str) and sent.request_id
    assert sent.to_dict()["message_id"] is None
    (message,) = sim.messages.values()
    assert message.channel == channel
    assert sends(sim) == 1


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message_id": None},
        {"message_id": None, "request_id": ""},
        {"message_id": "wamid.x", "request_id": "r"},
    ],
    ids=["empty", "null-id-no-request-id", "empty-request-id", "wamid"],
)
def test_a_201_without_an_id_or_a_request_id_is_an_unconfirmed_send(client, body, sim):
    from airflow_provider_octopods.exceptions import OctopodsSendUnconfirmedError

    sim.inject(Reply(201, body))

    with pytest.raises(OctopodsSendUnconfirmedError, match="The WhatsApp message may have been sent"):
        with_hook(
            client, WA_CONN, lambda h: h.send_whatsapp_template(539, PHONE, ["a", "b"], check_template=False)
        )
    assert sends(sim) == 1


# -- status answers: both shapes, any case, hostile ----------------------------------------------------------

REASON = WHATSAPP_FAILURE_REASONS["not_whatsapp_user"]


def _scripted(shape: str, *steps: Any) -> Callable[[OctopodsSimulator], int]:
    def setup(sim: OctopodsSimulator) -> int:
        sim.status_shape = shape  # type: ignore[assignment]
        return sim.add_message(*steps, channel="whatsapp")

    return setup


def _raw(body: Any, status: int = 200) -> Callable[[OctopodsSimulator], int]:
    def setup(sim: OctopodsSimulator) -> int:
        message_id = sim.add_message("sent", channel="whatsapp")
        sim.inject(Reply(status, body(message_id) if callable(body) else body), times=len(CLIENTS))
        return message_id

    return setup


STAMP = "2026-04-24T10:23:45Z"
STATUS_ROWS = [
    pytest.param(
        _scripted("reference", "delivered"),
        {
            "status": "delivered",
            "delivered_at": True,
            "read_at": False,
            "failure_reason": None,
            "status_message": None,
        },
        True,
        id="reference-delivered",
    ),
    pytest.param(
        _scripted("overview", "delivered"),
        {
            "status": "delivered",
            "delivered_at": True,
            "read_at": False,
            "failure_reason": None,
            "status_message": STATUS_MESSAGES["DELIVERED"],
        },
        True,
        id="overview-delivered",
    ),
    pytest.param(
        _scripted("reference", "read"),
        {"status": "read", "delivered_at": True, "read_at": True, "failure_reason": None},
        True,
        id="reference-read",
    ),
    pytest.param(
        _scripted("overview", "read"),
        {
            "status": "read",
            "read_at": True,
            "failure_reason": None,
            "status_message": STATUS_MESSAGES["READ"],
        },
        True,
        id="overview-read",
    ),
    pytest.param(
        _scripted("reference", "deleted"),
        {"status": "deleted", "failure_reason": None, "read_at": False},
        True,
        id="reference-deleted",
    ),
    pytest.param(
        _scripted("overview", "deleted"),
        {"status": "deleted", "failure_reason": None, "status_message": STATUS_MESSAGES["DELETED"]},
        True,
        id="overview-deleted",
    ),
    pytest.param(
        _scripted("reference", "unknown"),
        {"status": "unknown", "failure_reason": None},
        None,
        id="ref-unknown",
    ),
    pytest.param(
        _scripted("overview", "unknown"),
        {"status": "unknown", "status_message": STATUS_MESSAGES["UNKNOWN"]},
        None,
        id="overview-unknown",
    ),
    pytest.param(
        _scripted("reference", Status("failed", REASON)),
        {"status": "failed", "failure_reason": REASON, "delivered_at": False},
        False,
        id="reference-failed",
    ),
    pytest.param(
        _scripted("overview", Status("failed", REASON)),
        {"status": "failed", "failure_reason": REASON, "status_message": STATUS_MESSAGES["FAILED"]},
        False,
        id="overview-failed",
    ),
    pytest.param(
        _raw(
            lambda i: {
                "message_id": i,
                "status": "Delivered",
                "status_message": "ok",
                "failure_reason": "stale",
            }
        ),
        {"status": "delivered", "failure_reason": None, "status_message": "ok"},
        True,
        id="mixed-case-delivered-keeps-no-failure-reason",
    ),
    pytest.param(
        _raw({"status": "READ", "status_message": "seen", "last_updated": STAMP}),
        {
            "status": "read",
            "read_at": "2026-04-24T10:23:45+00:00",
            "delivered_at": False,
            "status_message": "seen",
        },
        True,
        id="upper-read-last-updated",
    ),
    pytest.param(
        _raw({"status": "DELIVERED", "last_updated": STAMP}),
        {"status": "delivered", "delivered_at": "2026-04-24T10:23:45+00:00", "read_at": False},
        True,
        id="upper-delivered-last-updated",
    ),
    pytest.param(
        _raw({"status": " deleted ", "last_updated": STAMP, "read_at": STAMP}),
        {"status": "deleted", "read_at": "2026-04-24T10:23:45+00:00", "failure_reason": None},
        True,
        id="deleted-with-read-at",
    ),
    pytest.param(
        _raw({"status": "FAILED", "status_message": "Blocked by the recipient."}),
        {
            "status": "failed",
            "failure_reason": "Blocked by the recipient.",
            "status_message": "Blocked by the recipient.",
        },
        False,
        id="failed-reason-from-status-message",
    ),
    pytest.param(
        _raw({"status": "failed", "failure_reason": {"code": 131026, "title": "Message undeliverable"}}),
        {"status": "failed", "failure_reason": "Message undeliverable (code 131026)"},
        False,
        id="failed-reason-code-title",
    ),
    pytest.param(
        _raw({"status": "on_the_moon"}),
        {"status": "on_the_moon", "failure_reason": None},
        None,
        id="status-unknown-to-the-provider",
    ),
]


def _status_view(status: Any) -> dict[str, Any]:
    data = status.to_dict()
    data.pop("request_id")  # one per answer
    return data


@pytest.mark.parametrize(("setup", "expected", "final"), STATUS_ROWS)
def test_status_answers_read_the_same_in_both_hooks(setup, expected, final, sim):
    message_id = setup(sim)  # one message (its one step repeats), asked by each hook in turn
    views = []
    for client in CLIENTS:
        status = with_hook(client, WA_CONN, lambda h: h.get_whatsapp_status(message_id))
        assert status.message_id == message_id
        assert (status.channel, status.template_id) == ("whatsapp", None)
        assert reached(status, "delivered") is final
        views.append(_status_view(status))

    # The overview shape's last_updated is the time of the answer: compare when each was reported.
    stamps = ("sent_at", "delivered_at", "read_at")
    assert [{k: (v is not None if k in stamps else v) for k, v in view.items()} for view in views] == [
        {k: (v is not None if k in stamps else v) for k, v in views[0].items()}
    ] * 2
    for view in views:
        for name, value in expected.items():
            if value is True:
                assert view[name] is not None, name
            elif value is False:
                assert view[name] is None, name
            else:
                assert view[name] == value, name
    assert views[0]["template_id"] is None and "template_id" in views[0]
    assert sim.request_count() == 2


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (lambda i: {"message_id": i + 1, "status": "failed", "failure_reason": "not yours"}, "asked for"),
        (lambda i: {"message_id": "wamid.HBgLMTIwMTU1NTAxMjMVAgARGBI", "status": "delivered"}, "message_id"),
        (lambda i: {"message_id": True, "status": "delivered"}, "no message_id"),
        (lambda i: {"message_id": i, "status": ""}, "no status"),
        (lambda i: {"message_id": i}, "no status"),
        (lambda i: [{"message_id": i, "status": "delivered"}], "expected a JSON object"),
    ],
    ids=["another-id", "wamid", "bool-id", "empty-status", "no-status", "array"],
)
@pytest.mark.parametrize("client", CLIENTS)
def test_a_hostile_status_answer_is_a_transient_error_never_a_result(client, body, said, sim):
    message_id = sim.add_message("sent", channel="whatsapp")
    sim.inject(Reply(200, body(message_id)))

    with pytest.raises(OctopodsTransientError, match="malformed status answer") as err:
        with_hook(client, WA_CONN, lambda h: h.get_whatsapp_status(message_id))

    assert said in str(err.value)


async def test_a_status_of_another_message_never_ends_the_wait(sim):
    message_id = sim.add_message("sent", "delivered", channel="whatsapp")
    sim.inject(Reply(200, {"message_id": message_id + 1, "status": "failed", "failure_reason": "not yours"}))

    event = await first_event(trigger(message_id))

    assert event["status"] == "done"
    assert event["statuses"][0]["status"] == "delivered"
    assert event["statuses"][0]["failure_reason"] is None
    assert polled_ids(sim) == [message_id] * 3  # the hostile answer, then sent, then delivered


# -- the list: both shapes, hostile items ---------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("shape", ["messages", "array"])
def test_the_list_reads_both_shapes(client, shape, sim):
    sim.list_shape = shape
    delivered = sim.add_message("delivered", channel="whatsapp")
    failed = sim.add_message(Status("failed", REASON), phone_number="+12015550101", channel="whatsapp")
    waiting = sim.add_message("unknown", channel="whatsapp")
    sms = sim.add_message("delivered")  # another channel: never listed

    listed = with_hook(client, WA_CONN, lambda h: h.list_messages(WHATSAPP))

    assert list(listed) == [waiting, failed, delivered]  # newest first
    assert [s.status for s in listed.values()] == ["unknown", "failed", "delivered"]
    assert sms not in listed
    assert listed[failed].phone_number == "+12015550101"
    assert listed[failed].failure_reason == (REASON if shape == "messages" else f"{REASON} (code 470)")
    assert listed[delivered].failure_reason is None
    assert {s.channel for s in listed.values()} == {"whatsapp"}
    assert list_reads(sim) == 1 and polled_ids(sim) == []
    assert sum(m.polls for m in sim.messages.values()) == 0  # the list consumes no scripted step


@pytest.mark.parametrize("limit", [0, 101, -1, True, "5", 5.0, None])
def test_a_list_limit_out_of_range_is_refused_before_any_request(limit, sim):
    with pytest.raises(OctopodsInputError, match=r"^Invalid limit: .*pass a number from 1 to 100"):
        with_hook("sync", WA_CONN, lambda h: h.list_whatsapp_messages(limit))
    assert sim.request_count() == 0


def test_a_list_limit_returns_the_newest(sim):
    ids = [sim.add_message("sent", channel="whatsapp") for _ in range(7)]

    listed = with_hook("sync", WA_CONN, lambda h: h.list_whatsapp_messages(5))

    assert [s.message_id for s in listed] == ids[::-1][:5]


HOSTILE_LIST = [
    {"status": "delivered"},  # no id
    {"message_id": "wamid.HBgLMTIwMTU1NTAxMjMVAgARGBI", "status": "delivered"},
    {"message_id": True, "status": "delivered"},
    {"message_id": 0, "status": "delivered"},
    {"message_id": -5, "status": "delivered"},
    {"message_id": 5.0, "status": "delivered"},
    {"message_id": "../6", "status": "delivered"},
    {"message_id": 7},  # no status
    {"message_id": 7, "status": ""},
    {"message_id": 7, "status": None},
    {"message_id_typo": 8, "status": "delivered"},
    "delivered",
    None,
    [9, "delivered"],
    {"message_id": 10, "status": "FAILED", "failure_reason": {"code": 131047, "title": "Re-engagement"}},
    {"message_id": 10, "status": "delivered"},  # an older item of the same message
    {"message_status": {"channel_message_id": "wamid.x", "message_status": "DELIVERED"}, "message_id": 11},
    {"message_status": {"channel_message_id": 12, "message_status": "READ", "failure_reason": ""}},
    {"message_id": "13", "status": "Delivered", "failure_reason": "stale"},
]


@pytest.mark.parametrize("client", CLIENTS)
def test_hostile_list_items_are_skipped_never_guessed(client, sim):
    sim.inject(Reply(200, {"request_id": "r", "messages": HOSTILE_LIST}))

    listed = with_hook(client, WA_CONN, lambda h: h.list_messages(WHATSAPP))

    assert sorted(listed) == [10, 12, 13]
    assert (listed[10].status, listed[10].failure_reason) == ("failed", "Re-engagement (code 131047)")
    assert listed[12].status == "read"
    assert (listed[13].status, listed[13].failure_reason) == ("delivered", None)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"messages": "none"}, "malformed list answer"),
        ({"request_id": "r"}, "malformed list answer"),
        ('"nothing"', "malformed list answer"),
        ("42", "malformed list answer"),
        ("null", "not JSON"),
    ],
)
def test_a_list_answer_without_a_list_is_transient(client, body, said, sim):
    sim.inject(Reply(200, body))

    with pytest.raises(OctopodsTransientError, match=said):
        with_hook(client, WA_CONN, lambda h: h.list_messages(WHATSAPP))


async def test_a_hostile_list_never_resolves_the_wrong_message(sim):
    first = sim.add_message("sent", "delivered", channel="whatsapp")
    second = sim.add_message("sent", "delivered", channel="whatsapp")
    other = sim.add_message("failed", channel="whatsapp")
    sim.inject(
        Reply(
            200,
            [
                {"message_id": other, "status": "failed", "failure_reason": "someone else's"},
                {
                    "message_status": {"channel_message_id": "wamid.1", "message_status": "FAILED"},
                    "message_id": first,
                },
                {"message_id": str(second) + "?x=1", "status": "failed"},
            ],
        )
    )

    event = await first_event(trigger([first, second]))

    assert event["status"] == "done"
    assert [s["status"] for s in event["statuses"]] == ["delivered", "delivered"]
    assert first in polled_ids(sim) and second in polled_ids(sim)  # resolved by id, not by the hostile list
    assert other not in polled_ids(sim)


# -- waits: the trigger ------------------------------------------------------------------------------------------


def test_the_whatsapp_trigger_serializes_to_json_without_the_key_and_rebuilds(sim):
    waiting = OctopodsWhatsAppDeliveryTrigger(
        message_ids=["4829175", 4829174, 4829175], wait_for="Read", end_time=2e9
    )

    classpath, kwargs = waiting.serialize()
    rebuilt = OctopodsWhatsAppDeliveryTrigger(**json.loads(json.dumps(kwargs)))

    assert classpath == "airflow_provider_octopods.triggers.octopods.OctopodsWhatsAppDeliveryTrigger"
    assert rebuilt.serialize() == (classpath, kwargs)
    assert (kwargs["message_ids"], kwargs["wait_for"], kwargs["octopods_conn_id"]) == (
        [4829175, 4829174],
        "read",
        WA_CONN,
    )
    no_key(json.dumps(kwargs) + repr(waiting))


async def test_a_wait_on_100_messages_makes_at_most_2_requests_per_round(sim):
    ids = [
        sim.add_message(channel="whatsapp", timeline=[(0, "sent"), (0.1 + 0.05 * (i % 4), "delivered")])
        for i in range(100)
    ]

    event = await first_event(trigger(ids))

    assert event["status"] == "done"
    assert [s["message_id"] for s in event["statuses"]] == ids
    assert {s["status"] for s in event["statuses"]} == {"delivered"}
    assert len(rounds(sim)) >= 2
    # The list says who still waits; each message it shows final is asked by id once (its timestamps).
    assert Counter(polled_ids(sim)) == Counter(ids)
    assert sim.request_count() == list_reads(sim) + len(ids)


async def test_messages_older_than_the_newest_100_are_polled_by_id(sim):
    ids = [
        sim.add_message(channel="whatsapp", timeline=[(0, "sent"), (0.2, "delivered")]) for _ in range(120)
    ]
    oldest, newest = ids[:20], ids[20:]

    event = await first_event(trigger(ids))

    assert event["status"] == "done"
    assert {s["status"] for s in event["statuses"]} == {"delivered"}
    by_id = Counter(polled_ids(sim))
    assert all(by_id[i] == 1 for i in newest)  # once, when the list showed it final
    assert all(by_id[i] >= 1 for i in oldest)  # the list never holds them
    assert sorted(rounds(sim)[0][1:]) == sorted(f"{LIST_PATH}/{i}" for i in oldest)  # round 1: list + oldest
    for requests in rounds(sim):
        assert requests[0] == LIST_PATH


async def test_one_message_is_polled_by_id_without_the_list(sim):
    message_id = sim.add_message("sent", "delivered", channel="whatsapp")

    event = await first_event(trigger(message_id))

    assert event["status"] == "done"
    assert list_reads(sim) == 0 and polled_ids(sim) == [message_id, message_id]


@pytest.mark.parametrize(
    ("wait_for", "final", "polls"),
    [("delivered", "delivered", 2), ("read", "read", 4)],
)
async def test_delivered_is_final_only_when_waiting_for_delivery(wait_for, final, polls, sim):
    message_id = sim.add_message("sent", "delivered", "delivered", "read", channel="whatsapp")

    event = await first_event(trigger(message_id, wait_for=wait_for))

    assert event["status"] == "done"
    assert (event["wait_for"], event["channel"]) == (wait_for, "whatsapp")
    (status,) = event["statuses"]
    assert status["status"] == final
    assert sim.messages[message_id].polls == polls
    assert require_delivered(statuses_from_event(event, 10), logging.getLogger("test"), wait_for)[0] == status


async def test_a_sent_message_is_read_with_its_read_at(sim):
    message_id = send_wa()

    event = await first_event(trigger(message_id, wait_for="read"))

    assert event["status"] == "done"
    (status,) = event["statuses"]
    assert status["status"] == "read"
    assert status["read_at"] and status["delivered_at"] and status["sent_at"]
    assert status["delivered_at"] <= status["read_at"]


async def test_a_delivered_unread_message_times_out_saying_when_it_was_delivered(sim):
    message_id = send_wa("+12015550105")

    event = await first_event(trigger(message_id, timeout=0.6, wait_for="read"))

    assert event["status"] == "timeout"
    assert event["pending"] == [message_id]
    with pytest.raises(OctopodsTimeoutError) as timed_out:
        statuses_from_event(event, 0.6)
    assert re.search(
        rf"Timed out after 0\.6 s waiting for a read receipt\. WhatsApp message {message_id} was delivered at "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 and not read\.",
        str(timed_out.value),
    ), str(timed_out.value)


@pytest.mark.parametrize(
    ("wait_for", "succeeds"),
    [("delivered", True), ("read", False)],
)
async def test_deleted_counts_as_delivered_but_not_as_read(wait_for, succeeds, sim, caplog, capfd):
    message_id = send_wa("+12015550106")

    event = await first_event(trigger(message_id, wait_for=wait_for, initial_delay=0.3))

    assert event["status"] == "done"
    (status,) = event["statuses"]
    assert status["status"] == "deleted" and status["read_at"] is None
    statuses = statuses_from_event(event, 10)
    if succeeds:
        assert require_delivered(statuses, logging.getLogger("test"), wait_for)[0]["status"] == "deleted"
        return
    with pytest.raises(OctopodsDeliveryError) as failed:
        require_delivered(statuses, logging.getLogger("test"), wait_for)
    assert re.fullmatch(
        rf"WhatsApp message {message_id} was delivered at \S+, then deleted by the recipient without a read "
        r"receipt\.",
        str(failed.value),
    ), str(failed.value)
    assert f"WhatsApp message {message_id} to +12015550106 failed: status 'deleted'" in logged(capfd, caplog)


async def test_unknown_keeps_polling_until_the_deadline(sim):
    message_id = send_wa("+12015550107")

    event = await first_event(trigger(message_id, timeout=0.5))

    assert event["status"] == "timeout"
    assert event["statuses"][0]["status"] == "unknown"
    assert sim.messages[message_id].polls >= 4
    with pytest.raises(OctopodsTimeoutError, match=f"WhatsApp message {message_id}: last status 'unknown'"):
        statuses_from_event(event, 0.5)


async def test_a_failure_is_logged_as_one_warning_line_with_octopods_reason(sim, caplog, capfd):
    caplog.set_level(logging.WARNING)
    message_id = send_wa("+12015550101")

    event = await first_event(trigger(message_id))

    assert event["status"] == "done"
    line = f"WhatsApp message {message_id} to +12015550101 failed: Recipient is not a WhatsApp user."
    assert logged(capfd, caplog).count(line) == 1
    with pytest.raises(
        OctopodsDeliveryError, match="status 'failed', failure_reason: Recipient is not a WhatsApp"
    ):
        require_delivered(statuses_from_event(event, 10), logging.getLogger("test"))


async def test_a_batch_names_each_failure(sim, caplog, capfd):
    good, bad = send_wa(), send_wa("+12015550108")

    event = await first_event(trigger([good, bad]))

    with pytest.raises(OctopodsDeliveryError) as failed:
        require_delivered(statuses_from_event(event, 10), logging.getLogger("test"))
    assert str(failed.value).startswith("1 of 2 WhatsApp messages were not delivered.")
    reason = WHATSAPP_FAILURE_REASONS["template_not_approved"]
    assert f"WhatsApp message {bad} was not delivered: status 'failed', failure_reason: {reason}" in str(
        failed.value
    )
    assert f"WhatsApp message {bad} to +12015550108 failed: {reason}" in logged(capfd, caplog)


@pytest.mark.parametrize(
    "refusal",
    [
        Reply(400, {"error_code": 7, "error": "No messages have been sent on this channel yet."}),
        Reply(400, {"error_code": 1, "error": "limit must be a whole number from 1 to 100."}),
        Reply(404, "<html>Not Found</html>"),
    ],
    ids=["no-messages-yet", "bad-limit", "no-list-endpoint"],
)
async def test_a_refused_list_falls_back_to_polling_by_id(refusal, sim):
    ids = [sim.add_message("sent", "delivered", channel="whatsapp") for _ in range(3)]
    sim.inject(refusal)

    event = await first_event(trigger(ids))

    assert event["status"] == "done"
    assert [s["status"] for s in event["statuses"]] == ["delivered"] * 3
    first_round = [r.path for r in sim.requests[:4]]  # the refused list, then every id by id
    assert first_round[0] == LIST_PATH
    assert sorted(first_round[1:]) == sorted(f"{LIST_PATH}/{i}" for i in ids)


async def test_a_rate_limited_list_backs_off_without_a_storm_of_polls(sim, monkeypatch):
    # A fixed request budget: the adaptive one would also slow down after the 429 (by design).
    conn = {**sim.connection_extra("whatsapp"), "extra": {"max_requests_per_second": 1000}}
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_WHATSAPP_DEFAULT", json.dumps(conn))
    ids = [sim.add_message(channel="whatsapp", timeline=[(0, "sent"), (0.05, "delivered")]) for _ in range(5)]
    sim.inject(Reply(429, {"error": "Too many requests for this API key."}, {"Retry-After": "0.3"}))

    event = await first_event(trigger(ids))

    assert event["status"] == "done"
    first, second = sim.requests[:2]
    assert first.path == second.path == LIST_PATH  # a 429 on the list is every id's answer: no poll by id
    assert Counter(polled_ids(sim)) == Counter(ids)  # then each once, as the list showed it final
    assert 0.28 <= second.at - first.at < 1.5  # Retry-After honoured


async def test_a_revoked_key_on_the_list_stops_the_wait_with_an_auth_error(sim):
    ids = [sim.add_message("sent", channel="whatsapp") for _ in range(3)]
    sim.revoke_key("whatsapp")

    event = await first_event(trigger(ids))

    assert event["status"] == "error"
    assert event["error"]["type"] == "OctopodsAuthError"
    assert event["error"]["error_code"] == 6
    assert polled_ids(sim) == []
    no_key(json.dumps(event))


async def test_a_batch_read_wait_reports_read_at_like_a_single_one(sim):
    ids = [send_wa(), send_wa("+12015550124")]

    event = await first_event(trigger(ids, wait_for="read"))

    assert [s["status"] for s in event["statuses"]] == ["read", "read"]
    assert all(s["read_at"] for s in event["statuses"])


async def test_a_batch_read_wait_times_out_naming_when_each_was_delivered(sim):
    ids = [send_wa("+12015550105"), send_wa("+12015550105")]

    event = await first_event(trigger(ids, timeout=0.6, wait_for="read"))

    assert event["status"] == "timeout"
    with pytest.raises(OctopodsTimeoutError) as timed_out:
        statuses_from_event(event, 0.6)
    assert "a time Octopods did not report" not in str(timed_out.value)
    for message_id in ids:
        assert re.search(rf"WhatsApp message {message_id} was delivered at \d{{4}}-", str(timed_out.value))


async def test_a_deleted_message_with_a_read_at_is_read_when_waited_on_alone(sim):
    message_id = sim.add_message("sent", channel="whatsapp")
    sim.inject(Reply(200, {"message_id": message_id, "status": "DELETED", "read_at": STAMP}))

    event = await first_event(trigger(message_id, wait_for="read"))

    assert event["status"] == "done"
    (status,) = require_delivered(statuses_from_event(event, 10), logging.getLogger("test"), "read")
    assert (status["status"], status["read_at"]) == ("deleted", "2026-04-24T10:23:45+00:00")


async def test_a_deleted_message_with_a_read_at_is_read_in_a_batch_too(sim):
    """A list item has no read_at: a 'deleted' one is asked for by id, which may say it was read."""
    deleted, read = sim.add_message("sent", channel="whatsapp"), sim.add_message("read", channel="whatsapp")
    sim.inject(
        Reply(
            200,
            {
                "messages": [
                    {"message_id": read, "status": "read"},
                    {"message_id": deleted, "status": "deleted"},
                ]
            },
        ),
        Reply(200, {"message_id": deleted, "status": "DELETED", "read_at": STAMP}),  # by id: it was read
    )

    event = await first_event(trigger([deleted, read], wait_for="read"))

    statuses = require_delivered(statuses_from_event(event, 10), logging.getLogger("test"), "read")
    assert [s["status"] for s in statuses] == ["deleted", "read"]


# -- the sensor ---------------------------------------------------------------------------------------------------


def test_the_sensor_pokes_several_ids_with_one_list_request(sim):
    ids = [sim.add_message(channel="whatsapp", timeline=[(0, "sent"), (0.4, "delivered")]) for _ in range(4)]
    sensor = OctopodsWhatsAppDeliverySensor(task_id="wait", message_ids=ids, poke_interval=0.05)

    first = sensor.poke({})
    time.sleep(0.45)
    second = sensor.poke({})

    assert not first.is_done
    assert second.is_done
    assert [s["message_id"] for s in second.xcom_value] == ids
    assert {s["status"] for s in second.xcom_value} == {"delivered"}
    assert sensor.octopods_conn_id == WA_CONN
    # Two list reads; the second shows all delivered: each is asked by id once, for its timestamps.
    assert (list_reads(sim), sorted(polled_ids(sim)), sim.request_count()) == (2, sorted(ids), 6)


def test_the_sensor_polls_the_last_pending_message_by_id(sim):
    done = sim.add_message("read", channel="whatsapp")
    slow = sim.add_message("sent", "sent", "read", channel="whatsapp")
    sensor = OctopodsWhatsAppDeliverySensor(
        task_id="wait", message_ids=[done, slow], poke_interval=0.05, wait_for="read"
    )

    results = [sensor.poke({}).is_done for _ in range(4)]

    assert results == [False, False, False, True]
    assert list_reads(sim) == 1  # the first poke: both pending; then only one, by id
    assert polled_ids(sim) == [done] + [slow] * 3  # done: final in the list, asked by id once


def test_a_transient_error_in_a_poke_never_gives_one_message_another_ones_status(sim):
    """
    Fixed in 9d82358: a poke that stopped at a failed by-id poll shifted the list's results onto the
    wrong ids, and a message never delivered was recorded with another message's status.
    """
    down = Reply(503, {"error": "Service Unavailable"})
    flaky = sim.add_message(down, "delivered", channel="whatsapp")  # its step is a Reply: not listed
    stuck = sim.add_message(down, "sent", channel="whatsapp")  # not listed at first, never delivered
    listed = sim.add_message("delivered", channel="whatsapp")
    sensor = OctopodsWhatsAppDeliverySensor(
        task_id="wait", message_ids=[flaky, stuck, listed], poke_interval=0.05, max_poll_interval=0.05
    )

    done = [sensor.poke({}).is_done]  # the list answers for `listed`; `flaky` answers 503; `stuck` waits
    assert stuck not in sensor.engine.last or sensor.engine.last[stuck].message_id == stuck
    assert stuck in sensor.engine.pending
    for _ in range(8):  # past every backoff: `flaky` is delivered, `stuck` answers 503 then "sent" for ever
        time.sleep(0.08)
        done.append(sensor.poke({}).is_done)

    assert not any(done)
    assert sensor.engine.pending == [stuck]
    assert {i: (s.message_id, s.status) for i, s in sensor.engine.last.items()} == {
        flaky: (flaky, "delivered"),
        stuck: (stuck, "sent"),
        listed: (listed, "delivered"),
    }


def test_the_sensor_refuses_an_untrackable_send_before_any_request(sim):
    sent = {"message_id": None, "request_id": "req-1", "template_id": 539, "channel": "whatsapp"}
    sensor = OctopodsWhatsAppDeliverySensor(task_id="wait", message_id=sent, poke_interval=0.05)

    with pytest.raises(OctopodsInputError, match="this Octopods workspace gives no id to track"):
        sensor.execute({})
    assert sim.request_count() == 0


def test_the_sensor_in_poke_mode_times_out_on_a_delivered_unread_message(sim):
    message_id = send_wa("+12015550105")
    sensor = OctopodsWhatsAppDeliverySensor(
        task_id="wait", message_id=message_id, wait_for="read", poke_interval=0.05, timeout=0.6
    )

    with pytest.raises(
        OctopodsTimeoutError, match=f"WhatsApp message {message_id} was delivered at .* and not read"
    ):
        sensor.execute({})


def test_the_sensor_defers_to_the_whatsapp_trigger_without_the_key(sim):
    sensor = OctopodsWhatsAppDeliverySensor(
        task_id="wait", message_ids="[4829174, 4829175]", wait_for="READ", deferrable=True, timeout=60
    )

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})

    deferred_trigger = deferred.value.trigger
    assert isinstance(deferred_trigger, OctopodsWhatsAppDeliveryTrigger)
    classpath, kwargs = deferred_trigger.serialize()
    assert classpath.endswith("OctopodsWhatsAppDeliveryTrigger")
    assert (kwargs["message_ids"], kwargs["wait_for"], kwargs["octopods_conn_id"]) == (
        [4829174, 4829175],
        "read",
        WA_CONN,
    )
    no_key(json.dumps(kwargs) + repr(deferred_trigger))
    assert sim.request_count() == 0


def test_the_sensor_deferred_in_a_dag_run_waits_for_the_read_receipts(sim, capfd, caplog):
    ids = [send_wa(), send_wa("+12015550124", TEMPLATE_SPANISH)]
    before = sim.request_count()

    results, output = run_dag("octopods_test_whatsapp_sensor_read", {"message_ids": ids}, capfd, caplog)

    state, statuses = results["wait_for_read"]
    assert state == "success", output[-3000:]
    assert [s["message_id"] for s in statuses] == ids
    assert {s["status"] for s in statuses} == {"read"}
    assert {s["channel"] for s in statuses} == {"whatsapp"}
    assert "[DAG TEST] running trigger in line" in output
    assert list_reads(sim) >= 1
    assert sim.request_count() - before <= 2 * list_reads(sim) + len(ids)
    no_key(output)
    no_key_in_files()


# -- the operator in dag.test() runs -----------------------------------------------------------------------------


def test_send_and_wait_for_the_read_receipt_deferred(sim, capfd, caplog):
    results, output = run_dag("octopods_test_whatsapp_send_and_wait_read", {}, capfd, caplog)

    state, xcom = results["send_whatsapp"]
    assert state == "success", output[-3000:]
    assert (xcom["status"], xcom["template_id"], xcom["channel"]) == ("read", TEMPLATE_BODY_ONLY, "whatsapp")
    assert xcom["read_at"] and xcom["delivered_at"]
    assert xcom["failure_reason"] is None
    (message,) = sim.messages.values()
    assert xcom["message_id"] == message.message_id
    assert message.variables == ["Alex", "1234"]  # rendered by Jinja as text, sent as an array
    assert sends(sim) == 1 and template_reads(sim) == 1
    assert "[DAG TEST] running trigger in line" in output
    no_key(output)
    no_key_in_files()


@pytest.mark.parametrize(
    ("conf", "said"),
    [
        ({"variables": ["Alex"]}, "Invalid message_variables: template 539 (order_shipped) expects body 2"),
        # The template list echoes the key (in a template's name): redacted in the log and the DB too.
        ({"template_id": 999}, "Invalid template_id: the key of this connection has no template 999"),
    ],
    ids=["variables", "unknown-template-key-echoed"],
)
def test_a_failed_template_check_fails_the_task_before_anything_is_sent(conf, said, sim, capfd, caplog):
    sim.templates[777] = {**sim.templates[539], "template_id": 777, "template_name": f"leak-{WA_KEY}"}

    results, output = run_dag("octopods_test_whatsapp_send_and_wait_read", conf, capfd, caplog)

    assert results["send_whatsapp"] == ("failed", None)
    assert said in output
    assert "777 (leak-***)" in output or "template_id" not in conf
    assert sends(sim) == 0
    assert sim.request_count() == template_reads(sim) == 1  # one try: the check is final, not retried
    no_key(output)
    no_key_in_files()


@pytest.mark.parametrize("channel", ["whatsapp", "sms"])
@pytest.mark.parametrize("policy", ["fail", "succeed"])
def test_an_untrackable_send_and_wait_fails_or_succeeds_and_never_sends_again(
    channel, policy, sim, capfd, caplog
):
    sim.untrackable = True
    task_id = "send_whatsapp" if channel == "whatsapp" else "send_sms"

    results, output = run_dag(f"octopods_test_{channel}_untrackable_{policy}", {}, capfd, caplog)

    state, xcom = results[task_id]
    # (Airflow 2's dag.test() may stop printing task log lines after other runs in one process:
    # the warning of "succeed" is checked where the task logs reach the output reliably.)
    if policy == "fail" or AIRFLOW_VERSION.major >= 3:
        assert "gives no message id to track" in output
    assert sends(sim) == 1
    assert polled_ids(sim) == [] and sim.request_count(f"/api/v1/sms/messages/{4829174}") == 0
    if policy == "fail":
        assert (state, xcom) == ("failed", None)
        assert "OctopodsDeliveryError" in output
        assert "Set on_untrackable='succeed'" in output
    else:
        assert state == "success", output[-3000:]
        assert xcom["message_id"] is None
        assert xcom["request_id"]
        if channel == "whatsapp":
            assert (xcom["template_id"], xcom["channel"]) == (TEMPLATE_BODY_ONLY, "whatsapp")
    no_key(output)


@pytest.mark.min_airflow("3.3", reason="task_state_store (a retry resumes the wait) is new in Airflow 3.3")
def test_a_retry_resumes_the_wait_on_the_whatsapp_message_it_sent(sim, capfd, caplog):
    """``execution_timeout`` (1 s) cuts the wait on a message delivered at 1.6 s; the retry resumes it."""
    sim.deliver_after, sim.read_after = 1.6, 2.0

    results, output = run_dag("octopods_test_whatsapp_send_and_wait_cut", {}, capfd, caplog)

    (message_id,) = sim.messages
    state, final = results["send_whatsapp"]
    assert state == "success", output[-3000:]
    assert (final["message_id"], final["status"], final["template_id"]) == (message_id, "delivered", 539)
    assert (
        f"WhatsApp message {message_id} was sent by an earlier try of this task; not sending it again."
        in output
    )
    assert sends(sim) == 1
    no_key(output)


def test_the_operator_defers_with_its_send_and_the_whatsapp_trigger(sim):
    operator = OctopodsSendWhatsAppTemplateOperator(
        task_id="send",
        template_id=541,
        destination_phone=PHONE,
        message_variables=MULTI_VARIABLES,
        wait_for_delivery=True,
        wait_for="read",
        deferrable=True,
        timeout=60,
    )

    class Ti:
        task_id, map_index = "send", -1

        def __init__(self) -> None:
            self.xcom: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:
            self.xcom[key] = value

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": Ti()})

    (message_id,) = sim.messages
    deferred_trigger = deferred.value.trigger
    assert isinstance(deferred_trigger, OctopodsWhatsAppDeliveryTrigger)
    assert (deferred_trigger.ids, deferred_trigger.wait_for) == ([message_id], "read")
    assert deferred.value.kwargs["sent"]["template_id"] == 541
    no_key(json.dumps(deferred_trigger.serialize()) + json.dumps(deferred.value.kwargs))
    assert sends(sim) == 1


# -- the notifier ------------------------------------------------------------------------------------------------

NOT_SENT = "The Octopods WhatsApp notification was not sent: "


def _context(**values: Any) -> dict[str, Any]:
    return {"dag": None, **values}


def test_the_notifier_renders_and_sends_once(sim, capfd, caplog):
    notifier = OctopodsWhatsAppNotifier(
        template_id="{{ template }}",
        destination_phone="{{ phone }}",
        message_variables=["{{ task_id }}", "{{ run_id }}"],
    )

    notifier(_context(template=539, phone="+12015550124", task_id="extract", run_id="manual__1"))

    (message,) = sim.messages.values()
    assert (message.phone_number, message.template_id, message.variables) == (
        "+12015550124",
        539,
        ["extract", "manual__1"],
    )
    assert notifier.message_variables == ["{{ task_id }}", "{{ run_id }}"]  # rendered a copy
    output = logged(capfd, caplog)
    assert NOT_SENT not in output
    assert sends(sim) == 1


def test_the_notifier_as_a_task_callback_in_a_dag_run(sim, capfd, caplog):
    results, output = run_dag("octopods_test_whatsapp_notifier", {}, capfd, caplog)

    assert results["nightly_report"][0] == "success"
    (message,) = sim.messages.values()
    assert message.variables == ["nightly_report", "octopods_test_whatsapp_notifier"]
    assert message.body == "Hi nightly_report, your order octopods_test_whatsapp_notifier has shipped."
    assert sends(sim) == 1
    assert NOT_SENT not in output
    no_key(output)


def test_async_notify_sends(sim, capfd, caplog):
    notifier = send_octopods_whatsapp_notification(
        template_id=541, destination_phone=PHONE, message_variables=MULTI_VARIABLES
    )

    assert asyncio.run(notifier.async_notify(_context())) is None

    (message,) = sim.messages.values()
    assert message.variables == MULTI_VARIABLES
    assert "Sent the Octopods WhatsApp notification: WhatsApp message" in logged(capfd, caplog)


@pytest.mark.airflow3_only(reason="BaseNotifier is awaitable (Deadline Alerts) only in Airflow 3")
def test_awaiting_the_notifier_renders_its_context_and_sends(sim):
    notifier = OctopodsWhatsAppNotifier(
        template_id=539,
        destination_phone=PHONE,
        message_variables='["{{ dag_id }}", "{{ run_id }}"]',
        context=_context(dag_run={"dag_id": "etl", "dag_run_id": "scheduled__2026"}),
    )

    async def notify() -> None:
        await notifier

    asyncio.run(notify())

    (message,) = sim.messages.values()
    assert message.variables == ["etl", "scheduled__2026"]


@pytest.mark.parametrize(
    ("mode", "kwargs", "said"),
    [
        ("sync", {"template_id": 999}, "Invalid template_id: the key of this connection has no template 999"),
        (
            "async",
            {"template_id": 999},
            "Invalid template_id: the key of this connection has no template 999",
        ),
        ("sync", {"message_variables": ["only one"]}, "Invalid message_variables: template 539"),
        ("async", {"message_variables": ["only one"]}, "Invalid message_variables: template 539"),
        ("sync", {"template_id": 542}, "Invalid header_attachment_url"),
        ("async", {"template_id": 542}, "Invalid header_attachment_url"),
        ("sync", {"message_variables": ["{{ oops }", "x"]}, "TemplateSyntaxError"),
        ("await", {"message_variables": ["{{ oops }", "x"]}, "TemplateSyntaxError"),
        ("await", {"template_id": "{{ 1 / 0 }}"}, "ZeroDivisionError"),
    ],
    ids=[
        "unknown-template",
        "unknown-template-async",
        "variables",
        "variables-async",
        "media",
        "media-async",
        "jinja",
        "jinja-await",
        "jinja-raises-await",
    ],
)
def test_a_bad_template_is_logged_and_never_raised(mode, kwargs, said, sim, capfd, caplog):
    arguments = {"template_id": 539, "destination_phone": PHONE, "message_variables": ["a", "b"], **kwargs}
    if mode == "await" and AIRFLOW_VERSION.major < 3:
        pytest.skip("BaseNotifier is awaitable (built with a context) only in Airflow 3")
    notifier = OctopodsWhatsAppNotifier(**arguments, **({"context": _context()} if mode == "await" else {}))

    async def awaited() -> None:
        await notifier

    if mode == "sync":
        assert notifier(_context()) is None
    elif mode == "async":
        assert asyncio.run(notifier.async_notify(_context())) is None
    else:
        asyncio.run(awaited())

    assert NOT_SENT + said in logged(capfd, caplog)
    assert sends(sim) == 0


def test_a_revoked_whatsapp_key_is_logged_by_the_notifier(sim, capfd, caplog):
    sim.revoke_key("whatsapp")

    OctopodsWhatsAppNotifier(template_id=539, destination_phone=PHONE, message_variables=["a", "b"])(
        _context()
    )

    output = logged(capfd, caplog)
    assert f"{NOT_SENT}Octopods rejected the Channel API key" in output
    assert "was rotated or revoked (HTTP 400: Deprecated API Key" in output


# -- the WhatsApp key never leaks ---------------------------------------------------------------------------------


@pytest.fixture
def debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


@pytest.mark.usefixtures("debug")
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(400, {"error_code": 1, "error": f"Bad key {WA_KEY} in request"}), OctopodsBadRequestError),
        (Reply(400, {"error_code": 6, "error": f"Deprecated API Key {WA_KEY}"}), OctopodsAuthError),
        (Reply(503, {"error": f"upstream saw {WA_KEY}", WA_KEY: WA_KEY}), OctopodsError),
        (Reply(502, f"<html>{WA_KEY}</html>"), OctopodsError),
        (Reply(429, {"error": f"slow down, {WA_KEY}"}, {"Retry-After": "0"}), OctopodsTransientError),
    ],
    ids=["bad-request", "revoked", "server-json", "server-html", "rate-limited"],
)
def test_an_answer_echoing_the_key_never_puts_it_in_an_error(client, reply, error, sim, capfd, caplog):
    sim.inject(reply)

    with pytest.raises(error) as raised:
        with_hook(
            client, WA_CONN, lambda h: h.send_whatsapp_template(539, PHONE, ["a", "b"], check_template=False)
        )

    text = str(raised.value) + repr(raised.value) + json.dumps(raised.value.to_dict(), default=str)
    no_key(text)
    if isinstance(raised.value, OctopodsApiError) and raised.value.error:
        assert "***" in raised.value.error
    logged(capfd, caplog)


@pytest.mark.usefixtures("debug")
@pytest.mark.parametrize("client", CLIENTS)
def test_template_names_echoing_the_key_are_redacted_in_the_not_found_error(client, sim, capfd, caplog):
    sim.templates[777] = {**sim.templates[539], "template_id": 777, "template_name": f"leak-{WA_KEY}"}

    with pytest.raises(OctopodsInputError) as refused:
        with_hook(client, WA_CONN, lambda h: h.send_whatsapp_template(999, PHONE, ["a", "b"]))

    no_key(str(refused.value))
    assert "777 (leak-***)" in str(refused.value)
    logged(capfd, caplog)


@pytest.mark.usefixtures("debug")
async def test_a_wait_whose_answers_echo_the_key_keeps_it_out_of_events_and_logs(sim, capfd, caplog):
    ids = [sim.add_message("sent", "delivered", channel="whatsapp") for _ in range(2)]
    sim.inject(
        Reply(503, {"error": f"list down {WA_KEY}"}),
        Reply(400, {"error_code": 6, "error": f"Deprecated API Key {WA_KEY}"}),
    )
    waiting = trigger(ids)

    event = await first_event(waiting)

    assert event["status"] == "error" and event["error"]["type"] == "OctopodsAuthError"
    no_key(json.dumps(event) + json.dumps(waiting.serialize()) + repr(waiting))
    logged(capfd, caplog)


@pytest.mark.usefixtures("debug")
def test_hook_reprs_and_sends_hold_no_key(sim, capfd, caplog):
    hook = OctopodsHook(WA_CONN)
    try:
        sent = hook.send_whatsapp_template(539, PHONE, ["a", "b"])
        status = hook.get_whatsapp_status(sent.message_id)
        listed = hook.list_messages(WHATSAPP)
        text = repr(hook) + repr(sent) + json.dumps(sent.to_dict()) + json.dumps(status.to_dict())
        text += repr(listed) + repr(hook.settings())
    finally:
        hook.close()

    no_key(text)
    logged(capfd, caplog)
    assert all(r.had_key for r in sim.requests)
