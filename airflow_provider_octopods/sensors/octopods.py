"""Sensors that gate a DAG on the delivery (or the reading) of messages sent through Octopods."""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_octopods.exceptions import (
    OctopodsError,
    OctopodsInputError,
    OctopodsTimeoutError,
    OctopodsTransientError,
)
from airflow_provider_octopods.models import (
    DELIVERED,
    SMS,
    WHATSAPP,
    Channel,
    MessageStatus,
    parse_count,
    parse_wait_for,
    seconds,
    timeout_message,
    validate_message_id,
    validate_message_ids,
)
from airflow_provider_octopods.triggers import octopods as wait

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_octopods.hooks.octopods import OctopodsHook

__all__ = ["OctopodsDeliverySensor", "OctopodsSmsDeliverySensor", "OctopodsWhatsAppDeliverySensor"]


class OctopodsDeliverySensor(wait.ScheduledWait, BaseSensorOperator):
    """
    Wait until messages of :attr:`channel` sent through Octopods are delivered (or read); fail if not.

    The implementation of :class:`OctopodsSmsDeliverySensor` and
    :class:`OctopodsWhatsAppDeliverySensor`, which name the channel (and so the default
    connection and the trigger).

    Succeeds when every message reached ``wait_for`` and returns the final status
    (``MessageStatus.to_dict()``, or a list of them in input order for ``message_ids``) as XCom.
    Fails without retries when a message ends ``failed`` or ``undelivered`` (the error holds the
    message id, the status and Octopods' ``failure_reason``), when Octopods rejects the key or the
    request, and when ``timeout`` passes (naming the last status seen). Transient trouble
    (HTTP 429, 5xx, timeouts, unreadable answers) never fails the task: it polls again, backing
    off with jitter (honouring ``Retry-After``) up to ``max_poll_interval``. In poke mode each
    poke makes one request per message (or one list request, see the WhatsApp sensor) and never
    sleeps, so the wait ends within one request timeout of ``timeout``; in reschedule mode a
    backoff longer than ``poke_interval`` reschedules the task to its end. Every mode drives the
    same :class:`~airflow_provider_octopods.triggers.octopods.WaitEngine`.

    In deferrable mode the wait runs in the triggerer (the channel's
    :class:`~airflow_provider_octopods.triggers.octopods.OctopodsDeliveryTrigger`), which
    enforces ``timeout`` itself on every Airflow version.

    :param message_id: the message to wait on (templated; usually pulled from XCom): an id, or the
        send operator's XCom (a dict holding ``message_id``).
    :param message_ids: the messages to wait on, instead of ``message_id`` (templated): any
        sequence of ids or of the send operator's XComs (e.g. a mapped send's ``.output``), or a
        string of comma-separated ids, a rendered Python list or a JSON array.
    :param octopods_conn_id: the Octopods connection.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param poke_interval: seconds (or a timedelta; more than 0) between polls (in deferrable mode,
        the first interval, which then grows by ``backoff_factor`` up to ``max_poll_interval``).
    :param timeout: seconds (or a timedelta) to wait for every message to reach a final status.
    :param initial_delay: deferrable mode: seconds (or a timedelta) before the first poll.
    :param max_poll_interval: deferrable mode: the longest wait between polls; every mode: the
        longest backoff after transient trouble (seconds or a timedelta).
    :param backoff_factor: deferrable mode: growth of the interval after each poll.
    :param max_concurrency: requests in flight at once when waiting on many messages.
    :param wait_for: ``delivered`` (``read`` and ``deleted`` count too) or ``read`` (delivered is
        not final; at the deadline a delivered but unread message fails the wait).
    :param fail_fast: fail at the first message that fails, without waiting for the others.
    """

    template_fields: Sequence[str] = ("message_id", "message_ids")
    ui_color = "#7b5cff"
    #: The channel of the messages.
    channel: ClassVar[Channel] = SMS

    def __init__(
        self,
        *,
        message_id: Any = None,
        message_ids: Any = None,
        octopods_conn_id: str | None = None,
        wait_for: str = DELIVERED,
        fail_fast: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float | timedelta = wait.DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta = wait.DEFAULT_TIMEOUT,
        initial_delay: float | timedelta = wait.DEFAULT_INITIAL_DELAY,
        max_poll_interval: float | timedelta = wait.DEFAULT_MAX_POLL_INTERVAL,
        backoff_factor: float = wait.DEFAULT_BACKOFF_FACTOR,
        max_concurrency: int = wait.DEFAULT_MAX_CONCURRENCY,
        **kwargs: Any,
    ) -> None:
        poke_interval = seconds(poke_interval, "poke_interval", positive=True)
        super().__init__(poke_interval=poke_interval, timeout=seconds(timeout, "timeout"), **kwargs)
        if (message_id is None) == (message_ids is None):
            raise OctopodsInputError(
                "message_id", "pass exactly one of message_id (one SMS) and message_ids (many)."
            )
        self.message_id = message_id
        self.message_ids = message_ids
        self.octopods_conn_id = octopods_conn_id or self.channel.conn_id
        self.wait_for = parse_wait_for(wait_for)
        self.fail_fast = fail_fast
        self.deferrable = deferrable
        self.schedule = wait.PollSchedule.of(
            initial_delay, poke_interval, backoff_factor, max_poll_interval, interval_field="poke_interval"
        )
        self.max_concurrency = parse_count(max_concurrency, "max_concurrency")
        self._engine: wait.WaitEngine | None = None

    def _ids(self) -> list[int]:
        """Return the rendered ids, validated: a clear error before any request."""
        if self.message_ids is not None:
            return validate_message_ids(self.message_ids, channel=self.channel)
        return [validate_message_id(self.message_id, channel=self.channel)]

    @cached_property
    def hook(self) -> OctopodsHook:
        """
        The sync hook of poke and reschedule mode; one HTTP session for all pokes of a try.

        It does not retry by itself: the poke loop is the retry loop, and a hook retrying (and
        sleeping) inside one poke would hold the worker past the sensor's timeout.
        """
        from airflow_provider_octopods.hooks.octopods import OctopodsHook

        return OctopodsHook(self.octopods_conn_id, max_retries=0)

    @property
    def engine(self) -> wait.WaitEngine:
        """
        The wait of poke and reschedule mode: polls at once, then every ``poke_interval`` (Airflow
        paces the pokes); after transient trouble, the engine's backoff decides.
        """
        if self._engine is None:
            schedule = wait.PollSchedule(
                0.0, self.schedule.poll_interval, 1.0, self.schedule.max_poll_interval
            )
            self._engine = wait.WaitEngine(
                self._ids(), schedule, None, self.wait_for, self.channel, self.fail_fast
            )
        return self._engine

    def _result(self, statuses: list[MessageStatus]) -> Any:
        """Fail on any message that did not reach ``wait_for``; else return the XCom value (a dict, or a list)."""
        dicts = wait.require_delivered(statuses, self.log, self.wait_for)
        return dicts if self.message_ids is not None else dicts[0]

    def execute(self, context: Context) -> Any:
        ids = self._ids()
        if not self.deferrable:
            try:
                return super().execute(context)
            except OctopodsTimeoutError:
                raise
            except AirflowSensorTimeout:
                engine = self.engine
                raise OctopodsTimeoutError(
                    timeout_message(
                        engine.pending,
                        engine.last,
                        self.timeout,
                        engine.last_error,
                        self.wait_for,
                        self.channel.noun,
                    )
                ) from None
            finally:
                if "hook" in self.__dict__:
                    self.hook.close()
        multiple = self.message_ids is not None
        trigger = wait.DELIVERY_TRIGGERS[self.channel.name](
            message_id=None if multiple else ids[0],
            message_ids=ids if multiple else None,
            octopods_conn_id=self.octopods_conn_id,
            end_time=time.time() + self.timeout,
            max_concurrency=self.max_concurrency,
            wait_for=self.wait_for,
            fail_fast=self.fail_fast,
            **self.schedule.as_kwargs(),
        )
        wait.defer_wait(self, trigger, self.timeout)

    def poke(self, context: Context) -> PokeReturnValue:
        """
        Poll every message not yet final, unless backing off; done when all are.

        In poke mode the sensor lives through the wait: pokes during a backoff are skipped, so
        Airflow still checks ``timeout`` every ``poke_interval``. In reschedule mode nothing
        outlives the poke, so ``poke_interval`` (which Airflow reschedules the task by) is set to
        the engine's next delay when it is longer (a ``Retry-After``). A transient error of one
        message does not stop the others' polls, as in the trigger; a 429 or a final error does.
        """
        engine = self.engine
        if engine.is_backing_off(time.time()):
            self.log.info("Backing off after transient trouble; skipping this poke.")
            return PokeReturnValue(is_done=False)
        found: dict[int, MessageStatus | OctopodsError] = {}
        rest = engine.pending
        if engine.wants_list():
            try:
                listing: dict[int, MessageStatus] | OctopodsError = self.hook.list_messages(self.channel)
            except OctopodsError as err:
                listing = err
            found, rest, held = wait.listed_results(rest, listing, self.wait_for)
            engine.listed(held)
        for message_id in rest:
            try:
                found[message_id] = self.hook.get_message_status(message_id, self.channel)
            except OctopodsError as err:
                found[message_id] = err
                if _stops_the_round(err):  # else the other messages are asked, as the trigger does
                    break
        step = engine.feed(found, time.time())
        step.emit(self.log)
        if step.event is not None:
            return PokeReturnValue(
                is_done=True, xcom_value=self._result(wait.statuses_from_event(step.event, None))
            )
        if self.reschedule:  # never sooner than poke_interval: each reschedule starts a new engine
            self.poke_interval = max(step.delay, self.schedule.poll_interval)
        return PokeReturnValue(is_done=False)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """
        Finish after the trigger fired: return the final status or fail with the reason.

        :param context: the task context.
        :param event: the trigger's event payload.
        """
        return self._result(wait.statuses_from_event(event, self.timeout))


