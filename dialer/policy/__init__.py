"""Pure policy: every decision about whom to call when, with no I/O; `now` is an argument.

All datetimes in and out are timezone-aware (UTC out unless a docstring says otherwise).

    durations   parse_duration("1h30m")
    outcomes    classify(call_object, rules) -> Outcome
    windows     CallingWindow.allows / next_allowed / closes_at in a contact's ZoneInfo
    timezones   resolve_zone(phone, explicit=..., campaign_zone=...) -> ZoneResolution
    calendars   contact_calendar(phone, subdivision) -> "DE-BY": a contact's own holidays
    reminders   timing_bounds(ContactTiming, ...) -> (not_before, deadline)
    retries     decide_retry(...) -> RetryDecision
    gate        decide(ContactFacts, DialRules, now=...) -> Allow | Defer | Close
    caps        cap_next_allowed(FrequencyCap, previous_calls, now)
    polling     next_poll_at(PollPlan, ...)
    backoff     Backoff.delay(failures_in_a_row, rng)
"""

from dialer.policy.backoff import Backoff
from dialer.policy.caps import FrequencyCap, cap_next_allowed
from dialer.policy.durations import format_duration, parse_duration
from dialer.policy.outcomes import (
    DEFAULT_OUTCOME_RULES,
    PERMANENT_OUTCOMES,
    Outcome,
    OutcomeRule,
    classify,
)
from dialer.policy.polling import PollPlan, next_poll_at
from dialer.policy.reminders import ContactTiming, timing_bounds
from dialer.policy.retries import (
    RetryDecision,
    RetryPolicy,
    RetryRule,
    decide_retry,
)
from dialer.policy.timezones import ZoneResolution, resolve_zone
from dialer.policy.windows import (
    CallingWindow,
    TimeRange,
    parse_days,
    parse_holiday_region,
    parse_range,
)

__all__ = [
    "DEFAULT_OUTCOME_RULES",
    "PERMANENT_OUTCOMES",
    "Backoff",
    "CallingWindow",
    "ContactTiming",
    "FrequencyCap",
    "Outcome",
    "OutcomeRule",
    "PollPlan",
    "RetryDecision",
    "RetryPolicy",
    "RetryRule",
    "TimeRange",
    "ZoneResolution",
    "cap_next_allowed",
    "classify",
    "decide_retry",
    "format_duration",
    "next_poll_at",
    "parse_days",
    "parse_duration",
    "parse_holiday_region",
    "parse_range",
    "resolve_zone",
    "timing_bounds",
]
