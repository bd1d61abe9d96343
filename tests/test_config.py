"""The daemon's config file: defaults, paths, secrets from the environment, located errors."""

from __future__ import annotations

import re
import sys
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from dialer.config import Config, KeyLimits, WebSettings, load_config
from dialer.errors import ConfigError, Problem, StoreError
from dialer.policy.caps import FrequencyCap
from dialer.policy.outcomes import DEFAULT_OUTCOME_RULES, Outcome, OutcomeRule
from dialer.store import Store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def write(directory: Path, text: str, name: str = "config.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def located(problems: list[Problem]) -> set[tuple[int | None, str]]:
    return {(p.line, p.field) for p in problems}


# ---------------------------------------------------------------------------- defaults


def test_empty_file_means_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.voicedock.base_url == "https://api.hmsovereign.com/api/v1"
    assert config.voicedock.api_key_env == "VOICEDOCK_API_KEY"
    assert config.voicedock.requests_per_minute == 100
    assert config.voicedock.budget_margin == 0.05
    assert config.voicedock.connect_timeout == timedelta(seconds=5)
    assert config.voicedock.read_timeout == timedelta(seconds=15)
    assert config.voicedock.create_timeout == timedelta(seconds=30)
    assert config.dialer.campaigns == ["campaigns/*.toml"]
    assert config.dialer.max_concurrent_calls == 10
    assert config.dialer.poll_interval == timedelta(seconds=5)
    assert config.dialer.stuck_after == timedelta(minutes=30)
    assert config.dialer.reconcile_margin == timedelta(minutes=2)
    assert config.dialer.reconcile_settle == timedelta(seconds=30)
    assert config.dialer.default_region is None
    assert config.frequency_cap() is None
    assert config.suppressed_numbers() == frozenset()
    assert config.outcome_rules() == tuple(DEFAULT_OUTCOME_RULES)
    assert config.webhooks is None
    assert config.base_dir == tmp_path.resolve()
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'dialer.db'}"
    assert load_config(write(tmp_path, "")).model_dump() == Config.default(tmp_path).model_dump()


def test_the_example_documents_every_key_with_its_default() -> None:
    config = load_config(EXAMPLE)
    default = Config.default(ROOT)
    # the one deliberate difference: the example names its campaign (see its comment)
    assert config.dialer.campaigns == ["campaigns/appointment-reminders.toml"]
    assert config.model_copy(update={"dialer": default.dialer}).model_dump() == default.model_dump()
    text = EXAMPLE.read_text(encoding="utf-8")
    # every key of every section appears in the example, set or in a comment
    documented = set(re.findall(r"^#?\s*\[?\[?([a-z_.]+)\]?\]?\s*=?", text, re.MULTILINE))
    for section, model in (
        ("voicedock", config.voicedock),
        ("database", config.database),
        ("dialer", config.dialer),
        ("outcomes", config.outcomes),
        ("logging", config.logging),
    ):
        assert f"[{section}]" in text
        for key in type(model).model_fields:
            assert key in documented, f"{section}.{key} is not in config.example.toml"
    for key in ("listen", "secret_env", "max_calls_per_contact", "default_region"):
        assert key in documented
    assert "[web]" in text
    for key in WebSettings.model_fields:
        assert key in documented, f"web.{key} is not in config.example.toml"
    assert config.campaign_paths() == [ROOT / "campaigns" / "appointment-reminders.toml"]


