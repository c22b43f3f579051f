"""
Security: the Channel API key only ever travels in the ``X-Octopods-Auth`` header to the origin
the connection names, and untrusted input (ids, phone numbers, answers) is bounded and checked
before it can do harm.

- Key hygiene: with DEBUG logging of urllib3, requests, aiohttp, asyncio and Airflow, through
  successes, retries, timeouts, refused redirects, API errors and a revoked key, on both hooks,
  the trigger and the sensor, the key is in no URL, log line, exception, repr, XCom, trigger
  kwargs or event, nor in any file under AIRFLOW_HOME.
- Secrets masker: the hooks register the key (stripped, as sent) with Airflow's masker; a task
  run by Airflow's real supervisor that logs and prints the key shows ``***`` in its log file.
- Redirects: same-origin ones are followed; cross-origin ones (another address, another port)
  are refused and the other server is never contacted. A control shows what plain ``requests``
  and ``aiohttp`` would do.
- Transport: plain ``http://`` to a host that is not loopback is refused unless the connection
  opts in; TLS certificates are verified by default.
- Input: message ids and phone numbers that could alter a request never reach the network;
  answers are bounded to ``MAX_RESPONSE_BYTES`` whether they declare a Content-Length, are
  chunked without end, or are gzip bombs.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_octopods.exceptions import (
    OctopodsAuthError,
    OctopodsBadRequestError,
    OctopodsCertificateError,
    OctopodsDeliveryError,
    OctopodsError,
    OctopodsInputError,
    OctopodsSendUnconfirmedError,
    OctopodsTransientError,
)
from airflow_provider_octopods.hooks.octopods import (
    AUTH_HEADER,
    MAX_REDIRECTS,
    MAX_RESPONSE_BYTES,
    OctopodsAsyncHook,
    OctopodsHook,
    connection_settings,
)
from airflow_provider_octopods.testing import Hang, OctopodsSimulator, Reply
from airflow_provider_octopods.utils import budget
from tests.conftest import AIRFLOW_HOME, DAGS_FOLDER, TEST_API_KEY, get_dag
from tests.reliability.servers import TinyServer, self_signed_certificate, server_tls_context, status_body
from tests.reliability.waits import (
    FAST_BACKOFF_BASE,
    first_event_with_lag,
    make_trigger,
    point_connection_at,
    poke_wait,
    sensor,
    use_connection,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

CLIENTS = ["sync", "async"]
LEAKY_DAG = Path(__file__).parent / "reliability" / "dags" / "octopods_security_dag.py"


def get_status(client: str, message_id: Any, max_retries: int = 0) -> Any:
    """One status through the sync or the async hook."""
    if client == "sync":
        hook = OctopodsHook(max_retries=max_retries)
        try:
            return hook.get_sms_status(message_id)
        finally:
            hook.close()

    async def ask() -> Any:
        async with OctopodsAsyncHook() as hook:
            return await hook.get_sms_status(message_id)

    return asyncio.run(ask())


def send(client: str, phone: Any, body: Any = "Your code is 123456") -> Any:
    """Send an SMS through the sync or the async hook."""
    if client == "sync":
        return OctopodsHook().send_sms(phone, body)

    async def post() -> Any:
        async with OctopodsAsyncHook() as hook:
            return await hook.send_sms(phone, body)

    return asyncio.run(post())


@pytest.fixture
def conn(octopods_conn: OctopodsSimulator, monkeypatch: pytest.MonkeyPatch) -> OctopodsSimulator:
    """The simulator, 0.3 s per request and retries that wait milliseconds."""
    point_connection_at(monkeypatch, octopods_conn)
    monkeypatch.setattr(budget, "BACKOFF_BASE", FAST_BACKOFF_BASE)
    return octopods_conn


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Everything at DEBUG: the HTTP libraries (stdlib logging) and Airflow's structlog loggers."""
    try:
        import structlog
    except ImportError:  # Airflow 2 has no structlog: all its loggers are stdlib ones
        structlog = None  # type: ignore[assignment]
    saved = structlog.get_config() if structlog else {}
    if structlog:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "aiohttp", "asyncio", "airflow", "airflow_provider_octopods"):
        caplog.set_level(logging.DEBUG, logger=name)
    try:
        yield
    finally:
        if structlog:
            structlog.configure(**saved)


