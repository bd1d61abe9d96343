"""The contacts of a CSV kept compactly: a few numbers per contact, rebuilt when asked.

:class:`_Kept` holds what the check of each row keeps (E.164 digits, line, byte span, zone),
:class:`_CsvContacts` is the ``Campaign.contacts`` sequence over it, :class:`_LineFeed` feeds
the CSV reader line by line so each record's byte span is known, and :func:`_resolve` is the
zone resolution for a number whose candidate zones are known.
"""

from __future__ import annotations

import csv
import mmap
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import overload
from zoneinfo import ZoneInfo

from dialer.campaign.records import _NO_TIMING, Contact, UnknownTimezone
from dialer.campaign.values import TIMING_COLUMNS, parse_when
from dialer.policy.reminders import ContactTiming
from dialer.policy.timezones import campaign_zone_applies, zone_or_none

_BOM = b"\xef\xbb\xbf"
#: what of a key's digest fits an array of signed 64-bit integers
_LOW_63_BITS = (1 << 63) - 1
#: the line ends of io's newline="" mode, which csv wants: \r\n, \r or \n
_EOL = re.compile(rb"\r\n?|\n")


def _resolve(
    phone: str,
    candidates: tuple[str, ...],
    *,
    explicit: str | None,
    campaign_zone: str | None,
    unknown_policy: UnknownTimezone,
) -> ZoneInfo | None:
    """``resolve_zone(phone, ...).zone`` for a number whose candidate zones are known.

    The same rules as :func:`dialer.policy.timezones.resolve_zone` (the engine's, at call
    time; a test holds the two equal), without parsing the number again.
    """
    if explicit:
        return zone_or_none(explicit)
    if len(candidates) == 1 and (only := zone_or_none(candidates[0])) is not None:
        return only
    campaign = zone_or_none(campaign_zone)
    if (
        campaign is not None
        and candidates
        and campaign_zone_applies(campaign.key, phone, candidates)
    ):
        return campaign
    if unknown_policy == "campaign" and campaign is not None:
        return campaign
    return None


class _LineFeed:
    """The lines of a CSV's bytes for csv.reader, decoded one at a time; ``pos`` is where the
    next line starts, so the reader's caller knows each record's byte span."""

    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.pos = start
        # a file without a lone \r (nearly all) is split by bytes.find, the faster way
        self._plain = data.count(b"\r") == data.count(b"\r\n")

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise StopIteration
        if self._plain:
            end = data.find(b"\n", pos) + 1 or len(data)
        else:
            found = _EOL.search(data, pos)
            end = found.end() if found else len(data)
        self.pos = end
        return data[pos:end].decode("utf-8")


@dataclass(frozen=True, kw_only=True)
class _CsvLayout:
    """What every row of one contacts CSV shares."""

    data: bytes  # the whole file (also what the campaign's definition hash covers)
    source: Path
    columns: tuple[str, ...]
    delimiter: str


class _Kept:
    """The kept contacts as numbers: E.164 digits, line, byte span and zone of each, and
    63 bits of each one's reminder key (to name the line a duplicate repeats)."""

    def __init__(self) -> None:
        self.phones = array("q")
        self.keys = array("q")
        self.lines = array("q")
        self.starts = array("q")
        self.ends = array("q")
        self.zone_index = array("H")
        self.zones: list[ZoneInfo | None] = []
        self._zone_ids: dict[ZoneInfo | None, int] = {}

    def add(
        self,
        number: int,
        key: int,
        line: int,
        span: tuple[int, int] | None,
        zone: ZoneInfo | None,
    ) -> None:
        """One kept contact; ``key`` the digest of its reminder key (see contacts.key_digest);
        ``span`` (its CSV row's bytes) is None for an inline contact."""
        self.phones.append(number)
        self.keys.append(key & _LOW_63_BITS)
        self.lines.append(line)
        if span is not None:
            self.starts.append(span[0])
            self.ends.append(span[1])
            index = self._zone_ids.get(zone)
            if index is None:
                index = self._zone_ids[zone] = len(self.zones)
                self.zones.append(zone)
            self.zone_index.append(index)

    def first_line(self, key: int) -> int:
        """The line of the kept contact whose reminder key has this digest."""
        return self.lines[self.keys.index(key & _LOW_63_BITS)]