def test_example_sections_parse_when_uncommented(tmp_path: Path) -> None:
    """The commented-out examples in config.example.toml are valid config themselves."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    opened = []
    for line in lines:
        stripped = line.lstrip("# ")
        if re.match(
            r"(default_region|max_calls_per_contact|\[\[outcomes\.rules\]\]|outcome|"
            r"status|error|\[webhooks\]|\[metrics\]|listen|secret_env|\[voicedock\.keys\.clinic_north\]|"
            r"api_key_env|requests_per_minute|budget_margin|\[logging\]|level|"
            r"\[web\]|token_env|mask_phones|refresh) ",
            stripped + " ",
        ):
            opened.append(stripped)
        elif stripped.startswith("rules = []"):
            continue
        else:
            opened.append(line)
    config = load_config(
        write(
            tmp_path,
            "\n".join(opened).replace(
                'campaigns = ["campaigns/appointment-reminders.toml"]', "campaigns = []"
            ),
        )
    )
    assert config.dialer.default_region == "NL"
    assert config.frequency_cap() == FrequencyCap(count=7, period=timedelta(days=7))
    assert config.outcome_rules()[0] == OutcomeRule(
        outcome=Outcome("no_answer"), status="^failed$", error="timeout|no.?answer"
    )
    assert config.webhooks is not None
    assert (config.webhooks.host, config.webhooks.port) == ("127.0.0.1", 8787)
    assert config.metrics is not None
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9464)
    assert config.logging.level == "info"
    assert config.web == WebSettings(
        listen="127.0.0.1:8788",
        token_env="DIALER_WEB_TOKEN",
        mask_phones=False,
        refresh=timedelta(seconds=5),
    )
    assert config.voicedock.key("clinic_north") == KeyLimits(
        name="clinic_north",
        api_key_env="VOICEDOCK_KEY_CLINIC_NORTH",
        requests_per_minute=100,
        budget_margin=0.05,
    )


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    with pytest.raises(ValidationError):
        config.dialer.max_concurrent_calls = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------- values


def test_values_are_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[voicedock]
base_url = "http://127.0.0.1:9999/api/v1/"
requests_per_minute = 60
budget_margin = 0
create_timeout = "1m30s"

[dialer]
poll_interval = "1.5s"
reconcile_settle = "0s"
default_region = "GB"
max_calls_per_contact = { count = 3, days = 2 }

[[outcomes.rules]]
outcome = "busy"
end_reason = "line.?engaged"

[webhooks]
listen = "[::1]:9000"
""",
    )
    config = load_config(path)
    assert config.voicedock.base_url == "http://127.0.0.1:9999/api/v1"
    assert config.voicedock.requests_per_minute == 60
    assert config.voicedock.budget_margin == 0.0
    assert config.voicedock.create_timeout == timedelta(seconds=90)
    assert config.dialer.poll_interval == timedelta(seconds=1.5)
    assert config.dialer.reconcile_settle == timedelta(0)
    assert config.dialer.default_region == "GB"
    assert config.frequency_cap() == FrequencyCap(count=3, period=timedelta(days=2))
    rules = config.outcome_rules()
    assert rules[0] == OutcomeRule(outcome=Outcome("busy"), end_reason="line.?engaged")
    assert rules[1:] == tuple(DEFAULT_OUTCOME_RULES)
    assert config.webhooks is not None
    assert (config.webhooks.host, config.webhooks.port) == ("::1", 9000)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///dialer.db", "sqlite:///{base}/dialer.db"),
        ("sqlite:///data/x.db", "sqlite:///{base}/data/x.db"),
        ("sqlite:////var/lib/dialer.db", "sqlite:////var/lib/dialer.db"),
        ("postgresql://u:p@db:5432/dialer", "postgresql+psycopg://u:p@db:5432/dialer"),
        ("postgresql+psycopg://u@127.0.0.1/x", "postgresql+psycopg://u@127.0.0.1/x"),
    ],
)
def test_database_url(tmp_path: Path, url: str, expected: str) -> None:
    config = load_config(write(tmp_path, f'[database]\nurl = "{url}"\n'))
    assert config.database_url == expected.format(base=tmp_path.resolve())


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///file:x?mode=memory&uri=true",
        "sqlite:///file::memory:?cache=shared&uri=true",
    ],
)
def test_a_database_in_memory_is_refused(tmp_path: Path, url: str) -> None:
    # every restart would forget what was dialled, and dial every contact again
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'[database]\nurl = "{url}"\n'))
    (problem,) = info.value.problems
    assert (problem.field, problem.line) == ("database.url", 2)
    assert "in memory" in problem.message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999/api/v1", "http://[::1/api", "http://:80/api/v1"]
)
def test_a_base_url_the_client_cannot_use_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'[voicedock]\nbase_url = "{url}"\n'))
    (problem,) = info.value.problems
    assert (problem.field, problem.line) == ("voicedock.base_url", 2)


def test_a_pasted_webhook_secret_is_refused_as_a_variable_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[webhooks]\nsecret_env = "whsec_PASTEDSECRET"\n'))
    assert "PASTEDSECRET" not in str(info.value)


