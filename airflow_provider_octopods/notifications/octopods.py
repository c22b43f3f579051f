"""Notifiers that send an SMS or a WhatsApp template through Octopods, for DAG and task callbacks."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseNotifier

from airflow_provider_octopods.exceptions import OctopodsError
from airflow_provider_octopods.models import WHATSAPP, SendArguments, TemplateArguments

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence

    import jinja2
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook, OctopodsHook
    from airflow_provider_octopods.models import SentMessage

__all__ = [
    "OctopodsSmsNotifier",
    "OctopodsWhatsAppNotifier",
    "send_octopods_sms_notification",
    "send_octopods_whatsapp_notification",
]


class OctopodsNotifierBase(BaseNotifier):
    """
    What every Octopods notifier shares: rendering, sync and async sends, and never raising.

    A subclass says how to send its message with a hook (:meth:`_send`, :meth:`_asend`).
    """

    octopods_conn_id: str
    #: What the logs call the notification.
    what = "Octopods notification"

    def _send(self, hook: OctopodsHook) -> SentMessage:
        raise NotImplementedError

    async def _asend(self, hook: OctopodsAsyncHook) -> SentMessage:
        raise NotImplementedError

    def get_template_env(self, dag: Any = None) -> jinja2.Environment:
        """
        Return the DAG's Jinja environment, or a sandboxed default when the DAG has none.

        ``dag.test()`` on Airflow 3 runs DAG-level callbacks with the serialized DAG, which cannot
        build a Jinja environment; the templates then render without the DAG's own macros.

        :param dag: the DAG from the callback's context.
        """
        if dag is not None and not hasattr(dag, "get_template_env"):
            dag = None
        return super().get_template_env(dag=dag)

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """
        Render the templates with ``context``, which also offers ``dag_id`` and ``run_id``.

        A Deadline Alert's context (Airflow 3.1+; tested on 3.3) holds only ``dag_run`` (as the REST API shows
        it) and ``deadline``; a task or DAG callback's holds ``dag_run`` as an object. Either way
        ``{{ dag_id }}`` and ``{{ run_id }}`` render, unless the context already defines them.

        :param context: the callback's context.
        :param jinja_env: the Jinja environment to render with.
        """
        dag_run = context.get("dag_run")
        for key, attribute, api_field in (("dag_id", "dag_id", "dag_id"), ("run_id", "run_id", "dag_run_id")):
            if context.get(key) is None and dag_run is not None:
                value = (
                    dag_run.get(api_field)
                    if isinstance(dag_run, Mapping)
                    else getattr(dag_run, attribute, None)
                )
                if value is not None:
                    context[key] = value  # type: ignore[literal-required]
        super().render_template_fields(context, jinja_env)

    def _sent(self, sent: SentMessage) -> None:
        self.log.info("Sent the %s: %s (request_id %s).", self.what, sent.noun, sent.request_id)

    def _report_failure(self, err: BaseException) -> None:
        expected = isinstance(err, OctopodsError)
        self.log.error(
            "The %s was not sent: %s%s",
            self.what,
            "" if expected else f"{type(err).__name__}: ",
            err,
            exc_info=not expected,
        )

    def notify(self, context: Context) -> None:
        """
        Send the message (sync; DAG and task callbacks); log, never raise, if it cannot be sent.

        :param context: the callback's context.
        """
        from airflow_provider_octopods.hooks.octopods import OctopodsHook

        hook = OctopodsHook(self.octopods_conn_id)
        try:
            sent = self._send(hook)
        except Exception as err:
            self._report_failure(err)
            return
        finally:
            hook.close()
        self._sent(sent)

    async def async_notify(self, context: Context) -> None:
        """
        Send the message (async; e.g. deadline alerts in the triggerer); log, never raise, on failure.

        :param context: the notification's context.
        """
        from airflow_provider_octopods.triggers.octopods import _hooks_module

        hooks = await _hooks_module()  # in the triggerer (deadline alerts): not on the event loop

        try:
            async with hooks.OctopodsAsyncHook(self.octopods_conn_id) as hook:
                sent = await self._asend(hook)
        except Exception as err:
            self._report_failure(err)
            return
        self._sent(sent)

    def __await__(self) -> Generator[Any, None, None]:
        """
        Render a copy with :attr:`context` and send it asynchronously; never raise.

        This is how Airflow runs the notifier as a Deadline Alert callback in the triggerer
        (``AsyncCallback(OctopodsSmsNotifier, kwargs={...})``; tested on Airflow 3.3): it builds the
        notifier with the alert's ``context`` and awaits it. A template that does not render is
        logged like a failed send, instead of failing the callback with a traceback.
        """
        return self._render_and_notify().__await__()

    async def _render_and_notify(self) -> None:
        notifier = copy.copy(self)  # rendering replaces the templates in place
        context = notifier.context
        try:
            notifier.render_template_fields(context)
        except Exception as err:
            self._report_failure(err)
            return
        await notifier.async_notify(context)

    def __call__(self, *args: Any) -> None:
        """
        Render a copy of this notifier with the callback's context and send it; never raise.

        :param args: the callback's context (Airflow passes one argument, or four for SLA misses).
        """
        try:
            # Rendering replaces the templates in place: render a copy, keep them for the next call.
            BaseNotifier.__call__(copy.copy(self), *args)
        except Exception as err:
            self._report_failure(err)


class OctopodsSmsNotifier(SendArguments, OctopodsNotifierBase):
    """
    Send an SMS through Octopods when a DAG or a task changes state.

    Use it wherever Airflow takes a callback (``on_failure_callback``, ``on_success_callback``,
    ``on_retry_callback``, ...). ``destination_phone`` and ``body`` are Jinja templates rendered
    with the callback's context, e.g. ``"{{ dag.dag_id }} failed: {{ run_id }}"``.

    .. code-block:: python

        DAG(
            "nightly_report",
            on_failure_callback=OctopodsSmsNotifier(
                destination_phone="+12015550123",
                body="DAG {{ dag.dag_id }} failed (run {{ run_id }}).",
            ),
        )

    A notification must not turn one failure into two: when the SMS cannot be sent (an invalid
    number, a rejected key, Octopods unreachable, a template that does not render) the notifier
    logs a clear error and returns; it never raises into Airflow's callback machinery. A rendered
    body longer than Octopods' 1,600 characters, or than ``max_segments`` SMS segments, is cut
    cleanly at a segment boundary (with ``...``) rather than not sent. Each
    call renders a copy, so one notifier shared by many tasks (``default_args``) renders afresh for
    each of them.

    .. seealso::
        :ref:`howto/notifier:OctopodsSmsNotifier`

    :param destination_phone: the recipient, e.g. ``+12015550123`` (templated; surrounding
        whitespace is ignored); see :doc:`/numbers`.
    :param body: the text (templated).
    :param octopods_conn_id: the :ref:`Octopods connection <howto/connection:octopods>`.
    :param destination_user_name: the recipient's name, shown in Octopods (templated).
    :param default_region: the region of national numbers (default: the connection's extra
        ``default_region``, else numbers must start with ``+``).
    :param strict_numbers: refuse numbers libphonenumber does not call valid (default: the
        connection's extra ``strict_numbers``, else true).
    :param max_segments: cut the text so that it takes at most this many SMS segments.
    """

    template_fields: Sequence[str] = ("destination_phone", "body", "destination_user_name")

    def __init__(
        self,
        *,
        destination_phone: str,
        body: str,
        destination_user_name: str | None = None,
        default_region: str | None = None,
        strict_numbers: bool | None = None,
        max_segments: int | None = None,
        octopods_conn_id: str = "octopods_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._keep_send_arguments(locals())

    what = "Octopods SMS notification"

    def _send(self, hook: OctopodsHook) -> SentMessage:
        return hook.send_sms(self.destination_phone, self._text(), **self._send_options())

    async def _asend(self, hook: OctopodsAsyncHook) -> SentMessage:
        return await hook.send_sms(self.destination_phone, self._text(), **self._send_options())

    def _text(self) -> Any:
        """Return the rendered body, cut at a segment boundary if it overflows the limits."""
        from airflow_provider_octopods.utils.segments import measure, truncate

        body = self.body
        if not isinstance(body, str) or not body.strip():
            return body  # the hook names the problem
        cut = truncate(body, self.max_segments)
        if cut != body:
            before, after = measure(body), measure(cut)
            self.log.warning(
                "The rendered SMS text has %d characters in %d segment(s); sending its first %d "
                "characters, %d segment(s) in %s.",
                before.length,
                before.segments,
                len(cut) - 3,
                after.segments,
                after.encoding,
            )
        return cut


class OctopodsWhatsAppNotifier(TemplateArguments, OctopodsNotifierBase):
    """
    Send an approved WhatsApp template through Octopods when a DAG or a task changes state.

    Like :class:`OctopodsSmsNotifier` (callbacks, ``async_notify`` for Deadline Alerts, never
    raising), with a template: its variables are Jinja templates rendered with the callback's
    context, and the template is checked before the send (:doc:`/whatsapp`).

    .. code-block:: python

        DAG(
            "nightly_report",
            on_failure_callback=OctopodsWhatsAppNotifier(
                template_id=539,
                destination_phone="+12015550123",
                message_variables=["{{ dag.dag_id }}", "{{ run_id }}"],
            ),
        )

    :param template_id: the template's id (templated).
    :param destination_phone: the recipient (templated); see :doc:`/numbers`.
    :param message_variables: the placeholders' values (templated, each text rendered): a list, a
        dict of sections or a dict keyed ``"1"``, ``"2"``.
    :param header_attachment_url: the public URL of a media header (templated).
    :param octopods_conn_id: the connection holding the WhatsApp channel's key.
    :param check_template: read and check the template before sending.
    :param destination_user_name: the recipient's name, shown in Octopods (templated).
    :param default_region: the region of national numbers (default: the connection's).
    """

    template_fields: Sequence[str] = (
        "template_id",
        "destination_phone",
        "message_variables",
        "header_attachment_url",
        "destination_user_name",
    )
    what = "Octopods WhatsApp notification"

    def __init__(
        self,
        *,
        template_id: int | str,
        destination_phone: str,
        message_variables: Any = None,
        header_attachment_url: str | None = None,
        octopods_conn_id: str = WHATSAPP.conn_id,
        check_template: bool = True,
        destination_user_name: str | None = None,
        default_region: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._keep_template_arguments(locals())

    def _send(self, hook: OctopodsHook) -> SentMessage:
        return hook.send_whatsapp_template(
            self.template_id, self.destination_phone, self.message_variables, **self._template_options()
        )

    async def _asend(self, hook: OctopodsAsyncHook) -> SentMessage:
        return await hook.send_whatsapp_template(
            self.template_id, self.destination_phone, self.message_variables, **self._template_options()
        )


#: The lowercase aliases official providers offer for their notifiers.
send_octopods_sms_notification = OctopodsSmsNotifier
send_octopods_whatsapp_notification = OctopodsWhatsAppNotifier