class _SeenKeys:
    """The reminder keys (see contacts.key_digest) seen while a campaign loads.

    A Python set of a million ints takes ~60 MB (an object per int, a table kept under 60 %
    full): most of the peak of loading a million-contact CSV beyond what is kept. A key that is
    a phone's E.164 digits (below 2**63, never 0) takes a slot of an open-addressing table of
    64-bit integers instead, 16 to 32 bytes a key; the 128-bit digests of keys with an id or an
    appointment stay in a set, exact. The table is an anonymous memory map, sized for the keys
    expected (a CSV's lines): given back to the system on :meth:`close`, where a freed heap
    block of that size stays resident under the arrays allocated after it (+25 MB at 1M).
    """

    __slots__ = ("_digests", "_map", "_slots", "_used")

    def __init__(self, expected: int = 0) -> None:
        size = 1024
        while size < 2 * expected:
            size *= 2
        self._map, self._slots = self._table(size)
        self._used = 0
        self._digests: set[int] = set()

    @staticmethod
    def _table(size: int) -> tuple[mmap.mmap, memoryview]:
        table = mmap.mmap(-1, 8 * size)  # zero-filled: 0 is the empty slot
        return table, memoryview(table).cast("q")

    def close(self) -> None:
        self._slots.release()
        self._map.close()

    def add(self, key: int) -> bool:
        """Take ``key``; False when it was seen before."""
        if key >> 63:
            if key in self._digests:
                return False
            self._digests.add(key)
            return True
        if not self._insert(self._slots, key):
            return False
        self._used += 1
        if 2 * self._used > len(self._slots):
            grown, slots = self._table(2 * len(self._slots))
            for held in self._slots:
                if held:
                    self._insert(slots, held)
            self.close()
            self._map, self._slots = grown, slots
        return True

    @staticmethod
    def _insert(slots: memoryview, key: int) -> bool:
        mask = len(slots) - 1  # a power of two
        # Fibonacci hashing: numbers in a row (a list's phones often are) land far apart
        index = ((key * 0x9E3779B97F4A7C15) >> 29) & mask
        while held := slots[index]:
            if held == key:
                return False
            index = (index + 1) & mask
        slots[index] = key
        return True


class _CsvContacts(Sequence[Contact]):
    """The contacts of a CSV file: its bytes and a few numbers per contact.

    A :class:`Contact` object per row (strings, a variables dict, the dataclass) costs ~500
    bytes, 0.5 GB for a million rows. This keeps ~40 bytes per contact (E.164 digits, line,
    byte span, zone: arrays) plus the file, and builds a contact from its already-checked row
    each time one is asked for: iterating a million costs a few seconds, which the store
    import, the only full pass, spends anyway.
    """

    __slots__ = ("_kept", "_layout", "_timed")

    def __init__(self, layout: _CsvLayout, kept: _Kept) -> None:
        self._layout = layout
        self._kept = kept
        #: whether the file has a call_at / appointment_at / deadline column at all
        self._timed = not set(layout.columns).isdisjoint(TIMING_COLUMNS)

    def __len__(self) -> int:
        return len(self._kept.phones)

    @overload
    def __getitem__(self, index: int) -> Contact: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Contact]: ...
    def __getitem__(self, index: int | slice) -> Contact | Sequence[Contact]:
        if isinstance(index, slice):
            return tuple(self._contact(i) for i in range(*index.indices(len(self))))
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("contact index out of range")
        return self._contact(index)

    def __iter__(self) -> Iterator[Contact]:
        for index in range(len(self)):
            yield self._contact(index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _CsvContacts):
            return (
                self._layout == other._layout
                and self._kept.phones == other._kept.phones
                and self._kept.starts == other._kept.starts
            )
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._layout.data, len(self)))

    def __repr__(self) -> str:
        return f"<{len(self)} contacts of {self._layout.source}>"

    def _contact(self, index: int) -> Contact:
        layout, kept = self._layout, self._kept
        text = layout.data[kept.starts[index] : kept.ends[index]].decode("utf-8")
        if '"' in text:
            row = next(csv.reader((text,), delimiter=layout.delimiter))
        else:
            # without quotes a record is one line and csv would split it just like this
            row = text.rstrip("\r\n").split(layout.delimiter)
        # the loader refused a value under an unnamed column, so `if cell` also skips those
        variables = {
            column: cell
            for column, cell in zip(layout.columns, map(str.strip, row), strict=True)
            if cell
        }
        phone = variables["phone"] = f"+{kept.phones[index]}"
        timing = _NO_TIMING
        if self._timed and not variables.keys().isdisjoint(TIMING_COLUMNS):
            # checked at load, so each parses (in the zone the contact was checked with)
            zone = kept.zones[kept.zone_index[index]]
            timing = ContactTiming(
                **{
                    key: parse_when(variables[key], zone=zone)
                    for key in TIMING_COLUMNS
                    if key in variables
                }
            )
        return Contact(
            phone=phone,
            name=variables.get("name"),
            timezone=variables.get("timezone"),
            timing=timing,
            variables=MappingProxyType(variables),
            source=layout.source,
            line=kept.lines[index],
        )