def files_holding(secret: str) -> list[Path]:
    return [
        path for path in AIRFLOW_HOME.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()
    ]


# -- key hygiene ------------------------------------------------------------------------------


def _describe(err: OctopodsError) -> list[str]:
    return [str(err), repr(err), json.dumps(err.to_dict())]


def test_the_key_only_travels_in_the_header_even_with_debug_logging(conn, debug_logging, capfd, caplog):
    ok = conn.add_message("delivered")
    flaky = conn.add_message(Reply(503, "busy"), "delivered")
    hung = conn.add_message(Hang(30))
    moved = conn.add_message(Reply(302, None, {"Location": "http://127.0.0.2:9/api/v1/sms/messages/1"}))
    unknown = 424242
    seen: list[str] = []

    for client in CLIENTS:
        seen.append(json.dumps(get_status(client, ok).to_dict()))
        seen.append(json.dumps(get_status(client, flaky, max_retries=1).to_dict()))
        for message_id in (hung, moved, unknown):
            with pytest.raises(OctopodsError) as raised:
                get_status(client, message_id)
            seen += _describe(raised.value)
        seen.append(json.dumps(send(client, "+12015550123").to_dict()))
    seen += [repr(OctopodsHook()), repr(OctopodsAsyncHook()), OctopodsHook().test_connection()[1]]
    seen.append(json.dumps(poke_wait(ok, timeout=5)))
    trigger = make_trigger(ok, 5)
    seen.append(json.dumps(trigger.serialize()))
    seen.append(json.dumps(asyncio.run(first_event_with_lag(trigger))[0]))

    conn.revoke_key()
    for client in CLIENTS:
        with pytest.raises(OctopodsAuthError) as raised:
            get_status(client, ok)
        seen += _describe(raised.value)
    revoked_event = asyncio.run(first_event_with_lag(make_trigger(ok, 5)))[0]
    assert revoked_event["status"] == "error"
    seen.append(json.dumps(revoked_event))

    out, err = capfd.readouterr()
    output = out + err + caplog.text
    # The controls: DEBUG logging was on, and the key did travel, in the header, on every request.
    assert any(r.levelno == logging.DEBUG and r.name.startswith("urllib3") for r in caplog.records)
    assert conn.requests and all(r.had_key for r in conn.requests)
    assert not [r.path for r in conn.requests if TEST_API_KEY in r.path]
    assert TEST_API_KEY not in output
    assert not [text for text in seen if TEST_API_KEY in text]
    assert not files_holding(TEST_API_KEY)


@pytest.mark.parametrize("client", CLIENTS)
def test_the_hooks_register_the_key_as_sent_with_the_secrets_masker(client, monkeypatch):
    from airflow.providers.common.compat.sdk import redact

    # A key never seen by this process, and a password with stray blanks: Airflow would mask the
    # password as typed, while the hook sends (and must mask) the key without them.
    key = f"octo-mask-probe-{uuid.uuid4().hex}"
    with OctopodsSimulator(key) as sim:
        use_connection(monkeypatch, sim.url, key=f"  {key} \n")
        message_id = sim.add_message("delivered")
        line = f"a line that holds the key {key} in a task log"
        assert key in str(redact(line))

        assert get_status(client, message_id).status == "delivered"

        assert str(redact(line)) == "a line that holds the key *** in a task log"
        assert sim.requests[-1].had_key


