"""
Bulk sends: the recipients of a bulk send, what became of each, and the delivery report.

Shared by :class:`~airflow_provider_octopods.operators.octopods.OctopodsBulkSendOperator` and
:class:`~airflow_provider_octopods.transfers.sql_to_octopods.SqlToOctopodsOperator`: the
operators read the rows, check each one with the hook and drive the sends and the wait. The
recipients themselves wait in a :class:`RecipientTable` on disk, so a send's memory does not
grow with its rows.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_octopods.exceptions import OctopodsInputError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

#: A recipient's send was accepted (with a message id, unless the workspace gives none).
SENT = "sent"
#: A row the checks refused: nothing was sent.
INVALID = "invalid"
#: Octopods refused the send: nothing was sent.
REJECTED = "rejected"
#: No clear answer, or in flight when a try died: it may have been sent.
UNCONFIRMED = "unconfirmed"
#: The wait ended before the sent message was final.
WAITING = "waiting"
#: Sent, but Octopods answered without a message id (HubSpot workspaces): its delivery cannot be followed.
UNTRACKABLE = "untrackable"
#: Rows of the report's ``not_delivered`` list kept in XCom; the rest are counted (``results_table`` has all).
REPORT_ROWS = 100
#: Bad rows an ``on_invalid="fail"`` error lists; the rest are counted.
ERROR_ROWS = 20


def recipient_key(phone: str, content: Any) -> str:
    """
    The default idempotency key of a recipient: a hash of the number (E.164) and the content.

    :param phone: the number, normalised.
    :param content: the body, or the template id and its variables.
    """
    text = json.dumps([phone, content], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Recipient:
    """
    One checked recipient of a bulk send: what to send, ready.

    :param key: the recipient's idempotency key.
    :param phone: the number in E.164 form.
    :param path: the send's path.
    :param body: the send's JSON body.
    """

    key: str
    phone: str
    path: str
    body: bytes


@dataclass(slots=True)
class Outcome:
    """
    What became of one recipient: ``sent`` (with its id), ``rejected``, ``unconfirmed``, ``invalid``.

    :param key: the recipient's key (an invalid row without one: its label, ``row 7``).
    :param phone: the number (as normalised, or as given when invalid; None when not given).
    :param state: one of :data:`SENT`, :data:`REJECTED`, :data:`UNCONFIRMED`, :data:`INVALID`.
    :param message_id: the message id, when sent and the workspace gives one.
    :param reason: why it was not sent, or what Octopods said of its delivery.
    :param status: the message's last status, once waited on.
    """

    key: str
    phone: str | None
    state: str
    message_id: int | None = None
    reason: str | None = None
    status: str | None = None

    def as_row(self) -> dict[str, Any]:
        """The row of the report and of ``results_table``."""
        return {
            "key": self.key,
            "destination_phone": self.phone,
            "message_id": self.message_id,
            "status": self.status or self.state,
            "reason": self.reason,
        }


class RecipientTable:
    """
    The rows of one bulk send and what became of each, in a private temporary SQLite database.

    SQLite keeps at most its page cache (about 2 MB) in memory and the rest in a temporary file
    that it deletes on :meth:`close`, so a send of 100,000 rows takes the worker's memory of one
    of 1,000 (``benchmarks/bulk_send.py``); the disk holds about 200 bytes a row. The table also
    drops duplicate keys (a unique index) and keeps the rows' order for the report.

    ``counts`` says how many rows are in each state (None: not sent yet).
    """

    def __init__(self) -> None:
        # "": a private database on disk, deleted on close (SQLite's own temporary file)
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -512;
            CREATE TABLE r (
                seq INTEGER PRIMARY KEY, key TEXT NOT NULL, phone TEXT, path TEXT, body BLOB,
                state TEXT, message_id INTEGER, reason TEXT
            );
            CREATE UNIQUE INDEX r_key ON r (key) WHERE path IS NOT NULL;
            """
        )
        self.counts: Counter[str | None] = Counter()

    def close(self) -> None:
        """Drop the table (and its file)."""
        self._db.close()

    def add(self, recipient: Recipient) -> bool:
        """
        Add a checked recipient, to send; return False (and add nothing) when its key is already in
        for the same send. The same key for another number or content raises: one of the two
        rows is wrong, and sending only the first would drop the other without a word.

        :param recipient: the recipient.
        """
        row = (recipient.key, recipient.phone, recipient.path, recipient.body)
        if self._db.execute(
            "INSERT OR IGNORE INTO r (key, phone, path, body) VALUES (?, ?, ?, ?)", row
        ).rowcount:
            self.counts[None] += 1
            return True
        first = self._db.execute(
            "SELECT key, phone, path, body FROM r WHERE key = ? AND path IS NOT NULL", (recipient.key,)
        ).fetchone()
        if tuple(first) != row:
            raise OctopodsInputError(
                "key",
                f"{recipient.key!r:.40} is the key of an earlier row with another number or content; "
                "give each recipient its own key.",
            )
        return False

    def add_invalid(self, key: str, phone: str | None, reason: str) -> None:
        """
        Add a row the checks refused (never sent).

        :param key: the row's key, or its label (``row 7``) when it has none.
        :param phone: the number as given (None when not given).
        :param reason: why it cannot be sent.
        """
        self._db.execute(
            "INSERT INTO r (key, phone, state, reason) VALUES (?, ?, ?, ?)", (key, phone, INVALID, reason)
        )
        self.counts[INVALID] += 1

    def settle(self, previous: Iterable[Sequence[Any]], resend_unconfirmed: bool = False) -> None:
        """
        Take what earlier tries did: those recipients are not sent again.

        :param previous: ``(key, state, phone, message_id, reason)`` of each recipient an earlier
            try sent or may have sent (:meth:`~airflow_provider_octopods.utils.ledger.BulkLedger.previous`).
        :param resend_unconfirmed: leave the ``unconfirmed`` ones to send again.
        """
        for key, state, phone, message_id, reason in previous:
            if state == UNCONFIRMED and resend_unconfirmed:
                continue
            self._record(key, state, message_id, reason, phone)

    def _record(
        self, key: str, state: str, message_id: int | None, reason: str | None, phone: str | None
    ) -> None:
        if self._db.execute(
            "UPDATE r SET state = ?, message_id = ?, reason = ?, phone = ? "
            "WHERE key = ? AND path IS NOT NULL AND state IS NULL",
            (state, message_id, reason, phone, key),
        ).rowcount:
            self.counts[None] -= 1
            self.counts[state] += 1

    def record(self, outcomes: Iterable[Outcome]) -> None:
        """
        Record what became of sent recipients.

        :param outcomes: their outcomes.
        """
        for o in outcomes:
            self._record(o.key, o.state, o.message_id, o.reason, o.phone)

    def to_send(self, size: int) -> Iterator[list[Recipient]]:
        """
        Yield the recipients not sent yet, ``size`` at a time, in the rows' order.

        :param size: the window.
        """
        last = 0
        while rows := self._db.execute(
            "SELECT seq, key, phone, path, body FROM r "
            "WHERE state IS NULL AND path IS NOT NULL AND seq > ? ORDER BY seq LIMIT ?",
            (last, size),
        ).fetchall():
            last = rows[-1][0]
            yield [Recipient(key, phone, path, body) for _, key, phone, path, body in rows]

    def message_ids(self) -> list[int]:
        """The ids of the sent messages, in the rows' order."""
        query = "SELECT message_id FROM r WHERE state = ? AND message_id IS NOT NULL ORDER BY seq"
        return [row[0] for row in self._db.execute(query, (SENT,))]

    def __iter__(self) -> Iterator[Outcome]:
        """Yield every row's outcome, in the rows' order (read afresh each time)."""
        query = "SELECT key, phone, state, message_id, reason FROM r ORDER BY seq"
        for key, phone, state, message_id, reason in self._db.execute(query):
            # state None: a send that raised; the operator fails before any report reads it
            yield Outcome(key, phone, state or REJECTED, message_id, reason)


