"""
Bulk sends: ``OctopodsBulkSendOperator`` and ``SqlToOctopodsOperator`` in real ``dag.test()`` runs
against the simulator, and the bulk ledger's rules with a store in memory.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from types import SimpleNamespace

import pytest

from airflow_provider_octopods.exceptions import OctopodsError, OctopodsInputError
from airflow_provider_octopods.operators.octopods import OctopodsBulkSendOperator
from airflow_provider_octopods.testing import OctopodsSimulator
from airflow_provider_octopods.transfers.sql_to_octopods import SqlToOctopodsOperator
from airflow_provider_octopods.utils.bulk import (
    INVALID,
    REJECTED,
    SENT,
    UNCONFIRMED,
    Outcome,
    Recipient,
    RecipientTable,
    build_report,
    invalid_rows_error,
    recipient_key,
)
from airflow_provider_octopods.utils.ledger import BulkLedger
from tests.conftest import AIRFLOW_VERSION, TEST_API_KEY
from tests.test_dag_runs import run_dag

SEND = "/api/v1/sms/messages"
pytestmark = pytest.mark.usefixtures("airflow_db")


def numbers(n: int, start: int = 200) -> list[str]:
    """``n`` distinct numbers libphonenumber calls valid, none of them a magic number of the simulator."""
    return [f"+1201555{start + i:04d}" for i in range(n)]


def sends_by_phone(sim: OctopodsSimulator) -> Counter[str]:
    return Counter(m.phone_number for m in sim.messages.values())


class MemoryStore:
    """A task state store in memory, with Airflow's accessor's methods."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def get(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)

    def set(self, key: str, value: object) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def test_a_list_is_sent_once_per_key_and_reported(octopods_conn, capfd, caplog):
    phones = numbers(12)
    messages = [{"destination_phone": p, "body": f"Order for {p} shipped"} for p in phones]
    messages += [
        {"destination_phone": phones[0], "body": f"Order for {phones[0]} shipped"},  # a duplicate
        {"destination_phone": "12345", "body": "no"},  # invalid: skipped
        {"destination_phone": "+12015550101", "body": "fails on the network"},
        {"destination_phone": phones[1], "body": "", "key": "empty"},  # invalid body
    ]

    results, output = run_dag("octopods_test_bulk_list", {"messages": messages}, capfd, caplog)

    state, report = results["bulk"]
    assert state == "success", output[-3000:]
    sent = sends_by_phone(octopods_conn)
    assert set(sent.values()) == {1} and len(sent) == 13  # 12 + the failing one, each once
    assert report["recipients"] == 15  # duplicates are not recipients
    assert report["counts"] == {"delivered": 12, "invalid": 2, "failed": 1}
    assert report["failure_reasons"]["The phone number is not a valid mobile subscriber."] == 1
    rows = {row["destination_phone"]: row for row in report["not_delivered"]}
    assert rows["+12015550101"]["status"] == "failed" and rows["+12015550101"]["message_id"]
    assert "Invalid destination_phone" in rows["12345"]["reason"]
    assert (
        "SMS" in output
        and "to +12015550101 failed: The phone number is not a valid mobile subscriber." in output
    )
    assert "Bulk send report:" in output and "delivered" in output


def test_on_invalid_fail_sends_nothing_and_lists_the_bad_rows(octopods_conn):
    rows = [{"destination_phone": f"+1{i}", "body": "x"} for i in range(25)]
    rows.append({"destination_phone": "+12015550123", "body": "fine"})
    task = OctopodsBulkSendOperator(task_id="bulk", messages=rows, on_invalid="fail")

    with pytest.raises(OctopodsInputError, match=r"25 of 26 rows cannot be sent, so nothing was sent") as err:
        task.execute({"ti": SimpleNamespace(max_tries=0)})

    text = str(err.value)
    assert text.count("row ") == 20 and "... and 5 more." in text
    assert not octopods_conn.messages


