"""The campaigns a config names: every file loaded and checked together, as one set.

    >>> campaigns = load_all(load_config(Path("config.toml")))   # CampaignError lists every problem
    >>> keys_in_use(campaigns)
    ['default']

Beyond each file's own checks (dialer.campaign.loader): a config that matches no file, a
campaign name used by two files, and a campaign ``key`` the config does not define.
"""

from __future__ import annotations

from collections.abc import Sequence

from dialer.campaign.loader import load_campaign
from dialer.campaign.records import Campaign
from dialer.config import DEFAULT_KEY, Config
from dialer.errors import CampaignError, Problem
from dialer.tomlsource import TomlSource

__all__ = ["check_keys", "keys_in_use", "load_all"]


def load_all(config: Config) -> list[Campaign]:
    """Every campaign the config names; every problem of every file reported in one error."""
    paths = config.campaign_paths()
    if not paths:
        # a daemon with nothing to dial would start and sit there, silently
        raise CampaignError(
            [
                Problem(
                    file=config.source_file,
                    field="dialer.campaigns",
                    message=f"no campaign file matches {config.dialer.campaigns}",
                    accepted="existing files or globs, relative to the config file",
                )
            ]
        )
    problems: list[Problem] = []
    campaigns: list[Campaign] = []
    for path in paths:
        try:
            campaigns.append(load_campaign(path, default_region=config.dialer.default_region))
        except CampaignError as exc:
            problems.extend(exc.problems)
    if problems:
        raise CampaignError(problems)
    names = [c.name for c in campaigns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CampaignError(
            [
                Problem(
                    file=str(c.source),
                    field="name",
                    message=f"campaign name {c.name!r} is used by more than one file",
                )
                for c in campaigns
                if c.name in dupes
            ]
        )
    check_keys(campaigns, config)
    return campaigns


def check_keys(campaigns: Sequence[Campaign], config: Config) -> None:
    """CampaignError unless every campaign's ``key`` is one the config defines."""
    unknown_keys = [c for c in campaigns if c.api_key_name not in config.voicedock.key_names]
    if unknown_keys:
        raise CampaignError([_unknown_key(c, config) for c in unknown_keys])


def _unknown_key(campaign: Campaign, config: Config) -> Problem:
    message = f"no API key {campaign.api_key_name!r} in the config"
    known = ", ".join(sorted(config.voicedock.key_names))
    where = config.source or "the config"
    accepted = f"one of {known} (add [voicedock.keys.{campaign.api_key_name}] to {where})"
    source = TomlSource.read(campaign.source)
    if isinstance(source, Problem):  # the file changed under us since it was loaded
        return Problem(file=campaign.source, field="key", message=message, accepted=accepted)
    return source.problem(("key",), message, accepted=accepted)


def keys_in_use(campaigns: Sequence[Campaign]) -> list[str]:
    """The API key names the campaigns use ("default" when there are none)."""
    return sorted({c.api_key_name for c in campaigns}) or [DEFAULT_KEY]
