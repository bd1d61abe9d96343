"""deploy/dialer.service: systemd accepts it (`systemd-analyze verify`, warnings included), and
it says what the issue asks of a service that runs for months."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from dialer.config import Config
from dialer.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "dialer.service"
HOST_UNITS = Path("/usr/lib/systemd/system")


def unit_settings() -> dict[str, list[str]]:
    """``Section.Key`` -> its values, in order (a key may be given several times)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None or not HOST_UNITS.is_dir():
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI (Debian's systemd package)")
        pytest.skip("systemd-analyze is not installed (it always runs in CI)")
    return found


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    # A root of the test's own: the host's units (what the default dependencies name), our
    # unit where systemd looks for it, and the program its ExecStart names, which verify
    # requires to exist (a stand-in: whether it runs is not what verify judges).
    root = tmp_path / "root"
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/dialer.service")
    (program, *_) = unit_settings()["Service.ExecStart"][0].split()
    stand_in = root / program.lstrip("/")
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\n", encoding="utf-8")
    stand_in.chmod(0o755)
    verified = subprocess.run(
        [analyze, "verify", f"--root={root}", "--man=no", "--generators=no", "dialer.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 on a misspelt key or a bad value ("..., ignoring"): its output must be empty
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", "")


def test_a_misspelt_key_would_be_caught(tmp_path: Path) -> None:
    """The check above can fail: the same run on a unit with a typo prints it."""
    analyze = systemd_analyze()
    root = tmp_path / "root"
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    broken = UNIT.read_text(encoding="utf-8").replace("ProtectSystem=", "ProtectSystm=")
    (root / "etc/systemd/system/dialer.service").write_text(broken, encoding="utf-8")
    stand_in = root / "opt/dialer/bin/dialer"
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\n", encoding="utf-8")
    stand_in.chmod(0o755)
    verified = subprocess.run(
        [analyze, "verify", f"--root={root}", "--man=no", "--generators=no", "dialer.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Unknown key 'ProtectSystm'" in verified.stderr


def test_the_unit_restarts_stops_gracefully_and_is_sandboxed() -> None:
    unit = unit_settings()
    assert unit["Service.ExecStart"] == ["/opt/dialer/bin/dialer run"]
    assert unit["Service.Restart"] == ["on-failure"]
    assert unit["Service.RestartPreventExitStatus"] == ["2"]  # bad input: restarts cannot help
    # A stop waits for the answers to creates already sent (create_timeout), then drains.
    (stop,) = unit["Service.TimeoutStopSec"]
    assert stop.endswith("s")
    drain_s = inspect.signature(Engine.drain).parameters["grace_s"].default
    create_timeout = Config().voicedock.create_timeout
    assert timedelta(seconds=int(stop[:-1])) > create_timeout + timedelta(seconds=drain_s)
    # keys come from a file of the environment, never from the config or the unit
    assert unit["Service.EnvironmentFile"] == ["/etc/dialer/dialer.env"]
    assert not any("VOICEDOCK_API_KEY=" in value for value in unit.get("Service.Environment", []))
    assert unit["Service.NoNewPrivileges"] == ["yes"]
    assert unit["Service.ProtectSystem"] == ["strict"]
    # the one place written to: the SQLite database's directory, which is the working one
    assert unit["Service.ReadWritePaths"] == ["/var/lib/dialer"]
    assert unit["Service.WorkingDirectory"] == ["/var/lib/dialer"]
    assert unit["Service.StateDirectory"] == ["dialer"]