def test_a_retry_sends_only_what_no_try_sent_and_reports_in_flight_as_unconfirmed(octopods_conn):
    phones = numbers(10)
    rows = [{"destination_phone": p, "body": "hello", "key": p} for p in phones]
    store = MemoryStore()
    context = {"ti": SimpleNamespace(max_tries=1), "task_state_store": store}
    # An earlier try of this generation marked a window of 3 and died before recording it,
    # after sending one window of 2 (recorded).
    earlier = BulkLedger(store, 1)
    earlier.previous()
    first = earlier.sending([SimpleNamespace(key=p, phone=p) for p in phones[:2]])
    earlier.record(first, [Outcome(p, p, "sent", 100 + i) for i, p in enumerate(phones[:2])])
    earlier.sending([SimpleNamespace(key=p, phone=p) for p in phones[2:5]])

    task = OctopodsBulkSendOperator(task_id="bulk", messages=rows, wait_for_delivery=False, window=2)
    report = task.execute(context)

    assert sorted(sends_by_phone(octopods_conn)) == phones[5:]  # never the sent or in-flight ones
    assert report["counts"] == {"sent": 7, "unconfirmed": 3}
    assert {r["key"] for r in report["not_delivered"]} == set(phones[2:5])
    # A third try sends nothing more: everything is recorded now.
    OctopodsBulkSendOperator(task_id="bulk", messages=rows, wait_for_delivery=False).execute(context)
    assert len(octopods_conn.messages) == 5


def test_resend_unconfirmed_opts_in_to_sending_the_in_flight_ones_again(octopods_conn):
    phones = numbers(3)
    store = MemoryStore()
    ledger = BulkLedger(store, 0)
    ledger.previous()
    ledger.sending([SimpleNamespace(key=p, phone=p) for p in phones])
    rows = [{"destination_phone": p, "body": "hello", "key": p} for p in phones]
    task = OctopodsBulkSendOperator(
        task_id="bulk", messages=rows, wait_for_delivery=False, resend_unconfirmed=True
    )

    report = task.execute({"ti": SimpleNamespace(max_tries=0), "task_state_store": store})

    assert report["counts"] == {"sent": 3} and sorted(sends_by_phone(octopods_conn)) == phones


def test_a_cleared_task_is_a_new_generation_and_sends_again(octopods_conn):
    store = MemoryStore()
    old = BulkLedger(store, 0)
    old.previous()
    old.record(
        old.sending([SimpleNamespace(key="k", phone="+12015550123")]),
        [Outcome("k", "+12015550123", "sent", 7)],
    )

    assert list(BulkLedger(store, 1).previous()) == []
    assert list(BulkLedger(store, 0).previous()) == [("k", "sent", "+12015550123", 7, None)]


def test_429s_never_lose_nor_double_a_message(monkeypatch):
    """The simulator admits 5 requests per second; the adaptive budget and resends get all 15 out once."""
    with OctopodsSimulator(TEST_API_KEY, rate_limit=5, sent_after=0.05, deliver_after=0.1) as sim:
        for name, value in sim.connection_uri_env().items():
            monkeypatch.setenv(name, value)
        phones = numbers(15)
        rows = [{"destination_phone": p, "body": "hello"} for p in phones]
        task = OctopodsBulkSendOperator(task_id="bulk", messages=rows, wait_for_delivery=False, window=15)

        report = task.execute({"ti": SimpleNamespace(max_tries=0)})

        assert report["counts"] == {"sent": 15} and sim.rate_limited > 0
        assert sends_by_phone(sim) == Counter(phones)


def test_whatsapp_bulk_waits_once_for_read_through_the_triggerer(simulator, monkeypatch, capfd, caplog):
    for name, value in simulator.connection_uri_env("octopods_whatsapp_default", channel="whatsapp").items():
        monkeypatch.setenv(name, value)
    simulator.read_after = 0.5
    phones = numbers(6)
    messages = [
        {"destination_phone": p, "template_id": 539, "message_variables": ["Alex", i]}
        for i, p in enumerate(phones)
    ]
    messages.append(
        {"destination_phone": "+12015550105", "template_id": 539, "message_variables": ["Al", "1"]}
    )
    messages.append({"destination_phone": phones[0], "template_id": 539, "message_variables": ["only one"]})

    results, output = run_dag("octopods_test_bulk_whatsapp", {"messages": messages}, capfd, caplog)

    state, report = results["bulk"]
    assert state == "success", output[-3000:]
    assert report["counts"] == {"read": 6, "waiting": 1, "invalid": 1}
    waiting = next(r for r in report["not_delivered"] if r["status"] == "waiting")
    assert waiting["destination_phone"] == "+12015550105"
    assert (
        "expects body 2; got 1"
        in next(r for r in report["not_delivered"] if r["status"] == "invalid")["reason"]
    )
    assert simulator.request_count("/api/v1/whatsapp/templates") == 1  # the templates read once


