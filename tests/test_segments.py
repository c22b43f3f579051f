"""
Encoding and segments of an SMS text, the 1,600-character limit, ``max_segments`` and the cut.

Bodies: plain ASCII, GSM-7 with extension characters (counting two septets), one emoji (UCS-2,
a surrogate pair counting two units), and every segment boundary (160/161, 70/71, 153*k, 67*k).
"""

from __future__ import annotations

import pytest

from airflow_provider_octopods.exceptions import OctopodsInputError
from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator
from airflow_provider_octopods.utils.segments import (
    GSM7,
    GSM7_BASIC,
    GSM7_EXTENSION,
    MAX_BODY_LENGTH,
    MULTI_SEGMENT,
    SINGLE_SEGMENT,
    UCS2,
    body_length,
    check_body,
    measure,
    truncate,
)

EMOJI = "\U0001f680"  # a rocket: outside the Basic Multilingual Plane, a surrogate pair in UTF-16


def test_the_gsm_tables_are_those_of_3gpp_ts_23_038():
    assert len(GSM7_BASIC) == 127  # 128 positions, less the escape to the extension table
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert set("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\n\r") <= GSM7_BASIC
    assert "\x1b" not in GSM7_BASIC and "`" not in GSM7_BASIC and "ç" not in GSM7_BASIC


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("Your nightly report is ready.", GSM7, 29, 1),
        ("Price: 5€", GSM7, 10, 1),  # € is in the extension table: two septets
        ("{x}", GSM7, 5, 1),
        ("Déjà vu", GSM7, 7, 1),  # 'é' and 'à' are in the GSM-7 alphabet
        ("Tête-à-tête", UCS2, 11, 1),  # 'ê' is not
        ("It\u2019s done", UCS2, 9, 1),  # a curly apostrophe is not GSM-7
        (f"Launched {EMOJI}", UCS2, 11, 1),
        ("ç", UCS2, 1, 1),
    ],
)
def test_encoding_and_units(text, encoding, units, segments):
    cost = measure(text)
    assert (cost.encoding, cost.units, cost.segments) == (encoding, units, segments)


@pytest.mark.parametrize(
    ("text", "segments"),
    [("x" * 160, 1), ("x" * 161, 2), ("€" * 80, 1), ("€" * 81, 2), ("x" * 159 + "€", 2)]
    + [("x" * (153 * k), k) for k in range(2, 11)]
    + [("x" * (153 * k + 1), k + 1) for k in range(2, 10)]
    + [("ç" * 70, 1), ("ç" * 71, 2), (EMOJI * 35, 1), (EMOJI * 36, 2), ("ç" * 69 + EMOJI, 2)]
    + [("ç" * (67 * k), k) for k in range(2, 11)]
    + [("ç" * (67 * k + 1), k + 1) for k in range(2, 10)],
)
def test_segment_boundaries(text, segments):
    assert measure(text).segments == segments


def test_a_two_unit_character_is_never_split_between_segments():
    # 152 septets then '€': 154 in all, but the escape pair cannot straddle septet 153.
    assert measure("x" * 152 + "€" + "x" * 10).segments == 2
    assert measure("x" * 152 + "€" + "x" * 152).segments == 3  # 152 | € + 151 | 1
    assert measure("ç" * 66 + EMOJI + "ç" * 66).segments == 3  # 66 | pair + 65 | 1


def test_the_1600_limit_counts_an_emoji_as_two():
    assert body_length(EMOJI * 800) == 1600
    assert check_body(EMOJI * 800).length == 1600
    assert check_body("€" * 1600).length == 1600  # a GSM extension character is one character
    with pytest.raises(
        OctopodsInputError, match=r"has 1601 characters \(an emoji counts as 2\); .* at most 1600"
    ):
        check_body("x" + EMOJI * 800)
    with pytest.raises(OctopodsInputError, match="has 1601 characters; Octopods accepts at most 1600"):
        check_body("x" * 1601)
    assert MAX_BODY_LENGTH == 1600


