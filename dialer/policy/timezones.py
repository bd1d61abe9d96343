"""Which time zone a contact's calling window is judged in.

Order: the contact's explicit ``timezone``; else the zone phonenumbers gives for the number
when it gives exactly one; else, when the number may be in the campaign's country among others
(an Australian mobile in a Sydney, Melbourne or Canberra campaign), the campaign's zone and
every zone it may be in: its window must be open in all of them, as calling-hours rules ask of
an area code that spans zones; else the
campaign's ``unknown_timezone`` policy: "skip" (no zone, the contact is skipped with reason
``unknown_timezone``) or "campaign" (the campaign zone, a risk the campaign author took).

An explicit zone that does not exist is never replaced by a guess: the contact is skipped.
(The campaign loader reports it as an error first; this is the last line of defence.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

__all__ = [
    "UNKNOWN_TIMEZONE",
    "ZoneResolution",
    "calling_code",
    "campaign_zone_applies",
    "candidate_zones",
    "resolve_zone",
    "zone_countries",
    "zone_or_none",
]

ZoneSource = Literal["explicit", "phone", "campaign"]
UnknownPolicy = Literal["skip", "campaign"]
UNKNOWN_TIMEZONE = "unknown_timezone"


@dataclass(frozen=True)
class ZoneResolution:
    #: the zone of the contact's dates and times (an appointment_at), and of the audit log
    zone: ZoneInfo | None
    source: ZoneSource | None
    reason: str | None = None
    #: the other zones the contact may be in: its window must be open in these too
    also: tuple[ZoneInfo, ...] = ()

    @property
    def zones(self) -> tuple[ZoneInfo, ...]:
        """Every zone the calling window is judged in (empty when there is no zone)."""
        return () if self.zone is None else (self.zone, *self.also)


@lru_cache(maxsize=16384)
def candidate_zones(phone_e164: str) -> tuple[str, ...]:
    """The IANA zones phonenumbers associates with the number (empty when it does not know)."""
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = phone_timezones.time_zones_for_number(number)
    return tuple(z for z in zones if z != phone_timezones.UNKNOWN_TIMEZONE)


@lru_cache(maxsize=1)
def _countries_by_zone() -> tuple[dict[str, frozenset[str]], dict[bytes, frozenset[str]]]:
    """tzdata's zone.tab: the countries of each zone, by name and by the zone's compiled file.

    zone.tab names canonical zones only; a link (Australia/Canberra, US/Eastern) is a copy of
    its target's file in tzdata, so its bytes find the target's countries."""
    root = resources.files("tzdata").joinpath("zoneinfo")
    by_name: defaultdict[str, set[str]] = defaultdict(set)
    for line in root.joinpath("zone.tab").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            country, _, name, *_ = line.split("\t")
            by_name[name].add(country)
    by_bytes: defaultdict[bytes, set[str]] = defaultdict(set)
    for name, countries in by_name.items():
        by_bytes[root.joinpath(*name.split("/")).read_bytes()] |= countries
    return (
        {name: frozenset(c) for name, c in by_name.items()},
        {data: frozenset(c) for data, c in by_bytes.items()},
    )


@lru_cache(maxsize=1024)
def zone_countries(name: str) -> frozenset[str]:
    """The ISO 3166 codes of the countries a zone is used in (empty when unknown).

    >>> sorted(zone_countries("Australia/Canberra"))
    ['AU']
    """
    by_name, by_bytes = _countries_by_zone()
    if name in by_name:
        return by_name[name]
    try:
        data = resources.files("tzdata").joinpath("zoneinfo", *name.split("/")).read_bytes()
    except (OSError, ValueError):
        return frozenset()
    return by_bytes.get(data, frozenset())


def calling_code(phone_e164: str) -> int | None:
    """The country calling code an E.164 number starts with (codes are prefix-free)."""
    digits = phone_e164.removeprefix("+")
    for length in (1, 2, 3):
        head = digits[:length]
        if head.isdigit() and int(head) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return int(head)
    return None


def campaign_zone_applies(campaign_zone: str, phone_e164: str, candidates: Collection[str]) -> bool:
    """Whether a number with several candidate zones may be in the campaign's zone: the zone
    is one of them, or it is used in a country the number's calling code serves (a Melbourne
    campaign and an Australian mobile, whose zones phonenumbers lists without Melbourne)."""
    if campaign_zone in candidates:
        return True
    code = calling_code(phone_e164)
    if code is None:
        return False
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    return not zone_countries(campaign_zone).isdisjoint(regions)


def zone_or_none(name: str | None) -> ZoneInfo | None:
    """The zone of that IANA name, or None when the name is empty or unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
        return None


def resolve_zone(
    phone_e164: str,
    *,
    explicit: str | None,
    campaign_zone: str | None,
    unknown_policy: UnknownPolicy = "skip",
) -> ZoneResolution:
    """The zone to judge this contact's window in, and where it came from.

    A US number whose area code spans two zones, or any Australian mobile, is "uncertain":
    with the campaign's zone among its zones, it is judged in all of them (``zones``).

    >>> resolve_zone("+31612345678", explicit=None, campaign_zone=None).source
    'phone'
    """
    if explicit:
        zone = zone_or_none(explicit)
        if zone is None:
            return ZoneResolution(None, None, UNKNOWN_TIMEZONE)
        return ZoneResolution(zone, "explicit")
    candidates = candidate_zones(phone_e164)
    if len(candidates) == 1 and (only := zone_or_none(candidates[0])) is not None:
        return ZoneResolution(only, "phone")
    campaign = zone_or_none(campaign_zone)
    if (
        campaign is not None
        and candidates
        and campaign_zone_applies(campaign.key, phone_e164, candidates)
    ):
        others = (zone_or_none(c) for c in candidates if c != campaign_zone)
        return ZoneResolution(campaign, "campaign", also=tuple(z for z in others if z))
    if unknown_policy == "campaign" and campaign is not None:
        return ZoneResolution(campaign, "campaign")
    return ZoneResolution(None, None, UNKNOWN_TIMEZONE)