def test_sql_rows_are_rendered_per_row_sent_once_and_written_back(
    octopods_conn, tmp_path, monkeypatch, capfd, caplog
):
    db = tmp_path / "bulk.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (order_id INTEGER, name TEXT, phone TEXT)")
        conn.execute(
            "CREATE TABLE results (run_id TEXT, recipient_key TEXT, destination_phone TEXT, "
            "message_id INTEGER, status TEXT, reason TEXT)"
        )
        phones = numbers(30)
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [(i, f"Customer {i}", p) for i, p in enumerate(phones)] + [(99, "Nobody", "not a number")],
        )
    monkeypatch.setenv("AIRFLOW_CONN_BULK_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))

    results, output = run_dag("octopods_test_bulk_sql", {}, capfd, caplog)

    state, report = results["bulk"]
    assert state == "success", output[-3000:]
    assert report["counts"] == {"delivered": 30, "invalid": 1}
    bodies = {m.phone_number: m.body for m in octopods_conn.messages.values()}
    assert bodies[phones[7]] == "Hi Customer 7, order 7 has shipped."
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT recipient_key, status, message_id FROM results").fetchall()
    assert len(rows) == 31 and Counter(status for _, status, _ in rows) == {"delivered": 30, "invalid": 1}
    assert {key for key, _, _ in rows} >= {str(i) for i in range(30)}


def one_order_db(tmp_path, monkeypatch, phone_column: str = "phone") -> None:
    """Make the connection ``bulk_db``: a SQLite database whose table ``orders`` holds one order."""
    db = tmp_path / "bulk.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE orders (order_id INTEGER, {phone_column} TEXT)")
        conn.execute("INSERT INTO orders VALUES (1, '+12015550123')")
    monkeypatch.setenv("AIRFLOW_CONN_BULK_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))


@pytest.mark.parametrize(
    ("columns", "field", "column"),
    [
        ({}, "phone_column", "phone"),
        ({"phone_column": "mobile", "key_column": "order"}, "key_column", "order"),
    ],
)
def test_the_sql_operator_refuses_a_missing_column_before_any_send(
    columns, field, column, octopods_conn, tmp_path, monkeypatch
):
    one_order_db(tmp_path, monkeypatch, phone_column="mobile")
    task = SqlToOctopodsOperator(
        task_id="t", sql="SELECT * FROM orders", conn_id="bulk_db", body="x", **columns
    )

    with pytest.raises(OctopodsInputError, match=rf"{field}: the query has no column '{column}'"):
        task.execute({"ti": SimpleNamespace(max_tries=0)})
    assert not octopods_conn.messages


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"on_invalid": "ignore"}, "on_invalid"),
        ({"min_delivered_ratio": 1.5}, "min_delivered_ratio"),
        ({"window": 0}, "window"),
        ({"window": 5000}, "window"),
        ({"wait_for": "seen"}, "wait_for"),
    ],
)
def test_bad_arguments_are_refused_when_the_task_is_built(kwargs, field):
    with pytest.raises(OctopodsInputError, match=rf"^Invalid {field}: "):
        OctopodsBulkSendOperator(task_id="bulk", messages=[], **kwargs)


def test_min_delivered_ratio_fails_the_task_below_it(octopods_conn):
    rows = [{"destination_phone": p, "body": "x"} for p in ("+12015550123", "+12015550101")]
    task = OctopodsBulkSendOperator(
        task_id="bulk", messages=rows, min_delivered_ratio=0.9, poll_interval=0.2, initial_delay=0.1
    )

    with pytest.raises(
        Exception, match=r"Only 50.0% of 2 recipients reached 'delivered', below min_delivered_ratio 90.0%"
    ):
        task.execute({"ti": SimpleNamespace(max_tries=0)})
    assert len(octopods_conn.messages) == 2


