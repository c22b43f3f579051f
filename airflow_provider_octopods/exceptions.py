"""
Errors raised by the Octopods provider.

Every error is an :class:`OctopodsError` (an ``AirflowException``). Errors that no retry can fix
(a rejected key, a bad request, a failed delivery, a timed-out wait) also derive from
``AirflowFailException`` or ``AirflowSensorTimeout`` so the task fails at once, without retries.
Transient trouble is an :class:`OctopodsTransientError`: callers poll again instead of failing.

An error raised by a request says which request it was (:attr:`OctopodsError.request`: ``send``,
``status``, ``test`` or ``run``) and whether anything may have been sent (:attr:`OctopodsError.sent`),
set where it is raised; the retry policy (:mod:`airflow_provider_octopods.retry`) and the send
ledger read those facts, never the traceback.

Errors travel from the triggerer to the worker as JSON (:meth:`OctopodsError.to_dict` and
:func:`error_from_dict`); none of them ever holds the API key.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
)


class Sent(StrEnum):
    """Whether a request (for a send: the SMS) may have reached Octopods."""

    #: Certainly not: it failed before the request was written, or Octopods refused it unprocessed.
    NO = "no"
    #: Unknown: the request was written and no clear answer came back (a 5xx, a broken connection).
    MAYBE = "maybe"
    #: Octopods accepted it.
    YES = "yes"


class OctopodsError(AirflowException):
    """
    Base class of every error raised by the Octopods provider.

    :param message: a sentence for the user.
    :param request: which request raised it (``send``, ``status``, ``test``, ``run``), or None.
    :param sent: whether anything may have been sent, or None when no request was involved.
    """

    def __init__(self, message: str = "", *, request: str | None = None, sent: Sent | None = None) -> None:
        super().__init__(message)
        self.request = request
        self.sent = sent

    @property
    def request_sent(self) -> bool:
        """Whether the request may have been processed (False: certainly not, or no request at all)."""
        return self.sent not in (None, Sent.NO)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description of the error, rebuilt by :func:`error_from_dict`."""
        facts = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("sent",)}
        return {"type": type(self).__name__, "message": str(self), **facts, "sent": self.sent}


class OctopodsInputError(OctopodsError, AirflowFailException, ValueError):
    """
    A value given to the provider is invalid; raised before any request is made.

    The task fails without retries: the same value would fail the same way.

    :param field: the name of the offending argument, e.g. ``message_id``.
    :param message: what is wrong and how to fix it.
    """

    def __init__(self, field: str, message: str, **kwargs: Any) -> None:
        super().__init__(f"Invalid {field}: {message}" if message else "", **kwargs)
        self.field = field


