"""
What an SMS text costs: its encoding (GSM-7 or UCS-2) and its number of segments.

A text whose every character is in the GSM 03.38 alphabet travels in GSM-7: 160 septets in one
SMS, 153 per segment once split (7 septets carry the concatenation header). The characters of the
extension table (``€``, ``{``, ``}``, ``[``, ``]``, ``\\``, ``~``, ``^``, ``|`` and form feed) take
two septets (an escape, then the character). One character outside the alphabet (an emoji, a
curly quote, a letter with an accent GSM lacks) makes the whole text UCS-2: 70 UTF-16 code units
in one SMS, 67 per segment; a character outside the Basic Multilingual Plane (most emoji) is a
surrogate pair and takes two. A two-unit character is never split between two segments.

The tables are those of 3GPP TS 23.038 (formerly GSM 03.38), section 6.2.1 "GSM 7 bit Default
Alphabet" and 6.2.1.1 "GSM 7 bit default alphabet extension table", written in Unicode. They are
kept here rather than taken from a codec on PyPI (``gsm0338``): a dependency that registers a
global codec on import, encodes U+001B (the escape itself) as a character of the text, and adds
nothing this module needs but its table; ``tests/test_segments.py`` checks the table's size and
content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_octopods.exceptions import OctopodsInputError
from airflow_provider_octopods.models import parse_count

#: The most characters Octopods accepts in one SMS text (a character outside the Basic
#: Multilingual Plane, such as most emoji, counts as two: UTF-16 code units).
MAX_BODY_LENGTH = 1600

GSM7 = "GSM-7"
UCS2 = "UCS-2"

#: Units (septets for GSM-7, UTF-16 code units for UCS-2) of a text sent as one SMS, and per
#: segment of a text sent in several.
SINGLE_SEGMENT = {GSM7: 160, UCS2: 70}
MULTI_SEGMENT = {GSM7: 153, UCS2: 67}
#: What the notifier appends to a text it cuts (GSM-7 characters, so a cut never changes encoding).
TRUNCATION_MARK = "..."

#: 3GPP TS 23.038 section 6.2.1, positions 0x00 to 0x7F in order, without 0x1B (the escape to the
#: extension table, not a character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: 3GPP TS 23.038 section 6.2.1.1: each takes two septets (escape, then the character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


@dataclass(frozen=True)
class BodyCost:
    """
    The encoding and the size of an SMS text.

    :param encoding: ``"GSM-7"`` or ``"UCS-2"``.
    :param units: septets (GSM-7) or UTF-16 code units (UCS-2).
    :param segments: how many SMS the text is split into (and billed as).
    :param length: the text's length as the 1,600-character limit counts it (:func:`body_length`).
    """

    encoding: str
    units: int
    segments: int
    length: int


def body_length(text: str) -> int:
    """
    Return the length of ``text`` as the 1,600-character limit is checked: in UTF-16 code units.

    A character outside the Basic Multilingual Plane (most emoji) counts as two, as it does in
    the UCS-2 segment count; every other character counts as one (see the "Numbers and cost" page
    for what is known and what is assumed).

    :param text: the SMS text.
    """
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _weights(text: str) -> tuple[str, list[int]]:
    """Return the encoding of ``text`` and the units each of its characters takes."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        return GSM7, [2 if char in GSM7_EXTENSION else 1 for char in text]
    return UCS2, [2 if ord(char) > 0xFFFF else 1 for char in text]


def _count_segments(weights: list[int], single: int, per_segment: int) -> int:
    """Pack the characters into segments, never splitting a two-unit character between two."""
    if sum(weights) <= single:
        return 1
    segments, used = 1, 0
    for weight in weights:
        if used + weight > per_segment:
            segments, used = segments + 1, 0
        used += weight
    return segments


def measure(text: str) -> BodyCost:
    """
    Return the encoding, units and segments of ``text``.

    :param text: the SMS text.
    """
    encoding, weights = _weights(text)
    segments = _count_segments(weights, SINGLE_SEGMENT[encoding], MULTI_SEGMENT[encoding])
    return BodyCost(encoding, sum(weights), segments, body_length(text))