@pytest.mark.min_airflow("3.3", reason="supervise_task() is in the Task SDK from Airflow 3.3")
@pytest.mark.airflow3_only(reason="task logs are written by the Task SDK supervisor of Airflow 3")
@pytest.mark.usefixtures("airflow_db")
def test_a_task_that_logs_the_key_shows_stars_in_its_log_file(octopods_conn, monkeypatch, capfd):
    """
    Run a task the way a worker does: Airflow's supervisor forks the task process and writes its
    log file, masking every secret registered with it. The password carries stray blanks, so
    only the hook's own registration of the key as sent can mask the bare key.
    """
    from airflow.executors import workloads
    from airflow.models.dagrun import get_or_create_dagrun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor, supervise_task
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType

    shutil.copy(LEAKY_DAG, DAGS_FOLDER)
    use_connection(monkeypatch, octopods_conn.url, key=f"  {TEST_API_KEY} \n", timeout=5)
    message_id = octopods_conn.add_message("delivered")
    dag_id = "octopods_security_leaky_task"
    dag = get_dag(dag_id)
    dag.test(run_conf={"message_id": message_id}, mark_success_pattern=".*")  # stores the DAG, runs nothing

    with create_session() as session:
        now = datetime.now(UTC)
        stored = SerializedDagModel.get_dag(dag_id, session=session)
        assert stored is not None
        dag_run = get_or_create_dagrun(
            dag=stored,
            run_id=f"security-{uuid.uuid4().hex}",
            logical_date=None,
            run_after=now,
            start_date=now,
            data_interval=None,
            conf={"message_id": message_id},
            triggered_by=DagRunTriggeredByType.TEST,
            triggering_user_name="test_security",
            session=session,
        )
        ti = dag_run.get_task_instance("log_the_key", session=session)
        assert ti is not None
        ti.try_number, ti.state = 1, TaskInstanceState.QUEUED
        session.commit()
        workload = workloads.ExecuteTask.make(ti, bundle_info=workloads.BundleInfo(name="dags-folder"))
    assert workload.log_path is not None
    log_file = AIRFLOW_HOME / "logs" / workload.log_path

    exit_code = supervise_task(
        ti=workload.ti,  # type: ignore[arg-type]  # as the executors pass it
        bundle_info=workload.bundle_info,
        dag_rel_path=workload.dag_rel_path,
        token=workload.token,
        client=InProcessTestSupervisor._api_client(dag),
        log_path=str(log_file),
    )

    assert exit_code == 0
    events = [json.loads(line)["event"] for line in log_file.read_text().splitlines() if line.strip()]
    probes = sorted(e for e in events if "LEAK-PROBE" in e)
    assert probes == [
        "LEAK-PROBE print: ***",
        "LEAK-PROBE stdlib logger: ***",
        "LEAK-PROBE task logger: ***",
    ]
    assert octopods_conn.requests[-1].had_key
    out, err = capfd.readouterr()
    assert TEST_API_KEY not in out + err
    assert not files_holding(TEST_API_KEY)


# -- a server that echoes the key -----------------------------------------------------------------

#: Status requests of the echoing server, by message id: each answer holds the key it was sent.
ECHO_400, ECHO_401, ECHO_503, ECHO_FAILED, ECHO_MOVED = 4001, 4011, 5031, 2001, 3021
#: A failed status whose JSON spells the echoed key in ``\uXXXX`` escapes: not in the raw text.
ECHO_ESCAPED = 2002
#: Sends of the echoing server, by the destination number: HTTP 400, or HTTP 500 (may have been sent).
ECHO_SEND_400, ECHO_SEND_500 = "+12015550140", "+12015550150"


def echo(request: web.Request) -> str:
    """What the echoing server says about the key it was sent."""
    return f"unknown key {request.headers.get(AUTH_HEADER, '')}"


