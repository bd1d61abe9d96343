"""An assistant table's keys and types against VoiceDock's documented request schema, before any
call: `dialer validate` and `dialer plan` warn (file, line, dotted field, the closest known key),
and `--strict` makes the warnings errors (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dialer.assistant_schema import ASSISTANT, check_assistant
from dialer.campaign import load_campaign
from dialer.cli import app
from tests.e2e import nl_numbers, write_campaign

ROOT = ("assistant_override",)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    return CliRunner()


@pytest.mark.parametrize(
    ("table", "path", "message"),
    [
        (
            {"frist_message": "Hi"},
            ("frist_message",),
            "unknown key 'frist_message' (did you mean 'first_message'?)",
        ),
        (
            {"llm_config": {"modle": "gpt-4o"}},
            ("llm_config", "modle"),
            "unknown key 'modle' (did you mean 'model'?)",
        ),
        (
            {"llm_config": {"messages": [{"role": "system", "contnet": "x"}]}},
            ("llm_config", "messages", 0, "contnet"),
            "unknown key 'contnet' (did you mean 'content'?)",
        ),
        (
            {"llm_config": {"messages": [{"role": "sytem", "content": "x"}]}},
            ("llm_config", "messages", 0, "role"),
            "'sytem' is not a documented value (did you mean 'system'?)",
        ),
        (
            {"max_duration_seconds": "300"},
            ("max_duration_seconds",),
            "is the string '300', where VoiceDock documents a number",
        ),
        (
            {"voicemail_detection": "yes"},
            ("voicemail_detection",),
            "is the string 'yes', where VoiceDock documents true or false",
        ),
        (
            {"max_duration_seconds": True},
            ("max_duration_seconds",),
            "is true, where VoiceDock documents a number",
        ),
        (
            {"llm_config": "gpt-4o"},
            ("llm_config",),
            "is the string 'gpt-4o', where VoiceDock documents a table",
        ),
        (
            {"webhook_events": ["status-update", "end-of-call"]},
            ("webhook_events", 1),
            "'end-of-call' is not a documented value (did you mean 'end-of-call-report'?)",
        ),
        (
            {"tts_config": {"voiceid": "abc"}},
            ("tts_config", "voiceid"),
            "unknown key 'voiceid' (did you mean 'voice_id'?)",
        ),
        (
            {"stt_config": {"language": ["nl"]}},
            ("stt_config", "language"),
            "is a list, where VoiceDock documents a string",
        ),
    ],
)
def test_each_undocumented_key_or_type_is_found_where_it_is(
    table: dict[str, Any], path: tuple[str | int, ...], message: str
) -> None:
    (finding,) = check_assistant(table, ROOT)
    assert finding.path == (*ROOT, *path)
    assert finding.message == message


def test_documented_tables_and_free_form_ones_pass() -> None:
    table = {
        "first_message": "Hello {{ name }}",
        "max_duration_seconds": 300,
        "silence_timeout_seconds": 7.5,
        "autonomous_silence_handling": True,
        "webhook_url": "https://clinic.example/hooks",
        "webhook_secret": "s",
        "voicemail_detection": True,
        "voicemail_message": "",
        "webhook_events": ["status-update", "end-of-call-report"],
        "llm_config": {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "temperature": 0.3,
            "messages": [{"role": "system", "content": "You are {{ clinic }}."}],
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "book", "parameters": {"type": "object", "x": 1}},
                    "server": {"url": "https://x", "secret": "s"},
                    "async": False,
                }
            ],
        },
        # provider-specific options are documented as allowed in stt_config
        "stt_config": {"provider": "deepgram", "language": "nl", "endpointing": 300},
        "tts_config": {"provider": "elevenlabs", "voice_id": "v", "speed": 1.1},
        "metadata": {"anything": {"goes": [1, 2]}},
        "analysis_plan": {"structured_data_plan": {"enabled": True, "schema": {}}},
    }
    assert check_assistant(table, ROOT) == []
    assert set(table) == set(ASSISTANT)  # every documented top-level field is exercised


def test_a_templated_choice_is_left_to_the_rendering() -> None:
    table = {"llm_config": {"provider": "{{ provider }}"}}
    assert check_assistant(table, ROOT) == []


OVERRIDE = """
[assistant_override]
frist_message = "Hello {{ name }}"
max_duration_seconds = "300"
[assistant_override.llm_config]
provider = "openai"
modle = "gpt-4o"
"""


def _with_override(tmp_path: Path, override: str = OVERRIDE) -> Path:
    path = write_campaign(tmp_path, nl_numbers(2))
    text = path.read_text(encoding="utf-8")
    # write_campaign ends with its own [assistant_override]; replace it with this one
    text = text[: text.index("[assistant_override]")] + override.lstrip()
    path.write_text(text, encoding="utf-8")
    return path


def test_the_loader_keeps_the_findings_as_warnings_with_their_lines(tmp_path: Path) -> None:
    path = _with_override(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    campaign = load_campaign(path)
    found = {w.field: w for w in campaign.warnings}
    assert set(found) == {
        "assistant_override.frist_message",
        "assistant_override.max_duration_seconds",
        "assistant_override.llm_config.modle",
    }
    for field, warning in found.items():
        assert warning.file == path
        assert warning.line is not None
        assert lines[warning.line - 1].startswith(field.rsplit(".", 1)[1] + " =")


def test_transient_assistants_are_checked_too(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        'name = "t"\n[assistant]\nfirst_mesage = "Hi"\n[assistant.llm_config]\n'
        'provider = "openai"\n[[contacts]]\nphone = "+31612345601"\n',
        encoding="utf-8",
    )
    (warning,) = load_campaign(path).warnings
    assert warning.field == "assistant.first_mesage" and warning.line == 3
    assert "did you mean 'first_message'?" in warning.message


def test_validate_warns_and_strict_makes_it_an_error(runner: CliRunner, tmp_path: Path) -> None:
    path = _with_override(tmp_path)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.stderr
    assert f"ok {path}" in " ".join(result.stdout.split())
    warned = result.stderr.splitlines()
    assert any(
        line.startswith(f"warning {path}:")
        and "assistant_override.frist_message: unknown key 'frist_message' "
        "(did you mean 'first_message'?)"
        in line
        for line in warned
    ), warned
    assert len(warned) == 3

    strict = runner.invoke(app, ["validate", "--strict", str(path)])
    assert strict.exit_code == 2
    assert "ok " not in strict.stdout
    assert sum(line.startswith(f"error {path}:") for line in strict.stderr.splitlines()) == 3


def test_plan_warns_and_strict_stops_it(runner: CliRunner, tmp_path: Path) -> None:
    path = _with_override(tmp_path)
    args = ["plan", str(path), "--at", "2027-03-01T08:00:00Z"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "did you mean 'model'?" in result.stderr
    assert "2/2 contacts will be called" in result.stdout

    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 2
    assert "error" in strict.stderr and "did you mean 'model'?" in strict.stderr
    assert "will be called" not in strict.stdout


def test_a_clean_campaign_passes_strict(runner: CliRunner, tmp_path: Path) -> None:
    path = write_campaign(tmp_path, nl_numbers(2))
    result = runner.invoke(app, ["validate", "--strict", str(path)])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
