"""
What a send task already sent, kept across its tries in Airflow's task state store (3.3+).

A retried send-and-wait (worker killed, ``execution_timeout``, a crashed trigger, a defer timeout)
reads the message id back and resumes waiting on it instead of texting the recipient again. The
store (``context["task_state_store"]``) is scoped to the task instance, not to the try. Before
Airflow 3.3 there is no store: :attr:`SendLedger.durable` is False and the operator keeps the
stricter rule that any failure after a send fails without retry.

The ledger also writes a "sending" mark just before the request, so that a try that dies between
Octopods accepting the SMS and the ledger recording it makes the next try fail safely
(:class:`~airflow_provider_octopods.exceptions.OctopodsSendUnconfirmedError`) instead of sending
again: the window left is a crash while writing the mark itself, before any request.

A task cleared by hand is a new start: the ledger keeps the task's ``max_tries`` with each entry
(a Clear raises it, a retry does not) and ignores what an earlier generation wrote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_octopods.exceptions import OctopodsSendUnconfirmedError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from airflow_provider_octopods.models import SentMessage

#: The store key. Never rename it: retries of tasks in flight read what earlier tries wrote.
STATE_KEY = "octopods_send"


@dataclass(frozen=True)
class PreviousSend:
    """
    A send an earlier try of this task made.

    :param sent: the send's answer (``SentSms.to_dict()``), as that try returned it.
    :param sent_at: when Octopods accepted it (UNIX time).
    """

    sent: dict[str, Any]
    sent_at: float

    @property
    def message_id(self) -> int | None:
        """The id of the message that was sent (None: the workspace gives none)."""
        message_id = self.sent.get("message_id")
        return None if message_id is None else int(message_id)


class SendLedger:
    """
    One task instance's sends, read and written through ``context["task_state_store"]``.

    :param store: the task state store accessor, or None where Airflow has none (before 3.3).
    :param generation: the task instance's ``max_tries``, which a manual Clear changes.
    :param noun: how its messages name what is sent (``SMS``, ``WhatsApp message``).
    """

    def __init__(self, store: Any, generation: int, noun: str = "SMS") -> None:
        self._store = store
        self._generation = generation
        self.noun = noun

    @classmethod
    def of(cls, context: Any, noun: str = "SMS") -> SendLedger:
        """
        Return the ledger of the task instance running with ``context``.

        :param context: the task context.
        :param noun: how its messages name what is sent.
        """
        ti = context.get("ti")
        return cls(context.get("task_state_store"), int(getattr(ti, "max_tries", 0) or 0), noun)

    @property
    def durable(self) -> bool:
        """Whether sends are remembered across tries (Airflow 3.3+)."""
        return self._store is not None

    def previous(self) -> PreviousSend | None:
        """
        Return the send an earlier try of this generation made, if any.

        :raises OctopodsSendUnconfirmedError: an earlier try was sending when it stopped, so the
            SMS may have gone out; it is not sent again.
        """
        if self._store is None:
            return None
        entry = self._store.get(STATE_KEY)
        if not isinstance(entry, dict) or entry.get("generation") != self._generation:
            return None
        if not isinstance(entry.get("sent"), dict):
            raise OctopodsSendUnconfirmedError(
                f"An earlier try of this task was sending the {self.noun} when it stopped, before Octopods' "
                f"answer was recorded: the {self.noun} may have been sent, so it is not sent again. Check in "
                "Octopods whether it went out; clear the task to send it again."
            )
        return PreviousSend(dict(entry["sent"]), float(entry.get("sent_at") or time.time()))

    def sending(self) -> None:
        """Mark that a send is about to leave (the next try then never sends blindly)."""
        if self._store is not None:
            self._store.set(STATE_KEY, {"generation": self._generation, "sent": None})

    def forget(self) -> None:
        """Drop the mark: the send certainly did not leave (a retry may send)."""
        if self._store is not None:
            self._store.delete(STATE_KEY)

    def record(self, sent: SentMessage) -> PreviousSend:
        """
        Record an accepted send, so later tries resume it; return it.

        :param sent: Octopods' answer to the send.
        :raises OctopodsSendUnconfirmedError: the store could not record it (the SMS is out; the
            task must not retry and send it again).
        """
        done = PreviousSend(sent.to_dict(), time.time())
        if self._store is None:
            return done
        try:
            self._store.set(
                STATE_KEY, {"generation": self._generation, "sent": done.sent, "sent_at": done.sent_at}
            )
        except Exception as err:
            raise OctopodsSendUnconfirmedError(
                f"{sent.noun} was sent, but recording it for retries failed ({type(err).__name__}): "
                f"it is not sent again. Wait on message_id {sent.message_id} with the channel's delivery "
                "sensor, or check it in Octopods."
            ) from None
        return done


#: The bulk ledger's manifest key (how many chunks), and the prefix of its chunk keys.
BULK_KEY = "octopods_bulk"
#: Recipients per chunk (one state-store value each): about 60 bytes a recipient, so a chunk
#: stays far below Airflow's ``[state_store] max_value_storage_bytes`` (64 KB by default).
BULK_CHUNK = 200


class BulkLedger:
    """
    A bulk send's recipients, chunk by chunk, read and written through ``context["task_state_store"]``.

    Before a chunk leaves, its recipients are marked ``sending`` (one value per chunk, under
    ``octopods_bulk_<n>``, and the manifest ``octopods_bulk`` counts the chunks); after, the chunk
    records what became of each: its message id, or ``unconfirmed``, or that nothing was sent (a
    retry may send those). A later try of the same generation reads every chunk back: a recipient
    marked sending and never recorded was in flight when a try died: ``unconfirmed``.

    :param store: the task state store accessor, or None before Airflow 3.3.
    :param generation: the task instance's ``max_tries``, which a manual Clear changes.
    """

    def __init__(self, store: Any, generation: int) -> None:
        self._store = store
        self._generation = generation
        self._chunks = 0

    @classmethod
    def of(cls, context: Any) -> BulkLedger:
        """
        Return the bulk ledger of the task instance running with ``context``.

        :param context: the task context.
        """
        ti = context.get("ti")
        return cls(context.get("task_state_store"), int(getattr(ti, "max_tries", 0) or 0))

    @property
    def durable(self) -> bool:
        """Whether sends are remembered across tries (Airflow 3.3+)."""
        return self._store is not None

    def _get(self, key: str) -> dict[str, Any] | None:
        entry = self._store.get(key) if self._store is not None else None
        return entry if isinstance(entry, dict) and entry.get("generation") == self._generation else None

    def previous(self) -> Iterator[tuple[str, str, str, int | None, str | None]]:
        """
        Return what earlier tries of this generation did: ``(key, state, phone, message_id, reason)``.

        ``state`` is ``sent`` (``message_id`` None when the workspace gives no id) or
        ``unconfirmed`` (in flight when a try died, or no clear answer). Recipients a try certainly
        did not send are left out: they may be sent. The manifest is read now (later chunks are
        numbered after it); the chunks one at a time as the result is iterated.
        """
        manifest = self._get(BULK_KEY)
        self._chunks = int(manifest["chunks"]) if manifest else 0
        return self._recipients(self._chunks)

    def _recipients(self, chunks: int) -> Iterator[tuple[str, str, str, int | None, str | None]]:
        for number in range(chunks):
            chunk = self._get(f"{BULK_KEY}_{number}") or {}
            if "outcomes" in chunk:
                for key, state, phone, message_id, reason in chunk["outcomes"]:
                    yield key, state, phone, message_id, reason
            else:
                for key, phone in chunk.get("sending", []):
                    yield key, "unconfirmed", phone, None, "in flight when a try stopped"

    def sending(self, recipients: Sequence[Any]) -> int:
        """
        Mark ``recipients`` (each with ``key`` and ``phone``) as about to leave; return the chunk's number.

        :param recipients: the chunk.
        """
        number, self._chunks = self._chunks, self._chunks + 1
        if self._store is not None:
            self._store.set(BULK_KEY, {"generation": self._generation, "chunks": self._chunks})
            self._store.set(
                f"{BULK_KEY}_{number}",
                {"generation": self._generation, "sending": [[r.key, r.phone] for r in recipients]},
            )
        return number

    def record(self, number: int, outcomes: Sequence[Any]) -> None:
        """
        Record what became of chunk ``number``: sent (with ids), unconfirmed, or not sent.

        :param number: the chunk's number, from :meth:`sending`.
        :param outcomes: each recipient's :class:`~airflow_provider_octopods.utils.bulk.Outcome`.
        """
        if self._store is None:
            return
        kept = [
            [o.key, o.state, o.phone, o.message_id, o.reason]
            for o in outcomes
            if o.state in ("sent", "unconfirmed")
        ]
        self._store.set(f"{BULK_KEY}_{number}", {"generation": self._generation, "outcomes": kept})
