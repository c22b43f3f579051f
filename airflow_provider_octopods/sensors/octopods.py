"""Sensor that gates a DAG on the delivery of one or many SMS sent through Octopods."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_octopods._http import backoff_delay
from airflow_provider_octopods.exceptions import (
    OctopodsDeliveryError,
    OctopodsError,
    OctopodsInputError,
    OctopodsTimeoutError,
    OctopodsTransientError,
    error_from_dict,
)
from airflow_provider_octopods.models import (
    SmsStatus,
    failure_message,
    timeout_message,
    validate_message_id,
    validate_message_ids,
)
from airflow_provider_octopods.triggers.octopods import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_INTERVAL,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_octopods.hooks.octopods import OctopodsHook

#: How long to wait for delivery unless told otherwise: carriers usually confirm within minutes.
DEFAULT_TIMEOUT = 60 * 60.0
#: Extra time Airflow's own defer timeout allows past ours, so the trigger's clearer timeout wins.
_DEFER_TIMEOUT_GRACE = 300.0


class OctopodsSmsDeliverySensor(BaseSensorOperator):
    """
    Wait until an SMS sent through Octopods is delivered; fail if it is not.

    Succeeds when every message is ``delivered`` and returns the final status
    (``SmsStatus.to_dict()``, or a list of them in input order for ``message_ids``) as XCom.
    Fails without retries when a message ends ``failed`` or ``undelivered`` (the error holds the
    message id, the status and Octopods' ``failure_reason``), when Octopods rejects the key or the
    request, and when ``timeout`` passes (naming the last status seen). Transient trouble
    (HTTP 429, 5xx, timeouts, unreadable answers) never fails the task: it polls again, backing
    off with jitter (honouring ``Retry-After``) up to ``max_poll_interval``. In poke mode each
    poke makes one request per message and never sleeps, so the wait ends within one request
    timeout of ``timeout``.

    In deferrable mode the wait runs in the triggerer
    (:class:`~airflow_provider_octopods.triggers.octopods.OctopodsSmsDeliveryTrigger`), which
    enforces ``timeout`` itself on every Airflow version.

    .. seealso::
        :ref:`howto/sensor:OctopodsSmsDeliverySensor`

    :param message_id: the message to wait on (templated; usually pulled from XCom).
    :param message_ids: the messages to wait on, instead of ``message_id`` (templated; a list or a
        comma-separated string).
    :param octopods_conn_id: the Octopods connection.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param poke_interval: seconds between polls (in deferrable mode, the first interval, which then
        grows by ``backoff_factor`` up to ``max_poll_interval``).
    :param timeout: seconds to wait for every message to reach a final status.
    :param initial_delay: deferrable mode: seconds before the first poll.
    :param max_poll_interval: deferrable mode: the longest wait between polls; both modes: the
        longest backoff after transient trouble.
    :param backoff_factor: deferrable mode: growth of the interval after each poll.
    :param max_concurrency: requests in flight at once when waiting on many messages.
    """

    template_fields: Sequence[str] = ("message_id", "message_ids")
    ui_color = "#7b5cff"

    def __init__(
        self,
        *,
        message_id: int | str | None = None,
        message_ids: Sequence[int | str] | str | None = None,
        octopods_conn_id: str = "octopods_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        initial_delay: float = DEFAULT_INITIAL_DELAY,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        if (message_id is None) == (message_ids is None):
            raise OctopodsInputError(
                "message_id", "pass exactly one of message_id (one SMS) and message_ids (many)."
            )
        self.message_id = message_id
        self.message_ids = message_ids
        self.octopods_conn_id = octopods_conn_id
        self.deferrable = deferrable
        self.initial_delay = initial_delay
        self.max_poll_interval = max_poll_interval
        self.backoff_factor = backoff_factor
        self.max_concurrency = max_concurrency
        self._last_seen: dict[int, SmsStatus] = {}
        self._not_before = 0.0
        self._failures = 0
        self._last_error: str | None = None

    def _ids(self) -> list[int]:
        """Return the rendered ids, validated: a clear error before any request."""
        if self.message_ids is not None:
            return validate_message_ids(self.message_ids)
        return [validate_message_id(self.message_id)]

    @cached_property
    def hook(self) -> OctopodsHook:
        """
        The sync hook of poke and reschedule mode; one HTTP session for all pokes of a try.

        It does not retry by itself: the poke loop is the retry loop, and a hook retrying (and
        sleeping) inside one poke would hold the worker past the sensor's timeout.
        """
        from airflow_provider_octopods.hooks.octopods import OctopodsHook

        return OctopodsHook(self.octopods_conn_id, max_retries=0)

    def _result(self, statuses: list[SmsStatus]) -> Any:
        """Fail on any failed delivery; else return the XCom value (a dict, or a list for many)."""
        dicts = require_delivered(statuses, self.log)
        return dicts if self.message_ids is not None else dicts[0]

    def execute(self, context: Context) -> Any:
        ids = self._ids()
        if not self.deferrable:
            try:
                return super().execute(context)
            except OctopodsTimeoutError:
                raise
            except AirflowSensorTimeout:
                pending = [i for i in ids if not (i in self._last_seen and self._last_seen[i].is_terminal)]
                raise OctopodsTimeoutError(
                    timeout_message(pending, self._last_seen, self.timeout, self._last_error)
                ) from None
            finally:
                if "hook" in self.__dict__:
                    self.hook.close()
        from airflow_provider_octopods.triggers.octopods import OctopodsSmsDeliveryTrigger

        multiple = self.message_ids is not None
        self.defer(
            trigger=OctopodsSmsDeliveryTrigger(
                message_id=None if multiple else ids[0],
                message_ids=ids if multiple else None,
                octopods_conn_id=self.octopods_conn_id,
                poll_interval=self.poke_interval,
                end_time=time.time() + self.timeout,
                initial_delay=self.initial_delay,
                max_poll_interval=self.max_poll_interval,
                backoff_factor=self.backoff_factor,
                max_concurrency=self.max_concurrency,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + _DEFER_TIMEOUT_GRACE),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        """Ask for the status of every message not yet final; done when all are."""
        ids = self._ids()
        if time.monotonic() < self._not_before:
            self.log.info("Backing off after transient trouble; skipping this poke.")
            return PokeReturnValue(is_done=False)
        hook = self.hook
        for message_id in ids:
            seen = self._last_seen.get(message_id)
            if seen is not None and seen.is_terminal:
                continue
            try:
                status = hook.get_sms_status(message_id)
            except OctopodsTransientError as err:
                self._last_error = str(err)
                self._failures += 1
                cap = max(float(self.max_poll_interval), float(self.poke_interval))
                wait = backoff_delay(self._failures, err.retry_after, cap=cap)
                self._not_before = time.monotonic() + wait
                self.log.warning("%s Polling again in %.1f s.", err, max(wait, float(self.poke_interval)))
                return PokeReturnValue(is_done=False)
            self._last_seen[message_id] = status
            self._failures = 0
            self._last_error = None
            if not status.is_known:
                self.log.warning(
                    "SMS %s has status %r, unknown to this provider; treating it as not final.",
                    message_id,
                    status.status,
                )
            self.log.info("%s.", status.describe())
        if all(i in self._last_seen and self._last_seen[i].is_terminal for i in ids):
            return PokeReturnValue(is_done=True, xcom_value=self._result([self._last_seen[i] for i in ids]))
        return PokeReturnValue(is_done=False)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """
        Finish after the trigger fired: return the final status or fail with the reason.

        :param context: the task context.
        :param event: the trigger's event payload.
        """
        return self._result(statuses_from_event(event, self.timeout))


def statuses_from_event(event: dict[str, Any] | None, timeout: float | None) -> list[SmsStatus]:
    """
    Return the final statuses an ``OctopodsSmsDeliveryTrigger`` event reports, or raise its error.

    Shared by every task that defers to the trigger, so they all finish alike.

    :param event: the trigger's event payload.
    :param timeout: the wait's timeout in seconds, named in the timeout error.
    :return: one terminal status per message id, in the trigger's input order.
    """
    if not event:
        raise OctopodsError("The Octopods trigger ended without an event.")
    ids = [int(i) for i in event.get("message_ids", [])]
    last = {
        i: SmsStatus.from_dict(s)
        for i, s in zip(ids, event.get("statuses", []), strict=False)
        if s is not None
    }
    status = event.get("status")
    if status == "done":
        return [last[i] for i in ids]
    if status == "timeout":
        raise OctopodsTimeoutError(
            timeout_message(event.get("pending", ids), last, timeout, event.get("last_error"))
        )
    if status == "error":
        raise error_from_dict(event.get("error") or {"message": event.get("message")})
    raise OctopodsError(f"The Octopods trigger sent an event this provider does not know: {status!r}.")


def require_delivered(statuses: Sequence[SmsStatus], log: Any) -> list[dict[str, Any]]:
    """
    Raise :class:`OctopodsDeliveryError` if any SMS was not delivered; else return the statuses as dicts.

    :param statuses: terminal statuses.
    :param log: the task's logger, to log each delivery.
    """
    failure = failure_message(statuses)
    if failure:
        raise OctopodsDeliveryError(failure)
    for status in statuses:
        log.info("SMS %s delivered at %s.", status.message_id, status.delivered_at)
    return [s.to_dict() for s in statuses]
