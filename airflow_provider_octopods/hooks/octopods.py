"""Hooks for the Octopods SMS API: :class:`OctopodsHook` (sync) and :class:`OctopodsAsyncHook` (triggers)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Unpack

import requests
from airflow.providers.common.compat.sdk import BaseHook, mask_secret
from airflow.providers.http.hooks.http import HttpHook

from airflow_provider_octopods import HIDDEN_FIELDS, PLACEHOLDERS, RELABELING
from airflow_provider_octopods._budget import coalesce, group_id
from airflow_provider_octopods._calls import (
    SendOptions,
    probe_request,
    send_request,
    sent_at_most_once,
    status_request,
)
from airflow_provider_octopods._core import (
    Exchange,
    Load,
    Notice,
    Pause,
    Request,
    Send,
    endpoint_request,
)
from airflow_provider_octopods._http import (
    ApiSettings,
    api_key,
    api_settings,
    connection_label,
)
from airflow_provider_octopods._transport import (
    ClientPool,
    Clients,
    ConnectionCache,
    fetch_connection,
    send_with_requests,
    send_within_budget,
)
from airflow_provider_octopods.exceptions import (
    OctopodsAuthError,
    OctopodsBadRequestError,
    OctopodsError,
    OctopodsInputError,
)
from airflow_provider_octopods.models import SentSms, SmsStatus

if TYPE_CHECKING:
    from datetime import timedelta

__all__ = ["OctopodsAsyncHook", "OctopodsHook", "SentSms", "SmsStatus"]


class OctopodsHook(HttpHook):
    """
    Talk to the Octopods SMS API synchronously.

    The connection's password is the Channel API key; it travels only in the ``X-Octopods-Auth``
    header. One ``requests`` session (with TCP keep-alive) is reused for every call of the hook.
    Transient trouble (HTTP 429 and 5xx, unreadable answers, connection errors, timeouts) is
    retried ``max_retries`` times with capped, jittered backoff that honours ``Retry-After``.
    When Octopods rejects the key, the connection is read again once, so a key rotated in Airflow
    while a sensor waits is picked up. Every call, :meth:`run` included, goes through the request
    core (``airflow_provider_octopods._core``) that the async hook shares.

    :param octopods_conn_id: the :ref:`Octopods connection <howto/connection:octopods>` to use.
    :param max_retries: how many times to retry a transient failure of a GET before raising it.
    :param method: the default HTTP method of :meth:`run` (``HttpHook``'s ``method``).
    """

    conn_name_attr = "octopods_conn_id"
    default_conn_name = "octopods_default"
    conn_type = "octopods"
    hook_name = "Octopods"

    def __init__(
        self,
        octopods_conn_id: str = default_conn_name,
        *,
        max_retries: int = 2,
        method: str = "GET",
        **kwargs: Any,
    ) -> None:
        super().__init__(method=method, http_conn_id=octopods_conn_id, **kwargs)
        self.octopods_conn_id = octopods_conn_id
        self.max_retries = max_retries
        self._session: requests.Session | None = None
        self._credentials: tuple[ApiSettings, str] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(octopods_conn_id={self.octopods_conn_id!r})"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form's layout for Airflow UIs older than 3.2."""
        return {"hidden_fields": HIDDEN_FIELDS, "relabeling": RELABELING, "placeholders": PLACEHOLDERS}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """
        Return the connection form's extra fields for Airflow UIs older than 3.2.

        Built from the same ``conn-fields`` declaration that Airflow 3.2+ reads from the provider
        info (which then never calls this). Values are checked when the connection is used.
        """
        from airflow_provider_octopods._form import connection_form_widgets

        return connection_form_widgets()

    def _load_connection(self, refresh: bool = False, shown_as: str | None = None) -> tuple[ApiSettings, str]:
        """
        Return the connection's settings and key, read once, or again with ``refresh``.

        :param refresh: read the connection again (after an auth error).
        :param shown_as: the connection id that error messages name; None names it "this
            connection" (the connection test, whose id is Airflow's random temporary one).
        """
        if self._credentials is None or refresh:
            conn = self.get_connection(self.octopods_conn_id)
            label = connection_label(shown_as)
            key = api_key(conn, label)
            mask_secret(key)
            self._credentials = (api_settings(conn, label), key)
        return self._credentials

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """
        Return the hook's ``requests`` session, created on first use and reused afterwards.

        The session carries no credentials and no TLS or proxy setting, and ignores the
        environment: the request core adds the key, the CA bundle and the proxy to each request.

        :param headers: extra headers for every request of the session.
        :param extra_options: not supported (give the connection's extras instead).
        """
        if extra_options:
            raise OctopodsInputError(
                "extra_options", "not supported; set timeout and verify on the connection."
            )
        if self._session is None:
            self._session = requests.Session()
            # The request core decides proxies and CAs (the same for the async hook): requests
            # must not add its own from the environment (HTTP(S)_PROXY, REQUESTS_CA_BUNDLE, .netrc).
            self._session.trust_env = False
            # Redirects are never followed by requests (allow_redirects=False on every request)
            # but by the request core. Do not set max_redirects to 0: requests then raises
            # TooManyRedirects on any redirect answer, even one it does not follow.
            if self.keep_alive_adapter is not None:
                self._session.mount("https://", self.keep_alive_adapter)
                self._session.mount("http://", self.keep_alive_adapter)
        if headers:
            self._session.headers.update(headers)
        return self._session

    def run(
        self,
        endpoint: str | None = None,
        data: dict[str, Any] | str | None = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        *,
        method: str | None = None,
        **request_kwargs: Any,
    ) -> Any:
        """
        Call any Octopods endpoint with the key, redirect, size and error rules of this hook.

        Useful for endpoints this provider does not wrap. Unlike ``HttpHook.run``, the answer is
        returned decoded (the JSON body), and every failure is an
        :class:`~airflow_provider_octopods.exceptions.OctopodsError`; a transient failure of a GET
        is retried ``max_retries`` times, other methods are never repeated.

        :param endpoint: a path below the connection's URL, e.g. ``api/v1/sms/messages/42``.
        :param data: for GET, HEAD and DELETE the query (a dict or string); otherwise the JSON body.
        :param headers: extra headers (the key header cannot be replaced).
        :param extra_options: not supported; set ``timeout`` and ``verify`` on the connection.
        :param method: the HTTP method; defaults to the hook's ``method`` (GET).
        """
        if extra_options or request_kwargs:
            raise OctopodsInputError(
                "arguments of OctopodsHook.run",
                f"{sorted({*(extra_options or {}), *request_kwargs})} are not supported; give endpoint, "
                "data, headers and method, and set timeout and verify on the connection.",
            )
        return self._call(endpoint_request(method or self.method, endpoint, data, headers))

    def close(self) -> None:
        """Close the pooled HTTP connections of the hook."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def _call(self, request: Request, anonymous: bool = False) -> Any:
        """
        Drive the request core: one call, with this hook's retries and key refresh.

        :param request: the call.
        :param anonymous: name the connection "this connection" in messages (connection test).
        """
        shown = None if anonymous else self.octopods_conn_id
        exchange = Exchange(request, shown, self.max_retries)
        action = exchange.step()
        while action is not None:
            outcome: Any = None
            if isinstance(action, Send):
                outcome = send_with_requests(self.get_conn(), action)
            elif isinstance(action, Load):
                outcome = self._load_connection(action.refresh, shown)
            elif isinstance(action, Pause):
                self.log.warning(
                    "%s Retry %d/%d in %.1f s.", action.error, action.attempt, action.attempts, action.delay
                )
                time.sleep(action.delay)
            elif isinstance(action, Notice):
                self.log.info("%s", action.message)
            action = exchange.step(outcome)
        return exchange.result

    def get_sms_status(self, message_id: int | str) -> SmsStatus:
        """
        Return the current status of an SMS.

        :param message_id: the ``message_id`` returned when the SMS was sent (an int or a string
            of digits).
        """
        return self._call(status_request(message_id))

    def send_sms(self, destination_phone: str, body: str, **options: Unpack[SendOptions]) -> SentSms:
        """
        Send an SMS, at most once: a failure that may hide a send is never retried.

        Number and text are checked before any request (:doc:`/numbers`). A failure after the
        request left is an ``OctopodsSendUnconfirmedError`` (a retry could text twice); one before
        stays an ``OctopodsTransientError`` (``request_sent`` False). The answer carries the
        number in E.164 form, the text's encoding and its number of segments.

        :param destination_phone: the recipient, e.g. ``+12015550123`` or, with
            ``default_region``, a national number such as ``(201) 555-0123``.
        :param body: the text, 1 to 1,600 characters.
        :param options: the optional arguments of
            :class:`~airflow_provider_octopods._calls.SendOptions` (``destination_user_name``,
            ``default_region``, ``strict_numbers``, ``max_segments``, ...).
        """
        settings = self._load_connection(shown_as=self.octopods_conn_id)[0]
        with sent_at_most_once():
            return self._call(send_request(destination_phone, body, settings, **options))  # type: ignore[no-any-return]

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the connection's URL and Channel API key (the UI's Test button).

        Airflow tests a temporary copy of the connection under a random id, so the messages say
        "this connection" instead of naming it.
        """
        ok = "Connection works: Octopods accepted the Channel API key."
        self._credentials = None
        try:
            self._call(probe_request(), anonymous=True)
        except OctopodsAuthError as err:
            return False, str(err)
        except OctopodsBadRequestError:
            return True, ok  # the key was accepted; the probe message does not exist
        except OctopodsError as err:
            return False, f"Could not check the Channel API key: {err}"
        finally:
            self.close()
            self._credentials = None
        return True, ok


class OctopodsAsyncHook(BaseHook):
    """
    Talk to the Octopods SMS API from asyncio code (triggers).

    Requests go through kept-alive connections shared by all hooks on the event loop
    (:class:`~airflow_provider_octopods._transport.Clients`); call :meth:`close` (or use
    ``async with``) when done. One call is one request: the caller (the trigger) owns the
    polling schedule and backoff. The connection is read without blocking the event loop, once,
    and again only if Octopods rejects the key (a rotated key is picked up).

    :param octopods_conn_id: the :ref:`Octopods connection <howto/connection:octopods>` to use.
    """

    conn_name_attr = "octopods_conn_id"
    default_conn_name = "octopods_default"
    conn_type = "octopods"
    hook_name = "Octopods"

    def __init__(self, octopods_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.octopods_conn_id = octopods_conn_id
        self._clients: Clients | None = None
        self._credentials: tuple[ApiSettings, str] | None = None
        self._group = ""  # group_id() of the credentials' base URL and key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(octopods_conn_id={self.octopods_conn_id!r})"

    async def __aenter__(self) -> OctopodsAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _load_connection(self, refresh: bool = False) -> tuple[ApiSettings, str]:
        if self._credentials is None or refresh:
            credentials = await ConnectionCache.get(self.octopods_conn_id, fetch_connection, refresh)
            if credentials is not self._credentials:
                self._credentials, self._group = (
                    credentials,
                    group_id(credentials[0].base_url, credentials[1]),
                )
        return self._credentials

    async def close(self) -> None:
        """Give the shared clients back; the last hook on the event loop closes them."""
        if self._clients is not None:
            clients, self._clients = self._clients, None
            await ClientPool.release(clients)

    async def _call(self, request: Request, started: float | None = None) -> Any:
        """
        Drive the request core: one call is one request (the caller owns retries).

        :param request: the call.
        :param started: when (``time.monotonic()``) the caller's limit, ``request.timeout``,
            began; default now. Reading the connection counts against it.
        """
        started = time.monotonic() if started is None else started
        exchange = Exchange(request, self.octopods_conn_id)
        action = exchange.step()
        while action is not None:
            outcome: Any = None
            if isinstance(action, Send):
                self._clients = self._clients or ClientPool.acquire()
                settings, _ = await self._load_connection()
                outcome = await send_within_budget(self._clients, action, settings, self._group, started)
            elif isinstance(action, Load):
                outcome = await self._load_connection(action.refresh)
            elif isinstance(action, Notice):
                self.log.info("%s", action.message)
            action = exchange.step(outcome)
        return exchange.result

    async def get_sms_status(
        self, message_id: int | str, timeout: float | timedelta | None = None
    ) -> SmsStatus:
        """
        Return the current status of an SMS (one request; transient trouble raises
        :class:`~airflow_provider_octopods.exceptions.OctopodsTransientError`).

        :param message_id: the ``message_id`` returned when the SMS was sent.
        :param timeout: seconds (or a timedelta) this request may take at most, if less than the
            connection's ``timeout`` (a trigger passes the time left before its deadline).
        """
        started = time.monotonic()  # a first read of the connection counts against ``timeout``
        request = status_request(message_id, timeout)
        await self._load_connection()
        # Concurrent polls of one message in this process (many triggers on one id) share a request.
        return await coalesce((self._group, request.path), lambda: self._call(request, started))

    async def send_sms(self, destination_phone: str, body: str, **options: Unpack[SendOptions]) -> SentSms:
        """
        Send an SMS once (see :meth:`OctopodsHook.send_sms` for the rules and the arguments).

        :param destination_phone: the recipient, international or (with ``default_region``) national.
        :param body: the text, 1 to 1,600 characters.
        :param options: the optional arguments of
            :class:`~airflow_provider_octopods._calls.SendOptions`.
        """
        settings, _ = await self._load_connection()
        with sent_at_most_once():
            return await self._call(send_request(destination_phone, body, settings, **options))  # type: ignore[no-any-return]
