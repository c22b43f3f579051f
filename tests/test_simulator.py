"""
The Octopods simulator itself, over real HTTP: keys per channel, WhatsApp templates, sends,
statuses and the list of sent messages, untrackable sends, the request log, the CLI and the admin
endpoints.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_octopods.testing.__main__ import main
from airflow_provider_octopods.testing.simulator import (
    AUTH_HEADER,
    TEMPLATE_BODY_ONLY,
    TEMPLATE_MEDIA_HEADER,
    TEMPLATE_NO_VARIABLES,
    TEMPLATE_PENDING,
    TEMPLATE_SECTIONS,
    TEMPLATE_SPANISH,
    TEMPLATES,
    WHATSAPP_FAILURE_REASONS,
    OctopodsSimulator,
    Reply,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

SENT_AFTER, DELIVER_AFTER, READ_AFTER = 0.05, 0.1, 0.15
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
PHONE = "+12015550123"
SECTIONS = {"header": ["A-1"], "body": ["Alex", "Friday"], "footer": ["Acme"], "buttons": ["A-1"]}
TEMPLATES_PATH = "/api/v1/whatsapp/templates"
LIST_PATH = "/api/v1/whatsapp/messages"


@pytest.fixture
def sim() -> Iterator[OctopodsSimulator]:
    with OctopodsSimulator(sent_after=SENT_AFTER, deliver_after=DELIVER_AFTER, read_after=READ_AFTER) as s:
        yield s


def call(sim: OctopodsSimulator, method: str, path: str, key: str | None, **kwargs: Any) -> requests.Response:
    headers = {} if key is None else {AUTH_HEADER: key}
    return requests.request(method, sim.url + path, headers=headers, timeout=5, **kwargs)


def wa(sim: OctopodsSimulator, method: str, path: str, **kwargs: Any) -> requests.Response:
    return call(sim, method, path, sim.whatsapp_api_key, **kwargs)


def send_template(sim: OctopodsSimulator, template_id: Any, payload: Any) -> requests.Response:
    return wa(sim, "POST", f"/api/v1/whatsapp/templates/{template_id}/messages", json=payload)


def sent_id(sim: OctopodsSimulator, template_id: int = TEMPLATE_BODY_ONLY, phone: str = PHONE) -> int:
    answer = send_template(sim, template_id, {"destination_phone": phone, "message_variables": ["Alex", "1"]})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["message_id"])


def wa_status(sim: OctopodsSimulator, message_id: int) -> dict[str, Any]:
    answer = wa(sim, "GET", f"/api/v1/whatsapp/messages/{message_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_for(sim: OctopodsSimulator, message_id: int, status: str, timeout: float = 5.0) -> dict[str, Any]:
    """Poll until the WhatsApp message has ``status`` (any case); return that answer."""
    deadline = time.monotonic() + timeout
    while True:
        payload = wa_status(sim, message_id)
        if payload["status"].lower() == status or time.monotonic() > deadline:
            assert payload["status"].lower() == status, payload
            return payload
        time.sleep(0.02)


def stamp(sim: OctopodsSimulator, message_id: int, seconds: float) -> str:
    return (sim.messages[message_id].created_at + timedelta(seconds=seconds)).strftime(TIME_FORMAT)


def backdate(sim: OctopodsSimulator, message_id: int, seconds: float) -> None:
    """Move a timeline's start back, so its later steps are reached now (created_at is kept)."""
    with sim._lock:
        sim.messages[message_id].created -= seconds


def assert_error(answer: requests.Response, http_status: int, error_code: int | None) -> None:
    assert answer.status_code == http_status, answer.text
    payload = answer.json()
    assert payload.get("error_code") == error_code, payload
    assert isinstance(payload["error"], str) and payload["error"]
    assert payload["request_id"]


# -- keys per channel ----------------------------------------------------------------------------


def test_each_channel_accepts_only_its_own_key(sim):
    sms_id = sim.add_message("delivered")
    sms_status = f"/api/v1/sms/messages/{sms_id}"

    assert call(sim, "GET", TEMPLATES_PATH, sim.whatsapp_api_key).status_code == 200
    assert call(sim, "GET", sms_status, sim.api_key).status_code == 200
    for key in (sim.api_key, None, "some-other-key"):
        assert_error(call(sim, "GET", TEMPLATES_PATH, key), 401, None)
    for key in (sim.whatsapp_api_key, None, "some-other-key"):
        assert_error(call(sim, "GET", sms_status, key), 401, None)


