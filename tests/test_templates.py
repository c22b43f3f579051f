"""
``utils/templates.py``, pure: what a WhatsApp template expects, and the variables checked against it.

The templates are the simulator's (:data:`~airflow_provider_octopods.testing.simulator.TEMPLATES`),
parsed by the provider; the simulator's own counting (``template_placeholders``,
``media_header``) is the reference the provider must agree with, since Octopods refuses a send
whose variables do not fit (``error_code`` 9).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from typing import Any

import pytest

from airflow_provider_octopods.exceptions import OctopodsInputError, OctopodsTransientError
from airflow_provider_octopods.testing.simulator import (
    TEMPLATE_BODY_ONLY,
    TEMPLATE_MEDIA_HEADER,
    TEMPLATE_NO_VARIABLES,
    TEMPLATE_PENDING,
    TEMPLATE_SECTIONS,
    TEMPLATE_SPANISH,
    TEMPLATES,
    media_header,
    template_placeholders,
)
from airflow_provider_octopods.utils.templates import (
    SECTIONS,
    WhatsAppTemplate,
    attachment_url,
    check_template,
    message_variables,
    parse_templates,
    template_id_of,
)

PARSED = {t.template_id: t for t in parse_templates(copy.deepcopy(TEMPLATES))}
BODY_ONLY, NO_VARIABLES, MULTI, MEDIA = (
    PARSED[TEMPLATE_BODY_ONLY],
    PARSED[TEMPLATE_NO_VARIABLES],
    PARSED[TEMPLATE_SECTIONS],
    PARSED[TEMPLATE_MEDIA_HEADER],
)
MULTI_EXPECTS = "expects header 1, body 2, footer 1, buttons 1"


def _template(template_id: int, components: list[dict[str, Any]] | None = None, **fields: Any) -> dict:
    item: dict[str, Any] = {"template_id": template_id, "template_name": f"t{template_id}", **fields}
    if components is not None:
        item["template_components"] = components
    return item


def _refused(variables: Any, template: WhatsAppTemplate | None) -> OctopodsInputError:
    with pytest.raises(OctopodsInputError) as refused:
        message_variables(variables, template)
    assert str(refused.value).startswith(f"Invalid {refused.value.field}: ")
    return refused.value


# -- what a template expects ------------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t["template_name"])
def test_placeholders_and_media_agree_with_the_simulator_for_every_template(template):
    parsed = WhatsAppTemplate.from_api(template)

    assert parsed is not None
    assert dict(parsed.placeholders) == template_placeholders(template)
    assert parsed.media == media_header(template)
    assert (parsed.name, parsed.status, parsed.language) == (
        template["template_name"],
        template["template_status"],
        template["language"],
    )


def test_placeholders_per_section_with_the_url_button():
    assert dict(MULTI.placeholders) == {"header": 1, "body": 2, "footer": 1, "buttons": 1}
    assert not MULTI.body_only
    assert MULTI.expects() == "header 1, body 2, footer 1, buttons 1"
    assert dict(BODY_ONLY.placeholders) == {"header": 0, "body": 2, "footer": 0, "buttons": 0}
    assert BODY_ONLY.body_only and BODY_ONLY.expects() == "body 2"
    assert NO_VARIABLES.expects() == "no variables"
    assert PARSED[TEMPLATE_SPANISH].language == "es"
    assert PARSED[TEMPLATE_PENDING].status == "Pending"


def test_a_placeholder_repeated_counts_once_and_spaces_inside_braces_count():
    parsed = WhatsAppTemplate.from_api(
        _template(
            700, [{"type": "BODY", "text": "Hi {{1}}, {{ 2 }} and again {{1}}; {{x}} is no placeholder"}]
        )
    )

    assert parsed is not None
    assert dict(parsed.placeholders) == {"header": 0, "body": 2, "footer": 0, "buttons": 0}


@pytest.mark.parametrize(
    ("components", "body"),
    [(None, "Hi {{1}}, code {{2}}"), ([], "Hi {{1}}, code {{2}}"), (None, None)],
    ids=["no-components", "empty-components", "no-body-at-all"],
)
def test_a_template_without_components_counts_its_template_body(components, body):
    item = _template(701, components, template_body=body, template_status="Accepted")

    parsed = WhatsAppTemplate.from_api(item)

    assert parsed is not None
    expected = 2 if body else 0
    assert dict(parsed.placeholders) == {"header": 0, "body": expected, "footer": 0, "buttons": 0}
    assert dict(parsed.placeholders) == template_placeholders(item)
    assert parsed.media is None


@pytest.mark.parametrize("form", ["IMAGE", "VIDEO", "DOCUMENT", "image", "Video"])
def test_media_header_is_detected_in_any_case(form):
    item = _template(702, [{"type": "header", "format": form}, {"type": "body", "text": "Receipt {{1}}"}])

    parsed = WhatsAppTemplate.from_api(item)

    assert parsed is not None and parsed.media == form.upper() == media_header(item)
    assert parsed.body_only  # a media header has no placeholder: the variables stay one array


def test_a_text_header_is_no_media_header():
    parsed = WhatsAppTemplate.from_api(
        _template(
            703, [{"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"}, {"type": "BODY", "text": "x"}]
        )
    )

    assert parsed is not None and parsed.media is None
    assert dict(parsed.placeholders) == {"header": 1, "body": 0, "footer": 0, "buttons": 0}


def test_two_url_buttons_each_with_a_placeholder_count_two():
    """Fixed in 9d82358: the BUTTONS component counted its placeholders as one set (1 here)."""
    item = _template(
        704,
        [
            {"type": "BODY", "text": "Hi {{1}}"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "URL", "text": "Track", "url": "https://example.com/track/{{1}}"},
                    {"type": "URL", "text": "Return", "url": "https://example.com/return/{{1}}"},
                ],
            },
        ],
    )

    parsed = WhatsAppTemplate.from_api(item)

    assert parsed is not None
    assert template_placeholders(item)["buttons"] == 2
    assert parsed.placeholders["buttons"] == 2


@pytest.mark.parametrize(
    "item",
    [
        None,
        "539",
        [],
        {"template_id": None},
        {"template_id": True},
        {"template_id": "abc"},
        {"template_id": 5.5},
    ],
    ids=["none", "text", "list", "id-none", "id-bool", "id-text", "id-float"],
)
def test_an_item_without_an_integer_id_is_skipped(item):
    assert WhatsAppTemplate.from_api(item) is None
    assert parse_templates([item, TEMPLATES[0]]) == [PARSED[TEMPLATE_BODY_ONLY]]


@pytest.mark.parametrize(
    "payload",
    [TEMPLATES, {"templates": TEMPLATES}],
    ids=["array", "object"],
)
def test_parse_templates_reads_both_answers(payload):
    assert [t.template_id for t in parse_templates(payload)] == [t["template_id"] for t in TEMPLATES]


@pytest.mark.parametrize("payload", [None, {}, "x", {"templates": "x"}, {"templates": None}, 3])
def test_parse_templates_of_a_strange_answer_is_a_malformed_answer_not_no_templates(payload):
    # Regression: "no templates" refused the send as an unknown template_id, a final error that
    # blamed the user; the sync hook also kept the empty list for its next sends.
    with pytest.raises(OctopodsTransientError, match=r"malformed templates answer \(no list of templates"):
        parse_templates(payload)


def test_an_empty_list_is_no_templates():
    assert parse_templates([]) == parse_templates({"templates": []}) == []


def test_a_templates_answer_nested_too_deeply_is_a_malformed_answer_not_a_crash():
    from airflow_provider_octopods.hooks.octopods import (
        DEFAULT_HOST,
        Answer,
        ApiSettings,
        read_answer,
        templates_call,
    )

    # Regression: at a depth that depends on the caller's stack, JSON and the key's redaction still
    # read the answer and counting its placeholders raised a bare RecursionError. Every depth here
    # gives a result or a transient error; the parse's own RecursionError is read as one too.
    item = json.dumps(_template(800, [{"type": "BODY", "text": "@"}]))
    settings = ApiSettings(DEFAULT_HOST, key="k")
    for depth in range(300, 1300, 7):
        raw = f"[{item}]".replace('"@"', "[" * depth + '"{{1}}"' + "]" * depth).encode()
        with contextlib.suppress(OctopodsTransientError):
            read_answer(templates_call(), Answer(200, {}, raw), settings)

    def too_deep(payload: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    call = dataclasses.replace(templates_call(), parse=too_deep)
    with pytest.raises(
        OctopodsTransientError, match=r"^Octopods sent an answer nested too deeply to read\.$"
    ):
        read_answer(call, Answer(200, {}, b"[]"), settings)


# -- message_variables: every accepted form, the documented shape ------------------------------------


@pytest.mark.parametrize(
    "variables",
    [
        ["Alex", "1234"],
        ("Alex", "1234"),
        ["Alex", 1234],
        {"1": "Alex", "2": "1234"},
        {2: "1234", 1: "Alex"},
        {" 1 ": "Alex", "2": 1234},
        {"body": ["Alex", "1234"]},
        {"BODY": ["Alex", "1234"], "Header": [], "footer": [], "buttons": []},
        "['Alex', '1234']",
        '["Alex", "1234"]',
        "  ['Alex', 1234]  ",
        '{"1": "Alex", "2": "1234"}',
        "{'body': ['Alex', '1234']}",
    ],
    ids=[
        "list",
        "tuple",
        "int-to-text",
        "numbered-text-keys",
        "numbered-int-keys",
        "numbered-spaced-keys",
        "sections",
        "sections-any-case",
        "jinja-python-list",
        "jinja-json-list",
        "jinja-padded",
        "jinja-numbered",
        "jinja-sections",
    ],
)
def test_a_body_only_template_gets_one_array(variables):
    assert message_variables(variables, BODY_ONLY) == ["Alex", "1234"]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ("Alex", ["Alex"]),
        (7, ["7"]),
        (5.5, ["5.5"]),
        ([0], ["0"]),
        ("[URGENT] Alex", ["[URGENT] Alex"]),  # starts like a list, is not one: one text
        ("{Alex}", ["{Alex}"]),
    ],
    ids=["one-text", "int", "float", "zero", "bracketed-text", "braced-text"],
)
def test_one_value_for_a_one_placeholder_template(variables, expected):
    assert message_variables(variables, MEDIA) == expected


@pytest.mark.parametrize(
    "variables",
    [
        {"header": ["A-1"], "body": ["Alex", "Friday"], "footer": ["Acme"], "buttons": ["A-1"]},
        {"Buttons": "A-1", "FOOTER": "Acme", "Body": ("Alex", "Friday"), "HEADER": "A-1"},
        "{'header': ['A-1'], 'body': ['Alex', 'Friday'], 'footer': ['Acme'], 'buttons': ['A-1']}",
        '{"header": ["A-1"], "body": ["Alex", "Friday"], "footer": ["Acme"], "buttons": ["A-1"]}',
    ],
    ids=["sections", "any-case-single-texts", "jinja-python", "jinja-json"],
)
def test_a_multi_section_template_gets_every_section(variables):
    fitted = message_variables(variables, MULTI)

    assert fitted == {"header": ["A-1"], "body": ["Alex", "Friday"], "footer": ["Acme"], "buttons": ["A-1"]}
    assert list(fitted) == list(SECTIONS)


def test_a_media_template_with_only_body_placeholders_gets_an_array():
    assert message_variables({"body": ["Alex"]}, MEDIA) == ["Alex"]


@pytest.mark.parametrize("variables", [None, [], {}, (), "[]", "{}", "  []  "])
def test_no_placeholders_give_none(variables):
    assert message_variables(variables, NO_VARIABLES) is None


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (None, None),
        ([], None),
        (["Alex", 1234], ["Alex", "1234"]),
        ("Alex", ["Alex"]),
        ({"1": "Alex", "2": "x"}, ["Alex", "x"]),
        ({"body": ["Alex"]}, ["Alex"]),
        ({"header": ["h"]}, {"header": ["h"], "body": [], "footer": [], "buttons": []}),
        ("{'footer': ['f'], 'body': ['b']}", {"header": [], "body": ["b"], "footer": ["f"], "buttons": []}),
    ],
)
def test_without_a_template_the_shape_follows_the_input(variables, expected):
    assert message_variables(variables, None) == expected


# -- message_variables: refusals naming the field and what the template expects ---------------------


@pytest.mark.parametrize(
    ("variables", "template", "section", "given"),
    [
        (["Alex"], BODY_ONLY, "body", 1),
        (["Alex", "1", "extra"], BODY_ONLY, "body", 3),
        ("Alex", BODY_ONLY, "body", 1),
        ({"1": "Alex"}, BODY_ONLY, "body", 1),
        (None, BODY_ONLY, "body", 0),
        ([], BODY_ONLY, "body", 0),
        (["x"], NO_VARIABLES, "body", 1),
        ({"body": ["Alex", "1234"], "header": ["h"]}, BODY_ONLY, "header", 1),
        ({"header": ["h"], "body": ["a", "b"], "footer": ["f"], "buttons": ["x", "y"]}, MULTI, "buttons", 2),
        ({"header": ["h"], "body": ["a", "b"], "footer": ["f"]}, MULTI, "buttons", 0),
        ({"header": [], "body": ["a", "b"], "footer": ["f"], "buttons": ["x"]}, MULTI, "header", 0),
        ({"header": ["h"], "body": ["a"], "footer": ["f"], "buttons": ["x"]}, MULTI, "body", 1),
        (["Alex"], MEDIA, None, None),
    ],
    ids=[
        "too-few",
        "too-many",
        "one-text-for-two",
        "numbered-too-few",
        "none-for-two",
        "empty-for-two",
        "value-for-none",
        "header-for-body-only",
        "extra-button",
        "missing-buttons",
        "empty-header",
        "short-body",
        "control-fits",
    ],
)
def test_a_wrong_count_names_the_section_and_what_the_template_expects(variables, template, section, given):
    if section is None:
        assert message_variables(variables, template) == ["Alex"]
        return

    error = _refused(variables, template)

    assert error.field == "message_variables"
    text = str(error)
    assert f"template {template.template_id} ({template.name}) expects {template.expects()}" in text
    assert f"got {given} for the {section}" in text


def test_a_list_for_a_multi_section_template_says_the_sections_it_needs():
    error = _refused(["Alex", "Friday"], MULTI)

    assert error.field == "message_variables"
    assert f"template {TEMPLATE_SECTIONS} (delivery_update) {MULTI_EXPECTS}" in str(error)
    assert "got 0 for the header" in str(error)


def test_numbered_keys_for_a_multi_section_template_are_refused():
    error = _refused({"1": "a", "2": "b"}, MULTI)

    assert MULTI_EXPECTS in str(error)


@pytest.mark.parametrize(
    ("variables", "shown"),
    [
        ({"1": "a", "3": "b"}, "['1', '3']"),
        ({2: "a", 3: "b"}, "['2', '3']"),
        ({0: "a"}, "['0']"),
    ],
    ids=["gap", "no-first", "zero"],
)
def test_a_gap_in_the_numbering_is_refused(variables, shown):
    error = _refused(variables, BODY_ONLY)

    assert error.field == "message_variables"
    assert "numbered placeholders must run 1, 2, ..." in str(error)
    assert f"without a gap; got {shown}." in str(error)


@pytest.mark.parametrize(
    ("variables", "said"),
    [
        ({1: "Alex", "1": "Bob", 2: "A-1"}, "the keys 1 and '1' both name '1'"),
        ({"1": "Alex", " 1": "Bob", "2": "A-1"}, "the keys '1' and ' 1' both name '1'"),
        ({"1": "Alex", "01": "Bob", "2": "A-1"}, "the keys '1' and '01' both name '1'"),
        ({"body": ["Alex", "A-1"], "BODY": ["Bob", "B-2"]}, "the keys 'body' and 'BODY' both name 'body'"),
    ],
    ids=["int-and-text", "space", "zero-padded", "section-case"],
)
def test_two_keys_for_one_placeholder_or_section_are_refused_naming_both(variables, said):
    # Regression: the last of the two won, and the other value was dropped without a word.
    for template in (BODY_ONLY, None):
        error = _refused(variables, template)

        assert error.field == "message_variables"
        assert f"{said}; give each one once." in str(error)


def test_zero_padded_numbered_keys_are_read_or_refused_naming_the_field():
    """Fixed in 9d82358: '01' raised a raw KeyError '1'."""
    try:
        fitted = message_variables({"01": "Alex", "02": "1234"}, BODY_ONLY)
    except OctopodsInputError as err:
        assert err.field == "message_variables"
    else:
        assert fitted == ["Alex", "1234"]


@pytest.mark.parametrize(
    ("variables", "unknown"),
    [
        ({"bodyy": ["a", "b"]}, "['bodyy']"),
        ({"body": ["a", "b"], "1": "x"}, "['1']"),
        ({"Body": ["a", "b"], "Title": ["x"]}, "['title']"),
    ],
    ids=["typo", "mixed-numbered", "unknown-any-case"],
)
def test_an_unknown_section_key_is_refused_naming_it(variables, unknown):
    error = _refused(variables, BODY_ONLY)

    assert error.field == "message_variables"
    assert f"{unknown} are not sections" in str(error)
    assert "header, body, footer, buttons" in str(error)


@pytest.mark.parametrize(
    ("variables", "field", "said"),
    [
        ([["Alex"], "1234"], "message_variables[0]", "got list ['Alex']"),
        (["Alex", {"x": 1}], "message_variables[1]", "got dict {'x': 1}"),
        ({"body": {"1": "a"}}, "message_variables['body']", "got dict; give a list of texts"),
        ({"body": [["a"], "b"]}, "message_variables['body'][0]", "got list ['a']"),
        ({"1": ["a"], "2": "b"}, "message_variables['1']", "got list ['a']"),
        ("[['Alex'], '1234']", "message_variables[0]", "got list ['Alex']"),
        (True, "message_variables", "got bool"),
        ([True, "1234"], "message_variables[0]", "got bool True"),
        ({"1": False, "2": "b"}, "message_variables['1']", "got bool False"),
        ([None, "1234"], "message_variables[0]", "got NoneType None"),
        ({"body": ["Alex", None]}, "message_variables['body'][1]", "got NoneType None"),
        (["", "1234"], "message_variables[0]", "is empty"),
        (["Alex", "   "], "message_variables[1]", "is empty"),
        ("", "message_variables[0]", "is empty"),
        ({"1": "Alex", "2": ""}, "message_variables['2']", "is empty"),
        ({"1", "2"}, "message_variables", "got set"),
        ("{'1', '2'}", "message_variables", "got set"),
        (object(), "message_variables", "got object"),
    ],
    ids=[
        "nested-list",
        "nested-dict",
        "section-dict",
        "section-nested",
        "numbered-nested",
        "jinja-nested",
        "bool",
        "bool-item",
        "bool-numbered",
        "none-item",
        "none-in-section",
        "empty-item",
        "blank-item",
        "empty-text",
        "empty-numbered",
        "set",
        "jinja-set",
        "object",
    ],
)
def test_a_value_that_is_not_text_is_refused_naming_where(variables, field, said):
    error = _refused(variables, BODY_ONLY)

    assert error.field == field
    assert said in str(error)


@pytest.mark.parametrize("template", [BODY_ONLY, None], ids=["checked", "unchecked"])
def test_values_are_checked_even_without_a_template(template):
    assert _refused([None, "x"], template).field == "message_variables[0]"


# -- check_template -------------------------------------------------------------------------------------


def test_an_unknown_template_is_refused_listing_the_known_ids():
    with pytest.raises(OctopodsInputError) as refused:
        check_template(999, list(PARSED.values()), None)

    assert refused.value.field == "template_id"
    text = str(refused.value)
    assert "no template 999" in text
    for template_id, template in PARSED.items():
        assert f"{template_id} ({template.name})" in text


def test_an_unknown_template_among_none_says_none():
    with pytest.raises(OctopodsInputError, match="its templates are: none"):
        check_template(539, [], None)


def test_a_pending_template_is_refused():
    with pytest.raises(OctopodsInputError) as refused:
        check_template(TEMPLATE_PENDING, list(PARSED.values()), None)

    assert refused.value.field == "template_id"
    assert "template 543 (spring_sale) is Pending, not Accepted" in str(refused.value)


def test_a_media_header_without_url_is_refused_naming_the_url_field():
    with pytest.raises(OctopodsInputError) as refused:
        check_template(TEMPLATE_MEDIA_HEADER, list(PARSED.values()), None)

    assert refused.value.field == "header_attachment_url"
    assert "template 542 (receipt_image)" in str(refused.value)
    assert "image" in str(refused.value)


def test_a_url_for_a_template_without_media_header_is_refused():
    with pytest.raises(OctopodsInputError) as refused:
        check_template(TEMPLATE_BODY_ONLY, list(PARSED.values()), "https://example.com/a.png")

    assert refused.value.field == "header_attachment_url"
    assert "template 539 (order_shipped) has no media header" in str(refused.value)


@pytest.mark.parametrize(
    ("template_id", "url"),
    [
        (TEMPLATE_BODY_ONLY, None),
        (TEMPLATE_MEDIA_HEADER, "https://example.com/r.png"),
        (TEMPLATE_SPANISH, None),
    ],
)
def test_an_accepted_template_is_returned(template_id, url):
    assert check_template(template_id, list(PARSED.values()), url) is PARSED[template_id]


@pytest.mark.parametrize("status", ["accepted", " ACCEPTED ", None])
def test_accepted_in_any_case_or_no_status_is_sendable(status):
    template = WhatsAppTemplate(800, "t800", status=status)

    assert check_template(800, [template], None) is template


@pytest.mark.parametrize("status", ["Rejected", "Paused", ""])
def test_any_other_status_is_refused(status):
    with pytest.raises(OctopodsInputError, match="not Accepted"):
        check_template(800, [WhatsAppTemplate(800, "t800", status=status)], None)


# -- attachment_url and template_id_of --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("https://example.com/r.png", "https://example.com/r.png"),
        ("  http://cdn.example.com/a/b.pdf?x=1  ", "http://cdn.example.com/a/b.pdf?x=1"),
        ("HTTPS://Example.com/r.png", "HTTPS://Example.com/r.png"),
    ],
)
def test_an_http_url_is_accepted(value, expected):
    assert attachment_url(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "javascript:alert(1)",
        "JavaScript://example.com/%0aalert(1)",
        "data:image/png;base64,AAAA",
        "file:///etc/passwd",
        "ftp://example.com/r.png",
        "https://",
        "https:///r.png",
        "//example.com/r.png",
        "example.com/r.png",
        "https://example.com/my receipt.png",
        "https://exa mple.com/r.png",
        "https://example.com/\tr.png",
        "https://[::1/r.png",
        "   ",
        123,
        ["https://example.com/r.png"],
    ],
)
def test_anything_else_is_refused_naming_the_field(value):
    with pytest.raises(OctopodsInputError) as refused:
        attachment_url(value)

    assert refused.value.field == "header_attachment_url"
    assert "is not an http(s) URL" in str(refused.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("539", 539), (" 539 ", 539), (539, 539), ("00539", 539), ("\t541\n", 541)],
)
def test_a_template_id_is_an_int_or_digits(value, expected):
    assert template_id_of(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        "0",
        "-1",
        True,
        False,
        "abc",
        5.5,
        539.0,
        "5.5",
        "",
        " ",
        None,
        "539/../1",
        "539?x=1",
        [539],
        {"id": 539},
    ],
)
def test_anything_else_is_refused_naming_template_id(value):
    with pytest.raises(OctopodsInputError) as refused:
        template_id_of(value)

    assert refused.value.field == "template_id"
    assert "pass the template's integer id" in str(refused.value)


def test_template_id_of_names_the_field_it_is_given():
    with pytest.raises(OctopodsInputError, match=r"^Invalid params\.template: "):
        template_id_of("x", field="params.template")


@pytest.mark.parametrize("value", ["²", "9" * 5000], ids=["superscript", "5000-digits"])
def test_digits_int_cannot_read_are_refused_naming_template_id(value):
    """Fixed in 9d82358: str.isdigit() let these reach int(), which raised a raw ValueError."""
    with pytest.raises(OctopodsInputError) as refused:
        template_id_of(value)

    assert refused.value.field == "template_id"


def test_bytes_are_refused_not_read_as_byte_values():
    """Fixed in 9d82358: b'Al' was read as the two variables ['65', '108']."""
    with pytest.raises(OctopodsInputError) as refused:
        message_variables(b"Al", BODY_ONLY)

    assert refused.value.field == "message_variables"


def test_a_key_with_many_templates_is_read_and_a_larger_answer_says_how_to_send_without_it():
    # Regression: the 1 MB cap of the list of sends refused 150 templates of 1,000 Arabic characters
    # (1.1 MB escaped; 200 here), so every send that checks its template failed, with no way out named.
    from airflow_provider_octopods.hooks.octopods import (
        DEFAULT_HOST,
        MAX_TEMPLATES_BYTES,
        Answer,
        ApiSettings,
        read_answer,
        templates_call,
    )

    settings = ApiSettings(DEFAULT_HOST, key="k")
    text = "مرحبا {{1}} " * 90  # 1,000 characters, 4,000 bytes escaped
    many = [_template(900 + i, [{"type": "BODY", "text": text}], template_body=text) for i in range(200)]
    raw = json.dumps(many).encode()
    assert len(raw) > 1024 * 1024

    assert len(read_answer(templates_call(), Answer(200, {}, raw), settings)) == 200
    too_large = {"Content-Length": str(MAX_TEMPLATES_BYTES + 1)}
    with pytest.raises(OctopodsTransientError, match=r"Send with check_template=False not to read them\.$"):
        read_answer(templates_call(), Answer(200, too_large, b""), settings)
