"""Whose public holidays close a contact's calling window when the campaign says
``[window] holidays = ["contact"]``: the contact's own.

The country is phonenumbers' region of the contact's number (a number written nationally was
read in the campaign's ``default_region`` when it was loaded, so its E.164 form carries the
country); the subdivision (a state, a province: ``"BY"``, ``"CA"``) is the contact's own
``subdivision`` value, when it has one. The calendars are those of the ``holidays`` package,
as for the campaign's fixed regions (:func:`dialer.policy.windows.parse_holiday_region`).

    >>> contact_calendar("+4915112345601", "by")
    'DE-BY'
    >>> contact_calendar("+12125550199", None)
    'US'
    >>> contact_calendar("+80012345678", None) is None  # an international freephone number
    True
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from dialer.policy.timezones import calling_code
from dialer.policy.windows import holiday_subdivisions, shown_subdivisions

__all__ = ["UNKNOWN_SUBDIVISION", "contact_calendar", "phone_country"]

#: the reason a contact whose subdivision its country's calendar lacks is skipped with
UNKNOWN_SUBDIVISION = "unknown_subdivision"


@lru_cache(maxsize=16384)
def phone_country(phone_e164: str) -> str | None:
    """The ISO 3166 code of the number's country (``"DE"``); None for a number of no
    country (``+800`` freephone, ``+881`` satellite) or one phonenumbers cannot place."""
    code = calling_code(phone_e164)
    if code is None:
        return None
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    if len(regions) == 1:
        # what region_code_for_number answers for a code of one region, without a parse
        region: str | None = regions[0]
    else:
        # a code several countries share (+1, +7, +44): the digits after it tell which
        try:
            number = phonenumbers.parse(phone_e164, None)
        except phonenumbers.NumberParseException:
            return None
        region = phonenumbers.region_code_for_number(number)
    return None if region in (None, phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY) else region


@lru_cache(maxsize=16384)
def contact_calendar(phone_e164: str, subdivision: str | None = None) -> str | None:
    """The holiday region of a contact: its number's country, with its subdivision when it
    has one (``"DE"``, ``"DE-BY"``, ``"US-CA"``, spelled as the holidays package spells them);
    None when the package has no calendar for the country (the contact then has no public
    holidays).

    ``subdivision`` may also be written whole, ISO 3166-2 style (``"DE-BY"``). ValueError,
    saying what is accepted, when it is not one of the country's subdivisions.
    """
    country = phone_country(phone_e164)
    known = None if country is None else holiday_subdivisions(country)
    if country is None or known is None:
        return None
    wanted = (subdivision or "").strip().upper()
    if not wanted:
        return country
    spelled = known.get(wanted.removeprefix(f"{country}-"))
    if spelled is None:
        raise ValueError(
            f"{subdivision!r} is not a subdivision of {country} (the country of {phone_e164}) "
            f"that the holidays package knows; {country}'s: {shown_subdivisions(known)}"
        )
    return f"{country}-{spelled}"