def test_a_revoked_key_gets_error_code_5_on_sms_and_6_on_whatsapp(sim):
    sms_status = f"/api/v1/sms/messages/{sim.add_message('delivered')}"
    old_whatsapp_key = sim.whatsapp_api_key

    sim.revoke_key()
    assert_error(call(sim, "GET", sms_status, sim.api_key), 400, 5)
    assert wa(sim, "GET", TEMPLATES_PATH).status_code == 200  # the other channel is untouched

    sim.revoke_key(channel="whatsapp")
    revoked = call(sim, "GET", TEMPLATES_PATH, old_whatsapp_key)
    assert_error(revoked, 400, 6)
    assert revoked.json()["error"] == (
        "Deprecated API Key. Please go to your Octopods App, and get your new API Key"
    )

    sim.rotate_key("sim-whatsapp-key-rotated-42", channel="whatsapp")
    assert sim.whatsapp_api_key == "sim-whatsapp-key-rotated-42"
    assert call(sim, "GET", TEMPLATES_PATH, "sim-whatsapp-key-rotated-42").status_code == 200
    assert_error(call(sim, "GET", TEMPLATES_PATH, old_whatsapp_key), 400, 6)
    assert_error(call(sim, "GET", sms_status, old_whatsapp_key), 401, None)  # not an SMS key at all


def test_the_connection_of_each_channel_holds_its_key(sim):
    assert sim.connection_extra() == {"conn_type": "octopods", "host": sim.url, "password": sim.api_key}
    assert sim.connection_extra("whatsapp")["password"] == sim.whatsapp_api_key
    env = sim.connection_uri_env("octopods_whatsapp_default", channel="whatsapp")
    assert list(env) == ["AIRFLOW_CONN_OCTOPODS_WHATSAPP_DEFAULT"]
    assert json.loads(env["AIRFLOW_CONN_OCTOPODS_WHATSAPP_DEFAULT"]) == sim.connection_extra("whatsapp")
    assert json.loads(sim.connection_uri_env()["AIRFLOW_CONN_OCTOPODS_DEFAULT"])["password"] == sim.api_key


def test_the_rate_limit_is_per_key_and_counts_list_calls():
    with OctopodsSimulator(rate_limit=2) as sim:
        assert [wa(sim, "GET", LIST_PATH).status_code for _ in range(3)] == [400, 400, 429]
        assert call(sim, "GET", "/api/v1/sms/messages/1", sim.api_key).status_code == 400  # its own window
        assert sim.rate_limited == 1


# -- templates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [TEMPLATES_PATH, TEMPLATES_PATH + "/"])
def test_the_templates_are_listed(sim, path):
    answer = wa(sim, "GET", path)
    assert answer.status_code == 200
    assert answer.json() == TEMPLATES
    for template in answer.json():
        assert {
            "template_id",
            "template_name",
            "template_body",
            "template_components",
            "account_phone_number",
            "created_at",
            "template_status",
            "language",
            "active",
        } <= set(template)
        assert isinstance(template["template_id"], int)
        assert all({"type"} <= set(component) for component in template["template_components"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"active": "false"}, {TEMPLATE_PENDING}),
        ({"lang": "es"}, {TEMPLATE_SPANISH}),
        (
            {"active": "true", "lang": "en"},
            {TEMPLATE_BODY_ONLY, TEMPLATE_NO_VARIABLES, TEMPLATE_SECTIONS, TEMPLATE_MEDIA_HEADER},
        ),
        ({"lang": "fr"}, set()),
    ],
)
def test_the_templates_are_filtered(sim, query, expected):
    answer = wa(sim, "GET", TEMPLATES_PATH, params=query)
    assert answer.status_code == 200
    assert {t["template_id"] for t in answer.json()} == expected


def test_a_bad_active_filter_is_refused(sim):
    assert_error(wa(sim, "GET", TEMPLATES_PATH, params={"active": "maybe"}), 400, 1)


def test_a_template_added_by_a_test_is_listed_and_sendable(sim):
    sim.templates[900] = {
        "template_id": 900,
        "template_name": "custom",
        "template_body": "Code {{1}}",
        "template_components": [{"type": "BODY", "text": "Code {{1}}"}],
        "template_status": "Accepted",
        "language": "en",
        "active": True,
    }
    assert 900 in {t["template_id"] for t in wa(sim, "GET", TEMPLATES_PATH).json()}
    answer = send_template(sim, 900, {"destination_phone": PHONE, "message_variables": ["42"]})
    assert answer.status_code == 201
    assert sim.messages[answer.json()["message_id"]].body == "Code 42"
    assert 900 not in {
        t["template_id"] for t in OctopodsSimulator().templates.values()
    }  # a copy per instance