def test_paths_are_relative_to_the_config_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc" / "campaigns" / "sub").mkdir(parents=True)
    for name in ("b.toml", "a.toml", "sub/c.toml", "notes.txt"):
        (tmp_path / "etc" / "campaigns" / name).write_text("", encoding="utf-8")
    extra = tmp_path / "elsewhere.toml"
    extra.write_text("", encoding="utf-8")
    path = write(
        tmp_path / "etc",
        f'[dialer]\ncampaigns = ["campaigns/*.toml", "campaigns/a.toml", '
        f'"campaigns/**/*.toml", "{extra}"]\n',
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    base = tmp_path / "etc" / "campaigns"
    assert config.campaign_paths() == sorted(
        [base / "a.toml", base / "b.toml", base / "sub" / "c.toml", extra]
    )


def test_suppression_files_are_read_at_load(tmp_path: Path) -> None:
    (tmp_path / "dnc.csv").write_text("Phone,reason\n020 7946 0101,asked\n", encoding="utf-8")
    (tmp_path / "dnc.txt").write_text("+31612345601\n# note\n\n", encoding="utf-8")
    path = write(
        tmp_path,
        '[dialer]\ndefault_region = "GB"\nsuppression_files = ["dnc.csv", "dnc.txt"]\n',
    )
    assert load_config(path).suppressed_numbers() == frozenset({"+442079460101", "+31612345601"})


# ---------------------------------------------------------------------------- secrets


def test_api_key_comes_from_the_named_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write(tmp_path, '[voicedock]\napi_key_env = "CLINIC_KEY"\n'))
    monkeypatch.setenv("CLINIC_KEY", "fl_live_abc")
    assert config.api_key() == "fl_live_abc"
    monkeypatch.delenv("CLINIC_KEY")
    with pytest.raises(ConfigError) as info:
        config.api_key()
    (problem,) = info.value.problems
    assert problem.field == "voicedock.api_key_env"
    assert "CLINIC_KEY is not set" in problem.message
    monkeypatch.setenv("CLINIC_KEY", "  ")
    with pytest.raises(ConfigError):
        config.api_key()


def test_named_keys_have_their_own_variable_and_inherit_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(
        write(
            tmp_path,
            "[voicedock]\nrequests_per_minute = 90\nbudget_margin = 0.1\n"
            '[voicedock.keys.north]\napi_key_env = "NORTH_KEY"\n'
            '[voicedock.keys.south-2]\napi_key_env = "SOUTH_KEY"\nrequests_per_minute = 40\n'
            "budget_margin = 0.0\n",
        )
    )
    assert config.voicedock.key_names == {"default", "north", "south-2"}
    assert config.voicedock.key("default") == KeyLimits(
        name="default", api_key_env="VOICEDOCK_API_KEY", requests_per_minute=90, budget_margin=0.1
    )
    assert config.voicedock.key("north") == KeyLimits(
        name="north", api_key_env="NORTH_KEY", requests_per_minute=90, budget_margin=0.1
    )
    assert config.voicedock.key("south-2") == KeyLimits(
        name="south-2", api_key_env="SOUTH_KEY", requests_per_minute=40, budget_margin=0.0
    )
    monkeypatch.setenv("NORTH_KEY", "fl_live_north")
    assert config.api_key("north") == "fl_live_north"
    monkeypatch.delenv("SOUTH_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        config.api_key("south-2")
    (problem,) = info.value.problems
    assert problem.field == "voicedock.keys.south-2.api_key_env"
    assert "SOUTH_KEY is not set" in problem.message


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ('[voicedock.keys.default]\napi_key_env = "X"\n', "voicedock.keys"),
        ('[voicedock.keys."a b"]\napi_key_env = "X"\n', "voicedock.keys"),
        ("[voicedock.keys.north]\nrequests_per_minute = 10\n", "voicedock.keys.north.api_key_env"),
        (
            '[voicedock.keys.north]\napi_key_env = "fl_live_PASTED"\n',
            "voicedock.keys.north.api_key_env",
        ),
        ('[voicedock.keys.north]\napi_key_env = "K"\nrpm = 10\n', "voicedock.keys.north.rpm"),
    ],
)
def test_bad_named_keys_are_located(tmp_path: Path, table: str, field: str) -> None:
    problems = problems_of(write(tmp_path, table))
    assert [p.field for p in problems] == [field]
    assert problems[0].line is not None
    assert "PASTED" not in str(problems[0])


def test_webhook_secret_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write(tmp_path, '[webhooks]\nsecret_env = "HOOK_SECRET"\n'))
    assert config.webhooks is not None
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="HOOK_SECRET is not set"):
        config.webhooks.secret()
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    assert config.webhooks.secret() == "s3cret"


