"""The installed command: one version source, `python -m dialer`, shell completion."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata, resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIALER = str(Path(sys.executable).with_name("dialer"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_the_version_is_pyprojects_read_from_the_installed_metadata() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert metadata.version(declared["name"]) == declared["version"]
    shown = run(DIALER, "--version")
    assert (shown.returncode, shown.stdout) == (0, f"voicedock-dialer {declared['version']}\n")
    import dialer

    assert dialer.__version__ == declared["version"]


def test_python_m_dialer_is_the_same_command() -> None:
    shown = run(sys.executable, "-m", "dialer", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "Usage: dialer" in shown.stdout
    for command in ("run", "validate", "status", "demo", "db"):
        assert f" {command} " in shown.stdout
    # the environment variables that override the config are documented where users look
    assert "DIALER_DATABASE_URL" in shown.stdout and "DIALER_LOG_LEVEL" in shown.stdout


def test_shell_completion_is_offered() -> None:
    shown = run(DIALER, "--show-completion", "bash")
    assert shown.returncode == 0, shown.stderr
    assert "_DIALER_COMPLETE=complete_bash" in shown.stdout


def test_the_package_carries_its_type_marker_and_demo() -> None:
    package = resources.files("dialer")
    assert (package / "py.typed").is_file()
    for name in ("demo.toml", "demo.csv", "demo-outcomes.toml"):
        assert (package / "demo_data" / name).is_file()