def parse_max_segments(value: Any, field: str = "max_segments") -> int | None:
    """
    Return ``value`` as a positive int, or None when not set.

    :param value: ``None`` or a positive integer.
    :param field: the argument's name, for the error message.
    """
    return None if value is None else parse_count(value, field)


def check_body(value: Any, field: str = "body", max_segments: int | None = None) -> BodyCost:
    """
    Return the cost of a non-empty SMS text within the limits, or raise :class:`OctopodsInputError`.

    :param value: the text.
    :param field: the argument's name, for the error message.
    :param max_segments: the most segments the text may take, if limited.
    """
    limit = parse_max_segments(max_segments)
    if not isinstance(value, str):
        raise OctopodsInputError(
            field,
            f"got {type(value).__name__} {value!r:.40}, not text; pass the SMS text as a string "
            "(str(value) of a number).",
        )
    if not value.strip():
        raise OctopodsInputError(field, "the SMS text is empty; pass the text to send.")
    cost = measure(value)
    if cost.length > MAX_BODY_LENGTH:
        counted = " (an emoji counts as 2)" if cost.length != len(value) else ""
        raise OctopodsInputError(
            field,
            f"the SMS text has {cost.length} characters{counted}; Octopods accepts at most {MAX_BODY_LENGTH}.",
        )
    if limit is not None and cost.segments > limit:
        raise OctopodsInputError(
            field,
            f"the SMS text takes {cost.segments} segments in {cost.encoding} ({cost.units} "
            f"{'septets' if cost.encoding == GSM7 else 'UTF-16 code units'}), more than max_segments="
            f"{limit}; shorten it{', or avoid characters outside GSM-7' if cost.encoding == UCS2 else ''}"
            ", or raise max_segments.",
        )
    return cost


def ucs2_culprit(text: str) -> tuple[str, int, BodyCost] | None:
    """
    Return the one character that turns ``text`` into UCS-2, with its position and the GSM-7 cost without it.

    None when the text is GSM-7, or when more than one distinct character is outside GSM-7.

    :param text: the SMS text.
    """
    outside = {char for char in text if char not in GSM7_BASIC and char not in GSM7_EXTENSION}
    if len(outside) != 1:
        return None
    char = outside.pop()
    return char, text.index(char) + 1, measure(text.replace(char, ""))


def _fits(text: str, max_segments: int | None) -> bool:
    cost = measure(text)
    return cost.length <= MAX_BODY_LENGTH and (max_segments is None or cost.segments <= max_segments)


def _clean_end(text: str, end: int) -> int:
    """Move a cut back so it splits no character sequence (combining mark, ZWJ, variation selector)."""
    import unicodedata

    while 0 < end < len(text) and (
        unicodedata.category(text[end]) in {"Mn", "Me"}
        or text[end] in "\u200d\ufe0e\ufe0f"
        or text[end - 1] == "\u200d"
        or "\U0001f3fb" <= text[end] <= "\U0001f3ff"  # skin-tone modifiers
    ):
        end -= 1
    return end


def truncate(text: str, max_segments: int | None = None) -> str:
    """
    Return ``text`` if it fits, else its longest clean beginning plus ``...`` that fits.

    It fits in ``max_segments`` segments (when given) and in :data:`MAX_BODY_LENGTH`. The cut never
    splits a character sequence, and falls after a word when one ends in the last 15 characters.

    :param text: the SMS text.
    :param max_segments: the most segments the result may take, if limited.
    """
    if _fits(text, max_segments):
        return text
    low, high = 0, len(text)  # the longest prefix that fits with the mark is in [low, high)
    while low < high - 1:
        middle = (low + high) // 2
        if _fits(text[:middle] + TRUNCATION_MARK, max_segments):
            low = middle
        else:
            high = middle
    end = _clean_end(text, low)
    space = text.rfind(" ", max(end - 15, 0), end + 1)
    if space > 0:
        end = space
    return text[:end].rstrip() + TRUNCATION_MARK
