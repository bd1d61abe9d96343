"""`dialer plan`: who of a campaign is called when, and who is skipped why, without dialling.

Each contact is put to the dial gate (dialer.policy.gate) at the campaign's first run, exactly
as the dispatcher will: a contact the gate closes is listed with its reason; the others are
forecast (dialer.forecast) under the limits the engine applies. Pure apart from reading the
campaign and the config's do-not-call lists.

    >>> rows = plan_campaign(load_campaign(Path("dialer/demo_data/demo.toml")), config, now=now)
    >>> rows[0].first_call, rows[0].skip
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dialer.campaign import Campaign
from dialer.config import DEFAULT_KEY, Config
from dialer.forecast import Capacity, Demand, forecast
from dialer.policy.gate import Close, ContactFacts, contact_window, decide
from dialer.policy.polling import KeyLoad, PollPlan, list_interval
from dialer.policy.reminders import KeyState, timing_bounds
from dialer.policy.timezones import resolve_zone
from dialer.ratelimit import budget_rate
from dialer.store import KeyRecord, Store

__all__ = ["PlannedContact", "StoredKeys", "first_run", "plan_campaign", "plan_capacity"]


@dataclass(frozen=True, kw_only=True)
class StoredKeys:
    """What the database says of a campaign's reminder keys, when it has the campaign."""

    by_key: Mapping[str, KeyRecord] = field(default_factory=dict)
    #: the campaign has fired: a key new to its list is planned at once, not at the next fire
    has_run: bool = False


@dataclass(frozen=True, kw_only=True)
class PlannedContact:
    """One line of `dialer plan`."""

    phone: str
    name: str | None
    line: int
    zone: str | None
    skip: str | None
    first_call: datetime | None
    override: dict[str, Any] | None
    key: str = ""
    #: new, pending, done, closed or removed (KeyState): what the database says of the key
    state: str = KeyState.NEW.value
    #: for a key the database has: its attempt, when it is next due, or how it ended
    detail: str | None = None

    def as_json(self, zone: ZoneInfo | None) -> dict[str, Any]:
        return {
            "key": self.key,
            "state": self.state,
            "detail": self.detail,
            "phone": self.phone,
            "name": self.name,
            "line": self.line,
            "zone": self.zone,
            "skip": self.skip,
            "first_call": _iso(self.first_call),
            "first_call_local": (
                _iso(self.first_call.astimezone(zone))
                if self.first_call is not None and zone is not None
                else None
            ),
            "override": self.override,
        }


def stored_keys(store: Store, name: str) -> StoredKeys | None:
    """The database's view of the campaign's keys; None when it does not have the campaign."""
    record = store.campaign(name)
    if record is None:
        return None
    return StoredKeys(
        by_key={key.key: key for key in store.iter_keys(record.id)},
        has_run=bool(store.runs(record.id)),
    )


def plan_capacity(campaign: Campaign, cfg: Config) -> Capacity:
    """The limits `dialer plan` forecasts ``campaign`` under, as the engine applies them.

    Calibrated against a run on the simulator (tests/test_forecast_vs_run.py):

    - a campaign's own ``max_concurrent_calls`` only ever lowers the daemon's: the dispatcher
      checks both, so a campaign asking for more still gets the daemon's;
    - a line stays taken until the dialer SEES the call end, not until it ends. From
      ``list_threshold`` calls in flight on, ends are seen by one list per interval the key's
      spare budget allows (dialer.policy.polling.list_interval, with every line taken and
      contacts waiting), on average half an interval late: without that term the forecast
      ran ~8 % ahead of a run of 90 s calls with 20 s lists (300 calls forecast before a
      close, 274-279 made). Webhooks (when configured) report an end at once. Below the
      threshold each call is polled tighter around its expected end; that smaller delay is
      not modelled.
    """
    d = cfg.dialer
    max_concurrent = min(
        campaign.max_concurrent_calls or d.max_concurrent_calls, d.max_concurrent_calls
    )
    # the budget of the key the campaign dials with (an unknown key is refused elsewhere)
    limits = cfg.voicedock.key(
        campaign.api_key_name if campaign.api_key_name in cfg.voicedock.key_names else DEFAULT_KEY
    )
    plan = PollPlan(
        first_look=d.poll_interval,
        expected_talk=d.expected_call_length,
        list_interval=d.list_interval,
        list_interval_min=d.list_interval_min,
        lists_per_end=d.lists_per_end,
    )
    load = KeyLoad(
        rate_per_minute=budget_rate(limits.requests_per_minute, limits.budget_margin),
        in_flight=max_concurrent,
        line_wanted=True,
    )
    seen_late = (
        list_interval(plan, load) / 2
        if cfg.webhooks is None and max_concurrent >= d.list_threshold
        else timedelta(0)
    )
    return Capacity(
        max_concurrent=max_concurrent,
        calls_per_minute=campaign.calls_per_minute,
        requests_per_minute=limits.requests_per_minute,
        call_duration=d.expected_call_length + seen_late,
    )


