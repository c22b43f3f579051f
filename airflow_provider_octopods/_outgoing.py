"""
The rules a send is checked against before it leaves, shared by the sync and async hooks.

``default_region`` and ``strict_numbers`` come from the call, else from the connection's extras
of the same names; ``max_segments`` only from the call. One function (:func:`send_rules`) resolves
them for both hooks, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_octopods._phone import parse_region, parse_strict
from airflow_provider_octopods._segments import measure, parse_max_segments

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from airflow_provider_octopods.models import SentSms


@dataclass(frozen=True)
class SendRules:
    """
    How a send's number and text are checked.

    :param default_region: the region of national numbers (``"US"``), or None (international only).
    :param strict_numbers: refuse numbers libphonenumber does not call valid (else warn).
    :param max_segments: the most segments the text may take, or None.
    """

    default_region: str | None = None
    strict_numbers: bool = True
    max_segments: int | None = None


def _extras(conn: Any) -> Mapping[str, Any]:
    extra = conn.extra_dejson if getattr(conn, "extra", None) else {}
    return extra if isinstance(extra, dict) else {}


def send_rules(
    get_connection: Callable[[], Any] | None,
    default_region: str | None = None,
    strict_numbers: bool | None = None,
    max_segments: int | None = None,
) -> SendRules:
    """
    Resolve a send's rules: the arguments first, then the connection's extras, then the defaults.

    :param get_connection: returns the Airflow connection; called only when an argument is None.
    :param default_region: the region of national numbers, e.g. ``"US"``.
    :param strict_numbers: refuse numbers the library does not call valid.
    :param max_segments: the most segments the text may take.
    """
    extra: Mapping[str, Any] = {}
    conn_id = "octopods"
    if get_connection is not None and (default_region is None or strict_numbers is None):
        conn = get_connection()
        extra, conn_id = _extras(conn), getattr(conn, "conn_id", None) or conn_id
    region_field, strict_field = "default_region", "strict_numbers"
    if default_region is None:
        default_region, region_field = (
            extra.get("default_region"),
            f"default_region of connection '{conn_id}'",
        )
    if strict_numbers is None:
        strict_numbers, strict_field = (
            extra.get("strict_numbers"),
            f"strict_numbers of connection '{conn_id}'",
        )
    return SendRules(
        default_region=parse_region(default_region, region_field),
        strict_numbers=parse_strict(strict_numbers, strict_field),
        max_segments=parse_max_segments(max_segments),
    )


async def async_send_rules(
    conn_id: str,
    default_region: str | None = None,
    strict_numbers: bool | None = None,
    max_segments: int | None = None,
) -> SendRules:
    """
    :func:`send_rules` for the async hook: the connection is read without blocking the loop.

    :param conn_id: the Octopods connection id.
    :param default_region: the region of national numbers, e.g. ``"US"``.
    :param strict_numbers: refuse numbers the library does not call valid.
    :param max_segments: the most segments the text may take.
    """
    conn = None
    if default_region is None or strict_numbers is None:
        from airflow.providers.common.compat.connection import get_async_connection

        conn = await get_async_connection(conn_id)
    return send_rules(lambda: conn, default_region, strict_numbers, max_segments)


def with_send_facts(sent: SentSms, payload: Mapping[str, Any]) -> SentSms:
    """
    Add the normalised number, the encoding and the segments of a send to Octopods' answer.

    :param sent: the parsed answer of the send.
    :param payload: the JSON body that was sent (its number and text are already checked).
    """
    cost = measure(payload["body"])
    return dataclasses.replace(
        sent, destination_phone=payload["destination_phone"], encoding=cost.encoding, segments=cost.segments
    )
