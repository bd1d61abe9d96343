"""What the engine's actors share, in one explicit object beneath them all.

The dispatcher, the follower and the reconciler each hold a :class:`Shared` and never each
other: what more than one of them needs (the store and the clients, the campaigns, the holds,
the do-not-call view, the zone of a contact, the "someone else took it over" guard, the wake-up
of the dispatcher) lives here, so no actor imports another and the package has no cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from dialer.campaign import Campaign, Contact
from dialer.engine.holds import Holds
from dialer.engine.outages import DatabaseWatch, Reachability
from dialer.engine.settings import Clock, EngineSettings
from dialer.errors import StoreUnavailable
from dialer.policy.gate import ContactFacts, Decision, DialRules, decide
from dialer.policy.reminders import ContactTiming
from dialer.policy.timezones import ZoneResolution, resolve_zone
from dialer.store import AttemptView, Store, TransitionRefused
from dialer.suppression import LiveSuppression
from dialer.voicedock import VoiceDockClient

__all__ = ["STATS", "Shared", "Suppression"]

#: the counters every engine reports from the start (others appear when they first count)
STATS = ("created", "ended", "ambiguous", "adopted", "released", "unknown", "deferred", "skipped")

log = structlog.get_logger("dialer.engine")


class Suppression:
    """The do-not-call numbers of the config and of each campaign, read again when a file
    changes (each dispatch pass): a number added while the daemon runs is not dialled."""

    def __init__(self, settings: EngineSettings, campaigns: Sequence[Campaign]) -> None:
        #: the config's do-not-call files, then each campaign's own: additions apply at once
        self._config = LiveSuppression(
            settings.suppression_files,
            default_region=settings.default_region,
            numbers=settings.suppressed,
            field="dialer.suppression_files",
        )
        self._campaigns = {
            c.name: LiveSuppression(
                c.suppression_files, default_region=c.region, numbers=c.suppressed
            )
            for c in campaigns
        }

    async def refresh(self) -> None:
        for dnc in (self._config, *self._campaigns.values()):
            await dnc.refresh()

    def replace(self, campaign: Campaign) -> None:
        """The campaign's own lists as its edited file names them."""
        self._campaigns[campaign.name] = LiveSuppression(
            campaign.suppression_files, default_region=campaign.region, numbers=campaign.suppressed
        )

    def of(self, campaign: Campaign) -> CampaignSuppression:
        """The numbers a dial of ``campaign`` must not call, as the files were at the last
        refresh."""
        return CampaignSuppression(self._config, self._campaigns.get(campaign.name))


@dataclass(frozen=True)
class CampaignSuppression:
    """``phone in view``: on a do-not-call list of the config or of the campaign."""

    config: LiveSuppression
    campaign: LiveSuppression | None

    def __contains__(self, phone: object) -> bool:
        return phone in self.config.numbers or (
            self.campaign is not None and phone in self.campaign.numbers
        )


