"""
The rules a send is checked against before it leaves, shared by the sync and async hooks.

``default_region`` and ``strict_numbers`` come from the call, else from the connection's extras
of the same names (read once with the rest of the connection, in
:func:`~airflow_provider_octopods._http.api_settings`); ``max_segments`` only from the call.
:func:`send_rules` resolves them for both hooks, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_octopods._phone import parse_region, parse_strict
from airflow_provider_octopods._segments import measure, parse_max_segments

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_octopods._http import ApiSettings
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


def send_rules(
    settings: ApiSettings,
    default_region: str | None = None,
    strict_numbers: bool | None = None,
    max_segments: int | None = None,
) -> SendRules:
    """
    Resolve a send's rules: the arguments first, then the connection's extras, then the defaults.

    :param settings: the connection's settings (its ``default_region`` and ``strict_numbers``).
    :param default_region: the region of national numbers, e.g. ``"US"``.
    :param strict_numbers: refuse numbers the library does not call valid.
    :param max_segments: the most segments the text may take.
    """
    return SendRules(
        default_region=settings.default_region
        if default_region is None
        else parse_region(default_region, "default_region"),
        strict_numbers=settings.strict_numbers
        if strict_numbers is None
        else parse_strict(strict_numbers, "strict_numbers"),
        max_segments=parse_max_segments(max_segments),
    )


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