@pytest.fixture
def echo_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[TinyServer]:
    """
    An Octopods that echoes the key of every request in its answers: in error bodies (HTTP 400, 401,
    503 and 500 to a send), in a status's ``failure_reason`` and in a redirect's ``Location``.

    The connection's password carries stray blanks: what must be redacted is the key as sent.
    """

    async def answer(request: web.Request) -> web.StreamResponse:
        key = request.headers.get(AUTH_HEADER, "")
        if request.method == "POST":
            phone = (await request.json())["destination_phone"]
            status = 500 if phone == ECHO_SEND_500 else 400
            return web.json_response(
                {"error_code": 3, "error": echo(request), "request_id": "req-echo"}, status=status
            )
        message_id = int(request.path.rsplit("/", 1)[-1])
        if message_id == ECHO_FAILED:
            body = {**status_body(message_id, "failed"), "failure_reason": f"carrier said: {echo(request)}"}
            return web.json_response(body)
        if message_id == ECHO_ESCAPED:
            body = {**status_body(message_id, "failed"), "failure_reason": f"carrier said: {echo(request)}"}
            escaped = "".join(f"\\u{ord(c):04x}" for c in key)
            text = json.dumps(body).replace(key, escaped)
            assert key not in text
            return web.Response(text=text, content_type="application/json")
        if message_id == ECHO_MOVED:
            return web.Response(status=302, headers={"Location": f"https://{key}.example/x?key={key}"})
        status = {ECHO_400: 400, ECHO_401: 401}.get(message_id, 503)
        return web.json_response({"error": echo(request), "request_id": "req-echo"}, status=status)

    with TinyServer(answer) as server:
        use_connection(monkeypatch, server.url, key=f"  {TEST_API_KEY} \n", timeout=2)
        monkeypatch.setattr(budget, "BACKOFF_BASE", FAST_BACKOFF_BASE)
        yield server


def assert_no_key_in(texts: list[str], output: str) -> None:
    """The key is in none of ``texts`` and not in the output; ``***`` stands where the server put it."""
    assert not [text for text in texts if TEST_API_KEY in text]
    assert TEST_API_KEY not in output
    assert all("***" in text for text in texts), [text for text in texts if "***" not in text]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_key_echoed_by_the_server_is_in_no_error_nor_status(
    client, echo_server, debug_logging, capfd, caplog
):
    # Regression (the redesign's defect 4): Octopods' error text and failure_reason reached the
    # exception, its to_dict() and the trigger event verbatim, key included.
    from airflow_provider_octopods.exceptions import error_from_dict

    texts: list[str] = []
    expected = {
        ECHO_400: OctopodsBadRequestError,
        ECHO_401: OctopodsAuthError,
        ECHO_503: OctopodsTransientError,
        ECHO_MOVED: OctopodsBadRequestError,
    }
    for message_id, kind in expected.items():
        with pytest.raises(kind) as raised:
            get_status(client, message_id, max_retries=1)
        err = raised.value
        rebuilt = error_from_dict(json.loads(json.dumps(err.to_dict())))
        texts += [*_describe(err), *_describe(rebuilt)]
        if message_id != ECHO_MOVED:
            assert err.error == rebuilt.error == "unknown key ***"
            assert "unknown key ***" in str(err)
        else:
            assert "https://***.example" in str(err)
    for phone, kind in (
        (ECHO_SEND_400, OctopodsBadRequestError),
        (ECHO_SEND_500, OctopodsSendUnconfirmedError),
    ):
        with pytest.raises(kind) as raised:
            send(client, phone)
        assert raised.value.error == "unknown key ***"
        texts += _describe(raised.value)

    for message_id in (ECHO_FAILED, ECHO_ESCAPED):  # the key as sent, or JSON-escaped past a text search
        status = get_status(client, message_id)
        assert status.failure_reason == "carrier said: unknown key ***"
        texts += [repr(status), json.dumps(status.to_dict())]
    if client == "sync":  # the sensor in poke mode fails with the reason it read
        with pytest.raises(OctopodsDeliveryError) as raised:
            poke_wait(ECHO_FAILED, timeout=5)
        texts += [str(raised.value), repr(raised.value)]

    out, err = capfd.readouterr()
    assert_no_key_in(texts, out + err + caplog.text)
    assert echo_server.seen and all(seen.had_key for seen in echo_server.seen)


