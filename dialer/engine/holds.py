"""What holds dialling without blaming any contact: an API key VoiceDock refuses (401/402), a
campaign whose creates VoiceDock refuses for what every contact of it would meet (its
assistant, number or override: dialer.policy.rejections), and a clock too far from the shared
database's. The dispatcher and the reconciler ask; the actors that meet the cause say so.

A campaign's refusals are counted here, per daemon (a streak of the same refusal for different
contacts); the hold they lead to is the campaign's state in the database (``held``), so every
daemon stops dialling it, and only a person releases it (`dialer resume`, an edited file).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from dialer.engine.settings import Clock, EngineSettings
from dialer.errors import AccountError, ProviderError
from dialer.policy.rejections import Rejection, same_error, unanswered_allowed

__all__ = [
    "AccountHold",
    "CampaignRefusal",
    "HoldDue",
    "Holds",
    "describe_rejection",
    "rejection_of",
]

log = structlog.get_logger("dialer.engine")


@dataclass(frozen=True, kw_only=True)
class AccountHold:
    """An API key VoiceDock refuses (401/403: the key; 402: the credits): its creates wait,
    and are tried again at ``until``."""

    key: str
    #: VoiceDock's HTTP status (None when the refusal carried none)
    status: int | None
    #: held since (the first refusal in a row)
    since: datetime
    until: datetime
    #: what VoiceDock said, for the logs
    problem: str


@dataclass(frozen=True, kw_only=True)
class CampaignRefusal:
    """A create of the campaign refused for a reason every contact would meet."""

    attempt_id: int
    contact_id: int
    phone: str
    line: int | None
    rejection: Rejection


@dataclass(frozen=True, kw_only=True)
class HoldDue:
    """Enough refusals in a row: hold the campaign, saying what VoiceDock said first."""

    reason: str
    phone: str
    line: int | None
    #: the attempts the refusals sent back to planned
    attempt_ids: tuple[int, ...]


@dataclass
class _Streak:
    """The same campaign-level refusal, in a row, for these contacts."""

    first: CampaignRefusal
    contacts: set[int] = field(default_factory=set)
    attempt_ids: list[int] = field(default_factory=list)


def rejection_of(exc: ProviderError) -> Rejection:
    """A refused create as dialer.policy.rejections reads it."""
    return Rejection(
        status=exc.status_code, code=exc.code, param=exc.param, message=exc.said or exc.message
    )


def describe_rejection(rejection: Rejection) -> str:
    """``422: Unknown field … (code=…, param=…)``: what a hold says VoiceDock said."""
    extras = [
        f"{name}={value}"
        for name, value in (("code", rejection.code), ("param", rejection.param))
        if value
    ]
    said = rejection.message or "no message"
    return f"{rejection.status}: {said}" + (f" ({', '.join(extras)})" if extras else "")


class Holds:
    """The holds of one daemon, each until a time or until cleared."""

    def __init__(self, settings: EngineSettings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        #: API key name -> its hold: a 401/402 stops that key's creates only
        self._accounts: dict[str, AccountHold] = {}
        #: campaign name -> its refusals in a row (since its last accepted create)
        self._streaks: dict[str, _Streak] = {}
        #: campaigns a create of which was accepted since their last refusal: full width
        self._proven: set[str] = set()
        #: campaign name -> its creates sent (or about to be) and not answered yet
        self._unanswered: Counter[str] = Counter()
        #: how far our clock is from the shared database's, when that is too far
        self.clock_skew: timedelta | None = None

    # ------------------------------------------------------------------ API keys
    def held_keys(self, now: datetime) -> set[str]:
        return {key for key, hold in self._accounts.items() if now < hold.until}

    def key_holds(self) -> list[AccountHold]:
        """Every key held now or waiting to be tried again, by name (a copy: the status page
        reads it)."""
        return sorted(self._accounts.values(), key=lambda hold: hold.key)

    def hold_account(self, key_name: str, exc: AccountError) -> None:
        now = self._clock()
        previous = self._accounts.get(key_name)
        if previous is None:
            log.error(
                "dialer.account.blocked",
                key=key_name,
                error=str(exc),
                kind=type(exc).__name__,
                recheck_in_s=self._settings.account_recheck.total_seconds(),
            )
        self._accounts[key_name] = AccountHold(
            key=key_name,
            status=exc.status_code,
            since=now if previous is None else previous.since,
            until=now + self._settings.account_recheck,
            problem=f"{type(exc).__name__}: {exc}",
        )

    def clear_account(self, key_name: str) -> None:
        cleared = self._accounts.pop(key_name, None)
        if cleared is not None:
            log.info("dialer.account.cleared", key=key_name, was=cleared.problem)

    @property
    def account_holds(self) -> dict[str, str]:
        """API key name -> what is wrong with it, for each key whose creates are held."""
        return {hold.key: hold.problem for hold in self.key_holds()}

    @property
    def account_problem(self) -> str | None:
        """What is wrong with our account(s), or None; a key other than "default" is named."""
        if not self._accounts:
            return None
        return "; ".join(
            hold.problem if hold.key == "default" else f"key {hold.key}: {hold.problem}"
            for hold in self.key_holds()
        )

    # ------------------------------------------------------------------ campaigns
    def may_send(self, campaign: str, threshold: int) -> bool:
        """Whether another create of ``campaign`` may go out now: a campaign not proven yet
        sends no more at once than it has refusals left before its hold."""
        streak = self._streaks.get(campaign)
        allowed = unanswered_allowed(
            threshold, len(streak.contacts) if streak else 0, campaign in self._proven
        )
        return allowed is None or self._unanswered[campaign] < allowed

    def sending(self, campaign: str) -> None:
        self._unanswered[campaign] += 1

    def answered(self, campaign: str) -> None:
        self._unanswered[campaign] -= 1
        if self._unanswered[campaign] <= 0:
            del self._unanswered[campaign]

    def accepted(self, campaign: str) -> bool:
        """A create of the campaign was accepted: whatever was refused before was not for all.
        True when this proves the campaign (it may dial at full width from now on)."""
        self._streaks.pop(campaign, None)
        if campaign in self._proven:
            return False
        self._proven.add(campaign)
        return True

    def refused(self, campaign: str, refusal: CampaignRefusal, threshold: int) -> HoldDue | None:
        """A create refused for what every contact would meet; the hold when it is due (the
        same refusal for ``threshold`` different contacts in a row)."""
        self._proven.discard(campaign)
        streak = self._streaks.get(campaign)
        if streak is None or not same_error(streak.first.rejection, refusal.rejection):
            streak = self._streaks[campaign] = _Streak(first=refusal)
        streak.contacts.add(refusal.contact_id)
        streak.attempt_ids.append(refusal.attempt_id)
        log.warning(
            "dialer.campaign.refused",
            campaign=campaign,
            attempt_id=refusal.attempt_id,
            error=describe_rejection(refusal.rejection),
            in_a_row=len(streak.contacts),
            hold_at=threshold,
        )
        if len(streak.contacts) < threshold:
            return None
        del self._streaks[campaign]
        first = streak.first
        return HoldDue(
            reason=describe_rejection(first.rejection),
            phone=first.phone,
            line=first.line,
            attempt_ids=tuple(streak.attempt_ids),
        )

    def forget_campaign(self, campaign: str) -> None:
        """Its file was edited (or its hold written): count its refusals afresh."""
        self._streaks.pop(campaign, None)
        self._proven.discard(campaign)

    # ------------------------------------------------------------------ the clock
    def judge_clock(self, database_now: datetime | None) -> None:
        """Hold dialling and reconciliation while our clock is off from the shared database's.

        Daemons judge each other by timestamps: a clock half a minute behind makes a live
        daemon look dead to the others, and its fresh dials look old enough to be reconciled
        as absent and dialled again. Polls go on (they judge nothing across daemons)."""
        if database_now is None:
            return
        skew = self._clock() - database_now
        if abs(skew) <= self._settings.max_clock_skew:
            if self.clock_skew is not None:
                log.info("dialer.clock.in_sync", skew_s=round(skew.total_seconds(), 3))
            self.clock_skew = None
            return
        if self.clock_skew is None:
            log.error(
                "dialer.clock.skewed",
                skew_s=round(skew.total_seconds(), 3),
                allowed_s=self._settings.max_clock_skew.total_seconds(),
                hint="synchronise this host's clock (NTP); dialling holds until then",
            )
        self.clock_skew = skew
