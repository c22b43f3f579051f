"""
A bulk send from PostgreSQL survives two worker kills (issue 22): ``SqlToOctopodsOperator`` sends
one SMS to each of 500 rows of a PostgreSQL table through the real scheduler, a LocalExecutor
worker and the triggerer; the test SIGKILLs the sending task process twice mid-send (as an OOM
kill would). Airflow retries it; each retry reads the task state store ledger and sends only
what no try sent. After the third try every number has at most one message; all but the window
in flight at each kill have exactly one, delivered; those few are ``unconfirmed`` in the report
and in the results table, which has exactly one row per recipient.

The ``orders`` database lives on the deployment's PostgreSQL server (a database of its own beside
Airflow's); ``dags/octopods_e2e_bulk.py`` reads it through the ``e2e_orders_db`` connection and
sends on ``octopods_bulk`` at 25 requests per second, so 500 sends take about 20 s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from contextlib import closing
from typing import TYPE_CHECKING, Any

import phonenumbers
import psutil
import psycopg2
import pytest

from airflow_provider_octopods.utils.bulk import UNCONFIRMED
from tests.e2e.conftest import E2E_API_KEY
from tests.e2e.dags.octopods_e2e_bulk import (
    BODY,
    BULK_CONN_ID,
    DAG_ID,
    ORDERS_CONN_ID,
    RATE,
    RESULTS_TABLE,
    TASK_ID,
    WINDOW,
)
from tests.e2e.deployment import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_octopods.testing import OctopodsSimulator
    from airflow_provider_octopods.testing.simulator import SimulatedMessage
    from tests.e2e.deployment import AirflowDeployment, PostgresServer

ORDERS_DATABASE = "orders"
RECIPIENTS = 500
#: Order ids start here (not at 1: an order id is never mistaken for a row number).
FIRST_ORDER = 10001
#: The worker is killed twice, each time once its try has sent this many more SMS: not a multiple
#: of the window, so the kill lands while a window is in flight (its unsent rest is then unconfirmed).
KILLS = 2
MID_SEND = 50
#: Seconds after a kill during which requests already received may still create messages.
SETTLE = 0.5
RETRIED = re.compile(
    r"Earlier tries handled (\d+) of these recipients \(\d+ sent, (\d+) unconfirmed\); sending the (\d+) others\."
)


def order_phone(number: int) -> str:
    """The number of the ``number``-th order: +1 201 555 1000 to 1499, far from the simulator's 01xx."""
    return f"+1201555{1000 + number:04d}"


@pytest.fixture(scope="module")
def orders(
    postgres: PostgresServer, airflow: AirflowDeployment, simulator: OctopodsSimulator
) -> Iterator[dict[str, tuple[str, str]]]:
    """
    The ``orders`` database with 500 orders and an empty ``results`` table, and the connections
    of the bulk DAG (``e2e_orders_db``, ``octopods_bulk``); yields ``{order_id: (name, phone)}``.
    """
    rows = [(FIRST_ORDER + n, f"Customer {n + 1}", order_phone(n)) for n in range(RECIPIENTS)]
    for _, _, phone in rows:
        assert phonenumbers.is_valid_number(phonenumbers.parse(phone)), phone
        assert not 100 <= int(phone[-4:]) <= 199, phone  # the simulator's magic suffixes
    assert len({phone for *_, phone in rows}) == RECIPIENTS
    postgres.create_database(ORDERS_DATABASE)
    with closing(connect(postgres)) as conn, conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, name TEXT, phone TEXT NOT NULL)")
        cursor.executemany("INSERT INTO orders VALUES (%s, %s, %s)", rows)
        cursor.execute(
            f"CREATE TABLE {RESULTS_TABLE} (run_id TEXT, recipient_key TEXT, destination_phone TEXT, "
            "message_id BIGINT, status TEXT, reason TEXT)"
        )
    connections = [
        {
            "connection_id": ORDERS_CONN_ID,
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": postgres.port,
            "login": postgres.user,
            "schema": ORDERS_DATABASE,
        },
        {
            "connection_id": BULK_CONN_ID,
            "conn_type": "octopods",
            "host": simulator.url,
            "password": simulator.api_key,
            "extra": json.dumps({"max_requests_per_second": RATE}),
        },
    ]
    for connection in connections:  # the REST API: a CLI call costs seconds of Airflow's start-up
        airflow.api("POST", "/connections", json=connection, expect=201)
    yield {str(order_id): (name, phone) for order_id, name, phone in rows}
    for connection in connections:
        airflow.api("DELETE", f"/connections/{connection['connection_id']}", expect=(204, 404))