def test_a_key_echoed_by_the_server_is_in_no_trigger_event(echo_server, debug_logging, capfd, caplog):
    from airflow_provider_octopods.exceptions import OctopodsTimeoutError

    texts: list[str] = []
    for message_id in (ECHO_400, ECHO_401, ECHO_MOVED, ECHO_503, ECHO_FAILED):
        trigger = make_trigger(message_id, 1.5)
        event = asyncio.run(first_event_with_lag(trigger))[0]
        texts.append(json.dumps(event))
        if message_id == ECHO_FAILED:
            assert event["status"] == "done" and "unknown key ***" in texts[-1]
        elif message_id == ECHO_503:
            assert event["status"] == "timeout" and "unknown key ***" in event["last_error"]
        else:
            assert event["status"] == "error", event
        # What the worker makes of the event: the task's error, as the task log shows it.
        kinds = (OctopodsDeliveryError, OctopodsTimeoutError, OctopodsBadRequestError, OctopodsAuthError)
        with pytest.raises(kinds) as raised:
            sensor(message_id, 1.5, deferrable=True).execute_complete({}, event)
        texts += [str(raised.value), repr(raised.value)]

    out, err = capfd.readouterr()
    assert_no_key_in(texts, out + err + caplog.text)


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_a_key_echoed_by_the_server_is_in_no_task_log_nor_the_metadata_database(
    mode, echo_server, capfd, caplog
):
    """Real ``dag.test()`` runs: the task logs and the metadata DB (events, XCom ...) hold no key."""
    from tests.conftest import AIRFLOW_V_3_0_PLUS

    output = ""
    for message_id, reason in ((ECHO_FAILED, "OctopodsDeliveryError"), (ECHO_400, "OctopodsBadRequestError")):
        # Airflow 2's dag.test() adds a handler to the task logger; keep it from outliving the test.
        task_logger = logging.getLogger("airflow.task")
        handlers, propagate = task_logger.handlers[:], task_logger.propagate
        task_logger.propagate = AIRFLOW_V_3_0_PLUS
        try:
            dag_run = get_dag(f"octopods_test_{mode}").test(run_conf={"message_id": message_id})
        finally:
            task_logger.handlers[:] = handlers
            task_logger.propagate = propagate
        assert dag_run.state == "failed"
        out, err = capfd.readouterr()
        output += out + err
        assert TEST_API_KEY not in out + err, "the key is in the task log"
        assert reason in out + err and "unknown key ***" in out + err

    assert TEST_API_KEY not in output + caplog.text
    assert not files_holding(TEST_API_KEY), "the key is in a task log or the metadata database"


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_a_same_origin_redirect_is_followed_with_the_key(client, conn):
    message_id = 7770001
    conn.add_message(
        Reply(307, None, {"Location": f"/api/v1/sms/messages/{message_id}"}),
        "delivered",
        message_id=message_id,
    )

    assert get_status(client, message_id).status == "delivered"

    assert [(r.path, r.had_key) for r in conn.requests] == [(f"/api/v1/sms/messages/{message_id}", True)] * 2


@pytest.fixture(params=["127.0.0.2", "another port"])
def other_origin(request: pytest.FixtureRequest) -> Iterator[OctopodsSimulator]:
    """A second Octopods on another loopback address, or on another port of the same one."""
    host = "127.0.0.2" if request.param == "127.0.0.2" else "127.0.0.1"
    with OctopodsSimulator(TEST_API_KEY, host=host) as sim:
        yield sim


@pytest.mark.parametrize("client", CLIENTS)
def test_a_cross_origin_redirect_is_refused_and_the_other_host_never_sees_the_key(client, conn, other_origin):
    message_id = 7770002
    other_origin.add_message("delivered", message_id=message_id)
    target = f"{other_origin.url}/api/v1/sms/messages/{message_id}"
    conn.add_message(Reply(302, None, {"Location": target}), message_id=message_id)

    with pytest.raises(OctopodsBadRequestError, match="redirected to another origin") as refused:
        get_status(client, message_id)

    assert "the API key was not sent there" in str(refused.value)
    assert other_origin.requests == []
    assert other_origin.connections_opened == 0


