"""
WhatsApp templates: what a template expects, and the variables of a send checked against it.

Octopods relays Meta's approved templates. A template's placeholders (``{{1}}``, ``{{2}}``) sit
in sections: ``header``, ``body``, ``footer`` and ``buttons`` (a URL button's ``url``). A send
gives their values in ``message_variables``: an array for a template whose placeholders are all
in the body, else an object with one array per section, every section present. A person writes
more forms than that; :func:`message_variables` accepts them and returns the documented shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_octopods.exceptions import OctopodsInputError
from airflow_provider_octopods.models import malformed_answer, parse_literal

#: The sections of a template, in Octopods' order, and the component types that hold them.
SECTIONS = ("header", "body", "footer", "buttons")
_SECTION_OF = {
    "HEADER": "header",
    "BODY": "body",
    "FOOTER": "footer",
    "BUTTONS": "buttons",
    "BUTTON": "buttons",
}
#: Header formats that need a ``header_attachment_url``.
MEDIA_FORMATS = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})
_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")
FIELD = "message_variables"


def _placeholders(value: Any) -> set[str]:
    """The placeholder numbers in any text of ``value`` (a component, its buttons, their URLs)."""
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, Mapping):
        return {n for key, item in value.items() if key != "type" for n in _placeholders(item)}
    if isinstance(value, list):
        return {n for item in value for n in _placeholders(item)}
    return set()


@dataclass(frozen=True)
class WhatsAppTemplate:
    """
    One template of ``GET /api/v1/whatsapp/templates``.

    :param template_id: Octopods' id of the template.
    :param name: its ``template_name``.
    :param status: its ``template_status`` (``Accepted`` ...), None where the answer has none.
    :param language: its language, if the answer says.
    :param placeholders: how many placeholders each section holds (every section present).
    :param media: the header's media format (``IMAGE``, ``VIDEO``, ``DOCUMENT``), or None.
    """

    template_id: int
    name: str
    status: str | None = None
    language: str | None = None
    placeholders: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(SECTIONS, 0))
    media: str | None = None

    @classmethod
    def from_api(cls, item: Any) -> WhatsAppTemplate | None:
        """
        Parse one template, or return None for an item without an integer ``template_id``.

        :param item: one element of the answer.
        """
        if not isinstance(item, dict):
            return None
        template_id = item.get("template_id")
        if isinstance(template_id, str) and template_id.isdigit():
            template_id = int(template_id)
        if isinstance(template_id, bool) or not isinstance(template_id, int):
            return None
        components = item.get("template_components")
        if not isinstance(components, list) or not components:
            components = [{"type": "BODY", "text": item.get("template_body")}]
        counts = dict.fromkeys(SECTIONS, 0)
        media = None
        for component in components:
            if not isinstance(component, dict):
                continue
            kind = str(component.get("type", "")).upper()
            section = _SECTION_OF.get(kind)
            buttons = component.get("buttons")
            if section == "buttons" and isinstance(buttons, list):  # each button has its own {{1}}
                counts[section] += sum(len(_placeholders(button)) for button in buttons)
            elif section:
                counts[section] += len(_placeholders(component))
            form = str(component.get("format", "")).upper()
            if kind == "HEADER" and form in MEDIA_FORMATS:
                media = form
        status, language = item.get("template_status"), item.get("language") or item.get("lang")
        return cls(
            template_id=template_id,
            name=str(item.get("template_name") or template_id),
            status=str(status) if status is not None else None,
            language=str(language) if language else None,
            placeholders=counts,
            media=media,
        )

    @property
    def body_only(self) -> bool:
        """Whether every placeholder is in the body (the variables are then one array)."""
        return not any(self.placeholders[s] for s in SECTIONS if s != "body")

    def expects(self) -> str:
        """What the template expects, in words: ``body 2, header 1`` or ``no variables``."""
        counts = [f"{s} {n}" for s, n in self.placeholders.items() if n]
        return ", ".join(counts) or "no variables"


def parse_templates(payload: Any) -> list[WhatsAppTemplate]:
    """
    Return the templates of a list answer (an array; an object holding ``templates`` too).

    :param payload: the decoded JSON body.
    """
    items = payload.get("templates") if isinstance(payload, dict) else payload
    if not isinstance(items, list):  # never "no templates": that would blame the user's template_id
        raise malformed_answer(f"no list of templates, got {type(items).__name__}", answer="templates")
    parsed = (WhatsAppTemplate.from_api(item) for item in items)
    return [template for template in parsed if template is not None]


def template_id_of(value: Any, field: str = "template_id") -> int:
    """Return a template id as a positive int (an int or a string of digits), or raise naming ``field``."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 18:
        text = int(text)
    if isinstance(text, bool) or not isinstance(text, int) or text <= 0:
        raise OctopodsInputError(
            field, f"got {value!r:.40}; pass the template's integer id (template_id in Octopods, e.g. 539)."
        )
    return text