def first_run(campaign: Campaign, *, now: datetime) -> datetime | None:
    """When the campaign's first run at or after ``now`` starts (its ``start_at``, its next
    ``cron`` match, else now); None when its schedule never fires again. A run's attempts
    are due from its fire time on, never before."""
    fire: datetime | None = campaign.trigger(now=now).get_next_fire_time(None, now)
    return None if fire is None else max(now, fire)


def plan_campaign(
    campaign: Campaign, cfg: Config, *, now: datetime, stored: StoredKeys | None = None
) -> list[PlannedContact]:
    """Who is called when, and who is skipped why; pure apart from reading ``campaign``.

    With ``stored`` (the database has the campaign), each contact is shown by its key's state:
    done and closed keys are not called again and pending ones wait for their next attempt
    (once per key), keys gone from the file are listed as removed, and only new keys are
    forecast, from now when the campaign has fired (its running daemon plans them at once),
    else from its next fire. The daemon's frequency cap is left out: a dry run knows no call
    history."""
    known = stored.by_key if stored is not None else {}
    every_run = campaign.repeat == "every_run"
    start = first_run(campaign, now=now)
    if stored is not None and stored.has_run and not every_run:
        start = now
    if start is None:
        return [
            PlannedContact(
                phone=c.phone,
                name=c.name,
                line=c.line,
                zone=None,
                skip="no_run",
                first_call=None,
                override=campaign.render(c)[0],
                key=c.key,
            )
            for c in campaign.contacts
        ]
    now = start  # the forecast begins with the run
    done_when = {o.value for o in campaign.done_when}
    suppressed = cfg.suppressed_numbers() | campaign.suppressed
    rules = campaign.dial_rules()
    skips: dict[str, str] = {}
    zones: dict[str, ZoneInfo] = {}
    demands: list[Demand] = []
    for contact in campaign.contacts:
        resolution = resolve_zone(
            contact.phone,
            explicit=contact.timezone,
            campaign_zone=campaign.timezone,
            unknown_policy=campaign.unknown_timezone,
        )
        if resolution.zone is not None:
            zones[contact.key] = resolution.zone
        record = known.get(contact.key)
        if record is not None and not record.removed and not every_run:
            continue  # its key has its attempts already: shown as the database says
        facts = ContactFacts(
            phone=contact.phone,
            timezone=contact.timezone,
            timing=contact.timing,
            subdivision=contact.variables.get("subdivision"),
        )
        decision = decide(facts, rules, now=now, suppressed=suppressed, resolution=resolution)
        if isinstance(decision, Close):
            skips[contact.key] = decision.explanation
            continue
        assert resolution.zone is not None  # the gate closes a contact without a zone
        not_before, deadline = timing_bounds(
            contact.timing, call_before=campaign.call_before, expires_at=campaign.expires_at
        )
        demands.append(
            Demand(
                key=contact.key,
                not_before=not_before,
                deadline=deadline,
                zone=resolution.zone,
                also=resolution.also,
                # the gate closes a contact without one: its own holidays, if asked
                window=contact_window(facts, rules.window),
            )
        )
    forecasts = forecast(
        demands, window=campaign.window, capacity=plan_capacity(campaign, cfg), now=now
    )
    planned: list[PlannedContact] = []
    listed: set[str] = set()
    for contact in campaign.contacts:
        listed.add(contact.key)
        result = forecasts.get(contact.key)
        skip = skips.get(contact.key) or (result.reason if result is not None else None)
        rendered, _issues = campaign.render(contact)  # issues were refused by validation
        zone = zones.get(contact.key)
        record = known.get(contact.key)
        state, detail, first_call = KeyState.NEW, None, result.first_call if result else None
        if record is not None and not record.removed and not every_run:
            state = record.state(done_when)
            detail = _detail(record, campaign.retry.max_attempts)
            first_call = record.due_at if state is KeyState.PENDING else None
        planned.append(
            PlannedContact(
                phone=contact.phone,
                name=contact.name,
                line=contact.line,
                zone=str(zone) if zone is not None else None,
                skip=skip,
                first_call=first_call,
                override=rendered,
                key=contact.key,
                state=state.value,
                detail=detail,
            )
        )
    for record in known.values():
        if record.key not in listed and not record.removed:
            planned.append(
                PlannedContact(
                    phone=record.phone,
                    name=record.name,
                    line=record.line,
                    zone=None,
                    skip=None,
                    first_call=None,
                    override=None,
                    key=record.key,
                    state=KeyState.REMOVED.value,
                    detail="gone from the file: what was never dialled is cancelled",
                )
            )
    return planned


def _detail(record: KeyRecord, max_attempts: int) -> str | None:
    if record.attempt_no is None:
        return None
    if record.outcome is not None:
        return f"{record.outcome} (attempt {record.attempt_no} of {max_attempts})"
    if record.reason is not None:
        return f"attempt {record.attempt_no} of {max_attempts}, waits: {record.reason}"
    return f"attempt {record.attempt_no} of {max_attempts}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