# -- sending a template --------------------------------------------------------------------------


def body_only(**extra: Any) -> dict[str, Any]:
    return {"destination_phone": PHONE, "message_variables": ["Alex", "1234"], **extra}


@pytest.mark.parametrize(
    ("template_id", "payload", "error_code"),
    [
        pytest.param(TEMPLATE_BODY_ONLY, ["not", "an", "object"], 1, id="body-not-an-object"),
        pytest.param(TEMPLATE_BODY_ONLY, {"message_variables": ["Alex", "1234"]}, 1, id="no-phone"),
        pytest.param(TEMPLATE_BODY_ONLY, body_only(destination_phone="12015550123"), 5, id="not-e164"),
        pytest.param(TEMPLATE_BODY_ONLY, body_only(destination_phone="+1555"), 5, id="impossible-phone"),
        pytest.param(999, body_only(destination_phone="+1555"), 5, id="phone-checked-before-template"),
        pytest.param(999, body_only(), 7, id="unknown-template"),
        pytest.param("abc", body_only(), 7, id="template-not-a-number"),
        pytest.param(TEMPLATE_PENDING, {"destination_phone": PHONE}, 10, id="pending-template"),
        pytest.param(
            TEMPLATE_MEDIA_HEADER,
            {"destination_phone": PHONE, "message_variables": ["A"]},
            1,
            id="no-header-url",
        ),
        pytest.param(
            TEMPLATE_MEDIA_HEADER,
            {"destination_phone": PHONE, "header_attachment_url": "ftp://example.com/r.png"},
            8,
            id="header-url-not-http",
        ),
        pytest.param(
            TEMPLATE_MEDIA_HEADER,
            {"destination_phone": PHONE, "header_attachment_url": "receipt.png", "message_variables": ["A"]},
            8,
            id="header-url-not-a-url",
        ),
        pytest.param(TEMPLATE_BODY_ONLY, {"destination_phone": PHONE}, 1, id="no-variables"),
        pytest.param(TEMPLATE_BODY_ONLY, body_only(message_variables=["Alex"]), 9, id="too-few-values"),
        pytest.param(TEMPLATE_BODY_ONLY, body_only(message_variables=["Alex", 1234]), 9, id="not-strings"),
        pytest.param(
            TEMPLATE_BODY_ONLY, body_only(message_variables={"1": "Alex"}), 9, id="numbered-missing"
        ),
        pytest.param(TEMPLATE_BODY_ONLY, body_only(message_variables="Alex"), 9, id="a-string"),
        pytest.param(TEMPLATE_NO_VARIABLES, body_only(message_variables=["extra"]), 9, id="values-for-none"),
        pytest.param(
            TEMPLATE_SECTIONS, body_only(message_variables=["Alex", "Friday"]), 9, id="array-for-sections"
        ),
        pytest.param(
            TEMPLATE_SECTIONS,
            body_only(message_variables={"1": "Alex", "2": "Friday"}),
            9,
            id="numbered-for-sections",
        ),
        pytest.param(
            TEMPLATE_SECTIONS,
            body_only(message_variables={k: v for k, v in SECTIONS.items() if k != "footer"}),
            9,
            id="section-missing",
        ),
        pytest.param(
            TEMPLATE_SECTIONS,
            body_only(message_variables={**SECTIONS, "footer": []}),
            9,
            id="section-count-wrong",
        ),
        pytest.param(
            TEMPLATE_BODY_ONLY, body_only(open_intercom_conversation="maybe"), 1, id="intercom-maybe"
        ),
        pytest.param(TEMPLATE_BODY_ONLY, body_only(open_intercom_conversation=2), 1, id="intercom-2"),
    ],
)
def test_a_bad_send_is_refused_with_its_error_code(sim, template_id, payload, error_code):
    assert_error(send_template(sim, template_id, payload), 400, error_code)
    assert sim.messages == {}


def test_a_send_that_is_not_json_is_refused(sim):
    answer = wa(sim, "POST", f"/api/v1/whatsapp/templates/{TEMPLATE_BODY_ONLY}/messages", data="Hi")
    assert_error(answer, 400, 1)


