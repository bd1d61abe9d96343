"""Which time zone a contact's calling window is judged in.

Order: the contact's explicit ``timezone``; else the zone phonenumbers gives for the number
when it gives exactly one; else, when the number may be in the campaign's zone among others
(an Australian mobile in a Sydney campaign), every zone it may be in: its window must be open
in all of them, as calling-hours rules ask of an area code that spans zones; else the
campaign's ``unknown_timezone`` policy: "skip" (no zone, the contact is skipped with reason
``unknown_timezone``) or "campaign" (the campaign zone, a risk the campaign author took).

An explicit zone that does not exist is never replaced by a guess: the contact is skipped.
(The campaign loader reports it as an error first; this is the last line of defence.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

__all__ = ["UNKNOWN_TIMEZONE", "ZoneResolution", "candidate_zones", "resolve_zone", "zone_or_none"]

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


def zone_or_none(name: str | None) -> ZoneInfo | None:
    """The zone of that IANA name, or None when the name is empty or unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
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
    if campaign is not None and campaign_zone in candidates:
        others = (zone_or_none(c) for c in candidates if c != campaign_zone)
        return ZoneResolution(campaign, "campaign", also=tuple(z for z in others if z))
    if unknown_policy == "campaign" and campaign is not None:
        return ZoneResolution(campaign, "campaign")
    return ZoneResolution(None, None, UNKNOWN_TIMEZONE)