@dataclass(eq=False, kw_only=True)
class Shared:
    """One daemon's state that its actors share."""

    store: Store
    #: API key name -> its client; a call is created and followed with its campaign's key
    clients: Mapping[str, VoiceDockClient]
    settings: EngineSettings
    clock: Clock
    #: campaign name -> the campaign as its file was last read (and imported) well
    campaigns: dict[str, Campaign]
    holds: Holds
    #: the database's outages as the loops meet them
    database: DatabaseWatch
    #: the API keys whose VoiceDock does not answer
    reachability: Reachability
    suppression: Suppression
    rng: random.Random
    #: campaign name -> its id in the store, once imported
    campaign_ids: dict[str, int] = field(default_factory=dict)
    #: set when the dispatcher may have something new to do (a line freed, a dial released)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: attempts whose POST this daemon sent (or is about to) and has no answer for yet
    dialing_now: set[int] = field(default_factory=set)
    #: attempts whose call an `ended` status-update showed over while its report (and so its
    #: outcome) is awaited: still in flight in the store, but their lines are free (attempt
    #: id -> campaign id; the dispatcher drops those the store no longer counts live)
    ended_unrecorded: dict[int, int] = field(default_factory=dict)
    #: the dispatcher's last pass filled every free line: contacts wait for one, so an end
    #: seen sooner is a dial sooner (the follower lists more often while the budget allows)
    lines_wanted: bool = False
    #: daemons alive on this database (at the last heartbeat): they share the keys' budgets
    daemons: int = 1
    #: an attempt became final since finish_runs last looked (or it never looked)
    runs_dirty: bool = True
    #: the engine is stopping: a write the database refuses now is left to the next start
    stopping: bool = False
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATS, 0))
    _unserved_keys: set[str] = field(default_factory=set)
    _dial_rules: dict[tuple[str, bool], DialRules] = field(default_factory=dict)

    def count(self, stat: str) -> None:
        self.stats[stat] = self.stats.get(stat, 0) + 1

    def client_for(self, attempt: AttemptView) -> VoiceDockClient | None:
        """The client of the attempt's key; None (said once) when this daemon lacks that key."""
        client = self.clients.get(attempt.api_key_name)
        if client is None and attempt.api_key_name not in self._unserved_keys:
            self._unserved_keys.add(attempt.api_key_name)
            log.warning(
                "dialer.key.not_configured",
                key=attempt.api_key_name,
                campaign=attempt.campaign_name,
                hint="another daemon with this key follows these calls",
            )
        return client

    def resolution(self, campaign: Campaign, attempt: AttemptView) -> ZoneResolution:
        return resolve_zone(
            attempt.phone,
            explicit=attempt.contact.timezone,
            campaign_zone=campaign.timezone,
            unknown_policy=campaign.unknown_timezone,
        )

    def decide(
        self,
        campaign: Campaign,
        attempt: AttemptView,
        now: datetime,
        *,
        recent_calls: Sequence[datetime] = (),
        with_cap: bool = True,
        with_dnc: bool = True,
    ) -> Decision:
        """The dial gate's answer for ``attempt`` at ``now`` (see dialer.policy.gate).

        ``with_cap``: apply the daemon's frequency cap (``recent_calls`` then holds the
        number's calls since at least ``now - cap.period``). ``with_dnc``: apply the
        do-not-call lists."""
        record = attempt.contact
        facts = ContactFacts(
            phone=attempt.phone,
            timezone=record.timezone,
            timing=ContactTiming(
                call_at=record.call_at,
                appointment_at=record.appointment_at,
                deadline=record.deadline,
            ),
            # every column is kept in the variables, the subdivision of its holidays too
            subdivision=_text_or_none(record.variables.get("subdivision")),
        )
        return decide(
            facts,
            self._rules(campaign, with_cap=with_cap),
            now=now,
            suppressed=self.suppression.of(campaign) if with_dnc else frozenset(),
            recent_calls=recent_calls,
        )

    def _rules(self, campaign: Campaign, *, with_cap: bool) -> DialRules:
        key = (campaign.name, with_cap)
        rules = self._dial_rules.get(key)
        if rules is None:
            rules = self._dial_rules[key] = campaign.dial_rules(
                frequency_cap=self.settings.frequency_cap if with_cap else None
            )
        return rules

    def replace_campaign(self, campaign: Campaign) -> None:
        """Its edited file's version of a campaign, from the next decision on."""
        self.campaigns[campaign.name] = campaign
        self.suppression.replace(campaign)
        self.holds.forget_campaign(campaign.name)
        for with_cap in (True, False):
            self._dial_rules.pop((campaign.name, with_cap), None)

    def after_final(self) -> None:
        """An attempt became final: its run may be finished, and its line is free."""
        self.runs_dirty = True
        self.wake.set()

    @contextlib.contextmanager
    def unless_taken_over(self, attempt: AttemptView, stage: str) -> Iterator[None]:
        """A pinned write refused: another daemon resolved this dial first; theirs stands."""
        try:
            yield
        except TransitionRefused:
            log.warning("dialer.attempt.taken_over", attempt_id=attempt.id, stage=stage)

    def settle_dial(self, attempt: AttemptView, stage: str, write: Callable[[], None]) -> None:
        """Write how a dial ended (released, ambiguous, failed), unless the database is away:
        then the row stays `dialing`, which reconciliation settles later (adopt the call it
        finds, or release the contact after the settle delay), so nothing is retried here.
        While an outage is known the write is not even tried: each try may block the event
        loop for the lock wait or a connect timeout."""
        if self.database.down:
            log.warning(
                "dialer.attempt.left_dialing",
                attempt_id=attempt.id,
                stage=stage,
                reason="database unavailable",
            )
            return
        try:
            with self.unless_taken_over(attempt, stage):
                write()
        except StoreUnavailable as exc:
            self.database.noticed(exc, by="dial")
            log.warning(
                "dialer.attempt.left_dialing", attempt_id=attempt.id, stage=stage, error=str(exc)
            )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def contact_of(attempt: AttemptView, campaign: Campaign) -> Contact:
    """The campaign's Contact of a stored attempt (what its call body is rendered from)."""
    record = attempt.contact
    return Contact(
        phone=record.phone,
        name=record.name,
        timezone=record.timezone,
        timing=ContactTiming(
            call_at=record.call_at, appointment_at=record.appointment_at, deadline=record.deadline
        ),
        variables=dict(record.variables),
        source=campaign.source,
        line=record.source_line,
    )