@pytest.mark.parametrize(
    ("template_id", "variables", "extra", "body"),
    [
        (TEMPLATE_BODY_ONLY, ["Alex", "1234"], {}, "Hi Alex, your order 1234 has shipped."),
        (TEMPLATE_BODY_ONLY, {"1": "Alex", "2": "1234"}, {}, "Hi Alex, your order 1234 has shipped."),
        (TEMPLATE_BODY_ONLY, ["Alex", "1234"], {"open_intercom_conversation": "yes"}, None),
        (TEMPLATE_BODY_ONLY, ["Alex", "1234"], {"open_intercom_conversation": 0}, None),
        (TEMPLATE_BODY_ONLY, ["Alex", "1234"], {"open_intercom_conversation": "OFF"}, None),
        (TEMPLATE_BODY_ONLY, ["Alex", "1234"], {"open_intercom_conversation": True}, None),
        (
            TEMPLATE_NO_VARIABLES,
            None,
            {"destination_user_name": "Alex"},
            "Thanks for subscribing to order updates!",
        ),
        (TEMPLATE_SECTIONS, SECTIONS, {}, "Hi Alex, your parcel arrives on Friday."),
        (
            TEMPLATE_MEDIA_HEADER,
            ["Alex"],
            {"header_attachment_url": "https://example.com/receipt.png"},
            "Here is your receipt, Alex.",
        ),
        (TEMPLATE_SPANISH, ["Alex", "1234"], {}, "Hola Alex, tu pedido 1234 ha sido enviado."),
    ],
)
def test_an_accepted_send_answers_201_and_is_recorded(sim, template_id, variables, extra, body):
    payload = {"destination_phone": PHONE, **extra}
    if variables is not None:
        payload["message_variables"] = variables
    answer = send_template(sim, template_id, payload)

    assert answer.status_code == 201, answer.text
    sent = answer.json()
    assert set(sent) == {"request_id", "message_id", "message_status_url"}
    assert sent["message_status_url"] == f"{sim.url}/api/v1/whatsapp/messages/{sent['message_id']}"
    message = sim.messages[sent["message_id"]]
    assert (message.channel, message.template_id, message.phone_number) == ("whatsapp", template_id, PHONE)
    assert message.variables == variables
    assert message.payload == payload
    assert message.channel_message_id.startswith("wamid.")
    if body is not None:
        assert message.body == body


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_an_untrackable_send_answers_only_a_request_id(sim, channel):
    sim.untrackable = True
    if channel == "sms":
        answer = call(
            sim, "POST", "/api/v1/sms/messages", sim.api_key, json={"destination_phone": PHONE, "body": "Hi"}
        )
    else:
        answer = send_template(sim, TEMPLATE_BODY_ONLY, body_only())
    assert answer.status_code == 201, answer.text
    assert list(answer.json()) == ["request_id"]
    (message,) = sim.messages.values()
    assert (message.channel, message.phone_number) == (channel, PHONE)


def test_untrackable_is_a_constructor_argument():
    assert OctopodsSimulator(untrackable=True).untrackable is True
    with pytest.raises(ValueError, match="status_shape"):
        OctopodsSimulator(status_shape="weird")  # type: ignore[arg-type]


# -- WhatsApp statuses ---------------------------------------------------------------------------


def test_a_whatsapp_message_goes_sent_delivered_read_with_its_timestamps(sim):
    message_id = sent_id(sim)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while (not seen or seen[-1]["status"] != "read") and time.monotonic() < deadline:
        seen.append(wa_status(sim, message_id))
        time.sleep(0.01)

    order = ["unknown", "sent", "delivered", "read"]
    statuses = [payload["status"] for payload in seen]
    assert statuses == sorted(statuses, key=order.index)  # never goes back
    for payload in seen:
        reached = order.index(payload["status"])
        assert (payload["sent_at"] is None) == (reached < 1)
        assert (payload["delivered_at"] is None) == (reached < 2)
        assert (payload["read_at"] is None) == (reached < 3)
    read = seen[-1]
    assert set(read) == {
        "request_id",
        "message_id",
        "status",
        "phone_number",
        "channel_message_id",
        "sent_at",
        "delivered_at",
        "read_at",
        "failure_reason",
    }
    assert (read["message_id"], read["phone_number"], read["failure_reason"]) == (message_id, PHONE, None)
    assert read["channel_message_id"] == sim.messages[message_id].channel_message_id
    assert read["sent_at"] == stamp(sim, message_id, SENT_AFTER)
    assert read["delivered_at"] == stamp(sim, message_id, DELIVER_AFTER)
    assert read["read_at"] == stamp(sim, message_id, READ_AFTER)


