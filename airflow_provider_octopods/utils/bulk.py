"""
Bulk sends: the recipients of a bulk send, what became of each, and the delivery report.

Pure data and arithmetic, shared by :class:`~airflow_provider_octopods.operators.octopods.OctopodsBulkSendOperator`
and :class:`~airflow_provider_octopods.transfers.sql_to_octopods.SqlToOctopodsOperator`: the
operators read the rows, check each one with the hook and drive the sends and the wait.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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

    :param key: the recipient's key.
    :param phone: the number (as normalised, or as given when invalid).
    :param state: one of :data:`SENT`, :data:`REJECTED`, :data:`UNCONFIRMED`, :data:`INVALID`.
    :param message_id: the message id, when sent and the workspace gives one.
    :param reason: why it was not sent, or what Octopods said of its delivery.
    :param status: the message's last status, once waited on.
    """

    key: str
    phone: str
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


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Yield ``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def invalid_rows_error(invalid: Sequence[tuple[str, str]], total: int) -> str:
    """
    The sentence of an ``on_invalid="fail"`` error: up to :data:`ERROR_ROWS` bad rows, the rest counted.

    :param invalid: (row label, reason) of each bad row.
    :param total: how many rows were read.
    """
    lines = [f"{label}: {reason}" for label, reason in invalid[:ERROR_ROWS]]
    more = len(invalid) - ERROR_ROWS
    if more > 0:
        lines.append(f"... and {more} more.")
    return (
        f"{len(invalid)} of {total} rows cannot be sent, so nothing was sent (on_invalid='fail'; "
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
