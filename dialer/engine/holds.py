"""What holds dialling without blaming any contact: an API key VoiceDock refuses (401/402), a
campaign whose assistant or number VoiceDock does not know (404), and a clock too far from the
shared database's. The dispatcher and the reconciler ask; the actors that meet the cause say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from dialer.engine.settings import Clock, EngineSettings
from dialer.errors import AccountError

__all__ = ["AccountHold", "Holds"]

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


class Holds:
    """The holds of one daemon, each until a time or until cleared."""

    def __init__(self, settings: EngineSettings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        #: API key name -> its hold: a 401/402 stops that key's creates only
        self._accounts: dict[str, AccountHold] = {}
        self._campaigns: dict[str, datetime] = {}
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
    def hold_campaign(self, name: str, error: str) -> None:
        self._campaigns[name] = self._clock() + self._settings.account_recheck
        log.error("dialer.campaign.held", campaign=name, error=error)

    def campaign_held(self, name: str, now: datetime) -> bool:
        until = self._campaigns.get(name)
        return until is not None and now < until

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
