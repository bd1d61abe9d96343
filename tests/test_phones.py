"""dialer.phones: the import's fast paths give exactly what phonenumbers itself gives.

The campaign loader checks every number of a contacts CSV (a million for the issue 6 import),
so phones.py parses "+<digits>" without phonenumbers' general parser, types a number with its
patterns compiled once, and looks the time zones up with the type it already has. Each of those
is held here to the library's own answer over every region's example numbers and random digits.
"""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumberFormat, ValidationResult

from dialer import phones
from dialer.phones import _number_type, _parse_plain_e164
from dialer.policy.timezones import candidate_zones


def _examples() -> list[phonenumbers.PhoneNumber]:
    found = []
    for country_code, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        for region in regions:
            if region == "001":
                example = phonenumbers.example_number_for_non_geo_entity(country_code)
                found += [example] if example is not None else []
                continue
            for kind in range(12):
                example = phonenumbers.example_number_for_type(region, kind)
                found += [example] if example is not None else []
    return found


EXAMPLES = _examples()


def _random_e164(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    codes = sorted(COUNTRY_CODE_TO_REGION_CODE)
    texts = []
    for _ in range(count):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 15)))
        texts.append(f"+{rng.choice(codes)}{digits}")
        texts.append(f"+{digits}")
    return texts


def _reference_normalize(raw: str, region: str | None) -> str | None:
    """What phones.normalize did before the fast paths (None: refused)."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException:
        return None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def test_the_plain_e164_parse_is_phonenumbers_parse() -> None:
    texts = [phonenumbers.format_number(n, PhoneNumberFormat.E164) for n in EXAMPLES]
    texts += _random_e164(3000, seed=6)
    taken = 0
    for text in texts:
        fast = _parse_plain_e164(text)
        if fast is None:
            continue  # the caller falls back to phonenumbers.parse
        taken += 1
        assert fast == phonenumbers.parse(text, None), text
    assert taken > len(texts) // 3  # the fast path is the common path


def test_number_type_is_phonenumbers_number_type() -> None:
    rng = random.Random(7)
    numbers = list(EXAMPLES)
    for country_code in COUNTRY_CODE_TO_REGION_CODE:
        for _ in range(20):
            national = rng.randint(1, 10 ** rng.randint(2, 15))
            numbers.append(
                phonenumbers.PhoneNumber(country_code=country_code, national_number=national)
            )
    for number in numbers:
        assert _number_type(number) == phonenumbers.number_type(number), number


@pytest.mark.parametrize(
    "style", [PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.NATIONAL]
)
def test_normalize_and_zones_match_the_library_for_every_example(style: int) -> None:
    for number in EXAMPLES:
        region = phonenumbers.region_code_for_number(number)
        text = phonenumbers.format_number(number, style)
        expected = _reference_normalize(text, region)
        if expected is None:
            with pytest.raises(ValueError, match=r"\+|is too|is not|country code"):
                phones.normalize_with_zones(text, region=region)
            continue
        e164, zones = phones.normalize_with_zones(text, region=region)
        assert e164 == expected == phones.normalize(text, region=region), text
        assert zones == candidate_zones(e164), text


def test_random_numbers_are_refused_or_accepted_as_before() -> None:
    for text in _random_e164(2000, seed=8):
        expected = _reference_normalize(text, None)
        try:
            got: str | None = phones.normalize(text)
        except ValueError:
            got = None
        assert got == expected, text


def test_refusals_keep_their_messages() -> None:
    with pytest.raises(ValueError, match="is empty"):
        phones.normalize("  ")
    with pytest.raises(ValueError, match="has no \\(known\\) country code"):
        phones.normalize("+999123")
    with pytest.raises(ValueError, match="is too short"):
        phones.normalize("+1555")
    with pytest.raises(ValueError, match="is not a valid number in NL"):
        phones.normalize("+31012345678")
