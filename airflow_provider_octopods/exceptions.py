"""
Errors raised by the Octopods provider.

Every error is an :class:`OctopodsError` (an ``AirflowException``). Errors that no retry can fix
(a rejected key, a bad request, a failed delivery, a timed-out wait) also derive from
``AirflowFailException`` or ``AirflowSensorTimeout`` so the task fails at once, without retries.
Transient trouble is an :class:`OctopodsTransientError`: callers poll again instead of failing.

Errors travel from the triggerer to the worker as JSON (:meth:`OctopodsError.to_dict` and
:func:`error_from_dict`); none of them ever holds the API key.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
)

#: ``error_code`` Octopods answers when the key was rotated or revoked.
ERROR_CODE_KEY_REVOKED = 5
#: ``error_code`` Octopods answers when its SMS provider failed (worth a task retry).
ERROR_CODE_PROVIDER_ERROR = 4


class OctopodsError(AirflowException):
    """Base class of every error raised by the Octopods provider."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description of the error, rebuilt by :func:`error_from_dict`."""
        return {"type": type(self).__name__, "message": str(self)}


class OctopodsInputError(OctopodsError, AirflowFailException, ValueError):
    """
    A value given to the provider is invalid; raised before any request is made.

    The task fails without retries: the same value would fail the same way.

    :param field: the name of the offending argument, e.g. ``message_id``.
    :param message: what is wrong and how to fix it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"Invalid {field}: {message}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "message": str(self), "field": self.field}


class OctopodsApiError(OctopodsError):
    """
    Octopods answered with an error.

    :param message: a sentence for the user.
    :param status_code: the HTTP status code, or None when no answer arrived.
    :param error_code: Octopods' ``error_code``, when the body carried one.
    :param error: Octopods' ``error`` text, verbatim.
    :param request_id: Octopods' ``request_id``, to quote to Octopods support.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: int | None = None,
        error: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code  # type: ignore[assignment]  # AirflowException's is an HTTPStatus
        self.error_code = error_code
        self.error = error
        self.request_id = request_id
        if request_id:
            message = f"{message} (request_id {request_id})"
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "message": str(self),
            "status_code": self.status_code,
            "error_code": self.error_code,
            "error": self.error,
            "request_id": self.request_id,
        }


class OctopodsBadRequestError(OctopodsApiError, AirflowFailException):
    """Octopods refused the request itself (a missing argument, an unknown message); retrying cannot help."""


class OctopodsAuthError(OctopodsApiError, AirflowFailException):
    """Octopods rejected the Channel API key (HTTP 401, or ``error_code`` 5: rotated or revoked)."""


class OctopodsTransientError(OctopodsApiError):
    """
    Trouble that may pass: HTTP 408, 425, 429 or 5xx, an unreadable body, a connection error or a timeout.

    The message states facts only; the caller says what it does next (retry, poll again, fail).

    :param retry_after: seconds the server asked us to wait (``Retry-After``), if it said.
    :param request_sent: False exactly when Octopods certainly did not process the request: no
        connection could be opened (DNS, connect, TLS handshake, proxy ``CONNECT``), or Octopods
        answered 408, 425 or 429. A send may then be repeated safely. True otherwise (the request
        may have been processed: a timeout, a connection broken mid-answer, a 5xx).
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, request_sent: bool = True, **kwargs: Any
    ) -> None:
        self.retry_after = retry_after
        self.request_sent = request_sent
        super().__init__(message, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retry_after": self.retry_after, "request_sent": self.request_sent}


class OctopodsThrottledError(OctopodsTransientError):
    """
    Not sent: this process's request budget for the key had no free slot within the caller's limit.

    The budget (``max_requests_per_second``, or the adaptive rate after Octopods' HTTP 429) spaces
    the requests of every trigger using the key; a poll waits its turn, but one that cannot get a
    slot before its caller's limit (a trigger's deadline, the ``timeout`` of a hook call) is not
    made. Nothing reached Octopods (``request_sent`` is False).
    """


class OctopodsDeliveryError(OctopodsError, AirflowFailException):
    """An SMS reached a terminal status other than ``delivered`` (``failed`` or ``undelivered``)."""


class OctopodsSendUnconfirmedError(OctopodsApiError, AirflowFailException):
    """
    A send failed in a way that leaves unknown whether Octopods accepted the SMS.

    Raised by ``send_sms`` for a 5xx answer, a broken connection, a read timeout, a redirect or an
    unreadable success answer: the request had left, so it may have been processed. The task
    fails without retries, because a retry could send the SMS a second time. It keeps the facts
    of the failure (``status_code``, ``request_id``, ...).
    """

    #: The request had been written when the send failed (else the error would be transient).
    request_sent = True


class OctopodsTimeoutError(OctopodsError, AirflowSensorTimeout):
    """The wait for delivery passed its deadline; the message names the last status seen."""


class OctopodsCertificateError(OctopodsError, AirflowFailException):
    """
    The TLS certificate of the Octopods URL (or of a proxy) could not be verified; nothing was sent.

    Waiting does not fix a certificate: the task fails without retries, and the message says how
    to trust the right CA (the connection's ``verify`` extra).
    """

    request_sent = False


class OctopodsWaitAfterSendError(OctopodsError, AirflowFailException):
    """
    A send-and-wait task failed after its SMS was sent; it fails without retries.

    A retry would send the SMS a second time. The message names the message id, so the wait can
    be resumed with an ``OctopodsSmsDeliverySensor``.

    :param message: what happened.
    :param message_id: the id of the SMS that was sent, when known.
    """

    def __init__(self, message: str, message_id: int | str | None = None) -> None:
        self.message_id = message_id
        super().__init__(message)

    @classmethod
    def after(cls, sent: dict[str, Any], err: BaseException) -> OctopodsWaitAfterSendError:
        """
        Describe ``err``, raised after the send of ``sent`` (``SentSms.to_dict()``).

        :param sent: the send's answer.
        :param err: the failure.
        """
        message_id = sent.get("message_id")
        reason = str(err) or type(err).__name__
        return cls(
            f"SMS {message_id} was sent, then this task failed: {reason}. It is not retried, so that a "
            f"retry cannot text the recipient twice; wait on message_id {message_id} with an "
            "OctopodsSmsDeliverySensor, or check its status in Octopods.",
            message_id=message_id,
        )


_ERROR_TYPES: dict[str, type[OctopodsError]] = {
    cls.__name__: cls
    for cls in (
        OctopodsError,
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

    The message is kept verbatim (it already carries the request id); unknown types become a plain
    :class:`OctopodsError` so nothing is lost.

    :param data: the dictionary made by ``to_dict``.
    """
    message = str(data.get("message", "Octopods error"))
    kind = data.get("type")
    if kind == "OctopodsInputError":
        err: OctopodsError = OctopodsInputError(str(data.get("field", "value")), "")
        err.args = (message,)
        return err
    cls = _ERROR_TYPES.get(str(kind), OctopodsError)
    if issubclass(cls, OctopodsApiError):
        api_err = cls(
            message,
            status_code=data.get("status_code"),
            error_code=data.get("error_code"),
            error=data.get("error"),
        )
        api_err.request_id = data.get("request_id")
        if isinstance(api_err, OctopodsTransientError):
            api_err.retry_after = data.get("retry_after")
            api_err.request_sent = bool(data.get("request_sent", True))
        return api_err
    return cls(message)