def test_the_report_is_bounded_and_counts_reasons():
    outcomes = [Outcome(str(i), "+1", "sent", i, "gone", status="failed") for i in range(250)]
    outcomes += [Outcome("ok", "+1", "sent", 999, status="delivered")]
    report = build_report(outcomes, {"delivered"})
    assert len(report["not_delivered"]) == 100 and report["not_delivered_more"] == 150
    assert report["failure_reasons"] == {"gone": 250} and report["delivered_ratio"] == round(1 / 251, 4)


def test_default_keys_depend_on_the_number_and_the_content_only():
    assert recipient_key("+1", "a") == recipient_key("+1", "a") != recipient_key("+1", "b")
    assert "... and 1 more." in invalid_rows_error([(f"row {i}", "bad") for i in range(21)], 30)


@pytest.mark.skipif(AIRFLOW_VERSION.release < (3, 3), reason="the task state store is new in Airflow 3.3")
def test_the_ledger_keeps_each_chunk_small():
    store = MemoryStore()
    ledger = BulkLedger(store, 0)
    window = [
        SimpleNamespace(key=recipient_key(f"+1201555{i:04d}", "x"), phone=f"+1201555{i:04d}")
        for i in range(200)
    ]
    number = ledger.sending(window)
    ledger.record(number, [Outcome(r.key, r.phone, "sent", 10**12 + i) for i, r in enumerate(window)])

    assert len(json.dumps(store.values[f"octopods_bulk_{number}"])) < 65535 / 2