def invalid_rows_error(invalid: Sequence[tuple[str, str]], total: int, count: int | None = None) -> str:
    """
    The sentence of an ``on_invalid="fail"`` error: up to :data:`ERROR_ROWS` bad rows, the rest counted.

    :param invalid: (row label, reason) of the first bad rows.
    :param total: how many rows were read.
    :param count: how many rows are bad (default: ``len(invalid)``).
    """
    count = len(invalid) if count is None else count
    lines = [f"{label}: {reason}" for label, reason in invalid[:ERROR_ROWS]]
    more = count - len(lines)
    if more > 0:
        lines.append(f"... and {more} more.")
    return (
        f"{count} of {total} rows cannot be sent, so nothing was sent (on_invalid='fail'; "
        "'skip' sends the others and reports these):\n" + "\n".join(lines)
    )


def build_report(outcomes: Iterable[Outcome], delivered: Iterable[str]) -> dict[str, Any]:
    """
    The delivery report: counts by status, failure reasons with counts, the rows not delivered.

    Bounded in size: at most :data:`REPORT_ROWS` rows in ``not_delivered`` (``not_delivered_more``
    counts the others).

    :param outcomes: every recipient's outcome.
    :param delivered: the statuses that count as delivered for this wait.
    """
    success = set(delivered)
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    total = more = 0
    for outcome in outcomes:
        total += 1
        status = outcome.status or outcome.state
        counts[status] += 1
        if status in success:
            continue
        if outcome.reason:
            reasons[outcome.reason] += 1
        if len(rows) < REPORT_ROWS:
            rows.append(outcome.as_row())
        else:
            more += 1
    ok = sum(counts[s] for s in success)
    return {
        "recipients": total,
        "counts": dict(counts.most_common()),
        "delivered_ratio": round(ok / total, 4) if total else 1.0,
        "failure_reasons": dict(reasons.most_common()),
        "not_delivered": rows,
        "not_delivered_more": more,
    }


def report_table(report: Mapping[str, Any]) -> str:
    """The report's counts and reasons as a small text table, for the task log."""
    width = max([len(k) for k in report["counts"]] + [len("recipients")])
    lines = [f"{'recipients':<{width}}  {report['recipients']:>7}"]
    lines += [f"{status:<{width}}  {count:>7}" for status, count in report["counts"].items()]
    lines += [f"  {count:>5} x {reason}" for reason, count in list(report["failure_reasons"].items())[:10]]
    return "\n".join(lines)