def test_the_status_page_listens_on_loopback_by_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[web]\n"))
    assert config.web is not None
    assert (config.web.host, config.web.port, config.web.loopback) == ("127.0.0.1", 8788, True)
    assert (config.web.token_env, config.web.mask_phones) == (None, False)
    assert config.web.refresh == timedelta(seconds=5)
    assert config.web_token() is None
    assert load_config(write(tmp_path, "")).web is None


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:8788", "127.8.0.1:80", "localhost:8788", "[::1]:8788"]
)
def test_loopback_addresses_need_no_token(tmp_path: Path, listen: str) -> None:
    config = load_config(write(tmp_path, f'[web]\nlisten = "{listen}"\n'))
    assert config.web is not None and config.web.loopback


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:8788", "[::]:8788", "192.168.1.20:8788", "status.example.org:443"]
)
def test_a_bind_beyond_loopback_without_a_token_is_refused(tmp_path: Path, listen: str) -> None:
    path = write(tmp_path, f'[dialer]\ncampaigns = []\n\n[web]\nlisten = "{listen}"\n')
    (problem,) = problems_of(path)
    assert (problem.line, problem.field) == (4, "web")
    assert "needs token_env" in problem.message
    with_token = write(
        tmp_path, f'[web]\nlisten = "{listen}"\ntoken_env = "DIALER_WEB_TOKEN"\n', "ok.toml"
    )
    config = load_config(with_token)
    assert config.web is not None and not config.web.loopback


def test_the_web_token_comes_from_the_environment_and_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(
        write(tmp_path, '[web]\nlisten = "0.0.0.0:8788"\ntoken_env = "PAGE_TOKEN"\n')
    )
    monkeypatch.delenv("PAGE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="PAGE_TOKEN is not set"):
        config.web_token()
    monkeypatch.setenv("PAGE_TOKEN", "tooShortToken1")
    with pytest.raises(ConfigError) as info:
        config.web_token()
    assert "shorter than 16" in str(info.value) and "tooShortToken1" not in str(info.value)
    monkeypatch.setenv("PAGE_TOKEN", "a-long-enough-token-for-the-page")
    assert config.web_token() == "a-long-enough-token-for-the-page"


def test_a_token_pasted_where_its_variable_belongs_is_refused_unshown(tmp_path: Path) -> None:
    path = write(tmp_path, '[web]\ntoken_env = "hunter2 is my page token"\n')
    (problem,) = problems_of(path)
    assert problem.field == "web.token_env"
    assert "hunter2" not in str(problem)


@pytest.mark.parametrize(
    "value", ["fl_live_SECRET1\nfl_live_SECRET2", "fl_live SECRET", "fl_live_SECRÉT"]
)
def test_a_key_an_http_header_cannot_carry_is_refused_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """httpx would refuse the header later, with the whole key in its error message (and so
    in the logs and the attempt's stored error)."""
    config = load_config(write(tmp_path, '[voicedock]\napi_key_env = "CLINIC_KEY"\n'))
    monkeypatch.setenv("CLINIC_KEY", value)
    with pytest.raises(ConfigError) as info:
        config.api_key()
    (problem,) = info.value.problems
    assert problem.field == "voicedock.api_key_env"
    assert "CLINIC_KEY" in problem.message
    assert "SECR" not in str(info.value)


def test_a_key_pasted_into_the_file_is_refused_and_never_repeated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[voicedock]\napi_key = "fl_live_TOPSECRET1"\napi_key_env = "fl_live_TOPSECRET2"\n',
    )
    problems = problems_of(path)
    assert located(problems) == {(2, "voicedock.api_key"), (3, "voicedock.api_key_env")}
    assert "never read from a file" in problems[0].message + problems[1].message
    assert "TOPSECRET" not in "\n".join(str(p) for p in problems)


# ---------------------------------------------------------------------------- errors


def test_every_problem_is_reported_with_line_and_dotted_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """[voicedock]
requests_per_minute = "100"
budget_margin = 1.5
read_timeout = 15

[dialer]
poll_interval = "5 seconds"
stuck_after = "0s"
max_concurrent_calls = 0
defualt_region = "NL"

[[outcomes.rules]]
outcome = "no_anwser"
error = "("

[[outcomes.rules]]
outcome = "busy"

[dialler]
x = 1
""",
    )
    problems = problems_of(path)
    assert located(problems) == {
        (2, "voicedock.requests_per_minute"),
        (3, "voicedock.budget_margin"),
        (4, "voicedock.read_timeout"),
        (7, "dialer.poll_interval"),
        (8, "dialer.stuck_after"),
        (9, "dialer.max_concurrent_calls"),
        (10, "dialer.defualt_region"),
        (13, "outcomes.rules[0].outcome"),
        (14, "outcomes.rules[0].error"),
        (16, "outcomes.rules[1]"),
        (19, "dialler"),
    }
    by_field = {p.field: p for p in problems}
    assert "did you mean 'default_region'" in by_field["dialer.defualt_region"].message
    assert "did you mean 'dialer'" in by_field["dialler"].message
    assert "'5 seconds'" in by_field["dialer.poll_interval"].message
    assert by_field["dialer.poll_interval"].accepted is not None
    assert "1h30m" in by_field["dialer.poll_interval"].accepted
    assert "needs a unit" in by_field["voicedock.read_timeout"].message
    assert "longer than zero" in by_field["dialer.stuck_after"].message
    assert "regular expression" in by_field["outcomes.rules[0].error"].message
    assert "at least one of" in by_field["outcomes.rules[1]"].message
    for problem in problems:
        assert str(problem).startswith(f"{path}:{problem.line}: {problem.field}: ")


