"""The campaigns a config names: every file loaded and checked together, as one set.

    >>> campaigns = load_all(load_config(Path("config.toml")))   # CampaignError lists every problem
    >>> keys_in_use(campaigns)
    ['default']

Beyond each file's own checks (dialer.campaign.loader): a config that matches no file, a
campaign name used by two files, and a campaign ``key`` the config does not define.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dialer.campaign.loader import _name_line, load_campaign
from dialer.campaign.records import Campaign
from dialer.config import DEFAULT_KEY, Config
from dialer.errors import CampaignError, Problem
from dialer.tomlsource import TomlSource

__all__ = ["FileCheck", "campaign_paths", "check_files", "check_keys", "keys_in_use", "load_all"]


def load_all(config: Config) -> list[Campaign]:
    """Every campaign the config names; every problem of every file reported in one error."""
    paths = campaign_paths(config)
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


def campaign_paths(config: Config) -> list[Path]:
    """The files the config's ``[dialer] campaigns`` match; CampaignError when none does."""
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
    return paths


@dataclass(frozen=True, kw_only=True)
class FileCheck:
    """One campaign file checked: its campaign, or None and its problems."""

    path: Path
    campaign: Campaign | None
    problems: tuple[Problem, ...] = ()


def check_files(
    paths: Sequence[Path], *, config: Config | None, default_region: str | None
) -> list[FileCheck]:
    """Each file checked on its own, then against the others (a campaign name used twice is
    the later file's problem) and against the config's API keys when there is a config; a
    file's problems never hide that another file is fine (``dialer validate a.toml b.toml``)."""
    checks: list[FileCheck] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            campaign = load_campaign(path, default_region=default_region)
        except CampaignError as exc:
            checks.append(FileCheck(path=path, campaign=None, problems=tuple(exc.problems)))
            continue
        first = seen.setdefault(campaign.name, path)
        if first != path:
            used = Problem(
                file=path,
                field="name",
                line=_name_line(path),
                message=f"campaign name {campaign.name!r} is already used by {first}",
                accepted="a name unique across all campaign files",
            )
            checks.append(FileCheck(path=path, campaign=None, problems=(used,)))
        elif config is not None and campaign.api_key_name not in config.voicedock.key_names:
            problem = _unknown_key(campaign, config)
            checks.append(FileCheck(path=path, campaign=None, problems=(problem,)))
        else:
            checks.append(FileCheck(path=path, campaign=campaign))
    return checks


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
