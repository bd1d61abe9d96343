"""The campaign files watched while the daemon runs: a good edit imported, a broken one logged.

The list a reminder campaign is fed is exported again by its owner's system every day or hour.
Every ``campaign_watch`` the daemon stats each active campaign's files (its TOML and its
contacts CSV). A change is read once the files have stayed unchanged for ``campaign_settle``
(an export still being written is not taken for the new list), in a thread (a million rows take
seconds), and checked exactly as at start:

- a good list is imported: new keys are planned at once (in the campaign's latest run,
  re-opened), keys gone have what was never dialled cancelled (``removed``, or ``rescheduled``
  when the contact is still listed under another appointment), changed values reach the next
  dials; the campaign's rules (window, retries, pace) are the new file's from then on;
- a file that does not load is logged once with its problems and ignored until it changes
  again: the campaign goes on with its last good list.

Several daemons on one database each read the edit; the import is keyed by the definition's
digest and serialised on the campaign row, so it happens once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from dialer.campaign import Campaign, load_campaign
from dialer.engine.shared import Shared
from dialer.errors import CampaignError, Problem, StoreError
from dialer.store import CampaignState
from dialer.suppression import FileStamp, file_stamp

__all__ = ["CampaignWatch"]

log = structlog.get_logger("dialer.engine")

#: the problems of a broken file that its one log line shows (the rest are counted)
SHOWN_PROBLEMS = 10

Stamps = tuple[tuple[str, FileStamp | None], ...]


@dataclass
class _Seen:
    """What the watch last saw of one campaign's files, and since when."""

    stamps: Stamps
    since: datetime


class CampaignWatch:
    """Reads a campaign again when its files change, and swaps it in when it is good."""

    def __init__(
        self,
        shared: Shared,
        *,
        import_campaign: Callable[[Campaign, datetime], int],
        on_replaced: Callable[[Campaign, Campaign], None] | None = None,
    ) -> None:
        self._shared = shared
        self._import = import_campaign
        #: told of every campaign replaced by its edited file (the schedules follow it)
        self.on_replaced = on_replaced
        self._last_look: datetime | None = None
        #: campaign name -> the stamps of a change seen but not yet read (it may be settling)
        self._changing: dict[str, _Seen] = {}
        #: campaign name -> the stamps of files that did not load (logged once)
        self._broken: dict[str, Stamps] = {}

    async def refresh(self) -> int:
        """Look at the campaigns' files (at most every ``campaign_watch``); returns how many
        campaigns were replaced by their edited files."""
        shared = self._shared
        now = shared.clock()
        interval = shared.settings.campaign_watch
        if self._last_look is not None and now - self._last_look < interval:
            return 0
        self._last_look = now
        replaced = 0
        for campaign in list(shared.campaigns.values()):
            stamps = _stamps_now(campaign)
            if stamps == _stamps_read(campaign) or stamps == self._broken.get(campaign.name):
                self._changing.pop(campaign.name, None)
                continue
            seen = self._changing.get(campaign.name)
            if seen is None or seen.stamps != stamps:
                self._changing[campaign.name] = _Seen(stamps=stamps, since=now)
                continue  # changed since the last look: still being written, perhaps
            if now - seen.since < shared.settings.campaign_settle:
                continue
            if not self._watched(campaign, now):
                continue  # paused, cancelled or expired: read when it is active again
            if await self._reload(campaign, now):
                replaced += 1
        return replaced

    def _watched(self, campaign: Campaign, now: datetime) -> bool:
        if campaign.expires_at is not None and now >= campaign.expires_at:
            return False
        try:
            stored = self._shared.store.campaign(campaign.name)
        except StoreError:
            return False  # the database will be there at a later look
        # a held campaign waits for this very edit (the person's fix), which releases it
        return stored is not None and stored.state in (CampaignState.ACTIVE, CampaignState.HELD)

    async def _reload(self, campaign: Campaign, now: datetime) -> bool:
        shared = self._shared
        region = shared.settings.default_region
        try:
            edited = await asyncio.to_thread(load_campaign, campaign.source, default_region=region)
        except CampaignError as exc:
            self._broken_file(campaign, exc.problems)
            return False
        if _stamps_now(edited) != _stamps_read(edited):
            return False  # written to again while it was read: read it once it settles
        if edited.name != campaign.name:
            problem = Problem(
                file=campaign.source,
                field="name",
                message=f"renamed from {campaign.name!r} while the daemon runs: the edit is "
                "ignored until the daemon is restarted",
            )
            self._broken_file(campaign, [problem])
            return False
        self._import(edited, now)
        self._changing.pop(campaign.name, None)
        self._broken.pop(campaign.name, None)
        shared.replace_campaign(edited)
        log.info(
            "dialer.campaign.reloaded",
            campaign=campaign.name,
            contacts=len(edited.contacts),
            definition_hash=edited.definition_hash[:12],
        )
        if self.on_replaced is not None:
            self.on_replaced(campaign, edited)
        shared.wake.set()
        return True

    def _broken_file(self, campaign: Campaign, problems: list[Problem]) -> None:
        """Logged once per broken version of the files; the last good list goes on."""
        self._broken[campaign.name] = _stamps_now(campaign)
        self._changing.pop(campaign.name, None)
        log.error(
            "dialer.campaign.reload_failed",
            campaign=campaign.name,
            problems=[str(p) for p in problems[:SHOWN_PROBLEMS]],
            more=max(0, len(problems) - SHOWN_PROBLEMS),
            hint="the campaign goes on with its last good list until the file is fixed",
        )


def _stamps_read(campaign: Campaign) -> Stamps:
    """The stamps the campaign's files had when they were read."""
    return tuple((str(path), stamp) for path, stamp in campaign.file_stamps)


def _stamps_now(campaign: Campaign) -> Stamps:
    return tuple((str(path), file_stamp(path)) for path, _ in campaign.file_stamps)