def test_file_problems(tmp_path: Path) -> None:
    (tmp_path / "dnc.txt").write_text("+31612345601\nnot a number\n", encoding="utf-8")
    path = write(
        tmp_path,
        '[database]\nurl = "mysql://x@y/z"\n\n[dialer]\ncampaigns = ["missing.toml", "*.none"]\n'
        'suppression_files = ["dnc.txt", "gone.txt"]\n',
    )
    problems = problems_of(path)
    assert {(Path(p.file).name, p.line, p.field) for p in problems} == {
        ("config.toml", 2, "database.url"),
        ("config.toml", 5, "dialer.campaigns[0]"),
        ("config.toml", 6, "dialer.suppression_files[1]"),
        ("dnc.txt", 2, "phone"),
    }


def test_file_problems_are_reported_with_the_value_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[voicedock]\nrequests_per_minute = 0\n\n[dialer]\ncampaigns = ["missing.toml"]\n',
    )
    assert located(problems_of(path)) == {
        (2, "voicedock.requests_per_minute"),
        (5, "dialer.campaigns[0]"),
    }


def test_syntax_and_encoding_errors_are_located(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "[dialer]\npoll_interval = 5s\n"))
    assert (problem.line, problem.field) == (2, "syntax")
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[dialer]\n# caf\xe9\ndefault_region = "NL"\n')
    (problem,) = problems_of(path)
    assert (problem.line, problem.field) == (2, "encoding")
    (problem,) = problems_of(tmp_path / "absent.toml")
    assert "not found" in problem.message


def test_example_round_trips_through_tomllib() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(data) == {"voicedock", "database", "dialer", "outcomes"}


# ---------------------------------------------------------------------------- the environment


def test_the_environment_overrides_the_database_url_and_the_log_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///file.db"\n[logging]\nlevel = "error"\n')
    assert load_config(path).logging.level == "error"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    environ = {"DIALER_DATABASE_URL": "sqlite:///from-env.db", "DIALER_LOG_LEVEL": "DEBUG"}
    config = load_config(path, environ=environ)
    # relative to where the command runs, as a shell user means it (the file's: next to it)
    assert config.database_url == f"sqlite:///{work.resolve() / 'from-env.db'}"
    assert config.logging.level == "debug"
    monkeypatch.setenv("DIALER_DATABASE_URL", "postgresql://dialer@db.internal/dialer")
    assert load_config(path).database_url == "postgresql+psycopg://dialer@db.internal/dialer"
    assert load_config(path, environ={}).database_url == f"sqlite:///{tmp_path / 'file.db'}"


def test_a_bad_override_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    environ = {"DIALER_DATABASE_URL": "sqlite://", "DIALER_LOG_LEVEL": "loud"}
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ)
    assert {(p.file, p.field) for p in info.value.problems} == {
        ("environment", "DIALER_DATABASE_URL"),
        ("environment", "DIALER_LOG_LEVEL"),
    }
    assert "in memory" in str(info.value) and "'loud' is not a log level" in str(info.value)


def test_a_postgresql_url_without_the_postgres_extra_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install without `[postgres]` has no psycopg: the config says what to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` meets then
    path = write(tmp_path, '[database]\nurl = "postgresql://dialer@db.internal/dialer"\n')
    (problem,) = problems_of(path)
    assert (problem.line, problem.field) == (2, "database.url")
    assert "pip install 'voicedock-dialer[postgres]'" in problem.message
    with pytest.raises(StoreError, match=r"voicedock-dialer\[postgres\]"):
        Store("postgresql://dialer@db.internal/dialer")
    assert load_config(write(tmp_path, "")).database_url.startswith("sqlite:///")