def _stops_the_round(err: OctopodsError) -> bool:
    """Whether a poke asks no more after ``err``: Octopods asked to wait, or the wait ends on it."""
    return (
        not isinstance(err, OctopodsTransientError) or err.retry_after is not None or err.status_code == 429
    )


class OctopodsSmsDeliverySensor(OctopodsDeliverySensor):
    """
    Wait until an SMS sent through Octopods is delivered; fail if it is not.

    Succeeds when every message is ``delivered`` (or ``read``) and returns the final status
    (``MessageStatus.to_dict()``, or a list of them in input order for ``message_ids``) as XCom.
    Fails without retries when a message ends ``failed`` or ``undelivered`` (the error holds the
    message id, the status and Octopods' ``failure_reason``), when Octopods rejects the key or the
    request, and when ``timeout`` passes (naming the last status seen). Everything else is
    :class:`OctopodsDeliverySensor`'s: its arguments, its modes.

    .. seealso::
        :ref:`howto/sensor:OctopodsSmsDeliverySensor`
    """

    channel = SMS


class OctopodsWhatsAppDeliverySensor(OctopodsDeliverySensor):
    """
    Wait until WhatsApp messages sent through Octopods are delivered, or read; fail if not.

    ``wait_for="delivered"`` (the default) succeeds on ``delivered``, ``read`` and ``deleted`` (the
    recipient deleted it after delivery). ``wait_for="read"`` succeeds on ``read`` only (or
    ``deleted`` with a ``read_at``): ``delivered`` is not final, and at the deadline a delivered but
    unread message fails with a sentence saying when it was delivered. A wait on several messages
    reads Octopods' list of the newest 100 sends once per round and asks by id only for the others.
    The connection defaults to ``octopods_whatsapp_default`` (the WhatsApp channel's key).
    Arguments and modes as for :class:`OctopodsDeliverySensor`.

    .. seealso::
        :ref:`howto/sensor:OctopodsWhatsAppDeliverySensor`
    """

    channel = WHATSAPP
