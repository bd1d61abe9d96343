"""Time zone resolution: explicit, then the number's only zone, then the campaign's."""

from __future__ import annotations

from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from dialer.policy.timezones import (
    UNKNOWN_TIMEZONE,
    candidate_zones,
    resolve_zone,
)

ZONES = sorted(available_timezones())


@pytest.mark.parametrize(
    ("phone", "explicit", "campaign", "policy", "zone", "source"),
    [
        # one zone for the number
        ("+31612345678", None, None, "skip", "Europe/Amsterdam", "phone"),
        ("+12125550123", None, None, "skip", "America/New_York", "phone"),  # Manhattan
        ("+12125550123", None, "America/Chicago", "campaign", "America/New_York", "phone"),
        # the explicit column wins, even over a one-zone number
        ("+31612345678", "Asia/Tokyo", None, "skip", "Asia/Tokyo", "explicit"),
        # an Australian mobile may be in eight zones: the campaign's if it is one of them
        ("+61412345678", None, "Australia/Sydney", "skip", "Australia/Sydney", "campaign"),
        # ...or any zone of its country: an alias, a zone phonenumbers does not list
        ("+61412345678", None, "Australia/Canberra", "skip", "Australia/Canberra", "campaign"),
        ("+61412345678", None, "Australia/Darwin", "skip", "Australia/Darwin", "campaign"),
        ("+61412345678", None, "Europe/Amsterdam", "skip", None, None),
        ("+61412345678", None, "Europe/Amsterdam", "campaign", "Europe/Amsterdam", "campaign"),
        ("+61412345678", None, None, "campaign", None, None),
        ("+61412345678", None, "Not/AZone", "campaign", None, None),
        # a US toll-free number has no geography
        ("+18005550100", None, "America/Denver", "skip", "America/Denver", "campaign"),
        ("+18005550100", None, "Europe/London", "skip", None, None),
        # phonenumbers knows nothing: only the policy can help
        ("+15555550123", None, "America/Chicago", "skip", None, None),
        ("+15555550123", None, "America/Chicago", "campaign", "America/Chicago", "campaign"),
        ("not a number", None, "America/Chicago", "skip", None, None),
        # an explicit zone that does not exist is never replaced by a guess
        ("+31612345678", "Not/AZone", "Europe/Amsterdam", "campaign", None, None),
        ("+31612345678", "", None, "skip", "Europe/Amsterdam", "phone"),  # empty = absent
    ],
)
def test_resolve_zone(
    phone: str,
    explicit: str | None,
    campaign: str | None,
    policy: str,
    zone: str | None,
    source: str | None,
) -> None:
    resolution = resolve_zone(
        phone,
        explicit=explicit,
        campaign_zone=campaign,
        unknown_policy=policy,  # type: ignore[arg-type]
    )
    expected_zone = ZoneInfo(zone) if zone else None
    reason = None if zone else UNKNOWN_TIMEZONE
    assert (resolution.zone, resolution.source, resolution.reason) == (
        expected_zone,
        source,
        reason,
    )


def test_a_number_in_several_zones_is_judged_in_every_one_of_them() -> None:
    """An Australian mobile in a Sydney campaign may be in Perth: 09:00 in Sydney is 06:00
    there, so the window must be open in each zone the number may be in."""
    resolution = resolve_zone(
        "+61412345678", explicit=None, campaign_zone="Australia/Sydney", unknown_policy="skip"
    )
    assert resolution.zone == ZoneInfo("Australia/Sydney")  # its dates and times are read here
    assert {z.key for z in resolution.zones} == set(candidate_zones("+61412345678"))
    assert ZoneInfo("Australia/Perth") in resolution.also
    # one zone, or a zone the author chose at their own risk: no others
    assert resolve_zone("+31612345678", explicit=None, campaign_zone=None).also == ()
    chosen = resolve_zone(
        "+61412345678", explicit=None, campaign_zone="Europe/Amsterdam", unknown_policy="campaign"
    )
    assert chosen.zones == (ZoneInfo("Europe/Amsterdam"),)


def test_candidate_zones() -> None:
    assert candidate_zones("+31612345678") == ("Europe/Amsterdam",)
    assert "Australia/Perth" in candidate_zones("+61412345678")
    assert candidate_zones("+15555550123") == ()  # "Etc/Unknown" is not a zone
    assert candidate_zones("garbage") == ()


def _example_numbers() -> list[str]:
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                out.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return out


EXAMPLES = _example_numbers()


@given(
    phone=st.sampled_from(EXAMPLES),
    explicit=st.none() | st.sampled_from(ZONES),
    campaign=st.none() | st.sampled_from(ZONES),
    policy=st.sampled_from(["skip", "campaign"]),
)
def test_a_zone_is_only_ever_one_the_contact_may_be_in(
    phone: str, explicit: str | None, campaign: str | None, policy: str
) -> None:
    """Across every region's example numbers: explicit, else a candidate of the number, else
    the campaign zone only when the campaign asked for that risk."""
    resolution = resolve_zone(
        phone,
        explicit=explicit,
        campaign_zone=campaign,
        unknown_policy=policy,  # type: ignore[arg-type]
    )
    candidates = candidate_zones(phone)
    if resolution.zone is None:
        assert resolution.reason == UNKNOWN_TIMEZONE and resolution.source is None
        assert explicit is None and len(candidates) != 1
        assert policy == "skip" or campaign is None
        assert campaign is None or campaign not in candidates or policy == "campaign"
        return
    assert resolution.reason is None
    if explicit is not None:
        assert (resolution.source, resolution.zone.key) == ("explicit", explicit)
    elif len(candidates) == 1:
        assert (resolution.source, resolution.zone.key) == ("phone", candidates[0])
    else:
        assert (resolution.source, resolution.zone.key) == ("campaign", campaign)
        judged = {z.key for z in resolution.zones}
        if policy == "skip" or campaign in candidates:
            # the campaign's zone chosen without being asked to: never judged by it alone,
            # the window must be open in every zone the number may be in
            assert judged == {campaign, *candidates}
        else:  # asked for: the campaign's zone, with the number's own when it may be there
            assert judged in ({campaign}, {campaign, *candidates})
        return
    assert resolution.zones == (resolution.zone,)
