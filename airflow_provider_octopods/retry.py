"""
A task retry policy for your own code that calls Octopods through the hooks (Airflow 3.3+).

Attach it to a TaskFlow task (or any operator) with ``retry_policy=octopods_retry_policy()`` and
give the task some ``retries``. When the task fails on an Octopods error, the policy retries what a
retry can fix (HTTP 429/408/425, 5xx and broken answers on status requests, ``error_code`` 4, a
connection that never opened), after the ``Retry-After`` Octopods asked for; it fails the task at
once on what no retry can fix (a rejected key, an invalid argument, another 4xx, an undelivered
SMS) and on what a retry could make worse: trouble after a send's request had left, when the SMS
may have been sent. Any other error keeps the task's own retry rules. The full table is in the
guide (``docs/retry.rst``).

Retry policies arrived in Airflow 3.3: on an older Airflow, importing this module raises an
:class:`ImportError` that says so.
"""

from __future__ import annotations

from datetime import timedelta
from importlib.metadata import version as _distribution_version
from typing import TYPE_CHECKING, Any

from airflow_provider_octopods.exceptions import (
    OctopodsApiError,
    OctopodsAuthError,
    OctopodsDeliveryError,
    OctopodsError,
    OctopodsInputError,
    OctopodsSendUnconfirmedError,
    OctopodsTransientError,
    Sent,
)
from airflow_provider_octopods.version_compat import AIRFLOW_V_3_3_PLUS

#: The first Airflow with task retry policies (``retry_policy=``, AIP-105).
MIN_AIRFLOW_VERSION = "3.3"

if not AIRFLOW_V_3_3_PLUS:
    raise ImportError(
        f"airflow_provider_octopods.retry needs Airflow {MIN_AIRFLOW_VERSION} or newer, where task retry "
        f"policies (retry_policy=) arrived; this is Airflow {_distribution_version('apache-airflow')}. "
        "On this Airflow, give the task retries instead: the provider's errors that no retry can fix "
        "already fail the task at once."
    )

from airflow.providers.common.compat.sdk import RetryDecision, RetryPolicy  # noqa: E402

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["MIN_AIRFLOW_VERSION", "OctopodsRetryPolicy", "octopods_retry_policy"]

#: How far along ``__cause__`` / ``__context__`` to look for the Octopods error behind a failure.
_MAX_CHAIN = 8
#: ``error_code`` of a failure of Octopods' SMS provider: nothing was sent, a retry may succeed.
_PROVIDER_ERROR = 4


def _octopods_error(exception: BaseException) -> OctopodsError | None:
    """Return the exception if it is an Octopods error, else the nearest one it was raised from."""
    seen: BaseException | None = exception
    for _ in range(_MAX_CHAIN):
        if seen is None or isinstance(seen, OctopodsError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _final_reason(err: OctopodsError) -> str | None:
    """Return why no retry can help with ``err`` (or could send an SMS twice), or None."""
    if isinstance(err, OctopodsAuthError):
        return "Octopods rejected the Channel API key; a retry would be rejected too"
    if isinstance(err, OctopodsInputError):
        return f"invalid {err.field}; a retry would fail the same way"
    if isinstance(err, OctopodsDeliveryError):
        return "the SMS ended failed or undelivered; it is not sent again"
    if isinstance(err, OctopodsSendUnconfirmedError):
        return "the SMS may have been sent; a retry could text the recipient twice"
    return None


def _transient_decision(err: OctopodsTransientError, delay: timedelta | None) -> RetryDecision:
    """Decide on passing trouble from the facts the error carries: which request, and whether it was sent."""
    status = f"HTTP {err.status_code}" if err.status_code else "no answer"
    if err.retry_after is not None:
        delay = timedelta(seconds=err.retry_after)
    if err.sent is Sent.NO:
        why = (
            f"Octopods refused the request before acting on it ({status})"
            if err.status_code
            else ("no connection to Octopods could be opened; nothing was sent")
        )
        return RetryDecision.retry(delay, why)
    if err.request in ("status", "test"):
        return RetryDecision.retry(delay, f"passing trouble on a status request ({status})")
    why = "on a send" if err.request == "send" else "on a request that may have been a send"
    return RetryDecision.fail(
        f"passing trouble {why} ({status}) after the request had left: the SMS may have been sent, "
        "so it is not sent again"
    )


def decide(exception: BaseException, retry_delay: timedelta | None = None) -> RetryDecision:
    """
    Return the retry decision for a task that failed with ``exception`` (see the guide's table).

    :param exception: the exception the task failed with.
    :param retry_delay: the delay when Octopods did not say how long to wait with ``Retry-After``;
        None keeps the task's own ``retry_delay`` (and exponential backoff, if set).
    """
    err = _octopods_error(exception)
    if err is None:
        return RetryDecision.default()
    final = _final_reason(err)
    if final is not None:
        return RetryDecision.fail(final)
    if isinstance(err, OctopodsTransientError):
        return _transient_decision(err, retry_delay)
    if isinstance(err, OctopodsApiError) and err.error_code == _PROVIDER_ERROR:
        return RetryDecision.retry(retry_delay, "Octopods' SMS provider failed (error_code 4)")
    if isinstance(err, OctopodsApiError) and err.status_code is not None and 400 <= err.status_code < 500:
        return RetryDecision.fail(f"Octopods refused the request (HTTP {err.status_code})")
    return RetryDecision.default()


class OctopodsRetryPolicy(RetryPolicy):
    """
    Retry what a retry can fix, at Octopods' pace; fail at once on the rest (see the guide's table).

    :param retry_delay: the delay when Octopods did not send ``Retry-After``; None (the default)
        keeps the task's own ``retry_delay``.
    """

    def __init__(self, retry_delay: timedelta | None = None) -> None:
        self.retry_delay = retry_delay

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        """
        Decide whether the task is retried, and after how long.

        :param exception: the exception the task failed with.
        :param try_number: the current try (1-based); the task's ``retries`` still bound the tries.
        :param max_tries: the task's maximum number of tries.
        :param context: the task's context (unused).
        """
        return decide(exception, self.retry_delay)

    def serialize(self) -> dict[str, Any]:
        """Return the policy as JSON-safe data."""
        delay = None if self.retry_delay is None else self.retry_delay.total_seconds()
        return {"__type": type(self).__name__, "retry_delay": delay}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> OctopodsRetryPolicy:
        """
        Rebuild a policy from :meth:`serialize`.

        :param data: the dictionary made by ``serialize``.
        """
        delay = data.get("retry_delay")
        return cls(None if delay is None else timedelta(seconds=float(delay)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(retry_delay={self.retry_delay!r})"


def octopods_retry_policy(retry_delay: timedelta | None = None) -> OctopodsRetryPolicy:
    """
    Return the retry policy for tasks that call Octopods through the hooks.

    :param retry_delay: the delay when Octopods did not send ``Retry-After``; None (the default)
        keeps the task's own ``retry_delay``.
    """
    return OctopodsRetryPolicy(retry_delay)
