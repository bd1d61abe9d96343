"""VoiceDock campaign dialer: TOML campaigns dialled at the right local time, never twice."""

from importlib.metadata import PackageNotFoundError, version

#: the distribution this package is installed as (pyproject.toml's ``name``)
DISTRIBUTION = "voicedock-dialer"

try:
    # One version source: pyproject.toml's ``version``, which installing writes into the
    # package's metadata (make reinstalls when pyproject.toml changes, so it never goes stale).
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