def test_without_the_rule_plain_clients_would_hand_the_key_to_the_other_host(conn, other_origin):
    """The control: ``requests`` and ``aiohttp`` forward custom headers across origins."""
    import aiohttp
    import requests

    message_id = 7770003
    other_origin.add_message("delivered", message_id=message_id)
    target = f"{other_origin.url}/api/v1/sms/messages/{message_id}"
    conn.add_message(Reply(302, None, {"Location": target}), message_id=message_id)
    url = f"{conn.url}/api/v1/sms/messages/{message_id}"

    assert requests.get(url, headers={AUTH_HEADER: TEST_API_KEY}, timeout=5).status_code == 200

    async def follow() -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers={AUTH_HEADER: TEST_API_KEY}) as r,
        ):
            return r.status

    assert asyncio.run(follow()) == 200
    assert [r.had_key for r in other_origin.requests] == [True, True]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_redirect_loop_is_cut(client, conn):
    message_id = 7770004
    conn.add_message(
        Reply(307, None, {"Location": f"/api/v1/sms/messages/{message_id}"}), message_id=message_id
    )

    with pytest.raises(OctopodsTransientError, match="redirected more than 3 times"):
        get_status(client, message_id)

    assert conn.request_count() == MAX_REDIRECTS + 1


# -- transport ---------------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_plain_http_to_a_remote_host_is_refused_before_any_request(client, monkeypatch):
    use_connection(monkeypatch, "http://octopods.example")

    with pytest.raises(OctopodsInputError, match="would send the API key unencrypted"):
        get_status(client, 1)


def test_plain_http_needs_an_explicit_opt_in_and_loopback_is_exempt():
    from tests.test_fuzz import _Conn

    assert connection_settings(
        _Conn("http://octopods.example", None, '{"allow_insecure_http": true}')
    ).base_url == ("http://octopods.example")
    for value in ("false", "0", "no", ""):
        with pytest.raises(OctopodsInputError):
            connection_settings(
                _Conn("http://octopods.example", None, json.dumps({"allow_insecure_http": value}))
            )
    for host in ("http://127.0.0.1:8080", "http://localhost", "http://[::1]:9000"):
        assert connection_settings(_Conn(host, None, None)).base_url == host


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[TinyServer, Path]]:
    """An HTTPS Octopods on 127.0.0.1 with a self-signed certificate (written to ``cert.pem``)."""
    cert, key = self_signed_certificate(tmp_path)

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(status_body(int(request.path.rsplit("/", 1)[-1])))

    with TinyServer(answer, ssl_context=server_tls_context(cert, key)) as server:
        yield server, cert


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # verify=False, on purpose
@pytest.mark.parametrize("client", CLIENTS)
def test_tls_certificates_are_verified_by_default(client, tls_server, monkeypatch):
    server, cert = tls_server
    use_connection(monkeypatch, server.url)

    # Regression (issue 10 #5): a certificate failure was transient (waited on until the deadline).
    with pytest.raises(OctopodsCertificateError, match=r"could not be verified .*so nothing was sent") as err:
        get_status(client, 5, max_retries=2)
    assert not isinstance(err.value, OctopodsTransientError)
    assert isinstance(err.value, AirflowFailException), "no task retry can fix a certificate"
    assert 'extra "verify"' in str(err.value)
    assert server.seen == [], "the handshake failed: no request, no key, reached the server"

    use_connection(monkeypatch, server.url, verify=str(cert))  # trust this certificate explicitly
    assert get_status(client, 5).status == "delivered"
    use_connection(monkeypatch, server.url, verify=False)  # or opt out of verification, explicitly
    assert get_status(client, 6).status == "delivered"
    assert [s.had_key for s in server.seen] == [True, True]


def run_trigger(message_id: int) -> dict[str, Any]:
    """Run a trigger on a new event loop to its first event."""
    return asyncio.run(first_event_with_lag(make_trigger(message_id, timeout=5)))[0]


WAYS = ["sync", "async", "send-sync", "send-async", "trigger", "test_connection"]