def connect(postgres: PostgresServer) -> Any:
    """A psycopg2 connection to the ``orders`` database."""
    return psycopg2.connect(host="127.0.0.1", port=postgres.port, user=postgres.user, dbname=ORDERS_DATABASE)


def sending_task_processes(simulator: OctopodsSimulator, airflow: AirflowDeployment) -> set[int]:
    """
    The scheduler's descendants (LocalExecutor workers and their task processes) holding a TCP
    connection to the simulator: the task process while it sends (``test_exactly_once``'s way).
    """
    port = int(simulator.url.rsplit(":", 1)[1])
    scheduler = psutil.Process(airflow.processes["scheduler"].pid)
    workers = {p.pid for p in scheduler.children(recursive=True)}
    return {
        c.pid for c in psutil.net_connections("tcp") if c.raddr and c.raddr.port == port and c.pid in workers
    }


def test_bulk_send_from_postgres_sends_each_row_once_across_two_worker_kills(
    airflow: AirflowDeployment,
    simulator: OctopodsSimulator,
    postgres: PostgresServer,
    orders: dict[str, tuple[str, str]],
) -> None:
    phones = {phone: key for key, (_, phone) in orders.items()}
    known = set(simulator.messages)

    def ours() -> list[SimulatedMessage]:
        with simulator._lock:
            return [m for i, m in simulator.messages.items() if i not in known and m.phone_number in phones]

    run_id = airflow.trigger(DAG_ID, {})
    kills: list[float] = []

    def running(try_number: int) -> bool:
        ti = airflow.task_instance(DAG_ID, run_id, TASK_ID)
        return ti["try_number"] == try_number and ti["state"] == "running"

    for try_number in range(1, KILLS + 1):
        wait_for(f"try {try_number} to run", lambda n=try_number: running(n), timeout=120, interval=0.2)
        floor = len(ours()) + MID_SEND
        wait_for(f"try {try_number} to send {MID_SEND} SMS", lambda f=floor: len(ours()) >= f, 120, 0.05)
        pids = wait_for(
            "the sending task process", lambda: sending_task_processes(simulator, airflow) or None, 30, 0.05
        )
        assert len(pids) == 1, pids
        (process,) = (psutil.Process(pid) for pid in pids)
        os.kill(process.pid, signal.SIGKILL)  # an OOM kill or a lost worker, mid-send
        kills.append(time.monotonic())
        psutil.wait_procs([process], timeout=10)
        assert len(ours()) < RECIPIENTS, "the sends ended before the kill: slow them down"

    done = airflow.wait_state(DAG_ID, run_id, TASK_ID, {"success", "failed"}, timeout=180)
    logs = {n: airflow.task_log(DAG_ID, run_id, TASK_ID, try_number=n) for n in range(1, KILLS + 2)}
    assert done["state"] == "success", logs[KILLS + 1]
    assert done["try_number"] >= KILLS + 1  # two killed tries, then one that sent, deferred, resumed
    for n in range(1, KILLS + 1):
        assert "SIGKILL" in logs[n], logs[n][-2000:]  # the supervisor saw its task process killed
    assert airflow.wait_run(DAG_ID, run_id) == "success"

    # What each try sent (by when the simulator created its messages) and what the retries read back.
    messages = ours()
    bounds = [k + SETTLE for k in kills]
    per_try = Counter(sum(m.created > b for b in bounds) + 1 for m in messages)
    retried = {n: RETRIED.search(logs[n]) for n in range(2, KILLS + 2)}
    assert all(retried.values()), {n: log[-2000:] for n, log in logs.items()}
    ledger = {n: tuple(int(g) for g in match.groups()) for n, match in retried.items() if match}
    for n, (earlier, unconfirmed, others) in ledger.items():
        assert earlier + others == RECIPIENTS, ledger
        assert unconfirmed <= WINDOW * (n - 1), ledger  # at most one window per killed try
    assert all(per_try[n] >= MID_SEND for n in range(1, KILLS + 1)), per_try  # killed mid-send
    assert ledger[KILLS + 1][2] == per_try[KILLS + 1]  # the last try sent exactly what no try had sent
    print(f"\nsends per try: {dict(sorted(per_try.items()))}; the retries' ledgers: {ledger}")

    # The report: every recipient once; only the windows in flight at the kills unconfirmed.
    report = airflow.xcom(DAG_ID, run_id, TASK_ID)
    unconfirmed = {row["key"] for row in report["not_delivered"] if row["status"] == UNCONFIRMED}
    assert len(unconfirmed) == ledger[KILLS + 1][1] <= WINDOW * KILLS, report["counts"]
    expected = {"delivered": RECIPIENTS - len(unconfirmed), UNCONFIRMED: len(unconfirmed)}
    assert report["counts"] == {s: c for s, c in expected.items() if c}, report
    assert report["recipients"] == RECIPIENTS
    assert report["not_delivered_more"] == 0
    assert {row["key"] for row in report["not_delivered"]} == unconfirmed

    # The simulator: no number texted twice; every confirmed one exactly once, with its own text.
    by_phone = Counter(m.phone_number for m in messages)
    assert max(by_phone.values()) == 1, [p for p, c in by_phone.items() if c > 1]
    texted = {phones[m.phone_number] for m in messages}
    assert set(orders) - unconfirmed <= texted
    assert len(messages) == RECIPIENTS - len(unconfirmed - texted)
    print(f"report counts: {report['counts']}; unconfirmed and texted: {len(unconfirmed & texted)}")
    for m in messages:
        key = phones[m.phone_number]
        assert m.body == BODY.replace("{{ row.name }}", orders[key][0]).replace("{{ row.order_id }}", key)

    # The results table: one row per recipient, as the report and the simulator say.
    with closing(connect(postgres)) as conn, conn.cursor() as cursor:
        cursor.execute(
            f"SELECT run_id, recipient_key, destination_phone, message_id, status FROM {RESULTS_TABLE}"
        )
        results = cursor.fetchall()
    assert len(results) == RECIPIENTS
    assert {row[0] for row in results} == {run_id}
    assert sorted(row[1] for row in results) == sorted(orders)
    sent_ids = {phones[m.phone_number]: m.message_id for m in messages}
    for _, key, phone, message_id, status in results:
        assert phone == orders[key][1]
        if key in unconfirmed:
            assert (message_id, status) == (None, UNCONFIRMED)
        else:
            assert (message_id, status) == (sent_ids[key], "delivered")

    # The key is in no task log of any try, nor in any other log.
    for log in logs.values():
        assert E2E_API_KEY not in log
    assert E2E_API_KEY.encode() not in airflow.all_log_text()


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_rows_stay_on_the_postgres_server_until_fetched(driver: str, postgres: PostgresServer) -> None:
    """Both psycopg drivers get a named (server-side) cursor; in autocommit mode, their default one."""
    import psycopg

    from airflow_provider_octopods.transfers.sql_to_octopods import FETCH_SIZE, server_side_cursor

    connect = psycopg2.connect if driver == "psycopg2" else psycopg.connect
    with closing(
        connect(host="127.0.0.1", port=postgres.port, user=postgres.user, dbname=postgres.database)
    ) as conn:
        with closing(server_side_cursor(conn)) as cursor:
            assert cursor.name.startswith("octopods_rows_")
            cursor.execute("SELECT g FROM generate_series(1, %(n)s) AS g", {"n": 2 * FETCH_SIZE + 5})
            sizes = []
            while rows := cursor.fetchmany(FETCH_SIZE):
                sizes.append(len(rows))
            assert sizes == [FETCH_SIZE, FETCH_SIZE, 5] and [d[0] for d in cursor.description] == ["g"]
        conn.rollback()
        conn.autocommit = True
        with closing(server_side_cursor(conn)) as cursor:
            assert not getattr(
                cursor, "name", None
            )  # a named cursor cannot be declared outside a transaction