class OctopodsApiError(OctopodsError):
    """
    Octopods answered with an error.

    :param message: a sentence for the user.
    :param status_code: the HTTP status code, or None when no answer arrived.
    :param error_code: Octopods' ``error_code``, when the body carried one.
    :param error: Octopods' ``error`` text, verbatim (the key redacted).
    :param request_id: Octopods' ``request_id``, to quote to Octopods support.
    :param retry_after: seconds the server asked to wait (``Retry-After``), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: int | None = None,
        error: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        if request_id and request_id not in message:
            message = f"{message} (request_id {request_id})"
        super().__init__(message, **kwargs)
        self.status_code = status_code  # type: ignore[assignment]  # AirflowException's is an HTTPStatus
        self.error_code = error_code
        self.error = error
        self.request_id = request_id
        self.retry_after = retry_after


class OctopodsBadRequestError(OctopodsApiError, AirflowFailException):
    """Octopods refused the request itself (a missing argument, an unknown message); retrying cannot help."""


class OctopodsAuthError(OctopodsApiError, AirflowFailException):
    """Octopods rejected the Channel API key (HTTP 401, or ``error_code`` 5: rotated or revoked)."""


class OctopodsTransientError(OctopodsApiError):
    """
    Trouble that may pass: HTTP 408, 425, 429 or 5xx, an unreadable body, a connection error or a timeout.

    The message states facts only; the caller says what it does next (retry, poll again, fail).
    :attr:`sent` is ``no`` exactly when Octopods certainly did not process the request (no
    connection could be opened, or it answered 408, 425 or 429): a send may then be repeated.
    """


class OctopodsThrottledError(OctopodsTransientError):
    """
    Not sent: this process's request budget for the key had no free slot within the caller's limit.

    The budget (``max_requests_per_second``, or the adaptive rate after Octopods' HTTP 429) spaces
    the requests of every trigger using the key; a poll waits its turn, but one that cannot get a
    slot before its caller's limit (a trigger's deadline, the ``timeout`` of a hook call) is not
    made. Nothing reached Octopods (:attr:`sent` is ``no``).
    """


class OctopodsDeliveryError(OctopodsError, AirflowFailException):
    """
    A message ended without reaching what the wait waited for (``failed``, ``undelivered``, not
    read), or its workspace gives no id to track it and the task was told to fail then.
    """


class OctopodsSendUnconfirmedError(OctopodsApiError, AirflowFailException):
    """
    A send failed in a way that leaves unknown whether Octopods accepted the SMS.

    Raised for a 5xx answer, a broken connection, a read timeout, a redirect or an unreadable
    success answer to a send: the request had left, so it may have been processed. The task
    fails without retries, because a retry could send the SMS a second time.
    """


class OctopodsTimeoutError(OctopodsError, AirflowSensorTimeout):
    """The wait for delivery passed its deadline; the message names the last status seen."""


class OctopodsCertificateError(OctopodsError, AirflowFailException):
    """
    The TLS certificate of the Octopods URL (or of a proxy) could not be verified; nothing was sent.

    Waiting does not fix a certificate: the task fails without retries, and the message says how
    to trust the right CA (the connection's ``verify`` extra).
    """


class OctopodsWaitAfterSendError(OctopodsError, AirflowFailException):
    """
    A send-and-wait task failed after its SMS was sent; it fails without retries.

    A retry would send the SMS a second time. The message names the message id, so the wait can
    be resumed with an ``OctopodsSmsDeliverySensor``.

    :param message: what happened.
    :param message_id: the id of the SMS that was sent, when known.
    """

    def __init__(self, message: str, message_id: int | str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **{"request": "send", "sent": Sent.YES, **kwargs})
        self.message_id = message_id

    @classmethod
    def after(cls, sent: dict[str, Any], err: BaseException, noun: str = "SMS") -> OctopodsWaitAfterSendError:
        """
        Describe ``err``, raised after the send of ``sent`` (``SentMessage.to_dict()``).

        :param sent: the send's answer.
        :param err: the failure.
        :param noun: the channel's name of a message (``SMS``, ``WhatsApp message``).
        """
        message_id = sent.get("message_id")
        reason = (str(err) or type(err).__name__).rstrip(".")
        return cls(
            f"{noun} {message_id} was sent, then this task failed: {reason}. It is not retried, so that a "
            f"retry cannot text the recipient twice; wait on message_id {message_id} with the channel's "
            "delivery sensor (OctopodsSmsDeliverySensor, OctopodsWhatsAppDeliverySensor), or check its "
            "status in Octopods.",
            message_id=message_id,
        )


_ERROR_TYPES: dict[str, type[OctopodsError]] = {
    cls.__name__: cls
    for cls in (
        OctopodsError,
        OctopodsInputError,
        OctopodsApiError,
        OctopodsBadRequestError,
        OctopodsAuthError,
        OctopodsTransientError,
        OctopodsThrottledError,
        OctopodsDeliveryError,
        OctopodsTimeoutError,
        OctopodsSendUnconfirmedError,
        OctopodsCertificateError,
        OctopodsWaitAfterSendError,
    )
}


def error_from_dict(data: dict[str, Any]) -> OctopodsError:
    """
    Rebuild an error from :meth:`OctopodsError.to_dict`, e.g. out of a trigger event.

    The message is kept verbatim (it already carries the request id) and so are the facts
    (``request``, ``sent``, ``status_code`` ...); unknown types become a plain
    :class:`OctopodsError` so nothing is lost.

    :param data: the dictionary made by ``to_dict``.
    """
    cls = _ERROR_TYPES.get(str(data.get("type")), OctopodsError)
    err = cls.__new__(cls)
    Exception.__init__(err, str(data.get("message", "Octopods error")))
    facts = {k: v for k, v in data.items() if k not in ("type", "message")}
    sent = facts.pop("sent", None)
    if sent is None and (
        "request_sent" in facts or ("sent" not in data and issubclass(cls, OctopodsTransientError))
    ):  # events of 0.1 (a transient error without request_sent, as 0.1.0 wrote it, may have been sent)
        sent = Sent.MAYBE if facts.get("request_sent", True) else Sent.NO
    facts.pop("request_sent", None)
    defaults: dict[str, Any] = {"request": None}  # facts an older or partial event lacks
    if issubclass(cls, OctopodsApiError):
        defaults.update(dict.fromkeys(("status_code", "error_code", "error", "request_id", "retry_after")))
    if issubclass(cls, OctopodsInputError):
        defaults["field"] = "value"
    if issubclass(cls, OctopodsWaitAfterSendError):
        defaults["message_id"] = None
    vars(err).update({**defaults, **facts, "sent": None if sent is None else Sent(sent)})
    return err