def fail_every_way(way: str) -> BaseException | tuple[bool, str]:
    """Use the connection one way; return the error it raised (the trigger: rebuilt from its event)."""
    from airflow_provider_octopods.exceptions import error_from_dict

    if way == "test_connection":
        return OctopodsHook().test_connection()
    if way == "trigger":
        event = run_trigger(5)
        assert event["status"] == "error", event
        return error_from_dict(event["error"])
    with pytest.raises(OctopodsError) as err:
        if way.startswith("send-"):
            send(way.removeprefix("send-"), "+12015550123")
        else:
            get_status(way, 5, max_retries=2)
    return err.value


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("path", ["corp-ca.pem", "/no/such/dir/ca.pem"])
def test_a_ca_bundle_that_does_not_exist_is_an_input_error_in_every_path(way, path, conn, monkeypatch):
    # Regression (issue 10 #1): verify=<relative path> turned TLS checks off; a missing absolute
    # path was a bare OSError in the hook and a FileNotFoundError crash in the trigger.
    use_connection(monkeypatch, conn.url, conn.api_key, verify=path)
    outcome = fail_every_way(way)
    if way == "test_connection":
        assert outcome[0] is False
        assert "extra 'verify' of this connection" in outcome[1] and path in outcome[1]
    else:
        assert isinstance(outcome, OctopodsInputError), repr(outcome)
        assert "extra 'verify' of connection 'octopods_default'" in str(outcome)
        assert f"{path!r}" in str(outcome) and "does not exist" in str(outcome)
    assert conn.request_count() == 0


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("bad", ["\n", "\x00", "\u201d"])
def test_a_key_that_cannot_travel_in_a_header_is_a_final_error_in_every_path(way, bad, conn, monkeypatch):
    # Regression (issue 10 #2): "Could not reach Octopods" (transient) in the sync hook, "may have
    # been sent" for a send, UnicodeEncodeError from test_connection, a bare ValueError in the trigger.
    key = f"octo-{bad}key-123"
    use_connection(monkeypatch, conn.url, key)
    outcome = fail_every_way(way)
    if way == "test_connection":
        assert outcome[0] is False
        assert "password (Channel API key) of this connection" in outcome[1]
    else:
        assert isinstance(outcome, OctopodsInputError), repr(outcome)
        assert "password (Channel API key) of connection 'octopods_default'" in str(outcome)
        assert key.strip() not in str(outcome)
    assert conn.request_count() == 0


# -- input -------------------------------------------------------------------------------------

BAD_MESSAGE_IDS = [
    "../1",
    "1/../2",
    "1?status=delivered",
    "1#x",
    "%2e%2e%2f1",
    "1 2",
    "1\r\nX-Evil: 1",
    "-1",
    "0",
    "1.0",
    "\uff11",
    "9" * 30,
    True,
    1.5,
    None,
    [1],
]


@pytest.mark.parametrize("way", ["sync", "async", "sensor", "trigger"])
def test_message_ids_that_could_alter_a_request_never_reach_the_network(way, conn):
    for value in BAD_MESSAGE_IDS:
        if way == "trigger" and value is None:
            continue  # None means "not given" to the trigger: see test_trigger.py
        with pytest.raises(OctopodsInputError, match="message_id"):
            if way == "sensor":
                poke_wait(value, timeout=1)
            elif way == "trigger":
                make_trigger(value, 1)
            else:
                get_status(way, value)
    assert conn.request_count() == 0


BAD_PHONES = [
    "+12015550123\r\nX-Evil: 1",
    "+12015550123?x=1",
    "+1555\x001234567",
    "15551234567",
    "+1555",
    "+15551234567890123",
    "+\uff11\uff15\uff15\uff15\uff11\uff12\uff13\uff14\uff15\uff16\uff17",
    "",
    None,
    15551234567,
]


@pytest.mark.parametrize("client", CLIENTS)
def test_phone_numbers_and_bodies_are_checked_before_any_request(client, conn):
    for phone in BAD_PHONES:
        with pytest.raises(OctopodsInputError, match="destination_phone"):
            send(client, phone)
    for body in ("", "   ", "x" * 1601, None):
        with pytest.raises(OctopodsInputError, match="body"):
            send(client, "+12015550123", body)
    assert conn.request_count() == 0


