"""Which time zone a contact's calling window is judged in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

ZoneSource = Literal["explicit", "phone", "campaign"]
UnknownPolicy = Literal["skip", "campaign"]


@dataclass(frozen=True)
class ZoneResolution:
    zone: ZoneInfo | None
    source: ZoneSource | None
    reason: str | None = None


def candidate_zones(phone_e164: str) -> tuple[str, ...]:
    """The IANA zones phonenumbers associates with the number (empty when it does not know)."""
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = phone_timezones.time_zones_for_number(number)
    return tuple(z for z in zones if z != phone_timezones.UNKNOWN_TIMEZONE)


def zone_or_none(name: str | None) -> ZoneInfo | None:
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
    """Explicit column, else the number's only zone, else the campaign zone when the number
    could be there, else the campaign's ``unknown_timezone`` policy decides.

    A US number whose area code spans two zones is "uncertain": calling it by the campaign's
    zone is only safe when that zone is one the number may be in.
    """
    zone = zone_or_none(explicit)
    if zone is not None:
        return ZoneResolution(zone, "explicit")
    candidates = candidate_zones(phone_e164)
    if len(candidates) == 1 and (only := zone_or_none(candidates[0])) is not None:
        return ZoneResolution(only, "phone")
    campaign = zone_or_none(campaign_zone)
    if campaign is not None and campaign_zone in candidates:
        return ZoneResolution(campaign, "campaign")
    if unknown_policy == "campaign" and campaign is not None:
        return ZoneResolution(campaign, "campaign")
    return ZoneResolution(None, None, "unknown_timezone")
