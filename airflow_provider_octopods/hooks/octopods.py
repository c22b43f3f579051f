"""Hooks for the Octopods SMS API: :class:`OctopodsHook` (sync) and :class:`OctopodsAsyncHook` (triggers)."""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.common.compat.sdk import BaseHook, mask_secret
from airflow.providers.http.hooks.http import HttpHook
from urllib3.exceptions import NewConnectionError

from airflow_provider_octopods import CONN_FIELDS, HIDDEN_FIELDS, PLACEHOLDERS, RELABELING
from airflow_provider_octopods._http import (
    CONNECT_TIMEOUT,
    MAX_REDIRECTS,
    MAX_RESPONSE_BYTES,
    SEND_PATH,
    ApiSettings,
    api_key,
    api_settings,
    backoff_delay,
    interpret_response,
    redirect_target,
    request_headers,
    status_path,
)
from airflow_provider_octopods._outgoing import SendRules, async_send_rules, send_rules, with_send_facts
from airflow_provider_octopods.exceptions import (
    OctopodsAuthError,
    OctopodsBadRequestError,
    OctopodsError,
    OctopodsTransientError,
)
from airflow_provider_octopods.models import (
    SentSms,
    SmsStatus,
    validate_body,
    validate_message_id,
    validate_phone,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import aiohttp

__all__ = ["OctopodsAsyncHook", "OctopodsHook", "SentSms", "SmsStatus"]

_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
#: The message id the connection test asks about: no message has it, so a valid key gets a 400.
_PROBE_MESSAGE_ID = 0


def _too_large(size: int) -> OctopodsTransientError:
    return OctopodsTransientError(
        f"Octopods sent an answer larger than {MAX_RESPONSE_BYTES} bytes ({size}); refused unread."
    )


def _not_connected(base_url: str, what: str) -> OctopodsTransientError:
    """The error for a request that never left: no connection to Octopods could be opened."""
    return OctopodsTransientError(
        f"Could not reach Octopods at {base_url}: {what}; no connection could be opened, so nothing "
        "was sent.",
        request_sent=False,
    )


def _send_payload(
    destination_phone: str,
    body: str,
    destination_user_name: str | None,
    open_intercom_conversation: bool | None,
    intercom_teammate_id: str | int | None,
    rules: SendRules | None = None,
) -> dict[str, Any]:
    """Validate a send's arguments and return its JSON body (shared by both hooks)."""
    rules = rules or SendRules()
    payload: dict[str, Any] = {
        "destination_phone": validate_phone(
            destination_phone, default_region=rules.default_region, strict=rules.strict_numbers
        ),
        "body": validate_body(body, max_segments=rules.max_segments),
    }
    if destination_user_name is not None:
        payload["destination_user_name"] = str(destination_user_name)
    if open_intercom_conversation is not None:
        payload["open_intercom_conversation"] = bool(open_intercom_conversation)
    if intercom_teammate_id is not None:
        payload["intercom_teammate_id"] = intercom_teammate_id
    return payload


class OctopodsHook(HttpHook):
    """
    Talk to the Octopods SMS API synchronously.

    The connection's password is the Channel API key; it travels only in the ``X-Octopods-Auth``
    header. One ``requests`` session (with TCP keep-alive) is reused for every call of the hook.
    Transient trouble (HTTP 429 and 5xx, unreadable answers, connection errors, timeouts) is
    retried ``max_retries`` times with capped, jittered backoff that honours ``Retry-After``.
    When Octopods rejects the key, the connection is read again once, so a key rotated in Airflow
    while a sensor waits is picked up.

    :param octopods_conn_id: the :ref:`Octopods connection <howto/connection:octopods>` to use.
    :param max_retries: how many times to retry a transient failure before raising it.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(method="GET", http_conn_id=octopods_conn_id, **kwargs)
        self.octopods_conn_id = octopods_conn_id
        self.max_retries = max_retries
        self._session: requests.Session | None = None
        self._settings: ApiSettings | None = None
        self._key: str | None = None

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
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, StringField
        from wtforms.validators import Optional

        widgets: dict[str, Any] = {}
        for name, field in CONN_FIELDS.items():
            label = lazy_gettext(field["label"])
            if "boolean" in field["schema"]["type"]:
                widgets[name] = BooleanField(label, default=False, description=field["description"])
            else:
                widgets[name] = StringField(
                    label,
                    widget=BS3TextFieldWidget(),
                    validators=[Optional(strip_whitespace=True)],
                    description=field["description"],
                )
        return widgets

    def _load_connection(self) -> tuple[ApiSettings, str]:
        conn = self.get_connection(self.octopods_conn_id)
        settings, key = api_settings(conn), api_key(conn)
        mask_secret(key)
        self._settings, self._key = settings, key
        self.base_url = settings.base_url
        return settings, key

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """
        Return the hook's ``requests`` session, created on first use and reused afterwards.

        The session carries no credentials: the key is added to each request by the hook.

        :param headers: extra headers for every request of the session.
        :param extra_options: ignored; kept for ``HttpHook`` compatibility.
        """
        if self._session is None:
            settings = self._settings or self._load_connection()[0]
            session = requests.Session()
            session.verify = settings.verify
            # Redirects are never followed by requests (allow_redirects=False on every request)
            # but by the hook, through redirect_target. Do not set max_redirects to 0: requests
            # then raises TooManyRedirects on any redirect answer, even one it does not follow.
            if self.keep_alive_adapter is not None:
                session.mount("https://", self.keep_alive_adapter)
                session.mount("http://", self.keep_alive_adapter)
            self._session = session
        if headers:
            self._session.headers.update(headers)
        return self._session

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """
        Not available: use :meth:`get_sms_status` or :meth:`send_sms`.

        ``HttpHook.run`` would send requests without the ``X-Octopods-Auth`` header, or, given
        it by hand, follow redirects to other hosts with the key; this hook's methods apply the
        Octopods rules (key, timeouts, redirects, errors, retries) instead.
        """
        raise NotImplementedError(
            "OctopodsHook does not offer HttpHook.run(); call get_sms_status(message_id) or "
            "send_sms(destination_phone, body)."
        )

    def close(self) -> None:
        """Close the pooled HTTP connections of the hook."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def _request_once(self, method: str, path: str, payload: dict[str, Any] | None) -> Any:
        settings, key = (
            (self._settings, self._key) if self._settings and self._key else self._load_connection()
        )
        session = self.get_conn()
        url = settings.base_url + path
        for _ in range(MAX_REDIRECTS + 1):
            started = time.monotonic()
            try:
                response = session.request(
                    method,
                    url,
                    headers=request_headers(key, with_body=payload is not None),
                    json=payload,
                    timeout=(CONNECT_TIMEOUT, settings.timeout),
                    allow_redirects=False,
                    stream=True,
                    # Per request: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE would override session.verify.
                    verify=settings.verify,
                )
            except requests.ConnectTimeout:
                raise _not_connected(settings.base_url, "ConnectTimeout") from None
            except requests.Timeout:
                raise OctopodsTransientError(
                    f"Octopods did not answer {method} {path} within {settings.timeout:g} s."
                ) from None
            except requests.ConnectionError as err:
                reason = getattr(err.args[0], "reason", None) if err.args else None
                if isinstance(reason, NewConnectionError):
                    raise _not_connected(settings.base_url, type(reason).__name__) from None
                raise OctopodsTransientError(
                    f"Could not reach Octopods at {settings.base_url}: {type(err).__name__}."
                ) from None
            except requests.RequestException as err:
                raise OctopodsTransientError(
                    f"Could not reach Octopods at {settings.base_url}: {type(err).__name__}."
                ) from None
            with response:
                if response.status_code in _REDIRECT_CODES:
                    url = redirect_target(url, response.headers.get("Location"))
                    continue
                body = self._read_body(response, started + settings.timeout)
            return interpret_response(response.status_code, body, response.headers, self.octopods_conn_id)
        raise OctopodsTransientError(f"Octopods redirected more than {MAX_REDIRECTS} times.")

    @staticmethod
    def _read_body(response: requests.Response, deadline: float) -> bytes:
        """
        Read at most ``MAX_RESPONSE_BYTES`` before ``deadline``, so a trickling server cannot hold us.

        The body is decoded (gzip, deflate) as it is read, as ``requests`` itself would: the
        bound applies to the decoded bytes, like in the async hook.
        """
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
            raise _too_large(int(declared))
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = (
                    response.raw.read1(8192, decode_content=True)
                    if hasattr(response.raw, "read1")
                    else response.raw.read(8192, decode_content=True)
                )
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise _too_large(size)
                if time.monotonic() > deadline:
                    raise OctopodsTransientError("Octopods' answer took too long to arrive; will ask again.")
        except (requests.RequestException, OSError, ValueError) as err:
            raise OctopodsTransientError(
                f"The connection to Octopods broke while reading the answer ({type(err).__name__})."
            ) from None
        except Exception as err:  # urllib3's ProtocolError and friends
            if isinstance(err, OctopodsError):
                raise
            raise OctopodsTransientError(
                f"The connection to Octopods broke while reading the answer ({type(err).__name__})."
            ) from None
        return b"".join(chunks)

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """
        Send one API call with the retry and key-refresh rules described on the class.

        ``parse`` turns the decoded body into the result inside the retry loop, so a malformed
        answer (an :class:`OctopodsTransientError` from the model) is retried like any other.
        """
        attempt = 0
        refreshed = False
        while True:
            try:
                body = self._request_once(method, path, payload)
                return parse(body) if parse is not None else body
            except OctopodsAuthError:
                old_key = self._key
                if refreshed or self._load_connection()[1] == old_key:
                    raise
                refreshed = True
                self.log.info("The Channel API key of '%s' changed; retrying with it.", self.octopods_conn_id)
            except OctopodsTransientError as err:
                # A send is never repeated blindly: it may have reached Octopods.
                attempt += 1
                if method != "GET" or attempt > self.max_retries:
                    raise
                delay = backoff_delay(attempt, err.retry_after)
                self.log.warning("%s Retry %d/%d in %.1f s.", err, attempt, self.max_retries, delay)
                time.sleep(delay)

    def get_sms_status(self, message_id: int | str) -> SmsStatus:
        """
        Return the current status of an SMS.

        :param message_id: the ``message_id`` returned when the SMS was sent (an int or a string
            of digits).
        """
        number = validate_message_id(message_id)
        return self._request(
            "GET",
            status_path(number),
            parse=lambda body: SmsStatus.from_api(body, expected_message_id=number),
        )

    def send_sms(
        self,
        destination_phone: str,
        body: str,
        *,
        destination_user_name: str | None = None,
        open_intercom_conversation: bool | None = None,
        intercom_teammate_id: str | int | None = None,
        default_region: str | None = None,
        strict_numbers: bool | None = None,
        max_segments: int | None = None,
    ) -> SentSms:
        """
        Send an SMS. It is sent at most once: a transient failure is raised, never retried blindly.

        The number and the text are checked before any request (see :doc:`/numbers`); the answer
        carries the number in E.164 form, the text's encoding and its number of segments.

        :param destination_phone: the recipient, e.g. ``+12015550123`` or, with
            ``default_region``, a national number such as ``(201) 555-0123``.
        :param body: the text, 1 to 1,600 characters.
        :param destination_user_name: the recipient's name, shown in Octopods.
        :param open_intercom_conversation: whether to open an Intercom conversation for the SMS.
        :param intercom_teammate_id: the Intercom teammate the conversation is assigned to.
        :param default_region: the region of national numbers (default: the connection's extra
            ``default_region``, else none: numbers must start with ``+``).
        :param strict_numbers: refuse numbers libphonenumber does not call valid (default: the
            connection's extra ``strict_numbers``, else true); false sends them with a warning.
        :param max_segments: refuse a text that takes more SMS segments than this.
        """
        rules = send_rules(
            lambda: self.get_connection(self.octopods_conn_id), default_region, strict_numbers, max_segments
        )
        payload = _send_payload(
            destination_phone,
            body,
            destination_user_name,
            open_intercom_conversation,
            intercom_teammate_id,
            rules,
        )
        return with_send_facts(SentSms.from_api(self._request("POST", SEND_PATH, payload)), payload)

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection's URL and Channel API key (the UI's Test button)."""
        ok = "Connection works: Octopods accepted the Channel API key."
        try:
            self._request("GET", status_path(_PROBE_MESSAGE_ID))
        except OctopodsAuthError as err:
            return False, str(err)
        except OctopodsBadRequestError:
            return True, ok  # the key was accepted; the probe message does not exist
        except OctopodsError as err:
            return False, f"Could not check the Channel API key: {err}"
        finally:
            self.close()
        return True, ok


@lru_cache(maxsize=8)
def _ssl_context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def _ssl_param(verify: bool | str) -> ssl.SSLContext | bool:
    if isinstance(verify, str):
        return _ssl_context(verify)
    return bool(verify)


async def _amask_secret(secret: str) -> None:
    """
    Register the key with the secrets masker without blocking the event loop.

    Airflow 3 offers ``amask_secret`` (the sync call would make a blocking round trip to the
    supervisor from the triggerer's loop); older versions only have the local, sync masker.
    """
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:
        mask_secret(secret)
    else:
        await amask_secret(secret)


async def _fetch_connection(conn_id: str) -> tuple[ApiSettings, str]:
    from airflow.providers.common.compat.connection import get_async_connection

    conn = await get_async_connection(conn_id)
    settings, key = api_settings(conn), api_key(conn)
    await _amask_secret(key)
    return settings, key


class _ConnectionCache:
    """
    A connection's settings and key, read once per event loop and shared for ``TTL`` seconds.

    A triggerer resuming a thousand Octopods waits would otherwise ask the metadata database (or,
    on Airflow 3, the API server) for the same connection a thousand times. Concurrent first
    polls share one lookup. An auth error makes the hook ask again with ``refresh`` (a rotated
    key is picked up at once); other edits to the connection reach running waits within ``TTL``.
    """

    TTL = 60.0
    _entries: weakref.WeakKeyDictionary[
        asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Task[tuple[ApiSettings, str]]]]
    ] = weakref.WeakKeyDictionary()

    @classmethod
    async def get(cls, conn_id: str, refresh: bool = False) -> tuple[ApiSettings, str]:
        loop = asyncio.get_running_loop()
        entries = cls._entries.setdefault(loop, {})
        entry = entries.get(conn_id)
        if refresh or entry is None or time.monotonic() >= entry[0]:
            entry = (time.monotonic() + cls.TTL, loop.create_task(_fetch_connection(conn_id)))
            entries[conn_id] = entry
        try:
            return await asyncio.shield(entry[1])
        except Exception:
            if entries.get(conn_id) is entry:
                del entries[conn_id]  # a failed lookup is not cached
            raise


class _SessionPool:
    """
    One ``aiohttp.ClientSession`` per event loop, shared by every async hook on that loop.

    A triggerer running a thousand Octopods triggers keeps one connection pool with keep-alive
    instead of a session (and a TCP connection) per trigger or per poll. Hooks take a reference
    with :meth:`acquire` and give it back with :meth:`release`; the last one out closes the
    session. The session has no cookie jar, and the key is set per request, never on the session.
    """

    _entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = weakref.WeakKeyDictionary()

    @classmethod
    def acquire(cls) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        entry = cls._entries.get(loop)
        if entry is None or entry[0].closed:
            connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=90, ttl_dns_cache=300)
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
            )
            entry = cls._entries[loop] = [session, 0]
        entry[1] += 1
        return entry[0]

    @classmethod
    async def release(cls, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        entry = cls._entries.get(loop)
        if entry is None or entry[0] is not session:
            await session.close()
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del cls._entries[loop]
            await session.close()


class OctopodsAsyncHook(BaseHook):
    """
    Talk to the Octopods SMS API from asyncio code (triggers).

    Requests go through one pooled ``aiohttp`` session shared by all hooks on the event loop;
    call :meth:`close` (or use ``async with``) when done. One call is one request: the caller
    (the trigger) owns the polling schedule and backoff. The connection is read without blocking
    the event loop, once, and again only if Octopods rejects the key (a rotated key is picked up).

    :param octopods_conn_id: the :ref:`Octopods connection <howto/connection:octopods>` to use.
    """

    conn_name_attr = "octopods_conn_id"
    default_conn_name = "octopods_default"
    conn_type = "octopods"
    hook_name = "Octopods"

    def __init__(self, octopods_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.octopods_conn_id = octopods_conn_id
        self._session: aiohttp.ClientSession | None = None
        self._settings: ApiSettings | None = None
        self._key: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(octopods_conn_id={self.octopods_conn_id!r})"

    async def __aenter__(self) -> OctopodsAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _load_connection(self, refresh: bool = False) -> tuple[ApiSettings, str]:
        settings, key = await _ConnectionCache.get(self.octopods_conn_id, refresh=refresh)
        self._settings, self._key = settings, key
        return settings, key

    async def close(self) -> None:
        """Give the shared session back; the last hook on the event loop closes it."""
        if self._session is not None:
            session, self._session = self._session, None
            await _SessionPool.release(session)

    async def _request_once(
        self, method: str, path: str, payload: dict[str, Any] | None, timeout: float | None = None
    ) -> Any:
        import aiohttp

        settings, key = (
            (self._settings, self._key) if self._settings and self._key else await self._load_connection()
        )
        if self._session is None:
            self._session = _SessionPool.acquire()
        url = settings.base_url + path
        total = settings.timeout if timeout is None else max(min(timeout, settings.timeout), 0.001)
        client_timeout = aiohttp.ClientTimeout(total=total, connect=min(CONNECT_TIMEOUT, total))
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with self._session.request(
                    method,
                    url,
                    headers=request_headers(key, with_body=payload is not None),
                    json=payload,
                    allow_redirects=False,
                    ssl=_ssl_param(settings.verify),
                    timeout=client_timeout,
                ) as response:
                    if response.status in _REDIRECT_CODES:
                        url = redirect_target(url, response.headers.get("Location"))
                        continue
                    if (response.content_length or 0) > MAX_RESPONSE_BYTES:
                        raise _too_large(response.content_length or 0)
                    body = await response.content.read(MAX_RESPONSE_BYTES + 1)
                    while body and len(body) <= MAX_RESPONSE_BYTES:
                        more = await response.content.read(MAX_RESPONSE_BYTES + 1 - len(body))
                        if not more:
                            break
                        body += more
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise _too_large(len(body))
                    return interpret_response(response.status, body, response.headers, self.octopods_conn_id)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as err:
                raise _not_connected(settings.base_url, type(err).__name__) from None
            except TimeoutError:
                raise OctopodsTransientError(
                    f"Octopods did not answer {method} {path} within {total:.3g} s."
                ) from None
            except aiohttp.ClientPayloadError as err:  # the answer began, then the connection broke
                raise OctopodsTransientError(
                    f"The connection to Octopods broke while reading the answer ({type(err).__name__})."
                ) from None
            except aiohttp.ClientError as err:
                raise OctopodsTransientError(
                    f"Could not reach Octopods at {settings.base_url}: {type(err).__name__}."
                ) from None
        raise OctopodsTransientError(f"Octopods redirected more than {MAX_REDIRECTS} times.")

    async def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        try:
            return await self._request_once(method, path, payload, timeout)
        except OctopodsAuthError:
            old_key = self._key
            if (await self._load_connection(refresh=True))[1] == old_key:
                raise
            self.log.info("The Channel API key of '%s' changed; retrying with it.", self.octopods_conn_id)
            return await self._request_once(method, path, payload, timeout)

    async def get_sms_status(self, message_id: int | str, timeout: float | None = None) -> SmsStatus:
        """
        Return the current status of an SMS (one request; transient trouble raises
        :class:`~airflow_provider_octopods.exceptions.OctopodsTransientError`).

        :param message_id: the ``message_id`` returned when the SMS was sent.
        :param timeout: seconds this request may take at most, if less than the connection's
            ``timeout`` (a trigger passes the time left before its deadline).
        """
        number = validate_message_id(message_id)
        payload = await self._request("GET", status_path(number), timeout=timeout)
        return SmsStatus.from_api(payload, expected_message_id=number)

    async def send_sms(
        self,
        destination_phone: str,
        body: str,
        *,
        destination_user_name: str | None = None,
        open_intercom_conversation: bool | None = None,
        intercom_teammate_id: str | int | None = None,
        default_region: str | None = None,
        strict_numbers: bool | None = None,
        max_segments: int | None = None,
    ) -> SentSms:
        """
        Send an SMS once (see :meth:`OctopodsHook.send_sms` for the arguments).

        :param destination_phone: the recipient, international or (with ``default_region``) national.
        :param body: the text, 1 to 1,600 characters.
        :param destination_user_name: the recipient's name, shown in Octopods.
        :param open_intercom_conversation: whether to open an Intercom conversation for the SMS.
        :param intercom_teammate_id: the Intercom teammate the conversation is assigned to.
        :param default_region: the region of national numbers (default: the connection's extra).
        :param strict_numbers: refuse numbers libphonenumber does not call valid (default: the
            connection's extra, else true).
        :param max_segments: refuse a text that takes more SMS segments than this.
        """
        rules = await async_send_rules(self.octopods_conn_id, default_region, strict_numbers, max_segments)
        payload = _send_payload(
            destination_phone,
            body,
            destination_user_name,
            open_intercom_conversation,
            intercom_teammate_id,
            rules,
        )
        return with_send_facts(SentSms.from_api(await self._request("POST", SEND_PATH, payload)), payload)
