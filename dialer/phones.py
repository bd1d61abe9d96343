"""Phone numbers in, E.164 out: the one form the store, the DNC lists and VoiceDock agree on.

    >>> normalize("+31 6 1234 5601")
    '+31612345601'
    >>> normalize("06-12345601", region="NL")
    '+31612345601'

Everything that compares numbers (duplicate contacts, do-not-call lists, the frequency cap, the
reconciler's matching rule) compares these strings, so every input path goes through here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

import phonenumbers
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberDesc,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
)
from phonenumbers import timezone as phone_timezones

_strip_national_prefix: Callable[[str, PhoneMetadata], tuple[str, str, bool]] | None
try:  # phonenumbers' own national-prefix step, so the fast path cannot drift from parse()
    from phonenumbers.phonenumberutil import (
        _maybe_strip_national_prefix_carrier_code as _strip_national_prefix,
    )
except ImportError:  # pragma: no cover - a phonenumbers without it: always the full parse
    _strip_national_prefix = None

__all__ = ["ACCEPTED", "is_region", "mask", "mask_in_text", "normalize", "normalize_with_zones"]

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

# phonenumbers' limits (phonenumberutil._MIN/_MAX_LENGTH_FOR_NSN, _MAX_LENGTH_COUNTRY_CODE)
_MIN_NSN, _MAX_NSN, _MAX_CC = 2, 17, 3


def is_region(code: str) -> bool:
    """True for a two-letter region phonenumbers knows (``NL``, ``US``, ``GB``…)."""
    return code in phonenumbers.SUPPORTED_REGIONS


#: what stands for the hidden digits of a masked number
MASK = "••••"
#: a run of digits long enough to be a phone number, with the spaces, dots, dashes and
#: brackets people write between them
_NUMBER_IN_TEXT = re.compile(r"\+?\(?\d(?:[\s.()\-]*\d){6,}")


def mask(e164: str) -> str:
    """A number with only its country code, first digit and last four shown.

    >>> mask("+31612345601")
    '+31 6 •••• 5601'

    Short numbers show their last two digits; anything not "+<digits>" shows none."""
    if not (e164.startswith("+") and e164[1:].isdigit()):
        return MASK
    digits = e164[1:]
    cc = next(
        (
            digits[:n]
            for n in range(1, _MAX_CC + 1)
            if int(digits[:n]) in COUNTRY_CODE_TO_REGION_CODE
        ),
        None,
    )
    national = digits[len(cc) :] if cc is not None else digits
    if cc is None or len(national) < 7:
        return f"+{cc} {MASK} {national[-2:]}" if cc is not None and len(national) > 2 else MASK
    return f"+{cc} {national[0]} {MASK} {national[-4:]}"


def mask_in_text(text: str) -> str:
    """``text`` with every run of seven digits or more (a number, however written) hidden."""
    return _NUMBER_IN_TEXT.sub(MASK, text)


def normalize(raw: str, *, region: str | None = None) -> str:
    """The E.164 form of ``raw``; ValueError saying what is wrong otherwise.

    ``region`` is only used for numbers written without a leading ``+``. A number that
    phonenumbers can parse but does not consider valid (unassigned ranges, wrong length for the
    range) is refused: dialling it would only earn an ``invalid_number`` outcome and a charge.
    """
    return _checked(raw, region)[0]


def normalize_with_zones(raw: str, *, region: str | None = None) -> tuple[str, tuple[str, ...]]:
    """:func:`normalize`, and the IANA zones phonenumbers gives for the number.

    The zones are exactly ``dialer.policy.timezones.candidate_zones(e164)``; the campaign loader
    wants both for every contact, and this way each number is parsed and typed only once.
    """
    e164, number, kind, exact = _checked(raw, region)
    if not exact:
        # parse() changed the digits (a national prefix, an Italian leading zero…): the zones
        # are those of the E.164 string as candidate_zones reads it, so read it the same way
        from dialer.policy.timezones import candidate_zones

        return e164, candidate_zones(e164)
    country_code = number.country_code or 0  # always set on a parsed number
    if phonenumbers.is_number_type_geographical(kind, country_code):
        # a longest-prefix lookup on the E.164 digits: cheap once the type is known
        return e164, _known(phone_timezones.time_zones_for_geographical_number(number))
    return e164, _country_zones(country_code, number)


def _checked(raw: str, region: str | None) -> tuple[str, PhoneNumber, int, bool]:
    """(E.164, the parsed number, its type, whether E.164 reparses to this very number)."""
    text = raw.strip()
    if not text:
        raise ValueError("is empty")
    number = _parse_plain_e164(text)
    exact = number is not None
    if number is None:
        try:
            number = phonenumbers.parse(text, region)
        except NumberParseException as exc:
            reason = _PARSE_REASONS.get(exc.error_type, "cannot be read as a phone number")
            raise ValueError(f"{raw!r} {reason}") from None
    if number.extension:
        # VoiceDock dials a destination, not an extension: dropping it would call the
        # switchboard, and nobody there asked for this call
        raise ValueError(
            f"{raw!r} has an extension ({number.extension}), which a call cannot dial: "
            "give the contact's direct number"
        )
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        reason = _POSSIBLE_REASONS.get(possible, "is not a possible number")
        raise ValueError(f"{raw!r} {reason}")
    # is_valid_number(n) is number_type(n) != UNKNOWN (both find the region the same way);
    # the type is computed once here because the time zone lookup needs it too
    kind = _number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        where = phonenumbers.region_code_for_number(number) or f"+{number.country_code}"
        raise ValueError(f"{raw!r} is not a valid number in {where} (no such range is assigned)")
    if exact:
        return text, number, kind, True
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    again = _parse_plain_e164(e164)
    return e164, number, kind, again is not None and again == number


def _parse_plain_e164(text: str) -> PhoneNumber | None:
    """``phonenumbers.parse(text)`` for text that is already "+<country code><digits>".

    The full parse (extensions, IDD prefixes, punctuation, vanity letters…) costs ~13 µs; this
    is the same computation for the shape most contact lists use, ~1 µs. It returns None
    whenever parse() would do anything more than split off the country code (a national
    prefix to strip, a leading zero, an unknown country code, odd lengths): the caller then
    runs the full parse, so the result is always parse()'s own.
    """
    digits = text[1:]
    if (
        _strip_national_prefix is None
        or text[:1] != "+"
        or not (digits.isascii() and digits.isdigit())
        or len(digits) <= _MIN_NSN
        or digits[0] == "0"
    ):
        return None
    for size in range(1, _MAX_CC + 1):
        country_code = int(digits[:size])
        if country_code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[size:]
    if not _MIN_NSN <= len(national) <= _MAX_NSN or national[0] == "0":
        return None
    metadata = _metadata(country_code)
    if metadata is None or _strip_national_prefix(national, metadata)[1] != national:
        return None
    return PhoneNumber(country_code=country_code, national_number=int(national))


def _number_type(number: PhoneNumber) -> int:
    """``phonenumbers.number_type(number)``, its patterns compiled once per region.

    The library looks each of up to eleven patterns up in ``re``'s cache (or recompiles it)
    on every call, ~5 us a number; :func:`_type_table` holds them compiled. Same steps and
    order as ``phonenumberutil.number_type`` / ``_number_type_helper`` (a test compares the
    two over every region's example numbers and random digits).
    """
    region = phonenumbers.region_code_for_number(number)
    if region is None:  # no region has this country code: the library finds no metadata
        return PhoneNumberType.UNKNOWN
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(number.country_code or 0, region)
    if metadata is None:
        return PhoneNumberType.UNKNOWN
    nsn = phonenumbers.national_significant_number(number)
    general, special, fixed_line, mobile, same = _type_table(metadata)
    if not _matches(nsn, general):
        return PhoneNumberType.UNKNOWN
    size = len(nsn)
    for kind, lengths, fullmatch in special:  # inlined _matches: the hot loop of an import
        if (not lengths or size in lengths) and fullmatch(nsn) is not None:
            return kind
    if _matches(nsn, fixed_line):
        if same or _matches(nsn, mobile):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return PhoneNumberType.FIXED_LINE
    if not same and _matches(nsn, mobile):
        return PhoneNumberType.MOBILE
    return PhoneNumberType.UNKNOWN


#: a number description: its possible lengths (empty: any) and its pattern's fullmatch
_Desc = tuple[frozenset[int], Callable[[str], object] | None] | None
_Special = tuple[tuple[int, frozenset[int], Callable[[str], object]], ...]
_TypeTable = tuple[_Desc, _Special, _Desc, _Desc, bool]
_TYPE_TABLES: dict[tuple[str | None, int | None], _TypeTable] = {}


def _type_table(metadata: PhoneMetadata) -> _TypeTable:
    key = (metadata.id, metadata.country_code)  # non-geographical entities all have id "001"
    table = _TYPE_TABLES.get(key)
    if table is None:

        def desc(d: PhoneNumberDesc | None) -> _Desc:
            if d is None:
                return None
            pattern = d.national_number_pattern
            return frozenset(d.possible_length), re.compile(pattern).fullmatch if pattern else None

        # the order of _number_type_helper: the first type that matches wins; a description
        # without a pattern never matches, so it is left out
        special = tuple(
            (kind, d[0], d[1])
            for kind, d in (
                (PhoneNumberType.PREMIUM_RATE, desc(metadata.premium_rate)),
                (PhoneNumberType.TOLL_FREE, desc(metadata.toll_free)),
                (PhoneNumberType.SHARED_COST, desc(metadata.shared_cost)),
                (PhoneNumberType.VOIP, desc(metadata.voip)),
                (PhoneNumberType.PERSONAL_NUMBER, desc(metadata.personal_number)),
                (PhoneNumberType.PAGER, desc(metadata.pager)),
                (PhoneNumberType.UAN, desc(metadata.uan)),
                (PhoneNumberType.VOICEMAIL, desc(metadata.voicemail)),
            )
            if d is not None and d[1] is not None
        )
        table = _TYPE_TABLES[key] = (
            desc(metadata.general_desc),
            special,
            desc(metadata.fixed_line),
            desc(metadata.mobile),
            bool(metadata.same_mobile_and_fixed_line_pattern),
        )
    return table


def _matches(nsn: str, desc: _Desc) -> bool:
    # phonenumberutil._is_number_matching_desc: the length first, then the whole pattern
    if desc is None:
        return False
    lengths, fullmatch = desc
    if lengths and len(nsn) not in lengths:
        return False
    return fullmatch is not None and fullmatch(nsn) is not None


@cache
def _metadata(country_code: int) -> PhoneMetadata | None:
    region = phonenumbers.region_code_for_country_code(country_code)
    return PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)


#: country code -> the zones of its non-geographical numbers (they depend on nothing else)
_COUNTRY_ZONES: dict[int, tuple[str, ...]] = {}


def _country_zones(country_code: int, number: PhoneNumber) -> tuple[str, ...]:
    zones = _COUNTRY_ZONES.get(country_code)
    if zones is None:
        zones = _COUNTRY_ZONES[country_code] = _known(phone_timezones.time_zones_for_number(number))
    return zones


def _known(zones: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(z for z in zones if z != phone_timezones.UNKNOWN_TIMEZONE)