def test_the_overview_shape(sim):
    sim.status_shape = "overview"
    read = wait_for(sim, sent_id(sim), "read")
    assert set(read) == {
        "status",
        "status_message",
        "channel_message_id",
        "intercom_conversation_id",
        "intercom_conversation_part_id",
        "last_updated",
    }
    assert read["status"] == "READ"
    assert read["status_message"] == "Message read by the recipient."
    assert read["channel_message_id"].startswith("wamid.")
    assert (read["intercom_conversation_id"], read["intercom_conversation_part_id"]) == ("", "")

    failed = wait_for(sim, sent_id(sim, phone="+12015550101"), "failed")
    assert failed["status"] == "FAILED"
    assert failed["failure_reason"] == WHATSAPP_FAILURE_REASONS["not_whatsapp_user"]


@pytest.mark.parametrize(
    ("phone", "final", "reason"),
    [
        ("+12015550101", "failed", WHATSAPP_FAILURE_REASONS["not_whatsapp_user"]),
        ("+12015550108", "failed", WHATSAPP_FAILURE_REASONS["template_not_approved"]),
        ("+15551234567", "failed", WHATSAPP_FAILURE_REASONS["not_whatsapp_user"]),  # possible, not valid
        ("+12015550105", "delivered", None),
        ("+12015550106", "deleted", None),
        ("+12015550107", "unknown", None),
    ],
)
def test_the_whatsapp_magic_numbers(sim, phone, final, reason):
    message_id = sent_id(sim, phone=phone)
    time.sleep(READ_AFTER + 0.1)
    reference = wa_status(sim, message_id)
    assert (reference["status"], reference["failure_reason"]) == (final, reason)
    assert reference["read_at"] is None
    assert (reference["delivered_at"] is None) == (final in ("failed", "unknown"))
    sim.status_shape = "overview"
    overview = wa_status(sim, message_id)
    assert overview["status"] == final.upper()
    assert overview.get("failure_reason") == reason


def test_a_message_of_the_other_channel_is_not_found(sim):
    sms_id = sim.add_message("delivered")
    whatsapp_id = sim.add_message("read", channel="whatsapp")

    assert_error(wa(sim, "GET", f"/api/v1/whatsapp/messages/{sms_id}"), 400, 7)
    assert_error(call(sim, "GET", f"/api/v1/sms/messages/{whatsapp_id}", sim.api_key), 400, 6)
    assert (sim.messages[sms_id].polls, sim.messages[whatsapp_id].polls) == (0, 0)
    assert wa_status(sim, whatsapp_id)["status"] == "read"


def test_a_timeline_reports_the_times_its_steps_were_reached(sim):
    whatsapp_id = sim.add_message(
        channel="whatsapp", timeline=[(0, "unknown"), (30, "sent"), (60, "delivered"), (90, "read")]
    )
    sms_id = sim.add_message(timeline=[(0, "queued"), (25, "delivered")])
    backdate(sim, whatsapp_id, 100)
    backdate(sim, sms_id, 100)

    read = wa_status(sim, whatsapp_id)
    assert (read["sent_at"], read["delivered_at"], read["read_at"]) == (
        stamp(sim, whatsapp_id, 30),
        stamp(sim, whatsapp_id, 60),
        stamp(sim, whatsapp_id, 90),
    )
    delivered = call(sim, "GET", f"/api/v1/sms/messages/{sms_id}", sim.api_key).json()
    # delivered implies sent: both at the step that reached delivered
    assert delivered["sent_at"] == delivered["delivered_at"] == stamp(sim, sms_id, 25)


# -- the list of sent messages -------------------------------------------------------------------


