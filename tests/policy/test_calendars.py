"""A contact's own holiday calendar: its number's country, and its subdivision when it has one."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.policy.calendars import contact_calendar, phone_country


@pytest.mark.parametrize(
    ("phone", "subdivision", "calendar"),
    [
        ("+4915112345601", None, "DE"),  # a German mobile
        ("+4915112345601", "", "DE"),  # an empty cell: no subdivision
        ("+4915112345601", "BY", "DE-BY"),  # Bavaria
        ("+4915112345601", "by", "DE-BY"),  # case does not matter
        ("+4915112345601", " DE-BY ", "DE-BY"),  # ISO 3166-2, whole
        ("+12125550199", "CA", "US-CA"),  # a New York number, its person in California
        ("+14165550199", None, "CA"),  # +1 416: Toronto, Canada
        ("+14165550199", "QC", "CA-QC"),
        ("+447624123456", None, "IM"),  # +44 7624: the Isle of Man, its own calendar
        ("+77012345678", None, "KZ"),  # +7 70: Kazakhstan, not Russia
        ("+31612345678", "midden", "NL-Midden"),  # spelled as the holidays package spells it
        ("+80012345678", None, None),  # international freephone: no country
        ("+80012345678", "BY", None),  # ... so no subdivision of one either
        ("+24762889", None, None),  # Ascension Island: the holidays package has no calendar
    ],
)
def test_the_calendar_of_a_contact(phone: str, subdivision: str | None, calendar: str) -> None:
    assert contact_calendar(phone, subdivision) == calendar


@pytest.mark.parametrize(
    ("phone", "subdivision"),
    [
        ("+4915112345601", "XX"),
        ("+4915112345601", "CA"),  # California is no German state
        ("+4915112345601", "US-CA"),  # nor as ISO 3166-2
        ("+4915112345601", "Bavaria"),  # the code, not the name
        ("+12125550199", "BY"),
    ],
)
def test_a_subdivision_the_country_lacks_is_refused_naming_the_accepted_ones(
    phone: str, subdivision: str
) -> None:
    country = phone_country(phone)
    with pytest.raises(ValueError, match=f"not a subdivision of {country}") as caught:
        contact_calendar(phone, subdivision)
    assert repr(subdivision) in str(caught.value)
    assert ("BY, HB" if country == "DE" else "CA, CO") in str(caught.value)


# every region's example numbers, of each type phonenumbers has one for
EXAMPLES = sorted(
    phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    for region in phonenumbers.SUPPORTED_REGIONS
    for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE)
    if (number := phonenumbers.example_number_for_type(region, kind)) is not None
)


def test_the_country_is_the_region_phonenumbers_gives_every_example_number() -> None:
    # the shortcut for a calling code of one country must agree with the full parse
    assert len(EXAMPLES) > 400
    for phone in EXAMPLES:
        expected = phonenumbers.region_code_for_number(phonenumbers.parse(phone))
        assert phone_country(phone) == expected, phone


@given(
    st.sampled_from(sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)), st.integers(0, 10**9)
)
def test_a_number_of_no_country_has_no_calendar(code: int, digits: int) -> None:
    assert contact_calendar(f"+{code}{digits}", "BY") is None
