"""VoiceDock campaign dialer: TOML campaigns dialled at the right local time, never twice."""

__version__ = "0.1.0"
