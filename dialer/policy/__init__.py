"""Pure policy: every decision about whom to call when, with no I/O; `now` is an argument."""

from dialer.policy.caps import FrequencyCap, cap_next_allowed
from dialer.policy.durations import format_duration, parse_duration
from dialer.policy.outcomes import (
    DEFAULT_OUTCOME_RULES,
    PERMANENT_OUTCOMES,
    Outcome,
    OutcomeRule,
    classify,
)
from dialer.policy.reminders import ContactTiming, timing_bounds
from dialer.policy.retries import (
    RetryDecision,
    RetryPolicy,
    RetryRule,
    decide_retry,
    next_attempt_at,
)
from dialer.policy.timezones import ZoneResolution, resolve_zone
from dialer.policy.windows import CallingWindow, TimeRange, parse_days, parse_range

__all__ = [
    "DEFAULT_OUTCOME_RULES",
    "PERMANENT_OUTCOMES",
    "CallingWindow",
    "ContactTiming",
    "FrequencyCap",
    "Outcome",
    "OutcomeRule",
    "RetryDecision",
    "RetryPolicy",
    "RetryRule",
    "TimeRange",
    "ZoneResolution",
    "cap_next_allowed",
    "classify",
    "decide_retry",
    "format_duration",
    "next_attempt_at",
    "parse_days",
    "parse_duration",
    "parse_range",
    "resolve_zone",
    "timing_bounds",
]
