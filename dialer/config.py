"""The daemon's configuration file (``config.toml``), read once at start.

    >>> config = load_config(Path("config.toml"))          # ConfigError lists every problem
    >>> config.dialer.poll_interval
    datetime.timedelta(seconds=5)
    >>> config.api_key()                                    # from $VOICEDOCK_API_KEY, never a file
    >>> config.campaign_paths()                             # globs resolved next to config.toml

Every key, its default and what it accepts is documented in ``config.example.toml``. Relative
paths (campaign globs, DNC files, a SQLite database) are relative to the config file, so the
daemon behaves the same whatever directory it is started from.

Parsing is pydantic (frozen models, unknown keys refused); pydantic's errors are translated here
into :class:`~dialer.errors.Problem` values with the file, the line and the dotted field.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self, cast

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from dialer import phones
from dialer.errors import ConfigError, Problem
from dialer.policy.caps import FrequencyCap
from dialer.policy.durations import DURATION_ACCEPTED, parse_duration
from dialer.policy.outcomes import DEFAULT_OUTCOME_RULES, Outcome, OutcomeRule
from dialer.store.database import postgres_driver_missing, with_psycopg
from dialer.suppression import FileStamp, file_stamp, read_suppression_files
from dialer.tomlsource import TomlSource, did_you_mean, dotted, reason

__all__ = [
    "DEFAULT_KEY",
    "KEY_NAME",
    "ApiKeySettings",
    "CallCapSettings",
    "Config",
    "DatabaseSettings",
    "DialerSettings",
    "KeyLimits",
    "LoggingSettings",
    "MetricsSettings",
    "OutcomeRuleSettings",
    "OutcomesSettings",
    "VoiceDockSettings",
    "WebSettings",
    "WebhookSettings",
    "load_config",
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GLOB_CHARS = re.compile(r"[*?\[]")
#: fields whose value is never repeated in a message (a pasted key instead of a variable name)
_NEVER_ECHO = frozenset({"api_key_env", "secret_env", "token_env"})


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        # TOML has no duration type; a bare 5 would silently mean different units to
        # different readers, so only strings with a unit are accepted.
        raise ValueError(f"needs a unit, as a string: {DURATION_ACCEPTED}")
    return parse_duration(value)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    AfterValidator(_positive),
    Field(description=DURATION_ACCEPTED),
]
Margin = Annotated[
    timedelta,
    BeforeValidator(_duration),
    AfterValidator(_not_negative),
    Field(description=DURATION_ACCEPTED + ', or "0s"'),
]


def _env_name(value: str) -> str:
    # the prefixes of VoiceDock keys and webhook secrets (and the simulator's): a value pasted
    # where its variable's name belongs would otherwise be printed in "variable ... not set"
    if value.startswith(("fl_", "sk_", "sim_", "whsec_")) or not _ENV_NAME.fullmatch(value):
        raise ValueError(
            "must be the NAME of an environment variable, not the key itself "
            "(the key never lives in a file)"
        )
    return value


EnvName = Annotated[
    str,
    AfterValidator(_env_name),
    Field(description="an environment variable name, e.g. VOICEDOCK_API_KEY"),
]


class _Section(BaseModel):
    # strict: TOML is typed, so "10" for a number is a mistake to report, not to coerce
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


KEY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: the key of ``[voicedock]`` itself; a campaign without ``key = ...`` uses it
DEFAULT_KEY = "default"


class ApiKeySettings(_Section):
    """``[voicedock.keys.NAME]``: a further API key (e.g. a child organization's), own budget."""

    api_key_env: EnvName
    requests_per_minute: int | None = Field(
        None, gt=0, description="a whole number > 0; default: [voicedock] requests_per_minute"
    )
    budget_margin: float | None = Field(
        None, ge=0, lt=1, description="a fraction 0 <= x < 1; default: [voicedock] budget_margin"
    )


class KeyLimits(BaseModel):
    """What one named API key may spend: its environment variable and its budget."""

    model_config = ConfigDict(frozen=True)

    name: str
    api_key_env: str
    requests_per_minute: int
    budget_margin: float


class VoiceDockSettings(_Section):
    """``[voicedock]``: where the API is and how hard we may use it."""

    base_url: str = Field(
        "https://api.hmsovereign.com/api/v1",
        description="an http(s) URL ending in the API's base path, e.g. https://api.hmsovereign.com/api/v1",
    )
    api_key_env: EnvName = "VOICEDOCK_API_KEY"
    requests_per_minute: int = Field(
        100, gt=0, description="a whole number > 0 (VoiceDock allows 100)"
    )
    budget_margin: float = Field(
        0.05, ge=0, lt=1, description="a fraction of the budget kept in reserve, 0 <= x < 1"
    )
    connect_timeout: Duration = timedelta(seconds=5)
    read_timeout: Duration = timedelta(seconds=15)
    create_timeout: Duration = timedelta(seconds=30)
    #: further keys by name; ``[voicedock]`` itself is the key named "default"
    keys: dict[str, ApiKeySettings] = Field(default_factory=dict)

    @field_validator("keys")
    @classmethod
    def _key_names(cls, value: dict[str, ApiKeySettings]) -> dict[str, ApiKeySettings]:
        for name in value:
            if name == DEFAULT_KEY:
                raise ValueError(
                    f"{DEFAULT_KEY!r} is the [voicedock] key itself; pick another name"
                )
            if not KEY_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a key name (letters, digits, '_' or '-')")
        return value

    def key(self, name: str) -> KeyLimits:
        """The named key's settings, the unset ones inherited from ``[voicedock]``."""
        if name == DEFAULT_KEY:
            return KeyLimits(
                name=name,
                api_key_env=self.api_key_env,
                requests_per_minute=self.requests_per_minute,
                budget_margin=self.budget_margin,
            )
        own = self.keys[name]
        return KeyLimits(
            name=name,
            api_key_env=own.api_key_env,
            requests_per_minute=own.requests_per_minute or self.requests_per_minute,
            budget_margin=(
                own.budget_margin if own.budget_margin is not None else self.budget_margin
            ),
        )

    @property
    def key_names(self) -> frozenset[str]:
        return frozenset({DEFAULT_KEY, *self.keys})

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError("is not an http(s) URL")
        try:
            # what the client will parse at the first request: a port past 65535 or a broken
            # IPv6 host must not pass validation and then stop the daemon with a traceback
            url = httpx.URL(value)
            port = url.port
        except (httpx.InvalidURL, ValueError):
            raise ValueError("is not an http(s) URL") from None
        if not url.host or (port is not None and not 0 < port < 65536):
            raise ValueError("has no host, or a port outside 1-65535")
        return value.rstrip("/")


class DatabaseSettings(_Section):
    """``[database]``: SQLite for one daemon, PostgreSQL for several."""

    url: str = Field(
        "sqlite:///dialer.db",
        description=(
            "sqlite:///relative/or/absolute.db or postgresql+psycopg://user:pass@host:5432/db"
        ),
    )


class CallCapSettings(_Section):
    """``max_calls_per_contact = { count = 7, days = 7 }``."""

    count: int = Field(gt=0, description="a whole number of calls > 0")
    days: int = Field(gt=0, description="a whole number of days > 0")


class DialerSettings(_Section):
    """``[dialer]``: what to run and the engine's pace."""

    campaigns: list[str] = Field(
        default_factory=lambda: ["campaigns/*.toml"],
        description='paths or globs relative to the config file, e.g. ["campaigns/*.toml"]',
    )
    max_concurrent_calls: int = Field(10, gt=0, description="a whole number > 0")
    poll_interval: Duration = timedelta(seconds=5)
    expected_call_length: Duration = timedelta(seconds=90)
    list_interval: Duration = timedelta(seconds=20)
    list_interval_min: Duration = timedelta(seconds=2)
    lists_per_end: float = Field(1.0, gt=0, description="a number > 0, e.g. 1 or 0.5")
    list_threshold: int = Field(3, gt=0, description="a whole number of calls > 0")
    stuck_after: Duration = timedelta(minutes=30)
    reconcile_margin: Margin = timedelta(minutes=2)
    reconcile_settle: Margin = timedelta(seconds=30)
    default_region: str | None = Field(
        None, description='a two-letter region code such as "NL", "US" or "GB"'
    )
    suppression_files: list[str] = Field(
        default_factory=list,
        description="a list of do-not-call files (.csv with a phone column, or one number a line)",
    )
    max_calls_per_contact: CallCapSettings | None = None
    hold_after_rejections: int = Field(3, gt=0, description="a whole number > 0")

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not phones.is_region(value):
            raise ValueError(f"{value!r} is not a region code phonenumbers knows")
        return value


_MATCH_FIELDS = ("status", "end_reason", "error", "summary")


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression: {exc}") from None
    return value


Regex = Annotated[
    str | None,
    AfterValidator(_regex),
    Field(description="a regular expression (Python re, matched case-insensitively anywhere)"),
]


class OutcomeRuleSettings(_Section):
    """One ``[[outcomes.rules]]`` table: call-object fields (regexes) -> an outcome."""

    outcome: Annotated[Outcome, Field(strict=False, description="one of: " + ", ".join(Outcome))]
    status: Regex = None
    end_reason: Regex = None
    error: Regex = None
    summary: Regex = None

    @model_validator(mode="after")
    def _matches_something(self) -> Self:
        if all(getattr(self, name) is None for name in _MATCH_FIELDS):
            # it would match every call and hide every default rule behind it
            raise ValueError("a rule needs at least one of status, end_reason, error, summary")
        return self

    def rule(self) -> OutcomeRule:
        return OutcomeRule(
            outcome=self.outcome,
            status=self.status,
            end_reason=self.end_reason,
            error=self.error,
            summary=self.summary,
        )


class OutcomesSettings(_Section):
    """``[outcomes]``: how VoiceDock's call objects map onto our outcomes (UNCONFIRMED upstream)."""

    rules: list[OutcomeRuleSettings] = Field(default_factory=list)


class _Listener(_Section):
    """A section with ``listen = "host:port"``: something the daemon serves over HTTP."""

    listen: str = Field(description='"host:port", e.g. "127.0.0.1:8787"')

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("is not host:port")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class WebhookSettings(_Listener):
    """``[webhooks]``: the optional receiver for signed VoiceDock webhooks."""

    listen: str = Field("127.0.0.1:8787", description='"host:port", e.g. "127.0.0.1:8787"')
    secret_env: EnvName = "VOICEDOCK_WEBHOOK_SECRET"  # noqa: S105 - a variable's name, not a secret
    #: how often a list still looks for ends whose webhook never came (polling is the fallback)
    fallback_interval: Duration = timedelta(minutes=5)
    #: after an `ended` status-update, how long the end-of-call-report may take before a GET
    #: reads the call instead (the report carries the summary, transcript and analysis)
    report_grace: Duration = timedelta(seconds=30)

    def secret(self, *, file: Path | str = "environment") -> str:
        """The shared webhook secret, from the environment variable named by ``secret_env``."""
        return _from_env(
            self.secret_env, "webhooks.secret_env", "the webhook signing secret", file=file
        )


class MetricsSettings(_Listener):
    """``[metrics]``: the optional Prometheus endpoint (GET /metrics)."""

    listen: str = Field("127.0.0.1:9464", description='"host:port", e.g. "127.0.0.1:9464"')


LOG_LEVELS = ("debug", "info", "warning", "error")
LogLevel = Literal["debug", "info", "warning", "error"]


class LoggingSettings(_Section):
    """``[logging]``: how much the daemon logs (``$DIALER_LOG_LEVEL`` overrides it)."""

    level: LogLevel | None = Field(
        None,
        description="one of: " + ", ".join(LOG_LEVELS) + " (default: info, warning on a terminal)",
    )


#: the shortest web token accepted: a guessable one would be the page's only lock
WEB_TOKEN_MIN_LENGTH = 16


class WebSettings(_Listener):
    """``[web]``: the optional read-only status page (dialer.web).

    Loopback unless told otherwise: any other address needs ``token_env``, the variable that
    holds the token a person enters once on the page's login form.
    """

    listen: str = Field("127.0.0.1:8788", description='"host:port", e.g. "127.0.0.1:8788"')
    token_env: EnvName | None = None
    #: numbers shown as "+31 6 •••• 5601" on every page and in the CSV download
    mask_phones: bool = False
    #: how often an open page fetches its figures again
    refresh: Duration = timedelta(seconds=5)

    @property
    def loopback(self) -> bool:
        """Whether only this host can reach the address (a name other than localhost: no)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @model_validator(mode="after")
    def _token_off_loopback(self) -> Self:
        if not self.loopback and self.token_env is None:
            raise ValueError(
                f"listening on {self.listen}, beyond this host, needs token_env: the name of "
                "an environment variable holding the token people enter on the login page"
            )
        return self

    def token(self, *, file: Path | str = "environment") -> str | None:
        """The login token from ``token_env``'s variable (None: no login, loopback only)."""
        if self.token_env is None:
            return None
        token = _from_env(self.token_env, "web.token_env", "the status page's token", file=file)
        if len(token) < WEB_TOKEN_MIN_LENGTH:
            raise ConfigError(
                [
                    Problem(
                        file=file,
                        field="web.token_env",
                        message=f"environment variable {self.token_env} holds a token shorter "
                        f"than {WEB_TOKEN_MIN_LENGTH} characters: anyone could guess it",
                        accepted="export "
                        + self.token_env
                        + "=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')",
                    )
                ]
            )
        return token


class Config(_Section):
    """The whole config file. Build with :func:`load_config` or :meth:`Config.default`."""

    voicedock: VoiceDockSettings = Field(default_factory=VoiceDockSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    dialer: DialerSettings = Field(default_factory=DialerSettings)
    outcomes: OutcomesSettings = Field(default_factory=OutcomesSettings)
    webhooks: WebhookSettings | None = None
    metrics: MetricsSettings | None = None
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    web: WebSettings | None = None

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)
    _suppressed: frozenset[str] = PrivateAttr(default_factory=frozenset)
    _suppression_files: tuple[tuple[Path, FileStamp | None], ...] = PrivateAttr(default=())
    #: the environment variables that replaced values of the file (name -> dotted field)
    _from_environment: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def default(cls, base_dir: Path) -> Config:
        """Every default, with relative paths resolved against ``base_dir`` (demo, tests)."""
        config = cls()
        config._base_dir = base_dir.resolve()
        return config

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in the file are resolved against."""
        return self._base_dir

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute (next to the config)."""
        url = _database_url(self.database.url)
        if isinstance(url, str):  # validated at load; Config() built in code may skip that
            raise ConfigError([Problem(file=self._where(), field="database.url", message=url)])
        database = url.database
        if url.drivername.startswith("sqlite"):
            if not database or database == ":memory:" or database.startswith("file:"):
                return self.database.url
            if not Path(database).is_absolute():
                url = url.set(database=str(self.base_dir / database))
        elif url.drivername == "postgresql+psycopg" and self.database.url.startswith(
            "postgresql+psycopg://"
        ):
            return self.database.url  # as written: rendering would re-quote the password
        return url.render_as_string(hide_password=False)

    def api_key(self, name: str = DEFAULT_KEY) -> str:
        """The named VoiceDock API key from the environment; ConfigError naming the variable."""
        field = (
            "voicedock.api_key_env" if name == DEFAULT_KEY else f"voicedock.keys.{name}.api_key_env"
        )
        return _from_env(
            self.voicedock.key(name).api_key_env,
            field,
            "the VoiceDock API key" if name == DEFAULT_KEY else f"the VoiceDock API key {name!r}",
            file=self._where(),
        )

    def webhook_secret(self) -> str | None:
        """The webhook secret when ``[webhooks]`` is configured; ConfigError naming the file."""
        return None if self.webhooks is None else self.webhooks.secret(file=self._where())

    def web_token(self) -> str | None:
        """The status page's login token when ``[web] token_env`` is set; ConfigError naming
        the file when its variable is unset or the token too short."""
        return None if self.web is None else self.web.token(file=self._where())

    def campaign_paths(self) -> list[Path]:
        """Every campaign file the ``dialer.campaigns`` globs match, sorted, each once."""
        found: dict[Path, None] = {}
        for pattern in self.dialer.campaigns:
            for path in _expand(self.base_dir, pattern):
                found.setdefault(path, None)
        return sorted(found)

    def suppression_paths(self) -> list[Path]:
        return [self.base_dir / name for name in self.dialer.suppression_files]

    def suppression_files_read(self) -> tuple[tuple[Path, FileStamp | None], ...]:
        """The config's do-not-call files, each with its stamp from when it was read."""
        return self._suppression_files

    def suppressed_numbers(self) -> frozenset[str]:
        """E.164 numbers from the config's do-not-call files (read when the config was loaded)."""
        return self._suppressed

    def outcome_rules(self) -> tuple[OutcomeRule, ...]:
        """The config's own rules first, then the defaults: the first match wins."""
        return tuple(r.rule() for r in self.outcomes.rules) + tuple(DEFAULT_OUTCOME_RULES)

    def frequency_cap(self) -> FrequencyCap | None:
        cap = self.dialer.max_calls_per_contact
        if cap is None:
            return None
        return FrequencyCap(count=cap.count, period=timedelta(days=cap.days))

    def _where(self) -> Path | str:
        return self._source if self._source is not None else "config"

    @property
    def source_file(self) -> Path | str:
        """The file this config was read from ("config" when it was built in code)."""
        return self._where()


def _from_env(name: str, field: str, what: str, *, file: Path | str = "environment") -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigError(
            [
                Problem(
                    file=file,
                    field=field,
                    message=f"environment variable {name} is not set; it must hold {what}",
                    accepted=f"export {name}=... before starting the dialer",
                )
            ]
        )
    odd = next((i for i, c in enumerate(value) if not "!" <= c <= "~"), None)
    if odd is not None:
        # Never the value itself: it is a secret. An HTTP client would put it in its error.
        raise ConfigError(
            [
                Problem(
                    file=file,
                    field=field,
                    message=f"environment variable {name} has a space, line break or non-ASCII "
                    f"character (at position {odd + 1}); it must hold {what} alone",
                    accepted=f"export {name}=... with the value exactly as issued",
                )
            ]
        )
    return value


def _expand(base_dir: Path, pattern: str) -> list[Path]:
    full = Path(pattern).expanduser()
    if not full.is_absolute():
        full = base_dir / full
    if not _GLOB_CHARS.search(pattern):
        return [full] if full.is_file() else []
    return sorted(Path(p) for p in glob.glob(str(full), recursive=True) if Path(p).is_file())


def _in_memory(url: URL) -> bool:
    if not url.drivername.startswith("sqlite"):
        return False
    database = url.database or ""
    return (
        database == ""
        or ":memory:" in database  # also the URI form, file::memory:?cache=shared
        or "mode=memory" in database
        or url.query.get("mode") == "memory"
    )


def _database_url_problem(text: str) -> str | None:
    """What is wrong with the database URL for a daemon, or None."""
    url = _database_url(text)
    if isinstance(url, str):
        return url
    if _in_memory(url):
        return (
            f"{text!r} is a database in memory: every restart would forget what was dialled "
            "and dial every contact again"
        )
    if url.drivername == "postgresql+psycopg":
        return postgres_driver_missing()
    return None


def _database_url(text: str) -> URL | str:
    """The parsed URL, or what is wrong with it."""
    try:
        url = make_url(text)
    except ArgumentError:
        return f"{text!r} is not a database URL"
    url = with_psycopg(url)
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        return f"unsupported database {url.drivername!r}"
    return url


# ------------------------------------------------------------------------------------------
# loading


#: environment variables that override the file (config.example.toml and `dialer --help`)
DATABASE_URL_ENV = "DIALER_DATABASE_URL"
LOG_LEVEL_ENV = "DIALER_LOG_LEVEL"


#: a new user's first command, before any config exists
_NO_CONFIG = (
    "file not found: make one with `cp config.example.toml {path}` (every key is documented "
    "there, with its default), or name yours with --config PATH or DIALER_CONFIG=PATH"
)


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and check a config file; ConfigError with EVERY problem (file, line, dotted field).

    ``$DIALER_DATABASE_URL`` and ``$DIALER_LOG_LEVEL`` in ``environ`` (default: this process's
    environment) replace ``[database] url`` and ``[logging] level``; a relative SQLite path in
    the variable is relative to the working directory, as a shell user means it."""
    source = TomlSource.read(path)
    if isinstance(source, Problem):
        if source.message == "file not found":
            source = replace(source, message=_NO_CONFIG.format(path=path))
        raise ConfigError([source])
    problems: list[Problem] = []
    try:
        config = Config.model_validate(source.data)
    except ValidationError as exc:
        problems = [_problem(source, error) for error in exc.errors(include_url=False)]
        # Still look at the files named by the sections that are fine on their own, so one
        # run reports everything; a broken section falls back to defaults, which name no files.
        config = Config.model_validate(_valid_sections(source.data))
    config, overridden = _with_environment(config, os.environ if environ is None else environ)
    problems.extend(overridden)
    config._base_dir = path.resolve().parent
    config._source = path
    problems.extend(_check_files(config, source))
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: p.line or 0))
    return config


def _with_environment(config: Config, environ: Mapping[str, str]) -> tuple[Config, list[Problem]]:
    """The config with the values the environment overrides, and what is wrong with them."""
    update: dict[str, BaseModel] = {}
    problems: list[Problem] = []
    fields: dict[str, str] = {}
    url = environ.get(DATABASE_URL_ENV, "").strip()
    if url:
        parsed = _database_url(url)
        if not isinstance(parsed, str) and parsed.drivername.startswith("sqlite"):
            database = parsed.database or ""
            if database and not database.startswith("file:") and not Path(database).is_absolute():
                url = parsed.set(database=str(Path.cwd() / database)).render_as_string(
                    hide_password=False
                )
        update["database"] = DatabaseSettings(url=url)
        fields[DATABASE_URL_ENV] = "database.url"
    level = environ.get(LOG_LEVEL_ENV, "").strip().lower()
    if level in LOG_LEVELS:
        update["logging"] = LoggingSettings(level=cast(LogLevel, level))
    elif level:
        problems.append(
            Problem(
                file="environment",
                field=LOG_LEVEL_ENV,
                message=f"{level!r} is not a log level",
                accepted="one of: " + ", ".join(LOG_LEVELS),
            )
        )
    if update:
        config = config.model_copy(update=update)
    config._from_environment = fields
    return config, problems


def _valid_sections(data: Mapping[str, Any]) -> dict[str, Any]:
    valid: dict[str, Any] = {}
    for name, value in data.items():
        info = Config.model_fields.get(name)
        model = _model_in(info.annotation) if info is not None else None
        if model is None:
            continue
        try:
            model.model_validate(value)
        except ValidationError:
            continue
        valid[name] = value
    return valid


def _check_files(config: Config, source: TomlSource) -> list[Problem]:
    problems: list[Problem] = []
    url_problem = _database_url_problem(config.database.url)
    if url_problem is not None:
        accepted = DatabaseSettings.model_fields["url"].description
        if DATABASE_URL_ENV in config._from_environment:
            problems.append(
                Problem(
                    file="environment",
                    field=DATABASE_URL_ENV,
                    message=url_problem,
                    accepted=accepted,
                )
            )
        else:
            problems.append(source.problem(("database", "url"), url_problem, accepted=accepted))
    for i, pattern in enumerate(config.dialer.campaigns):
        if not _GLOB_CHARS.search(pattern) and not _expand(config.base_dir, pattern):
            problems.append(
                source.problem(
                    ("dialer", "campaigns", i),
                    f"no campaign file {pattern!r}",
                    accepted="an existing file or a glob, relative to the config file",
                )
            )
    existing: list[Path] = []
    for i, (name, full) in enumerate(
        zip(config.dialer.suppression_files, config.suppression_paths(), strict=True)
    ):
        if full.is_file():
            existing.append(full)
        else:
            problems.append(
                source.problem(
                    ("dialer", "suppression_files", i),
                    f"no such file {name!r}",
                    accepted="an existing file, relative to the config file",
                )
            )
    config._suppression_files = tuple((path, file_stamp(path)) for path in existing)
    numbers, issues = read_suppression_files(existing, default_region=config.dialer.default_region)
    problems.extend(issues)
    config._suppressed = numbers
    return problems


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model class that owns the keys at ``loc`` (for "did you mean")."""
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        inner = _model_in(info.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _field_info_accepted(loc: Sequence[str | int]) -> str | None:
    loc = list(loc)
    while loc and isinstance(loc[-1], int):
        loc.pop()  # an element of a list: what the list accepts says it
    if not loc or not isinstance(loc[-1], str):
        return None
    owner = _model_at(loc[:-1])
    if owner is None:
        return None
    info = owner.model_fields.get(loc[-1])
    if info is None:
        return None
    if info.description:
        return info.description
    for meta in info.metadata:
        description = getattr(meta, "description", None)
        if description:
            return str(description)
    return None


def _problem(source: TomlSource, error: Mapping[str, Any]) -> Problem:
    # pydantic puts union branch names into loc (e.g. "CallCapSettings"); they mean nothing to users
    loc = [p for p in error["loc"] if isinstance(p, int) or not p[:1].isupper()]
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        owner = _model_at(loc[:-1])
        known = sorted(owner.model_fields) if owner else []
        if key == "api_key" and loc[:-1] == ["voicedock"]:
            message = (
                "the API key is never read from a file: export it as an environment variable "
                "and name that variable in api_key_env"
            )
        else:
            message = f"unknown key {key!r}" + did_you_mean(key, known)
        return source.problem(
            loc, message, accepted="one of: " + ", ".join(known) if known else None
        )
    if kind == "missing":
        return source.problem(loc, "is required", accepted=_field_info_accepted(loc))
    message = reason(ValueError(str(error["msg"]).removeprefix("Value error, ")))
    if loc and loc[-1] in _NEVER_ECHO:
        pass  # someone may have pasted the secret itself here: never print it back
    elif kind not in ("value_error", "assertion_error") and "input" in error:
        message = f"{message[:1].lower()}{message[1:]} (got {error['input']!r})"
    elif (
        "input" in error
        and not isinstance(error["input"], Mapping)
        and repr(error["input"]) not in message
    ):
        message = f"{error['input']!r}: {message}"
    return source.problem(
        loc, message, accepted=_field_info_accepted(loc) or None, field=dotted(loc) or "(file)"
    )