def list_messages(sim: OctopodsSimulator, **params: Any) -> Any:
    answer = wa(sim, "GET", LIST_PATH, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_list_is_refused_before_any_whatsapp_message(sim):
    sim.add_message("delivered")  # an SMS does not count
    answer = wa(sim, "GET", LIST_PATH)
    assert_error(answer, 400, 7)
    assert answer.json()["error"] == "No messages have been sent on this channel yet."


def test_the_list_in_the_messages_shape_newest_first(sim):
    first = sent_id(sim)
    failed = sent_id(sim, phone="+12015550101")
    sim.add_message("delivered")  # SMS: not listed
    newest = sim.add_message("sent", channel="whatsapp")
    time.sleep(READ_AFTER + 0.1)

    listed = list_messages(sim)
    assert set(listed) == {"request_id", "messages"}
    assert [m["message_id"] for m in listed["messages"]] == [newest, failed, first]
    assert listed["messages"][0] == {
        "message_id": newest,
        "status": "sent",
        "phone_number": PHONE,
        "sent_at": stamp(sim, newest, SENT_AFTER),
    }
    assert listed["messages"][1] == {
        "message_id": failed,
        "status": "failed",
        "phone_number": "+12015550101",
        "sent_at": None,
        "failure_reason": WHATSAPP_FAILURE_REASONS["not_whatsapp_user"],
    }
    assert listed["messages"][2]["status"] == "read"
    assert [m["message_id"] for m in list_messages(sim, limit=2)["messages"]] == [newest, failed]
    assert wa(sim, "GET", LIST_PATH + "/").status_code == 200


def test_the_list_in_the_array_shape(sim):
    delivered = sent_id(sim)
    failed = sent_id(sim, phone="+12015550108")
    sim.list_shape = "array"
    time.sleep(READ_AFTER + 0.1)

    listed = list_messages(sim)
    assert isinstance(listed, list)
    assert listed == [
        {
            "user_phone_number": "+12015550108",
            "created_at": sim.messages[failed].created_at.strftime(TIME_FORMAT),
            "message_content": "Hi Alex, your order 1 has shipped.",
            "message_status": {
                "channel_message_id": failed,
                "message_status": "FAILED",
                "failure_reason": {"code": 470, "title": WHATSAPP_FAILURE_REASONS["template_not_approved"]},
            },
        },
        {
            "user_phone_number": PHONE,
            "created_at": sim.messages[delivered].created_at.strftime(TIME_FORMAT),
            "message_content": "Hi Alex, your order 1 has shipped.",
            "message_status": {
                "channel_message_id": delivered,
                "message_status": "READ",
                "failure_reason": "",
            },
        },
    ]


def test_the_list_limit_is_capped_at_100(sim):
    ids = [sim.add_message("sent", channel="whatsapp") for _ in range(105)]
    assert [m["message_id"] for m in list_messages(sim)["messages"]] == ids[::-1][:100]
    assert len(list_messages(sim, limit=500)["messages"]) == 100
    assert len(list_messages(sim, limit=1)["messages"]) == 1


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1.5", ""])
def test_a_bad_list_limit_is_refused(sim, limit):
    sim.add_message("sent", channel="whatsapp")
    assert_error(wa(sim, "GET", LIST_PATH, params={"limit": limit}), 400, 1)


def test_the_list_ties_are_newest_id_first_and_it_is_counted(sim):
    answer = requests.post(
        sim.url + "/_simulator/messages",
        json={"messages": [{"timeline": [[0, "sent"]], "channel": "whatsapp"} for _ in range(3)]},
        timeout=5,
    )
    ids = answer.json()["message_ids"]  # one batch: one creation time
    assert [m["message_id"] for m in list_messages(sim)["messages"]] == sorted(ids, reverse=True)
    assert requests.get(sim.url + "/_simulator/stats", timeout=5).json()["list_requests"] == 1


def test_the_list_consumes_no_step(sim):
    scripted = sim.add_message("sent", "delivered", channel="whatsapp")
    refused = sim.add_message(Reply(503, "<html>"), "read", channel="whatsapp")

    for _ in range(3):
        assert [(m["message_id"], m["status"]) for m in list_messages(sim)["messages"]] == [
            (scripted, "sent")
        ]
    assert sim.messages[scripted].polls == 0
    assert [wa_status(sim, scripted)["status"] for _ in range(3)] == ["sent", "delivered", "delivered"]
    assert wa(sim, "GET", f"/api/v1/whatsapp/messages/{refused}").status_code == 503  # still its first step
    assert [m["message_id"] for m in list_messages(sim)["messages"]] == [refused, scripted]


# -- the request log, the CLI, the admin endpoints -----------------------------------------------


def test_each_request_is_logged_without_the_key(sim, monkeypatch):
    key = sim.whatsapp_api_key
    logger = logging.getLogger("airflow_provider_octopods.testing.simulator")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    # Airflow 2's logging config disables the loggers that existed before it ran, and sends the
    # provider's records to stdout rather than to caplog: listen on the logger itself.
    monkeypatch.setattr(logger, "disabled", False)
    level = logger.level
    logger.setLevel(logging.INFO)  # through setLevel: it clears the levels loggers cached earlier
    logger.addHandler(handler)
    try:
        wa(sim, "GET", TEMPLATES_PATH, params={"lang": "es"})
        wa(sim, "GET", f"/api/v1/whatsapp/messages/{key}", params={"key": key})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [r.getMessage() for r in records]
    assert "GET /api/v1/whatsapp/templates?lang=es 200" in lines
    assert "GET /api/v1/whatsapp/messages/***?key=*** 400" in lines
    assert not any(key in line for line in lines)


def test_the_cli_help_is_plain_text(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for markup in ("``", ":mod:", ":class:", ":data:", ":meth:"):
        assert markup not in text
    for needed in (
        "--whatsapp-key",
        "--read-after",
        "--untrackable",
        "--status-shape",
        "--list-shape",
        "--quiet",
        "...0105",
        "...0140",
        str(TEMPLATE_SECTIONS),
        "/_simulator/settings",
    ):
        assert needed in text


@pytest.mark.parametrize("quiet", [False, True])
def test_the_cli_prints_both_connections_and_logs_requests_on_stderr(tmp_path, quiet):
    key = "cli-whatsapp-key-0123456789"
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_octopods.testing", "--port", "0", "--whatsapp-key", key]
            + (["--quiet"] if quiet else []),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip().rsplit(" ", 1)[1]
            printed = [process.stdout.readline() for _ in range(3)]
            answer = requests.get(url + TEMPLATES_PATH, headers={AUTH_HEADER: key}, timeout=5)
            assert answer.status_code == 200
        finally:
            process.terminate()
            process.wait(15)
            if process.stdout is not None:
                process.stdout.close()
    assert "AIRFLOW_CONN_OCTOPODS_WHATSAPP_DEFAULT" in printed[2] and key in printed[2]
    logged = stderr.read_text()
    assert ("GET /api/v1/whatsapp/templates 200" in logged) is not quiet
    assert key not in logged


def test_the_settings_endpoint_switches_the_shapes(sim):
    settings = sim.url + "/_simulator/settings"
    assert requests.get(settings, timeout=5).json() == {
        "untrackable": False,
        "status_shape": "reference",
        "list_shape": "messages",
    }
    answer = requests.post(settings, json={"status_shape": "overview", "untrackable": True}, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"untrackable": True, "status_shape": "overview", "list_shape": "messages"}
    assert (sim.untrackable, sim.status_shape) == (True, "overview")

    for bad in ({"status_shape": "weird"}, {"untrackable": "yes"}, {"colour": "blue"}, ["list_shape"]):
        assert_error(requests.post(settings, json=bad, timeout=5), 400, 1)
    answer = requests.post(settings, json={"list_shape": "array", "status_shape": "nope"}, timeout=5)
    assert answer.status_code == 400
    assert sim.settings == {"untrackable": True, "status_shape": "overview", "list_shape": "messages"}
    assert sim.requests == []  # admin requests are not recorded


def test_the_admin_endpoints_script_whatsapp_messages_and_count_them(sim):
    created = requests.post(
        sim.url + "/_simulator/messages",
        json={"messages": [{"timeline": [[0, "delivered"]], "channel": "whatsapp", "template_id": 539}]},
        timeout=5,
    )
    assert created.status_code == 201
    (message_id,) = created.json()["message_ids"]
    assert (sim.messages[message_id].channel, sim.messages[message_id].template_id) == ("whatsapp", 539)
    assert wa_status(sim, message_id)["status"] == "delivered"
    send_template(sim, TEMPLATE_BODY_ONLY, body_only())
    call(sim, "POST", "/api/v1/sms/messages", sim.api_key, json={"destination_phone": PHONE, "body": "Hi"})

    stats = requests.get(sim.url + "/_simulator/stats", timeout=5).json()
    assert (stats["whatsapp_status_requests"], stats["sends"], stats["status_requests"]) == (1, 2, 0)
    bad = requests.post(
        sim.url + "/_simulator/messages",
        json={"messages": [{"timeline": [[0, "sent"]], "channel": "fax"}]},
        timeout=5,
    )
    assert_error(bad, 400, 1)