def _value(value: Any, where: str) -> str:
    """One variable: text (a number becomes its digits); never empty, never a structure."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise OctopodsInputError(where, f"got {type(value).__name__} {value!r:.40}; give text or a number.")
    text = str(value)
    if not text.strip():
        raise OctopodsInputError(where, "is empty; WhatsApp refuses an empty variable. Give its text.")
    return text


def _values(values: Any, where: str) -> list[str]:
    if isinstance(values, (str, int, float)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes, bytearray)):
        raise OctopodsInputError(where, f"got {type(values).__name__}; give a list of texts.")
    return [_value(v, f"{where}[{i}]") for i, v in enumerate(values)]


def _sections(variables: Mapping[Any, Any]) -> dict[str, list[str]]:
    """Read a dict of sections (``{"body": [...]}``) or of numbered placeholders (``{"1": ...}``)."""
    keys: dict[str, Any] = {}
    given: dict[str, Any] = {}  # each name's key as the user wrote it, for the error
    for key, value in variables.items():
        name = str(key).strip().lower()
        name = str(int(name)) if name.isascii() and name.isdigit() and len(name) < 5 else name
        if name in keys:
            raise OctopodsInputError(
                FIELD, f"the keys {given[name]!r} and {key!r} both name {name!r}; give each one once."
            )
        keys[name], given[name] = value, key
    if keys and all(k.isascii() and k.isdigit() and len(k) < 5 for k in keys):
        numbered = {int(k): v for k, v in keys.items()}
        if sorted(numbered) != list(range(1, len(keys) + 1)):
            raise OctopodsInputError(
                FIELD,
                f"numbered placeholders must run 1, 2, ... without a gap; got {sorted(keys)}.",
            )
        return {"body": [_value(numbered[n], f"{FIELD}['{n}']") for n in sorted(numbered)]}
    unknown = sorted(set(keys) - set(SECTIONS))
    if unknown:
        raise OctopodsInputError(
            FIELD,
            f"{unknown} are not sections; give a list, a dict of sections ({', '.join(SECTIONS)}) "
            'or a dict of numbered placeholders ({"1": "Alex", "2": "1234"}).',
        )
    return {s: _values(keys[s], f"{FIELD}['{s}']") for s in SECTIONS if s in keys}


def message_variables(
    variables: Any, template: WhatsAppTemplate | None
) -> list[str] | dict[str, list[str]] | None:
    """
    Return ``message_variables`` in the shape Octopods documents, checked against ``template``.

    Accepts a list (or one text) for the body, a dict of sections, a dict keyed ``"1"``,
    ``"2"``, or any of them rendered as text by Jinja. Returns an array for a template whose
    placeholders are all in the body, an object with every section for any other, None when
    there are none. Without ``template`` (``check_template=False``) the shape follows the input.

    :param variables: the variables as the user gave them.
    :param template: the template, or None when it was not read.
    """
    if isinstance(variables, str) and variables.strip()[:1] in "[{":
        variables = parse_literal(variables.strip())
    if variables is None or (
        isinstance(variables, (Sequence, Mapping)) and not isinstance(variables, str) and not variables
    ):
        sections: dict[str, list[str]] = {}
    elif isinstance(variables, Mapping):
        sections = _sections(variables)
    else:
        sections = {"body": _values(variables, FIELD)}
    if template is None:
        if not sections:
            return None
        return sections["body"] if set(sections) == {"body"} else {s: sections.get(s, []) for s in SECTIONS}
    for section, expected in template.placeholders.items():
        given = len(sections.get(section, []))
        if given != expected:
            raise OctopodsInputError(
                FIELD,
                f"template {template.template_id} ({template.name}) expects {template.expects()}; "
                f"got {given} for the {section}. Give one value per placeholder of each section.",
            )
    if not any(template.placeholders.values()):
        return None
    if template.body_only:
        return sections["body"]
    return {s: sections.get(s, []) for s in SECTIONS}


def check_template(
    template_id: int, templates: Sequence[WhatsAppTemplate], header_attachment_url: str | None
) -> WhatsAppTemplate:
    """
    Return the template to send, or refuse it (not found, not Accepted, a media header without a URL).

    :param template_id: the template asked for.
    :param templates: the templates of the connection's key.
    :param header_attachment_url: the media header's URL, if given.
    """
    template = next((t for t in templates if t.template_id == template_id), None)
    if template is None:
        known = ", ".join(f"{t.template_id} ({t.name})" for t in templates[:10]) or "none"
        raise OctopodsInputError(
            "template_id",
            f"the key of this connection has no template {template_id}; its templates are: {known}. "
            "Check the id in Octopods, and that the connection holds this WhatsApp channel's key.",
        )
    if template.status is not None and template.status.strip().lower() != "accepted":
        raise OctopodsInputError(
            "template_id",
            f"template {template_id} ({template.name}) is {template.status}, not Accepted; only accepted "
            "templates can be sent. Wait for its approval in Octopods, or send another.",
        )
    if template.media and not header_attachment_url:
        raise OctopodsInputError(
            "header_attachment_url",
            f"template {template_id} ({template.name}) has a media header ({template.media.lower()}); give the "
            f"public URL of the {template.media.lower()} to send in it.",
        )
    if header_attachment_url and not template.media:
        raise OctopodsInputError(
            "header_attachment_url",
            f"template {template_id} ({template.name}) has no media header; leave header_attachment_url unset.",
        )
    return template


def attachment_url(value: Any) -> str | None:
    """Return ``header_attachment_url`` if it is a public http(s) URL (or None), else raise naming it."""
    if value is None or value == "":
        return None
    text = value.strip() if isinstance(value, str) else ""
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise OctopodsInputError(
            "header_attachment_url",
            f"{value!r:.60} is not an http(s) URL; give the public URL of the header's media.",
        )
    return text