@pytest.mark.parametrize(
    "value", [42, 3.5, b"hello", bytearray(b"hi"), ["hello"], ("hi",), {"body": "hi"}, True]
)
def test_a_body_that_is_not_text_says_so(value):
    """Defect 10: an int, bytes or a list was reported as an empty text."""
    with pytest.raises(
        OctopodsInputError, match=r"^Invalid body: got \w+ .*, not text; pass the SMS text as a string"
    ) as err:
        check_body(value)
    assert err.value.field == "body"
    assert "empty" not in str(err.value)
    assert type(value).__name__ in str(err.value)


@pytest.mark.parametrize("value", ["", " ", "\n\t ", "\u3000"])
def test_an_empty_or_blank_body_still_says_empty(value):
    with pytest.raises(
        OctopodsInputError, match=r"^Invalid body: the SMS text is empty; pass the text to send\.$"
    ):
        check_body(value)


def test_the_field_name_is_the_callers():
    with pytest.raises(OctopodsInputError, match=r"^Invalid message: got int 42, not text") as err:
        check_body(42, "message")
    assert err.value.field == "message"


def test_max_segments_refuses_with_the_count_and_the_fix():
    assert check_body("x" * 306, max_segments=2).segments == 2
    with pytest.raises(
        OctopodsInputError,
        match=r"^Invalid body: .*3 segments in GSM-7 \(307 septets\), more than max_segments=2",
    ):
        check_body("x" * 307, max_segments=2)
    with pytest.raises(OctopodsInputError, match=r"2 segments in UCS-2 .*avoid characters outside GSM-7"):
        check_body(EMOJI + "x" * 69, max_segments=1)
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(OctopodsInputError, match=r"^Invalid max_segments"):
            check_body("hi", max_segments=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_segments", [1, 2, 3])
@pytest.mark.parametrize("text", ["word " * 200, "mot€ " * 200, f"alert {EMOJI} " + "word " * 200])
def test_truncate_fills_whole_segments_and_cuts_after_a_word(text, max_segments):
    cut = truncate(text, max_segments)
    cost = measure(cut)

    assert cost.segments == max_segments
    assert cut.endswith("...") and text.startswith(cut[:-3])
    assert cut[:-3].endswith(("word", "mot€", EMOJI))
    # Little room is lost: the next word would not have fit.
    encoding = cost.encoding
    room = SINGLE_SEGMENT[encoding] if max_segments == 1 else MULTI_SEGMENT[encoding] * max_segments
    assert room - cost.units < 20


def test_truncate_keeps_text_that_fits_and_respects_the_1600_limit():
    assert truncate("short", 1) == "short"
    cut = truncate("x" * 5000)
    assert len(cut) == MAX_BODY_LENGTH and cut.endswith("...")


def test_truncate_never_splits_a_character_sequence():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji made of three, joined
    text = "y" * 60 + family * 5
    cut = truncate(text, 1)
    kept = cut[:-3]
    assert not kept.endswith("\u200d")
    assert (len(kept) - 60) % 5 == 0  # whole families only
    accented = "e\u0301" * 100  # 'e' then a combining acute accent
    assert not truncate(accented, 1)[:-3].endswith("e")


def test_the_operator_fails_over_max_segments_before_any_request(octopods_conn):
    operator = OctopodsSendSmsOperator(
        task_id="send", destination_phone="+12015550123", body="x" * 161, max_segments=1
    )
    with pytest.raises(OctopodsInputError, match=r"2 segments in GSM-7 .* more than max_segments=1"):
        operator.execute({})  # type: ignore[arg-type]
    assert octopods_conn.request_count() == 0


@pytest.mark.parametrize("body", [42, b"hello", ["hello"]])
def test_the_operator_says_not_text_before_any_request(body, octopods_conn):
    operator = OctopodsSendSmsOperator(task_id="send", destination_phone="+12015550123", body=body)
    with pytest.raises(OctopodsInputError, match=r"^Invalid body: got .*, not text"):
        operator.execute({})  # type: ignore[arg-type]
    assert octopods_conn.request_count() == 0
