"""Campaign files: TOML (+ an optional contacts CSV) -> frozen domain records.

    >>> campaign = load_campaign(Path("campaigns/appointment-reminders.toml"))
    >>> campaign.contacts[0].phone
    '+31612345601'
    >>> campaign.call_body(campaign.contacts[0], metadata={"dialer_attempt_id": 1})
    {'destination': '+31612345601', 'assistant_id': '…', 'assistant_override': {…}}

Loading is validation: every problem of the TOML file, its CSV and its do-not-call files is
collected and raised together as one :class:`~dialer.errors.CampaignError`, each with the file,
the line, the dotted field, what is wrong and what is accepted. Nothing is written anywhere.
Every key is documented in ``campaigns/README.md``.

The records here are plain frozen dataclasses; the store has its own tables
(:class:`dialer.store.ContactRecord`) and the engine maps between them. A contacts CSV is read
row by row and its contacts are not all kept as objects: ``Campaign.contacts`` is then a
sequence that rebuilds each contact from its checked row (a million-row file costs ~70 MB, not
~600; issue 6).

The package, from the entry points down (a module imports only modules below it)::

    loader.py    load_campaign, validate_paths; the loader of one TOML file and its sections
                 (name, assistant, schedule, window, retry, suppression, key)
    contacts.py  the contacts: [[contacts]] tables or the rows of the contacts CSV, and the
                 check of each (phone, variables, zone, timing, templates, duplicates)
    compact.py   the kept contacts of a CSV as numbers and byte spans, rebuilt when asked
    records.py   the frozen records: Contact, Campaign (render, call_body, dial_rules, trigger)
    values.py    one value at a time: parse_when, the accepted-value hints, the zone, region
                 and holiday checks, and the typed getters that report a value where it is

Names with a leading underscore are the package's own: its modules share them, nothing
outside it imports them (tests excepted).
"""

from dialer.campaign.loader import load_campaign, validate_paths
from dialer.campaign.records import Campaign, Contact, UnknownTimezone
from dialer.campaign.values import (
    FIRST_YEAR,
    LAST_YEAR,
    SPECIAL_COLUMNS,
    TIMING_COLUMNS,
    parse_when,
)

__all__ = [
    "FIRST_YEAR",
    "LAST_YEAR",
    "SPECIAL_COLUMNS",
    "TIMING_COLUMNS",
    "Campaign",
    "Contact",
    "UnknownTimezone",
    "load_campaign",
    "parse_when",
    "validate_paths",
]
