"""Operators that send an SMS or a WhatsApp template through Octopods and, optionally, wait for it."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, cast

from airflow.providers.common.compat.sdk import BaseOperator, TaskDeferred, conf

from airflow_provider_octopods.exceptions import (
    OctopodsDeliveryError,
    OctopodsInputError,
    OctopodsTimeoutError,
    OctopodsWaitAfterSendError,
    Sent,
)
from airflow_provider_octopods.models import (
    DELIVERED,
    SMS,
    WHATSAPP,
    Channel,
    SendArguments,
    SendOptions,
    parse_wait_for,
    seconds,
)
from airflow_provider_octopods.triggers.octopods import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    DELIVERY_TRIGGERS,
    PollSchedule,
    ScheduledWait,
    defer_wait,
    require_delivered,
    statuses_from_event,
)
from airflow_provider_octopods.utils.ledger import PreviousSend, SendLedger

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterator, Sequence
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import Context
    from airflow.triggers.base import TriggerEvent

    from airflow_provider_octopods.hooks.octopods import Call, OctopodsHook
    from airflow_provider_octopods.models import SentMessage
    from airflow_provider_octopods.triggers.octopods import OctopodsDeliveryTrigger

__all__ = ["OctopodsSendSmsOperator", "OctopodsSendWhatsAppTemplateOperator"]

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
        if on_untrackable not in ON_UNTRACKABLE:
            raise OctopodsInputError(
                "on_untrackable", f"got {on_untrackable!r:.30}; pass 'fail' or 'succeed'."
            )
        self.octopods_conn_id = octopods_conn_id or self.channel.conn_id
        self.wait_for_delivery = wait_for_delivery
        self.wait_for = parse_wait_for(wait_for)
        self.on_untrackable = on_untrackable
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


class OctopodsSendWhatsAppTemplateOperator(OctopodsSendOperatorBase):
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
        self.template_id = template_id
        self.destination_phone = destination_phone
        self.message_variables = message_variables
        self.header_attachment_url = header_attachment_url
        self.check_template = check_template
        self.destination_user_name = destination_user_name
        self.open_intercom_conversation = open_intercom_conversation
        self.intercom_teammate_id = intercom_teammate_id
        self.default_region = default_region
        self.strict_numbers = strict_numbers

    def _prepare(self) -> Call:
        return self.hook.prepare_whatsapp(
            self.template_id,
            self.destination_phone,
            self.message_variables,
            header_attachment_url=self.header_attachment_url,
            check_template=self.check_template,
            destination_user_name=self.destination_user_name,
            open_intercom_conversation=self.open_intercom_conversation,
            intercom_teammate_id=self.intercom_teammate_id,
            default_region=self.default_region,
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

    :param sent: the send's answer (``SentSms.to_dict()``), or None when nothing was sent here.
    :param durable: whether the send is recorded across tries (:class:`SendLedger`).
    :param noun: how the channel names a message.
    """
    if not sent or durable:
        yield
        return
    try:
        yield
    except (TaskDeferred, GeneratorExit, *_FINAL_AFTER_SEND):
        raise
    except BaseException as err:  # anything: execution_timeout, SIGTERM, a crash
        raise OctopodsWaitAfterSendError.after(sent, err, noun) from err