# -- answer size --------------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_an_answer_declaring_more_than_the_bound_is_refused_unread(client, conn):
    message_id = conn.add_message(
        Reply(200, b" " * (MAX_RESPONSE_BYTES + 1), {"Content-Type": "application/json"})
    )

    with pytest.raises(OctopodsTransientError, match=f"larger than {MAX_RESPONSE_BYTES} bytes"):
        get_status(client, message_id)


def chunked_server(total: int, chunk: int = 8192, gzipped: bytes | None = None) -> TinyServer:
    """A server that answers a status padded to ``total`` bytes, chunked (no Content-Length)."""
    sent: list[int] = [0]

    async def answer(request: web.Request) -> web.StreamResponse:
        message_id = int(request.path.rsplit("/", 1)[-1])
        headers = {"Content-Type": "application/json"}
        if gzipped is not None:
            headers["Content-Encoding"] = "gzip"
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        data = gzipped if gzipped is not None else json.dumps(status_body(message_id)).encode()
        data = data if gzipped is not None else data[:-1] + b" " * max(total - len(data), 0) + b"}"
        try:
            for start in range(0, len(data), chunk):
                await response.write(data[start : start + chunk])
                sent[0] += len(data[start : start + chunk])
        except ConnectionResetError:  # the client stopped reading: what the bound is for
            return response
        await response.write_eof()
        return response

    server = TinyServer(answer)
    server.sent = sent  # type: ignore[attr-defined]
    return server


@pytest.mark.parametrize("client", CLIENTS)
def test_a_chunked_answer_without_end_is_cut_at_the_bound(client, monkeypatch):
    with chunked_server(total=50 * 1024 * 1024) as server:
        use_connection(monkeypatch, server.url, timeout=5)
        started = time.monotonic()

        with pytest.raises(OctopodsTransientError, match=f"larger than {MAX_RESPONSE_BYTES} bytes"):
            get_status(client, 5)

        assert time.monotonic() - started < 2
        assert server.sent[0] < 5 * 1024 * 1024, "the client stopped reading soon after the bound"  # type: ignore[attr-defined]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_chunked_answer_of_exactly_the_bound_is_read(client, monkeypatch):
    with chunked_server(total=MAX_RESPONSE_BYTES) as server:
        use_connection(monkeypatch, server.url, timeout=5)
        assert get_status(client, 5).status == "delivered"


@pytest.mark.parametrize("client", CLIENTS)
def test_gzip_answers_are_decoded_and_gzip_bombs_bounded(client, monkeypatch):
    small = gzip.compress(json.dumps(status_body(5)).encode())
    with chunked_server(total=0, gzipped=small) as server:
        use_connection(monkeypatch, server.url, timeout=5)
        assert get_status(client, 5).status == "delivered"

    bomb = gzip.compress(b"{" + b" " * (40 * 1024 * 1024) + b"}", compresslevel=9)  # ~40 KB -> 40 MB
    assert len(bomb) < MAX_RESPONSE_BYTES
    with chunked_server(total=0, gzipped=bomb) as server:
        use_connection(monkeypatch, server.url, timeout=5)
        started = time.monotonic()
        with pytest.raises(OctopodsTransientError, match=f"larger than {MAX_RESPONSE_BYTES} bytes"):
            get_status(client, 5)
        assert time.monotonic() - started < 2


def test_a_ca_bundle_replaced_in_place_is_read_again_by_the_async_side(tmp_path: Path):
    # Regression: the TLS context was cached by path, so after a private CA rotated the triggers
    # kept trusting the old one (requests reads the file again) until the triggerer restarted.
    from airflow_provider_octopods.hooks.octopods import ssl_context

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, _ = self_signed_certificate(tmp_path / "old", host="127.0.0.1")
    new, _ = self_signed_certificate(tmp_path / "new", host="127.0.0.2")
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_bytes(old.read_bytes())
    before = ssl_context(str(bundle)).get_ca_certs()
    bundle.write_bytes(new.read_bytes() + b"\n")  # another size, whatever the clock's resolution
    after = ssl_context(str(bundle)).get_ca_certs()

    assert before != after and len(after) == 1
    assert ssl_context(str(bundle)) is ssl_context(str(bundle))  # built once per version of the file
