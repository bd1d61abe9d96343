"""Phone numbers in, E.164 out: the one form the store, the DNC lists and VoiceDock agree on.

    >>> normalize("+31 6 1234 5601")
    '+31612345601'
    >>> normalize("06-12345601", region="NL")
    '+31612345601'

Everything that compares numbers (duplicate contacts, do-not-call lists, the frequency cap, the
reconciler's matching rule) compares these strings, so every input path goes through here.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

__all__ = ["ACCEPTED", "is_region", "normalize"]

#: shown to users next to every phone number problem
ACCEPTED = (
    "an international number starting with + (e.g. +31612345678), or a national number "
    "(e.g. 06 12345678) when default_region is set"
)

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: (
        "has no (known) country code: start it with + and the country code, or set default_region"
    ),
    NumberParseException.NOT_A_NUMBER: "is not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "is too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "is too short",
    NumberParseException.TOO_LONG: "is too long",
}

_POSSIBLE_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
    ValidationResult.TOO_SHORT: "is too short",
    ValidationResult.TOO_LONG: "is too long",
    ValidationResult.INVALID_LENGTH: "has the wrong number of digits",
}


def is_region(code: str) -> bool:
    """True for a two-letter region phonenumbers knows (``NL``, ``US``, ``GB``…)."""
    return code in phonenumbers.SUPPORTED_REGIONS


def normalize(raw: str, *, region: str | None = None) -> str:
    """The E.164 form of ``raw``; ValueError saying what is wrong otherwise.

    ``region`` is only used for numbers written without a leading ``+``. A number that
    phonenumbers can parse but does not consider valid (unassigned ranges, wrong length for the
    range) is refused: dialling it would only earn an ``invalid_number`` outcome and a charge.
    """
    text = raw.strip()
    if not text:
        raise ValueError("is empty")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        reason = _PARSE_REASONS.get(exc.error_type, "cannot be read as a phone number")
        raise ValueError(f"{raw!r} {reason}") from None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        reason = _POSSIBLE_REASONS.get(possible, "is not a possible number")
        raise ValueError(f"{raw!r} {reason}")
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_number(number) or f"+{number.country_code}"
        raise ValueError(f"{raw!r} is not a valid number in {where} (no such range is assigned)")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