@pytest.mark.parametrize(
    "statement",
    [
        "from airflow_provider_octopods.operators.octopods import OctopodsBulkSendOperator",
        "from airflow_provider_octopods.transfers.sql_to_octopods import SqlToOctopodsOperator",
    ],
)
def test_parsing_a_dag_with_a_bulk_send_imports_no_http_client_nor_common_sql(statement):
    """DAG-parse cost: the hooks (requests, aiohttp) and common.sql are imported when a task runs."""
    import subprocess
    import sys

    probe = (  # what a DAG file pays anyway first (Airflow 2 itself imports requests), then the statement
        "import sys\ntry:\n    import airflow.sdk\nexcept ImportError:\n    import airflow.models.dag\n"
        f"before = set(sys.modules)\n{statement}\n"
        "heavy = [m for m in ('aiohttp', 'requests', 'airflow.providers.common.sql.hooks.sql', "
        "'airflow_provider_octopods.hooks.octopods') if m in set(sys.modules) - before]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_what_a_tired_user_types_for_the_choices_is_read_or_refused_naming_the_field():
    task = OctopodsBulkSendOperator(task_id="bulk", messages=[], channel=" WhatsApp\n", on_invalid="Skip ")
    assert (task.channel.name, task.on_invalid, task.octopods_conn_id) == (
        "whatsapp",
        "skip",
        "octopods_whatsapp_default",
    )
    for bad in ("0.9", True, None, float("nan")):
        if bad is None:
            continue  # None: never fail on the ratio
        with pytest.raises(OctopodsInputError, match=r"^Invalid min_delivered_ratio: "):
            OctopodsBulkSendOperator(task_id="bulk", messages=[], min_delivered_ratio=bad)
    with pytest.raises(OctopodsInputError, match=r"^Invalid channel: got None; pass 'sms' or 'whatsapp'\."):
        OctopodsBulkSendOperator(task_id="bulk", messages=[], channel=None)


def recipient(key: str, phone: str = "+12015550123") -> Recipient:
    return Recipient(key, phone, SEND, json.dumps({"destination_phone": phone, "body": key}).encode())


def test_the_recipient_table_keeps_order_drops_duplicate_keys_and_sends_in_windows():
    table = RecipientTable()
    try:
        assert table.add(recipient("a")) and table.add(recipient("b'; DROP TABLE r; --"))
        table.add_invalid("row 3", "12345", "not a number")
        table.add_invalid("row 4", "12345", "not a number")  # the same label twice: both kept
        assert not table.add(recipient("a"))  # the same key and send again: sent once
        with pytest.raises(OctopodsInputError, match=r"'a' is the key of an earlier row with another number"):
            table.add(recipient("a", "+12015550200"))  # the same key for another recipient: one row is wrong
        assert table.add(recipient("row 3"))  # a key that looks like an invalid row's label is its own
        assert table.add(recipient("ünïcødé " * 40))

        assert table.counts == Counter({None: 4, INVALID: 2})
        windows = list(table.to_send(3))
        assert [[r.key for r in w] for w in windows] == [
            ["a", "b'; DROP TABLE r; --", "row 3"],
            ["ünïcødé " * 40],
        ]
        assert windows[0][0] == recipient("a")  # what was added comes back, byte for byte

        table.record([Outcome("a", "+12015550123", SENT, 7), Outcome("row 3", "+12015550123", UNCONFIRMED)])
        table.record([Outcome("a", "+12015550123", REJECTED)])  # a recorded recipient is never overwritten
        assert table.counts == Counter({None: 2, INVALID: 2, SENT: 1, UNCONFIRMED: 1})
        assert [r.key for w in table.to_send(10) for r in w] == ["b'; DROP TABLE r; --", "ünïcødé " * 40]
        assert table.message_ids() == [7]
        first, second = list(table), list(table)  # read afresh each time: a report, then results_table
        assert first == second
        assert [(o.key, o.state) for o in first][:4] == [
            ("a", SENT),
            ("b'; DROP TABLE r; --", REJECTED),  # never sent (a send that raised): never "unconfirmed"
            ("row 3", INVALID),
            ("row 4", INVALID),
        ]
    finally:
        table.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed: its temporary database is gone
        table.add(recipient("c"))


def test_the_recipient_table_settles_what_earlier_tries_did():
    table = RecipientTable()
    for key in "abcd":
        table.add(recipient(key))
    earlier = [
        ("a", SENT, "+12015550123", 11, None),
        ("b", UNCONFIRMED, "+12015550123", None, "in flight when a try stopped"),
        ("zz", SENT, "+12015550123", 12, None),  # a recipient this try's rows no longer have
    ]
    table.settle(iter(earlier))
    assert [r.key for w in table.to_send(10) for r in w] == ["c", "d"]
    assert table.counts == Counter({None: 2, SENT: 1, UNCONFIRMED: 1})

    again = RecipientTable()
    for key in "abcd":
        again.add(recipient(key))
    again.settle(iter(earlier), resend_unconfirmed=True)
    assert [r.key for w in again.to_send(10) for r in w] == ["b", "c", "d"]
    table.close()
    again.close()


class NamedCursorConnection:
    """
    A DB-API connection as psycopg2 gives one, over sqlite3: ``cursor(name=...)`` is a server-side
    cursor whose ``description`` is None until the first fetch.
    """

    def __init__(self, path: str, autocommit: bool = False) -> None:
        self.db = sqlite3.connect(path)
        self.autocommit = autocommit
        self.names: list[str | None] = []
        self.fetched: list[int] = []

    def cursor(self, name: str | None = None) -> object:
        self.names.append(name)
        inner, fetched = self.db.cursor(), self.fetched

        class Cursor:
            description = None

            def execute(self, sql: str, parameters: object = None) -> None:
                inner.execute(sql, parameters or ())
                if name is None:
                    self.description = inner.description

            def fetchmany(self, size: int) -> list[tuple[object, ...]]:
                rows = inner.fetchmany(size)
                fetched.append(len(rows))
                self.description = inner.description
                return rows

            def close(self) -> None:
                inner.close()

        return Cursor()

    def close(self) -> None:
        self.db.close()


@pytest.mark.parametrize("autocommit", [False, True])
def test_sql_rows_are_read_a_chunk_at_a_time_through_a_server_side_cursor(
    autocommit, octopods_conn, tmp_path, monkeypatch
):
    from airflow_provider_octopods.transfers import sql_to_octopods

    db = str(tmp_path / "bulk.db")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (order_id INTEGER, phone TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", list(enumerate(numbers(25))))
    connection = NamedCursorConnection(db, autocommit)
    monkeypatch.setattr(sql_to_octopods, "FETCH_SIZE", 10)
    monkeypatch.setattr(
        SqlToOctopodsOperator, "_db_hook", lambda self: SimpleNamespace(get_conn=lambda: connection)
    )
    task = SqlToOctopodsOperator(
        task_id="t",
        sql="SELECT * FROM orders",
        conn_id="orders",
        key_column="order_id",
        body="Order {{ row.order_id }}",
        wait_for_delivery=False,
    )

    report = task.execute({"ti": SimpleNamespace(max_tries=0)})

    assert report["counts"] == {"sent": 25} and len(octopods_conn.messages) == 25
    assert connection.fetched == [10, 10, 5, 0]  # never the whole result at once
    # psycopg keeps a whole result in the client unless the cursor is named; in autocommit mode
    # a named cursor cannot be declared, so the driver's default cursor reads it
    (name,) = connection.names
    assert (name is None) if autocommit else name.startswith("octopods_rows_")


def test_a_driver_without_named_cursors_gets_its_default_cursor():
    from airflow_provider_octopods.transfers.sql_to_octopods import server_side_cursor

    conn = sqlite3.connect(":memory:")
    assert isinstance(server_side_cursor(conn), sqlite3.Cursor)
    conn.close()


# -- found by an adversarial review (each failed before its fix) ------------------------------


@pytest.mark.parametrize("max_segments", [0, -1, "3", 2.5, True])
def test_a_bad_max_segments_is_refused_when_the_task_is_built_not_row_by_row(max_segments):
    # It made every row invalid at run time: with on_invalid="skip" the task succeeded, sending nothing.
    with pytest.raises(OctopodsInputError, match=r"^Invalid max_segments: "):
        OctopodsBulkSendOperator(task_id="bulk", messages=[], on_invalid="skip", max_segments=max_segments)


@pytest.mark.parametrize("tracked", [0, 1], ids=["all-untrackable", "mixed"])
def test_sends_without_a_message_id_are_untrackable_never_delivered(tracked, octopods_conn, capfd, caplog):
    # All of them untrackable counted as delivered (ratio 1.0); mixed with tracked ones, as not delivered.
    rows = [{"destination_phone": p, "body": "x"} for p in numbers(3)]
    context = {"ti": SimpleNamespace(max_tries=0)}
    if tracked:
        OctopodsBulkSendOperator(
            task_id="bulk", messages=rows[:1], poll_interval=0.2, initial_delay=0.1
        ).execute(context)
    octopods_conn.untrackable = True
    task = OctopodsBulkSendOperator(
        task_id="bulk", messages=rows[tracked:], poll_interval=0.2, initial_delay=0.1
    )

    report = task.execute(context)

    assert report["counts"] == {"untrackable": 3 - tracked}
    assert report["delivered_ratio"] == 0.0
    assert {row["reason"] for row in report["not_delivered"]} == {
        "Octopods answered without a message id: its delivery cannot be followed"
    }
    assert f"{3 - tracked} sends were answered without a message id" in caplog.text + capfd.readouterr().out
    with pytest.raises(Exception, match=r"Only 0.0% of \d recipients reached 'delivered'"):
        OctopodsBulkSendOperator(
            task_id="bulk", messages=rows, min_delivered_ratio=0.5, poll_interval=0.2, initial_delay=0.1
        ).execute(context)


def test_the_same_key_for_another_recipient_is_an_invalid_row_not_a_silent_drop(octopods_conn):
    phones = numbers(3)
    rows = [
        {"destination_phone": phones[0], "body": "Your order shipped", "key": 1},
        {"destination_phone": phones[0], "body": "Your order shipped", "key": "1"},  # the same send: once
        {"destination_phone": phones[1], "body": "Your refund is on its way", "key": "1"},  # another one
        {"destination_phone": phones[2], "body": "Hello", "key": 2},
    ]
    task = OctopodsBulkSendOperator(task_id="bulk", messages=rows, wait_for_delivery=False, on_invalid="skip")

    report = task.execute({"ti": SimpleNamespace(max_tries=0)})

    assert sorted(sends_by_phone(octopods_conn)) == [phones[0], phones[2]]
    assert report["counts"] == {"sent": 2, "invalid": 1}
    (bad,) = report["not_delivered"]
    assert (bad["key"], bad["destination_phone"]) == ("1", phones[1])
    assert "'1' is the key of an earlier row with another number or content" in bad["reason"]
    with pytest.raises(
        OctopodsInputError, match=r"row 3 \(key 1\): Invalid key: '1' is the key of an earlier"
    ):
        OctopodsBulkSendOperator(task_id="bulk", messages=rows, wait_for_delivery=False).execute(
            {"ti": SimpleNamespace(max_tries=0)}
        )


def test_an_invalid_row_keeps_its_key_and_a_missing_number_stays_missing(octopods_conn):
    # The report and results_table named them "row 2 (key 1002)" and "None".
    rows = [
        {"destination_phone": None, "body": "x", "key": 1002},
        {"body": "x"},
        {"destination_phone": 12015550123, "body": "x"},
    ]
    task = OctopodsBulkSendOperator(task_id="bulk", messages=rows, wait_for_delivery=False, on_invalid="skip")

    report = task.execute({"ti": SimpleNamespace(max_tries=0)})

    assert [(r["key"], r["destination_phone"], r["status"]) for r in report["not_delivered"]] == [
        ("1002", None, "invalid"),
        ("row 2", None, "invalid"),
        ("row 3", "12015550123", "invalid"),
    ]
    assert not octopods_conn.messages


@pytest.mark.parametrize(
    ("row", "unknown"),
    [
        ({"Key": "a1"}, "['Key']"),
        ({"template_id": 539, "mesage_variables": ["Alex"]}, "['mesage_variables', 'template_id']"),
        ({"destination_user_name": "Alex", "name": "Alex"}, "['name']"),
    ],
    ids=["misspelt-key", "whatsapp-fields-on-sms", "an-extra-column"],
)
def test_a_field_the_channel_does_not_take_makes_the_row_invalid(row, unknown, octopods_conn):
    rows = [{"destination_phone": "+12015550123", "body": "x", **row}]
    task = OctopodsBulkSendOperator(task_id="bulk", messages=rows, wait_for_delivery=False)

    with pytest.raises(
        OctopodsInputError, match=rf"{re.escape(unknown)} are not fields of a sms row; give \["
    ):
        task.execute({"ti": SimpleNamespace(max_tries=0)})
    assert not octopods_conn.messages


def test_destination_user_name_of_a_row_is_sent(octopods_conn):
    rows = [{"destination_phone": "+12015550123", "body": "x", "destination_user_name": "Alex"}]
    OctopodsBulkSendOperator(task_id="bulk", messages=rows, wait_for_delivery=False).execute(
        {"ti": SimpleNamespace(max_tries=0)}
    )

    (message,) = octopods_conn.messages.values()
    assert message.payload["destination_user_name"] == "Alex"


def test_messages_as_json_text_with_null_true_and_false_are_read():
    # ``| tojson`` or an API's answer: it was refused as "pass a list of dicts".
    text = '[{"destination_phone": "+12015550123", "body": "hi", "key": null}]'
    task = OctopodsBulkSendOperator(task_id="bulk", messages=text)
    assert list(task._rows({})) == [{"destination_phone": "+12015550123", "body": "hi", "key": None}]

    task.messages = "Alex, Sam"
    with pytest.raises(
        OctopodsInputError, match=r"got text that is no Python or JSON list \(9 characters: 'Alex, Sam'"
    ):
        list(task._rows({}))


@pytest.mark.parametrize("table", ["sms_reslts", "orders"], ids=["missing", "other-columns"])
def test_a_results_table_that_cannot_take_the_results_stops_the_task_before_any_send(
    table, octopods_conn, tmp_path, monkeypatch
):
    # It failed with a raw driver error after every message was sent, and again on each retry.
    one_order_db(tmp_path, monkeypatch)
    task = SqlToOctopodsOperator(
        task_id="t", sql="SELECT * FROM orders", conn_id="bulk_db", body="x", results_table=table
    )

    with pytest.raises(
        OctopodsError, match=rf"^Invalid results_table: {table} cannot take the results, so nothing"
    ):
        task.execute({"ti": SimpleNamespace(max_tries=0), "run_id": "r1"})
    assert not octopods_conn.messages


def test_the_list_example_dag_sends_the_good_rows_and_reports_the_bad_one(octopods_conn, capfd, caplog):
    # Regression: with min_delivered_ratio=0.95 the documented example failed on its own bad row.
    results, output = run_dag("example_octopods_bulk_list", {}, capfd, caplog)

    state, report = results["tell_customers"]
    assert state == "success", output[-3000:]
    assert report["counts"] == {"delivered": 2, "invalid": 1}
    assert sorted(sends_by_phone(octopods_conn)) == ["+12015550123", "+12015550124"]
