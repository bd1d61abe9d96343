"""The wheel as a user gets it: built, installed into a fresh virtualenv WITHOUT the postgres
extra (the locked releases, no psycopg), and run from an empty directory: `dialer --version`,
`python -m dialer --help`, `dialer demo`, and a postgresql URL refused naming the extra.

Slow-ish (a build, an install, the demo's ~30 s), and part of `make test` all the same."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def run(
    *args: str | Path, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    # No DIALER_* of the developer's, and not this test run's virtualenv.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DIALER_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def locked_pins(lock: Path) -> str:
    """The lock's ``name==version ; marker`` lines without their hashes: constraints for pip
    (hashes would put pip in a mode where the wheel itself needs one)."""
    pins = [
        line.removesuffix("\\").strip()
        for line in lock.read_text(encoding="utf-8").splitlines()
        if line[:1].isalpha() and "==" in line
    ]
    return "\n".join(pins) + "\n"


def test_the_wheel_runs_its_demo_from_an_empty_directory_without_postgres(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, ROOT)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("voicedock_dialer-*.whl")
    info = f"voicedock_dialer-{PROJECT['version']}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"{info}/METADATA").decode()
    assert {
        "dialer/py.typed",
        "dialer/demo_data/demo.toml",
        "dialer/demo_data/demo.csv",
        "dialer/demo_data/demo-outcomes.toml",
        "dialer/migrations/env.py",
        "dialer/migrations/script.py.mako",
        f"{info}/licenses/LICENSE",
    } <= names
    assert not any(name.startswith(("tests/", "bench/", "campaigns/")) for name in names)
    assert "Provides-Extra: postgres" in metadata
    assert "Requires-Dist: psycopg[binary]" in metadata and "extra == 'postgres'" in metadata

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    bin_ = venv / "bin"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(locked_pins(ROOT / "requirements.lock"), encoding="utf-8")
    installed = run(bin_ / "python", "-m", "pip", "install", "--constraint", constraints, wheel)
    assert installed.returncode == 0, installed.stderr[-3000:]
    no_driver = run(bin_ / "python", "-c", "import psycopg")
    assert no_driver.returncode != 0 and "No module named 'psycopg'" in no_driver.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    version = run(bin_ / "dialer", "--version", cwd=empty)
    assert (version.returncode, version.stdout) == (0, f"voicedock-dialer {PROJECT['version']}\n")
    helped = run(bin_ / "python", "-m", "dialer", "--help", cwd=empty)
    assert helped.returncode == 0, helped.stderr
    assert "Usage: dialer" in helped.stdout and "demo" in helped.stdout

    demo = run(bin_ / "dialer", "demo", cwd=empty, timeout=240)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    assert "Outcomes — demo" in demo.stdout
    assert "24 contacts" in demo.stdout and "wall time" in demo.stdout
    assert list(empty.iterdir()) == []  # the demo kept its files to its own temporary folder

    elsewhere = tmp_path / "pg"
    elsewhere.mkdir()
    (elsewhere / "config.toml").write_text(
        '[database]\nurl = "postgresql://dialer@127.0.0.1/dialer"\n[dialer]\ncampaigns = []\n',
        encoding="utf-8",
    )
    refused = run(bin_ / "dialer", "db", "check", cwd=elsewhere)
    assert refused.returncode == 2
    assert "pip install 'voicedock-dialer[postgres]'" in refused.stderr
