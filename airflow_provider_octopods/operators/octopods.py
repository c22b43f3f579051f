"""Operator that sends an SMS through Octopods and, optionally, waits until it is delivered."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_octopods.exceptions import (
    OctopodsSendUnconfirmedError,
    OctopodsTransientError,
)
from airflow_provider_octopods.sensors.octopods import (
    _DEFER_TIMEOUT_GRACE,
    DEFAULT_TIMEOUT,
    require_delivered,
    statuses_from_event,
)
from airflow_provider_octopods.triggers.octopods import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    OctopodsSmsDeliveryTrigger,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence

    from airflow.providers.common.compat.sdk import Context
    from airflow.triggers.base import TriggerEvent

    from airflow_provider_octopods.hooks.octopods import OctopodsHook
    from airflow_provider_octopods.models import SentSms

__all__ = ["OctopodsSendSmsOperator"]

#: HTTP statuses with which a server refuses a request before acting on it: a send that got one
#: was certainly not sent, so a task retry cannot send the SMS twice.
_NOT_PROCESSED_STATUSES = frozenset({408, 425, 429})


class OctopodsSendSmsOperator(BaseOperator):
    """
    Send an SMS through Octopods; optionally wait until the carrier confirms delivery.

    Without ``wait_for_delivery`` the task returns ``SentSms.to_dict()`` (``message_id``,
    ``request_id``, ``channel_message_id``, and the ``destination_phone`` in E.164 form, the
    text's ``encoding`` and ``segments``) as XCom, ready for an
    :class:`~airflow_provider_octopods.sensors.octopods.OctopodsSmsDeliverySensor` downstream.

    With ``wait_for_delivery`` the task then waits on the message id it got and returns the final
    status (``SmsStatus.to_dict()``, which holds ``message_id``), failing exactly like the sensor:
    without retries on ``failed`` or ``undelivered`` (naming Octopods' ``failure_reason``), on a
    rejected key, and when ``timeout`` passes (naming the last status seen); transient trouble
    while waiting is polled through. In deferrable mode the wait runs in the triggerer
    (:class:`~airflow_provider_octopods.triggers.octopods.OctopodsSmsDeliveryTrigger`) and the task
    finishes in :meth:`execute_complete`; otherwise it polls in the worker on the same schedule.

    The SMS is sent at most once per task run: the wait never sends again. A send that fails in a
    way that leaves unknown whether Octopods accepted it (a 5xx answer, a broken connection, a
    timeout) raises :class:`OctopodsSendUnconfirmedError` and fails without retries, so a task
    retry cannot text the recipient twice; a send Octopods refused (HTTP 429 rate limit, error
    code 4 from the SMS provider) may be retried through the task's ``retries``. Invalid input
    (a phone number libphonenumber refuses, an empty or too long body, more segments than
    ``max_segments``) fails before any request.

    .. seealso::
        :ref:`howto/operator:OctopodsSendSmsOperator`

    :param destination_phone: the recipient, e.g. ``+12015550123`` (templated); see :doc:`/numbers`.
    :param body: the text, 1 to 1,600 characters (templated).
    :param destination_user_name: the recipient's name, shown in Octopods (templated).
    :param open_intercom_conversation: whether to open an Intercom conversation for the SMS.
    :param intercom_teammate_id: the Intercom teammate the conversation is assigned to.
    :param wait_for_delivery: wait until the SMS reaches a final status and fail if it was not
        delivered.
    :param deferrable: wait in the triggerer instead of a worker slot (only with
        ``wait_for_delivery``).
    :param poll_interval: seconds between the first polls; grows by ``backoff_factor`` up to
        ``max_poll_interval``.
    :param timeout: seconds to wait for a final status after the send.
    :param initial_delay: seconds between the send and the first poll.
    :param max_poll_interval: the longest wait between polls, and the cap of error backoff.
    :param backoff_factor: growth of the interval after each poll (1 keeps it fixed).
    :param octopods_conn_id: the :ref:`Octopods connection <howto/connection:octopods>`.
    :param default_region: the region of national numbers such as ``(201) 555-0123`` (default:
        the connection's extra ``default_region``, else numbers must start with ``+``).
    :param strict_numbers: refuse numbers libphonenumber does not call valid (default: the
        connection's extra ``strict_numbers``, else true); false sends them with a warning.
    :param max_segments: fail before sending when the text takes more SMS segments than this.
    """

    template_fields: Sequence[str] = ("destination_phone", "body", "destination_user_name")
    ui_color = "#7b5cff"

    def __init__(
        self,
        *,
        destination_phone: str,
        body: str,
        destination_user_name: str | None = None,
        open_intercom_conversation: bool | None = None,
        intercom_teammate_id: str | int | None = None,
        wait_for_delivery: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        initial_delay: float = DEFAULT_INITIAL_DELAY,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        octopods_conn_id: str = "octopods_default",
        default_region: str | None = None,
        strict_numbers: bool | None = None,
        max_segments: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.destination_phone = destination_phone
        self.body = body
        self.destination_user_name = destination_user_name
        self.open_intercom_conversation = open_intercom_conversation
        self.intercom_teammate_id = intercom_teammate_id
        self.wait_for_delivery = wait_for_delivery
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout)
        self.initial_delay = float(initial_delay)
        self.max_poll_interval = float(max_poll_interval)
        self.backoff_factor = float(backoff_factor)
        self.octopods_conn_id = octopods_conn_id
        self.default_region = default_region
        self.strict_numbers = strict_numbers
        self.max_segments = max_segments

    @cached_property
    def hook(self) -> OctopodsHook:
        """The sync hook; it does not retry by itself: this operator owns the poll schedule."""
        from airflow_provider_octopods.hooks.octopods import OctopodsHook

        return OctopodsHook(self.octopods_conn_id, max_retries=0)

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            sent = self._send()
            self.log.info(
                "Octopods accepted SMS %s to %s (%s, %s segment(s); request_id %s).",
                sent.message_id,
                sent.destination_phone,
                sent.encoding,
                sent.segments,
                sent.request_id,
            )
            if not self.wait_for_delivery:
                return sent.to_dict()
            trigger = OctopodsSmsDeliveryTrigger(
                message_id=sent.message_id,
                octopods_conn_id=self.octopods_conn_id,
                poll_interval=self.poll_interval,
                end_time=time.time() + self.timeout,
                initial_delay=self.initial_delay,
                max_poll_interval=self.max_poll_interval,
                backoff_factor=self.backoff_factor,
            )
            if self.deferrable:
                self.defer(
                    trigger=trigger,
                    method_name="execute_complete",
                    kwargs={"sent": sent.to_dict()},
                    timeout=timedelta(seconds=self.timeout + _DEFER_TIMEOUT_GRACE),
                )
            return self.execute_complete(context, self._wait_in_process(trigger), sent=sent.to_dict())
        finally:
            self.hook.close()

    def _send(self) -> SentSms:
        """Send the SMS once; turn a failure that may hide a successful send into a final error."""
        try:
            return self.hook.send_sms(
                self.destination_phone,
                self.body,
                destination_user_name=self.destination_user_name,
                open_intercom_conversation=self.open_intercom_conversation,
                intercom_teammate_id=self.intercom_teammate_id,
                default_region=self.default_region,
                strict_numbers=self.strict_numbers,
                max_segments=self.max_segments,
            )
        except OctopodsTransientError as err:
            if err.status_code in _NOT_PROCESSED_STATUSES or not err.request_sent:
                raise  # certainly not sent: the task's retries may send it
            reason = str(err).replace("; will ask again", "")  # the send is not asked again
            raise OctopodsSendUnconfirmedError(
                f"{reason} The SMS may have been sent: it is not sent again, so that a retry cannot text "
                "the recipient twice. Check in Octopods whether it went out before clearing this task."
            ) from None

    @staticmethod
    def _wait_in_process(trigger: OctopodsSmsDeliveryTrigger) -> dict[str, Any] | None:
        """
        Run the trigger's own loop in this worker and return its event (non-deferrable wait).

        The same schedule, backoff, deadline and error rules as in the triggerer, from the same
        code: only the process differs.
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
        Finish the wait: return the final status, or fail like the sensor does.

        Called after the trigger fired (deferrable mode) or after polling in the worker; it never
        sends anything.

        :param context: the task context.
        :param event: the trigger's event payload.
        :param sent: the send's answer (``SentSms.to_dict()``), for the logs.
        """
        if sent:
            self.log.info("Wait on SMS %s ended: %s.", sent.get("message_id"), (event or {}).get("status"))
        return require_delivered(statuses_from_event(event, self.timeout), self.log)[0]
