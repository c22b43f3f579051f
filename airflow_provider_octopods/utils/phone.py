"""
Phone numbers, parsed and checked by Google's libphonenumber (the ``phonenumbers`` module).

The library is imported when a number is checked (at send time), never when a DAG file imports
the operator, sensor or notifier: parsing a DAG file must stay cheap. The distribution installed
is ``phonenumberslite`` (the same parser and metadata, without the geocoding, carrier and
time-zone data this provider does not use).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from airflow_provider_octopods.exceptions import OctopodsInputError

if TYPE_CHECKING:
    import phonenumbers

log = logging.getLogger(__name__)

#: What ``strict_numbers`` accepts as "off" (any other value but "on" ones is refused: fail closed).
_OFF = frozenset({"false", "0", "no", "off"})
_ON = frozenset({"true", "1", "yes", "on"})
_REGION = re.compile(r"[A-Za-z]{2}")
#: What a written phone number may hold: ASCII digits, a leading "+", and the separators people
#: type. Anything else (letters, control characters, "?", full-width digits) is refused before
#: the library, which would otherwise pick a number out of any text.
_WRITTEN = re.compile(r"\+?[0-9 ().\-/]+")
_EXAMPLE = "+12015550123"


def parse_strict(value: Any, field: str = "strict_numbers") -> bool:
    """
    Read a ``strict_numbers`` setting: only an explicit "off" turns the check off.

    :param value: ``None`` (the default: strict), a bool, or a string such as ``"false"``.
    :param field: the setting's name, for the error message.
    """
    if value is None or value is True:
        return True
    if value is False:
        return False
    text = str(value).strip().lower()
    if text in _OFF:
        return False
    if text in _ON or text == "":
        return True
    raise OctopodsInputError(field, f"{value!r:.20} is not a boolean; give true (the default) or false.")


def parse_region(value: Any, field: str = "default_region") -> str | None:
    """
    Return a two-letter region code in upper case (``"GB"``), or None when not set.

    Whether the library knows the region is checked when a number is parsed.

    :param value: ``None``, ``""`` or an ISO 3166-1 alpha-2 code, e.g. ``"us"`` or ``"GB"``.
    :param field: the setting's name, for the error message.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or not _REGION.fullmatch(value.strip()):
        raise OctopodsInputError(
            field, f"{value!r:.20} is not a region code; give two letters such as 'US', 'GB' or 'DE'."
        )
    return value.strip().upper()


def _known_region(region: str | None, field: str) -> str | None:
    import phonenumbers

    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise OctopodsInputError(field, f"'{region}' is not a region libphonenumber knows (e.g. 'US', 'GB').")
    return region


def _parse(text: str, region: str | None, field: str) -> phonenumbers.PhoneNumber:
    """Parse with the library; turn its parse errors into sentences."""
    import phonenumbers
    from phonenumbers import NumberParseException

    try:
        return phonenumbers.parse(text, region)
    except NumberParseException as err:
        shown = repr(text) if len(text) <= 40 else repr(text[:40] + "...")
        if err.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            if region is None and not text.startswith("+"):
                problem = (
                    "has no country code; write it in international form, with '+' "
                    f"(e.g. {_EXAMPLE}), or set default_region (e.g. 'US') to accept national numbers"
                )
            else:
                problem = "has an invalid country code; write '+', the country code and the number"
        elif err.error_type == NumberParseException.NOT_A_NUMBER:
            problem = f"is not a phone number; write '+', the country code and the number (e.g. {_EXAMPLE})"
        elif err.error_type == NumberParseException.TOO_LONG:
            problem = "is too long to be a phone number"
        else:  # TOO_SHORT_NSN, TOO_SHORT_AFTER_IDD
            problem = "is too short to be a phone number"
        raise OctopodsInputError(field, f"{shown} {problem}.") from None


def _impossible(number: phonenumbers.PhoneNumber, shown: str, field: str) -> OctopodsInputError | None:
    """The error for a number whose length cannot be right, or None when it is possible."""
    import phonenumbers
    from phonenumbers import ValidationResult

    reason = phonenumbers.is_possible_number_with_reason(number)
    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    where = f"+{number.country_code} ({region})" if region != "ZZ" else f"+{number.country_code}"
    problems = {
        ValidationResult.INVALID_COUNTRY_CODE: f"has an invalid country code (+{number.country_code})",
        ValidationResult.TOO_SHORT: f"is too short for {where}",
        ValidationResult.TOO_LONG: f"is too long for {where}",
        ValidationResult.INVALID_LENGTH: f"has a length no number of {where} has",
        ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "is a local number only; add the area code",
    }
    if reason == ValidationResult.IS_POSSIBLE:
        return None
    return OctopodsInputError(field, f"{shown} {problems.get(reason, 'is not a possible number')}.")


def _not_valid(number: phonenumbers.PhoneNumber) -> str:
    """Say why a number of a possible length is not valid, with an example of its region."""
    import phonenumbers

    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    shown = (
        f" (a valid one looks like {phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)})"
        if example
        else ""
    )
    return f"is not a valid number for {region}: libphonenumber knows no such number there{shown}"


def normalize_phone(
    value: Any,
    field: str = "destination_phone",
    *,
    default_region: str | None = None,
    strict: bool = True,
) -> str:
    """
    Return ``value`` as an E.164 number (``+442079460958``), or raise :class:`OctopodsInputError`.

    Surrounding whitespace (a Variable's trailing newline) is ignored; spaces, dots, dashes and
    parentheses inside are accepted, as is a national number when ``default_region`` is set. A
    number of a possible length in a range no operator was assigned (the library's "possible but
    not valid", e.g. the fictional ``+1 555 123 4567``) is refused when ``strict``, else let
    through with a warning.

    :param value: the phone number.
    :param field: the argument's name, for the error message.
    :param default_region: the region of national numbers (``"US"``, ``"GB"``, ...), if any.
    :param strict: refuse numbers the library does not call valid.
    """
    import phonenumbers

    if not isinstance(value, str) or not value.strip():
        raise OctopodsInputError(
            field, f"got {value!r:.40}; pass the recipient's phone number, e.g. '{_EXAMPLE}'."
        )
    text = value.strip()
    shown = repr(text) if len(text) <= 40 else repr(text[:40] + "...")
    if not _WRITTEN.fullmatch(text):
        raise OctopodsInputError(
            field,
            f"{shown} holds characters a phone number does not; write '+', the country code and the "
            f"number, with digits, spaces, dots, dashes or parentheses only (e.g. {_EXAMPLE}).",
        )
    number = _parse(text, _known_region(parse_region(default_region), "default_region"), field)
    error = _impossible(number, shown, field)
    if error is not None:
        raise error
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not phonenumbers.is_valid_number(number):
        problem = f"{shown} {_not_valid(number)}"
        if strict:
            raise OctopodsInputError(
                field, f"{problem}. Check the number, or pass strict_numbers=False to send anyway."
            )
        log.warning("%s; sending to %s anyway (strict_numbers is off).", problem, e164)
    return e164
