"""Operators that send an SMS or a WhatsApp template through Octopods and, optionally, wait for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, cast

from airflow.providers.common.compat.sdk import BaseOperator, TaskDeferred, conf

from airflow_provider_octopods.exceptions import (
    OctopodsAuthError,
    OctopodsDeliveryError,
    OctopodsError,
    OctopodsInputError,
    OctopodsTimeoutError,
    OctopodsWaitAfterSendError,
    Sent,
)
from airflow_provider_octopods.models import (
    CHANNELS,
    DELIVERED,
    KNOWN_STATUSES,
    SMS,
    WHATSAPP,
    Channel,
    MessageStatus,
    SendArguments,
    SendOptions,
    TemplateArguments,
    parse_choice,
    parse_count,
    parse_literal,
    parse_wait_for,
    reached,
    seconds,
)
from airflow_provider_octopods.triggers.octopods import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    DELIVERY_TRIGGERS,
    HEARTBEAT_INTERVAL,
    PollSchedule,
    ScheduledWait,
    defer_wait,
    event_statuses,
    require_delivered,
    statuses_from_event,
)
from airflow_provider_octopods.utils.bulk import (
    ERROR_ROWS,
    INVALID,
    REJECTED,
    SENT,
    UNCONFIRMED,
    UNTRACKABLE,
    WAITING,
    Outcome,
    Recipient,
    RecipientTable,
    build_report,
    invalid_rows_error,
    recipient_key,
    report_table,
)
from airflow_provider_octopods.utils.ledger import BULK_CHUNK, BulkLedger, PreviousSend, SendLedger
from airflow_provider_octopods.utils.segments import parse_max_segments

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterator, Sequence
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import Context
    from airflow.triggers.base import TriggerEvent

    from airflow_provider_octopods.hooks.octopods import Call, OctopodsHook
    from airflow_provider_octopods.models import SentMessage
    from airflow_provider_octopods.triggers.octopods import OctopodsDeliveryTrigger

__all__ = ["OctopodsBulkSendOperator", "OctopodsSendSmsOperator", "OctopodsSendWhatsAppTemplateOperator"]

#: The XCom key under which a deferring send-and-wait keeps what it sent, for a failed resume.
SENT_XCOM_KEY = "octopods_sent"
#: Airflow's ``next_method`` of a task whose trigger failed or whose defer timeout passed.
TRIGGER_FAIL = "__fail__"
#: Failures after a send that already fail without retry and already name the message.
_FINAL_AFTER_SEND = (OctopodsDeliveryError, OctopodsTimeoutError, OctopodsWaitAfterSendError)
#: What a send-and-wait does when the workspace answers a send without a message id.
ON_UNTRACKABLE = ("fail", "succeed")


class OctopodsSendOperatorBase(ScheduledWait, BaseOperator):
    """
    Send one message of :attr:`channel`, exactly once, and optionally wait for it: what every send operator shares.

    A subclass names the channel and says how to check and prepare its send (:meth:`_prepare`);
    the ledger, the wait, the retry rules and the XCom are here, once. The behaviour is
    documented on :class:`OctopodsSendSmsOperator`.

    :param wait_for_delivery: wait until the message reaches a final status and fail if it did
        not reach ``wait_for``.
    :param wait_for: ``delivered`` or ``read`` (see the channel's sensor).
    :param on_untrackable: when the workspace answers a send without a message id (HubSpot
        workspaces), a send-and-wait can only ``fail`` (the default) or ``succeed``; either way,
        nothing is sent again.
    :param deferrable: wait in the triggerer instead of a worker slot (only with ``wait_for_delivery``).
    :param poll_interval: seconds (or a timedelta) between the first polls, more than 0.
    :param timeout: seconds (or a timedelta) to wait for a final status after the send.
    :param initial_delay: seconds (or a timedelta) between the send and the first poll.
    :param max_poll_interval: the longest wait between polls, and the cap of error backoff.
    :param backoff_factor: growth of the interval after each poll (1 keeps it fixed).
    :param octopods_conn_id: the Octopods connection (default: the channel's).
    """

    ui_color = "#7b5cff"
    #: The channel of the message.
    channel: ClassVar[Channel] = SMS

    def __init__(
        self,
        *,
        wait_for_delivery: bool = False,
        wait_for: str = DELIVERED,
        on_untrackable: str = "fail",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        initial_delay: float | timedelta = DEFAULT_INITIAL_DELAY,
        max_poll_interval: float | timedelta = DEFAULT_MAX_POLL_INTERVAL,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        octopods_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.octopods_conn_id = octopods_conn_id or self.channel.conn_id
        self.wait_for_delivery = wait_for_delivery
        self.wait_for = parse_wait_for(wait_for)
        self.on_untrackable = parse_choice(on_untrackable, "on_untrackable", ON_UNTRACKABLE)
        self.deferrable = deferrable
        self.schedule = PollSchedule.of(initial_delay, poll_interval, backoff_factor, max_poll_interval)
        self.timeout = seconds(timeout, "timeout")

    @cached_property
    def hook(self) -> OctopodsHook:
        """The sync hook; it does not retry by itself: this operator owns the poll schedule."""
        from airflow_provider_octopods.hooks.octopods import OctopodsHook

        return OctopodsHook(self.octopods_conn_id, max_retries=0)

    def _prepare(self) -> Call:
        """Read the connection and check the send, sending nothing; return its call."""
        raise NotImplementedError

    def _ledger(self, context: Context) -> SendLedger:
        return SendLedger.of(context, self.channel.noun)

    def execute(self, context: Context) -> dict[str, Any]:
        ledger = self._ledger(context)
        done = ledger.previous()
        resumed = done is not None
        if done is None:
            done = self._send_once(ledger)
        else:
            self.log.info(
                "%s %s was sent by an earlier try of this task; not sending it again.",
                self.channel.noun,
                done.message_id,
            )
        if not self.wait_for_delivery:
            return done.sent
        if done.message_id is None:
            return self._untrackable(done.sent)
        with _never_resend(done.sent, durable=ledger.durable, noun=self.channel.noun):
            # A resumed wait polls at once: an old message may be final.
            schedule = replace(self.schedule, initial_delay=0.0) if resumed else self.schedule
            trigger = DELIVERY_TRIGGERS[self.channel.name](
                message_id=done.message_id,
                octopods_conn_id=self.octopods_conn_id,
                end_time=done.sent_at + self.timeout,  # one deadline for every try
                wait_for=self.wait_for,
                **schedule.as_kwargs(),
            )
            if self.deferrable:
                # Kept where a failed resume finds it: Airflow replaces the defer kwargs then.
                context["ti"].xcom_push(key=SENT_XCOM_KEY, value=done.sent)
                defer_wait(self, trigger, self.timeout, kwargs={"sent": done.sent})
            event = self._wait_in_process(trigger)
        return self.execute_complete(context, event, sent=done.sent)

    def _untrackable(self, sent: dict[str, Any]) -> dict[str, Any]:
        """A send-and-wait whose workspace gave no id: succeed or fail as ``on_untrackable`` says."""
        text = (
            f"Octopods accepted the {self.channel.noun} (request_id {sent.get('request_id')}), but this workspace "
            "gives no message id to track, so its delivery cannot be waited on; it is not sent again."
        )
        if self.on_untrackable == "succeed":
            self.log.warning("%s", text)
            return sent
        raise OctopodsDeliveryError(f"{text} Set on_untrackable='succeed' to let the task succeed then.")

    def _send_once(self, ledger: SendLedger) -> PreviousSend:
        """
        Send the message and record it in ``ledger``: a mark just before the request, the answer after.

        The connection is read and the send checked before the mark, so that no failure of theirs
        blocks a retry; a failure that certainly sent nothing drops the mark again.
        """
        try:
            call = self._prepare()
            ledger.sending()
            try:
                sent = self.hook.send(call)
            except BaseException as err:
                if getattr(err, "sent", Sent.MAYBE) in (None, Sent.NO):
                    ledger.forget()  # refused or never sent: a retry may send
                raise  # else the mark stays: a retry must not send blindly
        finally:
            self.hook.close()
        self._log_sent(sent)
        return ledger.record(sent)

    def _log_sent(self, sent: SentMessage) -> None:
        self.log.info("Octopods accepted %s (request_id %s).", sent.noun, sent.request_id)

    @staticmethod
    def _wait_in_process(trigger: OctopodsDeliveryTrigger) -> dict[str, Any] | None:
        """
        Run the trigger's own loop in this worker and return its event (non-deferrable wait).

        The same engine, schedule, backoff, deadline and error rules as in the triggerer: only the
        process differs.
        """

        async def first_event() -> dict[str, Any] | None:
            events = cast("AsyncGenerator[TriggerEvent, None]", trigger.run())
            try:
                async for event in events:
                    return event.payload
                return None
            finally:
                await events.aclose()

        return asyncio.run(first_event())

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, sent: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """
        Finish the wait: return the final status, or fail like the sensor does (without retries).

        Called after the trigger fired (deferrable mode) or after polling in the worker; it never
        sends anything.

        :param context: the task context.
        :param event: the trigger's event payload.
        :param sent: the send's answer (``SentMessage.to_dict()``).
        """
        with _never_resend(sent, durable=self._ledger(context).durable, noun=self.channel.noun):
            result = require_delivered(statuses_from_event(event, self.timeout), self.log, self.wait_for)[0]
        if "template_id" in result and sent:
            result["template_id"] = sent.get("template_id")
        return result

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """
        Resume after the trigger, knowing what was sent even where Airflow dropped the defer kwargs.

        When the trigger failed or Airflow's defer timeout passed, Airflow resumes with
        ``next_method`` ``"__fail__"`` and its own ``next_kwargs``, and the error it raises would be
        retried, sending the message again: the message kept in XCom at deferral is named instead,
        and the task fails without retries.
        """
        next_kwargs = dict(next_kwargs or {})
        sent = next_kwargs.pop("sent", None) or self._kept_sent(context)
        if next_method != TRIGGER_FAIL:
            return super().resume_execution(next_method, {**next_kwargs, "sent": sent}, context)
        durable = self._ledger(context).durable  # then Airflow's retry resumes from the ledger
        kept = sent or {"message_id": "(unknown: see the task's log)"}
        with _never_resend(kept, durable=durable, noun=self.channel.noun):
            return super().resume_execution(next_method, next_kwargs, context)

    @staticmethod
    def _kept_sent(context: Context) -> dict[str, Any] | None:
        """Return the ``SentMessage.to_dict()`` kept in XCom when this task deferred, if any."""
        ti = context["ti"]
        return ti.xcom_pull(task_ids=ti.task_id, key=SENT_XCOM_KEY, map_indexes=ti.map_index)


class OctopodsSendSmsOperator(SendArguments, OctopodsSendOperatorBase):
    """
    Send an SMS through Octopods; optionally wait until the carrier confirms delivery.

    Without ``wait_for_delivery`` the task returns ``SentMessage.to_dict()`` (``message_id``,
    ``request_id``, ``channel_message_id``, and the ``destination_phone`` in E.164 form, the
    text's ``encoding`` and ``segments``) as XCom, ready for an
    :class:`~airflow_provider_octopods.sensors.octopods.OctopodsSmsDeliverySensor` downstream.

    With ``wait_for_delivery`` the task then waits on the message id it got and returns the final
    status (``MessageStatus.to_dict()``, which holds ``message_id``), failing exactly like the sensor:
    without retries on ``failed`` or ``undelivered`` (naming Octopods' ``failure_reason``), on a
    rejected key, and when ``timeout`` passes (naming the last status seen); transient trouble
    while waiting is polled through. In deferrable mode the wait runs in the triggerer
    (:class:`~airflow_provider_octopods.triggers.octopods.OctopodsSmsDeliveryTrigger`) and the task
    finishes in :meth:`execute_complete`; otherwise it polls in the worker on the same schedule.
    A workspace that answers the send without a message id (Octopods' pages show it for HubSpot
    workspaces) returns ``message_id`` None with the ``request_id``; a send-and-wait then fails
    or succeeds as ``on_untrackable`` says, and never sends again.

    The SMS is never sent twice. A send that fails in a way that leaves unknown whether Octopods
    accepted it (a 5xx answer, a broken connection, a timeout) raises
    :class:`OctopodsSendUnconfirmedError` and fails without retries; a send that certainly did
    not reach Octopods (no connection, HTTP 429) may be retried through the task's ``retries``.
    On Airflow 3.3+ the send is recorded in the task's ``task_state_store`` (a mark before the
    request, the answer after): a retry resumes the wait on the same message instead of sending
    (:ref:`howto/operator:exactly-once`). Before 3.3, once a send succeeded, every later failure of the task (the wait cut by
    ``execution_timeout``, a rejected key, a crashed or timed-out trigger, anything) fails without
    retries too, as :class:`OctopodsWaitAfterSendError` naming the message id, unless it is already
    such a final error (a failed delivery, a timed-out wait); a deferring task keeps the send's
    answer in XCom (key ``octopods_sent``) to name it after a failed trigger. Invalid input (a phone number
    libphonenumber refuses, an empty or too long body, more segments than ``max_segments``) fails
    before any request.

    .. seealso::
        :ref:`howto/operator:OctopodsSendSmsOperator`

    :param destination_phone: the recipient, e.g. ``+12015550123`` (templated); see :doc:`/numbers`.
    :param body: the text, 1 to 1,600 characters (templated).
    :param destination_user_name: the recipient's name, shown in Octopods (templated).
    :param open_intercom_conversation: whether to open an Intercom conversation for the SMS.
    :param intercom_teammate_id: the Intercom teammate the conversation is assigned to.
    :param wait_for_delivery: wait until the SMS reaches a final status and fail if it was not
        delivered.
    :param wait_for: ``delivered`` (the default) or ``read``, where the SMS channel reports it.
    :param on_untrackable: with ``wait_for_delivery``, when the workspace gives no message id:
        ``fail`` (the default) or ``succeed``; nothing is sent again either way.
    :param deferrable: wait in the triggerer instead of a worker slot (only with
        ``wait_for_delivery``).
    :param poll_interval: seconds (or a timedelta) between the first polls, more than 0; grows by
        ``backoff_factor`` up to ``max_poll_interval``.
    :param timeout: seconds (or a timedelta) to wait for a final status after the send.
    :param initial_delay: seconds (or a timedelta) between the send and the first poll.
    :param max_poll_interval: the longest wait between polls, and the cap of error backoff
        (seconds or a timedelta).
    :param backoff_factor: growth of the interval after each poll (1 keeps it fixed).
    :param octopods_conn_id: the :ref:`Octopods connection <howto/connection:octopods>`.
    :param default_region: the region of national numbers such as ``(201) 555-0123`` (default:
        the connection's extra ``default_region``, else numbers must start with ``+``).
    :param strict_numbers: refuse numbers libphonenumber does not call valid (default: the
        connection's extra ``strict_numbers``, else true); false sends them with a warning.
    :param max_segments: fail before sending when the text takes more SMS segments than this.
    """

    template_fields: Sequence[str] = ("destination_phone", "body", "destination_user_name")
    channel = SMS

    def __init__(
        self,
        *,
        destination_phone: str,
        body: str,
        destination_user_name: str | None = None,
        open_intercom_conversation: bool | None = None,
        intercom_teammate_id: str | int | None = None,
        octopods_conn_id: str = SMS.conn_id,
        default_region: str | None = None,
        strict_numbers: bool | None = None,
        max_segments: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(octopods_conn_id=octopods_conn_id, **kwargs)
        self._keep_send_arguments(locals())
        self.open_intercom_conversation = open_intercom_conversation
        self.intercom_teammate_id = intercom_teammate_id

    def _prepare(self) -> Call:
        options: SendOptions = {
            **self._send_options(),
            "open_intercom_conversation": self.open_intercom_conversation,
            "intercom_teammate_id": self.intercom_teammate_id,
        }
        return self.hook.prepare_sms(self.destination_phone, self.body, **options)

    def _log_sent(self, sent: SentMessage) -> None:
        self.log.info(
            "Octopods accepted %s (%s, %s segment(s); request_id %s).",
            sent.noun,
            sent.encoding,
            sent.segments,
            sent.request_id,
        )


class OctopodsSendWhatsAppTemplateOperator(TemplateArguments, OctopodsSendOperatorBase):
    """
    Send an approved WhatsApp template through Octopods; optionally wait until it is delivered, or read.

    Before the send the key's templates are read (once per task) and the send is refused, naming
    the field and what the template expects, when the template does not exist, is not Accepted,
    has a media header and no ``header_attachment_url``, or the variables do not fit its
    placeholders; nothing is sent then (``check_template=False`` skips the check).

    Without ``wait_for_delivery`` the task returns ``SentMessage.to_dict()`` (``message_id``,
    ``request_id``, ``destination_phone`` in E.164 form, ``template_id``). With it, the task waits
    on the message and returns its final status (``MessageStatus.to_dict()``, with ``read_at`` and
    ``template_id``), failing like :class:`~airflow_provider_octopods.sensors.octopods.OctopodsWhatsAppDeliverySensor`.
    ``wait_for="read"`` waits for the read receipt: a message delivered but not read by
    ``timeout`` fails, naming when it was delivered. The exactly-once rules, the modes and the
    XCom are those of :class:`OctopodsSendSmsOperator`.

    .. seealso::
        :ref:`howto/operator:OctopodsSendWhatsAppTemplateOperator`

    :param template_id: the template's id (``template_id`` in Octopods; templated).
    :param destination_phone: the recipient (templated); see :doc:`/numbers`.
    :param message_variables: the placeholders' values (templated): a list for a template whose
        placeholders are all in the body, a dict of sections (``header``, ``body``, ``footer``,
        ``buttons``) or a dict keyed ``"1"``, ``"2"``; see :doc:`/whatsapp`.
    :param header_attachment_url: the public URL of a media header's image, video or document (templated).
    :param wait_for_delivery: wait until the message reaches a final status.
    :param wait_for: ``delivered`` (``read`` and ``deleted`` count) or ``read``.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param poll_interval: seconds (or a timedelta) between the first polls.
    :param timeout: seconds (or a timedelta) to wait for a final status after the send.
    :param octopods_conn_id: the connection holding the WhatsApp channel's key.
    :param check_template: read and check the template before sending.
    :param destination_user_name: the recipient's name, shown in Octopods (templated).
    :param open_intercom_conversation: whether to open an Intercom conversation for it.
    :param intercom_teammate_id: the Intercom teammate the conversation is assigned to.
    :param default_region: the region of national numbers (default: the connection's).
    :param strict_numbers: refuse numbers libphonenumber does not call valid (default: the connection's).
    :param kwargs: the waiting arguments of :class:`OctopodsSendSmsOperator` (``initial_delay``,
        ``max_poll_interval``, ``backoff_factor``, ``on_untrackable``) and ``BaseOperator``'s.
    """

    template_fields: Sequence[str] = (
        "template_id",
        "destination_phone",
        "message_variables",
        "header_attachment_url",
        "destination_user_name",
    )
    channel = WHATSAPP

    def __init__(
        self,
        *,
        template_id: int | str,
        destination_phone: str,
        message_variables: Any = None,
        header_attachment_url: str | None = None,
        wait_for_delivery: bool = False,
        wait_for: str = DELIVERED,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        octopods_conn_id: str = WHATSAPP.conn_id,
        check_template: bool = True,
        destination_user_name: str | None = None,
        open_intercom_conversation: bool | None = None,
        intercom_teammate_id: str | int | None = None,
        default_region: str | None = None,
        strict_numbers: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            wait_for_delivery=wait_for_delivery,
            wait_for=wait_for,
            deferrable=deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            octopods_conn_id=octopods_conn_id,
            **kwargs,
        )
        self._keep_template_arguments(locals())
        self.open_intercom_conversation = open_intercom_conversation
        self.intercom_teammate_id = intercom_teammate_id
        self.strict_numbers = strict_numbers

    def _prepare(self) -> Call:
        return self.hook.prepare_whatsapp(
            self.template_id,
            self.destination_phone,
            self.message_variables,
            **self._template_options(),
            open_intercom_conversation=self.open_intercom_conversation,
            intercom_teammate_id=self.intercom_teammate_id,
            strict_numbers=self.strict_numbers,
        )


@contextlib.contextmanager
def _never_resend(sent: dict[str, Any] | None, *, durable: bool = False, noun: str = "SMS") -> Iterator[None]:
    """
    Turn every failure after the send of ``sent`` into one that fails without retries.

    Without a ledger (before Airflow 3.3) a retry would run ``execute`` again and text the
    recipient a second time. Deferring passes through, and so do failures that already fail
    without retries and name the message. With a durable ledger, failures stay as they are: a
    retry resumes the wait on the recorded message instead of sending.

    :param sent: the send's answer (``SentMessage.to_dict()``), or None (or empty) when nothing was
        sent here; read when a failure comes, so a bulk send fills it as its first message leaves.
    :param durable: whether the send is recorded across tries (:class:`SendLedger`).
    :param noun: how the channel names a message.
    """
    try:
        yield
    except (TaskDeferred, GeneratorExit, *_FINAL_AFTER_SEND):
        raise
    except BaseException as err:  # anything: execution_timeout, SIGTERM, a crash
        if not sent or durable:
            raise
        raise OctopodsWaitAfterSendError.after(sent, err, noun) from err


#: The key of the XCom in which a deferring bulk send keeps every recipient's outcome.
BULK_XCOM_KEY = "octopods_bulk"
#: What ``on_invalid`` accepts.
ON_INVALID = ("fail", "skip")
#: The fields of a bulk send's row, by channel: a misspelt one is refused, never ignored.
ROW_FIELDS = {
    SMS.name: frozenset({"destination_phone", "key", "destination_user_name", "body"}),
    WHATSAPP.name: frozenset(
        {
            "destination_phone",
            "key",
            "destination_user_name",
            "template_id",
            "message_variables",
            "header_attachment_url",
        }
    ),
}


class OctopodsBulkSendOperator(BaseOperator):
    """
    Send one message to each of many recipients, exactly once each, within the key's budget; wait once; report.

    ``messages`` is a list (or an XCom of one) of dicts: ``destination_phone`` and ``body`` (SMS),
    or ``template_id``, ``message_variables`` and ``header_attachment_url`` (WhatsApp), an
    optional ``destination_user_name`` and an optional ``key``: the recipient's idempotency key
    (default: a hash of the number and the content). Any other field makes the row invalid. Rows
    with the same key and send are sent once; the same key for another number or text is invalid.

    Every row is checked before the first send (the number normalised with the connection's
    ``default_region``, the body sized, the template checked); with ``on_invalid="fail"`` nothing
    is sent and the error lists up to 20 bad rows, with ``"skip"`` they are reported, not sent.
    The sends then run concurrently in the worker (the async hook, ``window`` at a time) at the
    connection's ``max_requests_per_second`` (adaptive to HTTP 429 when unset); a 429 is sent
    again after its ``Retry-After``, never lost nor doubled. On Airflow 3.3+ each window is
    marked in the task state store before it leaves and recorded after: a retry sends only what
    no earlier try sent, and reports what was in flight when a try died as ``unconfirmed``
    (``resend_unconfirmed=True`` sends those again, at the risk of a
    second message). Before 3.3 any failure after the first send fails without retry.

    With ``wait_for_delivery`` (the default) one wait covers every message (deferred to the
    triggerer with ``deferrable``; WhatsApp reads the list of sends). The task returns the
    delivery report: counts by status, failure reasons with counts, ``delivered_ratio``, and
    the first 100 rows not delivered (key, number, message id, status, reason); the log ends with
    the same summary. Below ``min_delivered_ratio`` the task fails (without retry: the messages
    went out). See :doc:`/bulk`.

    .. seealso::
        :ref:`howto/operator:OctopodsBulkSendOperator`

    :param messages: the messages (templated): a list of dicts, or an XCom of one.
    :param channel: ``sms`` or ``whatsapp``.
    :param wait_for_delivery: wait until every message is final, then report.
    :param wait_for: ``delivered`` or ``read`` (WhatsApp).
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param timeout: seconds (or a timedelta) to wait for final statuses after the last send.
    :param poll_interval: seconds (or a timedelta) between polls of the wait.
    :param initial_delay: seconds (or a timedelta) between the last send and the first poll.
    :param on_invalid: ``fail`` (send nothing when a row is invalid) or ``skip`` (report it).
    :param min_delivered_ratio: fail the task when fewer than this share of recipients (0 to 1)
        reached ``wait_for`` (of ``sent``, without a wait); None never fails on it.
    :param octopods_conn_id: the Octopods connection (default: the channel's).
    :param window: recipients sent concurrently and marked together (1 to 200).
    :param resend_unconfirmed: send again the recipients an earlier try may have sent.
    :param fail_fast: end the wait at the first failed message.
    :param max_segments: SMS: refuse a row whose text takes more segments than this.
    :param check_template: WhatsApp: check each template before any send.
    """

    template_fields: Sequence[str] = ("messages",)
    ui_color = "#7b5cff"

    def __init__(
        self,
        *,
        messages: Any = None,
        channel: str = SMS.name,
        wait_for_delivery: bool = True,
        wait_for: str = DELIVERED,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        initial_delay: float | timedelta = DEFAULT_INITIAL_DELAY,
        on_invalid: str = "fail",
        min_delivered_ratio: float | None = None,
        octopods_conn_id: str | None = None,
        window: int = 50,
        resend_unconfirmed: bool = False,
        fail_fast: bool = False,
        max_segments: int | None = None,
        check_template: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        ratio = min_delivered_ratio
        if ratio is not None and (
            isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1
        ):
            raise OctopodsInputError(
                "min_delivered_ratio", f"got {min_delivered_ratio!r}; pass a number from 0 to 1."
            )
        self.messages = messages
        self.channel = CHANNELS[parse_choice(channel, "channel", tuple(CHANNELS))]
        self.wait_for_delivery = wait_for_delivery
        self.wait_for = parse_wait_for(wait_for)
        self.deferrable = deferrable
        self.timeout = seconds(timeout, "timeout")
        self.schedule = PollSchedule.of(initial_delay, poll_interval, 1.0, poll_interval)
        self.on_invalid = parse_choice(on_invalid, "on_invalid", ON_INVALID)
        self.min_delivered_ratio = min_delivered_ratio
        self.octopods_conn_id = octopods_conn_id or self.channel.conn_id
        self.window = parse_count(window, "window", BULK_CHUNK)
        self.resend_unconfirmed = resend_unconfirmed
        self.fail_fast = fail_fast
        self.max_segments = parse_max_segments(max_segments)
        self.check_template = check_template

    # -- the rows ---------------------------------------------------------------------------

    def _rows(self, context: Context) -> Iterator[Any]:
        """Yield the messages to send, as given (a subclass reads them elsewhere)."""
        messages = self.messages
        if isinstance(messages, str):
            messages = parse_literal(messages.strip())
            if isinstance(messages, str):
                raise OctopodsInputError(
                    "messages",
                    f"got text that is no Python or JSON list ({len(messages):,} characters: "
                    f"{messages[:40]!r}...); pass a list of dicts, or an XCom of one.",
                )
        if isinstance(messages, Mapping) or not isinstance(messages, Iterable) or isinstance(messages, str):
            raise OctopodsInputError(
                "messages", "pass a list of dicts (destination_phone, body or template_id)."
            )
        yield from messages

    def _check(self, context: Context, recipients: RecipientTable) -> None:
        """Check every row before any send, into ``recipients`` (the valid, the invalid, no duplicate key)."""
        from airflow_provider_octopods.hooks import octopods as hooks

        hook = hooks.OctopodsHook(self.octopods_conn_id, max_retries=2)
        try:
            settings = hook.settings()
            settings.proxy  # noqa: B018  # an unusable proxy fails here, before anything leaves
            templates = (
                hook.list_whatsapp_templates() if self.channel is WHATSAPP and self.check_template else None
            )
        finally:
            hook.close()
        invalid: list[tuple[str, str, str]] = []  # the first ERROR_ROWS, for the error and the log
        total = duplicates = costly = 0
        for total, item in enumerate(self._rows(context), start=1):
            row: Mapping[str, Any] = item if isinstance(item, Mapping) else {}
            given: Any = row.get("destination_phone")
            named = str(row["key"]) if row.get("key") not in (None, "") else None
            try:
                if not isinstance(item, Mapping):
                    raise OctopodsInputError("message", f"got {type(item).__name__}; give a dict.")
                fields = ROW_FIELDS[self.channel.name]
                unknown = sorted(map(str, set(row) - fields))
                if unknown:
                    raise OctopodsInputError(
                        "message",
                        f"{unknown} are not fields of a {self.channel.name} row; give {sorted(fields)}.",
                    )
                name = row.get("destination_user_name")
                if self.channel is WHATSAPP:
                    call = hooks.whatsapp_call(
                        row.get("template_id"),
                        given,
                        row.get("message_variables"),
                        settings,
                        templates,
                        row.get("header_attachment_url"),
                        destination_user_name=name,
                    )
                else:
                    call, warning = hooks.send_call(
                        given,
                        row.get("body"),
                        settings,
                        max_segments=self.max_segments,
                        destination_user_name=name,
                    )
                    costly += warning is not None
                phone = json.loads(call.body or b"{}")["destination_phone"]
                key = named or recipient_key(phone, (call.path, call.body))
                duplicates += not recipients.add(Recipient(key, phone, call.path, call.body or b""))
            except OctopodsInputError as err:
                label = f"row {total}" + (f" (key {named})" if named else "")
                phone_given = None if given is None else str(given)
                recipients.add_invalid(named or f"row {total}", phone_given, str(err))
                if len(invalid) < ERROR_ROWS:
                    invalid.append((label, str(given), str(err)))
        if costly:
            self.log.warning(
                "%d SMS texts are sent in UCS-2 because of one character each; they cost more segments.",
                costly,
            )
        bad = recipients.counts[INVALID]
        if bad and self.on_invalid == "fail":
            raise OctopodsInputError(
                "messages", invalid_rows_error([(label, reason) for label, _, reason in invalid], total, bad)
            )
        for label, given, reason in invalid:
            self.log.warning("Not sending %s (%s): %s", label, given, reason)
        if bad > ERROR_ROWS:
            self.log.warning("... and %d more invalid rows (counted in the report).", bad - ERROR_ROWS)
        self.log.info(
            "Checked %d rows: %d recipients to send, %d invalid, %d duplicate keys.",
            total,
            recipients.counts[None],
            bad,
            duplicates,
        )

    # -- the sends --------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        ledger = BulkLedger.of(context)
        with contextlib.closing(RecipientTable()) as recipients:
            self._check(context, recipients)
            checked = recipients.counts[None]
            recipients.settle(ledger.previous(), self.resend_unconfirmed)
            if recipients.counts[None] < checked:
                self.log.info(
                    "Earlier tries handled %d of these recipients (%d sent, %d unconfirmed); sending the %d others.",
                    checked - recipients.counts[None],
                    recipients.counts[SENT],
                    recipients.counts[UNCONFIRMED],
                    recipients.counts[None],
                )
            # filled as the first message leaves: from then on no retry (before 3.3)
            left: dict[str, Any] = {}
            with _never_resend(left, durable=ledger.durable, noun=self.channel.plural):
                asyncio.run(self._send_all(recipients, ledger, left))
                ids = recipients.message_ids() if self.wait_for_delivery else []
                if not ids:
                    return self._finish(context, recipients, None)
                trigger = DELIVERY_TRIGGERS[self.channel.name](
                    message_ids=ids,
                    octopods_conn_id=self.octopods_conn_id,
                    end_time=time.time() + self.timeout,
                    wait_for=self.wait_for,
                    fail_fast=self.fail_fast,
                    max_concurrency=self.window,
                    **self.schedule.as_kwargs(),
                )
                if self.deferrable:
                    outcomes = [_outcome_list(o) for o in recipients]
                    context["ti"].xcom_push(key=BULK_XCOM_KEY, value=outcomes)
                    defer_wait(self, trigger, self.timeout)
                return self._finish(context, recipients, self._wait_in_process(trigger))

    async def _send_all(self, recipients: RecipientTable, ledger: BulkLedger, left: dict[str, Any]) -> None:
        """Send what ``recipients`` has not sent, a window at a time, each window marked before and recorded after."""
        from airflow_provider_octopods.hooks import octopods as hooks

        counts = recipients.counts
        total, earlier = counts[None], counts.copy()  # this try's counts are the growth from here
        started = last_said = time.monotonic()
        async with hooks.OctopodsAsyncHook(self.octopods_conn_id) as hook:

            async def send(recipient: Recipient) -> Outcome:
                call = hooks.prepared_send_call(self.channel, recipient.path, recipient.body, recipient.phone)
                left.setdefault("message_id", "(several: this bulk send's report lists them)")
                try:
                    sent = await hook.send_until_answered(call)
                except OctopodsError as err:
                    if isinstance(err, OctopodsAuthError):
                        raise
                    state = REJECTED if err.sent in (None, Sent.NO) else UNCONFIRMED
                    self.log.warning(
                        "The %s to %s was not sent (%s): %s", self.channel.noun, recipient.phone, state, err
                    )
                    return Outcome(recipient.key, recipient.phone, state, reason=str(err))
                return Outcome(recipient.key, recipient.phone, SENT, sent.message_id)

            for window in recipients.to_send(self.window):
                number = ledger.sending(window)
                results = await asyncio.gather(*(send(r) for r in window), return_exceptions=True)
                done = [r for r in results if isinstance(r, Outcome)]
                ledger.record(number, done)
                recipients.record(done)
                errors = [r for r in results if isinstance(r, BaseException)]
                if errors:
                    raise errors[0]
                now = time.monotonic()
                if now - last_said >= HEARTBEAT_INTERVAL or not counts[None]:
                    last_said = now
                    self.log.info(
                        "Sent %d of %d %s (%.1f/s); %d not sent, %d unconfirmed.",
                        counts[SENT] - earlier[SENT],
                        total,
                        self.channel.plural,
                        (total - counts[None]) / max(now - started, 1e-3),
                        counts[REJECTED],
                        counts[UNCONFIRMED] - earlier[UNCONFIRMED],
                    )

    _wait_in_process = staticmethod(OctopodsSendOperatorBase._wait_in_process)

    # -- the report -------------------------------------------------------------------------

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """
        Finish after the wait: the report (and ``min_delivered_ratio``); never sends anything.

        :param context: the task context.
        :param event: the trigger's event payload.
        """
        ti = context["ti"]
        kept = ti.xcom_pull(task_ids=ti.task_id, key=BULK_XCOM_KEY, map_indexes=ti.map_index) or []
        with _never_resend(
            {"message_id": "(several)"} if kept else None, durable=BulkLedger.of(context).durable
        ):
            return self._finish(context, [Outcome(*item) for item in kept], event)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """
        Resume after the wait; when the trigger failed (``__fail__``), fail without retry before
        Airflow 3.3, where a retry would send every message again.
        """
        sent = {"message_id": "(several: see the task log)"}
        with _never_resend(sent, durable=BulkLedger.of(context).durable, noun=self.channel.plural):
            return super().resume_execution(next_method, next_kwargs, context)

    def _finish(
        self, context: Context, outcomes: Iterable[Outcome], event: dict[str, Any] | None
    ) -> dict[str, Any]:
        """
        Report on ``outcomes`` (read twice: the report, then ``results_table``) after ``event``'s wait.

        :param context: the task context.
        :param outcomes: every row's outcome: a :class:`RecipientTable`, or a list.
        :param event: the wait's event, or None without a wait.
        """
        waited_for = self.wait_for_delivery
        success = {SENT}
        last: dict[int, MessageStatus] = {}
        if waited_for:
            _, last = event_statuses(event) if event is not None else (None, {})
            success = {
                s for s in KNOWN_STATUSES if reached(MessageStatus(1, s, read_at=_EPOCH), self.wait_for)
            }

        def waited() -> Iterator[Outcome]:
            for outcome in outcomes:
                if waited_for and outcome.state == SENT:
                    outcome.status, outcome.reason = self._delivery(outcome.message_id, last)
                yield outcome

        report = build_report(waited(), success)
        self.log.info("Bulk send report:\n%s", report_table(report))
        if report["counts"].get(UNTRACKABLE):
            self.log.warning(
                "%d sends were answered without a message id (HubSpot workspaces answer so): they were sent, "
                "but their delivery cannot be followed, so they count as not delivered.",
                report["counts"][UNTRACKABLE],
            )
        self._write_results(context, waited())
        ratio = self.min_delivered_ratio
        if ratio is not None and report["delivered_ratio"] < ratio:
            raise OctopodsDeliveryError(
                f"Only {report['delivered_ratio']:.1%} of {report['recipients']} recipients reached "
                f"'{self.wait_for if waited_for else SENT}', below min_delivered_ratio {ratio:.1%}. "
                f"Counts: {report['counts']}. Nothing is sent again."
            )
        return report

    def _delivery(self, message_id: int | None, last: Mapping[int, MessageStatus]) -> tuple[str, str | None]:
        """
        Return a sent message's status and reason in the report, from the wait's last statuses.

        :param message_id: the message, or None when Octopods gave no id (it cannot be waited on).
        :param last: the last status the wait saw of each message.
        """
        if message_id is None:
            return UNTRACKABLE, "Octopods answered without a message id: its delivery cannot be followed"
        status = last.get(message_id)
        if status is None:
            return WAITING, "no status seen before the wait ended"
        if reached(status, self.wait_for) is None:
            return WAITING, f"last status '{status.status}' when the wait ended"
        return status.status, status.failure_reason

    def _write_results(self, context: Context, outcomes: Iterable[Outcome]) -> None:
        """Write one row per recipient somewhere (the SQL operator: ``results_table``)."""


def _outcome_list(outcome: Outcome) -> list[Any]:
    return [outcome.key, outcome.phone, outcome.state, outcome.message_id, outcome.reason]


_EPOCH = datetime.fromtimestamp(0, UTC)
