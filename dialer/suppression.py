"""Do-not-call lists: numbers that are never dialled, whatever a campaign file says.

Two formats, chosen by the file name:

- ``*.csv``: a header row with a ``phone`` column (other columns, e.g. a reason or a date, are
  ignored), as exported from a CRM;
- anything else: one number per line; blank lines and ``#`` comments are ignored.

Numbers are normalised to E.164 exactly like contacts (``dialer.phones``), so ``06 1234 5601``
on the list matches ``+31612345601`` in a campaign when the region is NL.

An entry that cannot be read is an error, not a skipped line: a DNC list is the one input where
a silently dropped row means calling someone who asked not to be called.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import Sequence
from pathlib import Path

import structlog

from dialer import phones
from dialer.errors import Problem
from dialer.tomlsource import decode_utf8, quote_runs_on, read_bytes, unreadable_record

__all__ = [
    "FileStamp",
    "LiveSuppression",
    "file_stamp",
    "read_suppression_file",
    "read_suppression_files",
]

log = structlog.get_logger("dialer.suppression")


def read_suppression_file(
    path: Path, *, default_region: str | None = None, field: str = "suppression_files"
) -> tuple[frozenset[str], list[Problem]]:
    """The E.164 numbers in one DNC file, and every problem with it (file, line, field)."""
    raw = read_bytes(path, field=field)
    if isinstance(raw, Problem):
        return frozenset(), [raw]
    text = decode_utf8(raw, path)
    if isinstance(text, Problem):
        return frozenset(), [text]
    if path.suffix.lower() == ".csv":
        return _read_csv(path, text, default_region)
    numbers: set[str] = set()
    problems: list[Problem] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        _add(numbers, problems, entry, path=path, lineno=lineno, region=default_region)
    return frozenset(numbers), problems


def _read_csv(
    path: Path, text: str, default_region: str | None
) -> tuple[frozenset[str], list[Problem]]:
    # strict, and one record per line: an open quote must not swallow the entries after it
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return frozenset(), [unreadable_record(path, 1, reader.line_num, exc)]
    columns = [h.strip().lower() for h in header or []]
    if columns.count("phone") > 1:
        # the numbers under the second one would be read by no one, and called
        return frozenset(), [
            Problem(
                file=path,
                field="phone",
                line=1,
                message="the column 'phone' appears more than once",
                accepted="a header row naming one 'phone' column, e.g. phone,reason",
            )
        ]
    if "phone" not in columns:
        return frozenset(), [
            Problem(
                file=path,
                field="phone",
                line=1,
                message="has no 'phone' column"
                + (f" (columns: {', '.join(columns)})" if columns else " (the file is empty)"),
                accepted="a header row naming a 'phone' column, e.g. phone,reason",
            )
        ]
    column = columns.index("phone")
    numbers: set[str] = set()
    problems: list[Problem] = []
    last = reader.line_num
    try:
        for row in reader:
            lineno, last = last + 1, reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if last > lineno:
                problems.append(quote_runs_on(path, lineno, last))
                continue
            cell = row[column] if column < len(row) else ""
            _add(numbers, problems, cell, path=path, lineno=lineno, region=default_region)
    except csv.Error as exc:
        problems.append(unreadable_record(path, last + 1, reader.line_num, exc))
    return frozenset(numbers), problems


def _add(
    numbers: set[str],
    problems: list[Problem],
    raw: str,
    *,
    path: Path,
    lineno: int,
    region: str | None,
) -> None:
    """One entry of a list: its E.164 form, or a problem naming its line (never skipped).

    An entry written without its "+" (as spreadsheets and CRMs export "4915123456789") that
    the region reads is also read as the international number it may well be, when that is a
    valid one: read in the region alone it can be another valid number ("+49 4915123456789"),
    and the person on the list would be called. Blocking both is the safe side. An entry the
    region cannot read stays an error, whatever it might mean with a "+": a guess there could
    block a stranger instead of the person ("2015111703" is an Egyptian number with a "+")."""
    try:
        numbers.add(phones.normalize(raw, region=region))
    except ValueError as error:
        problems.append(
            Problem(
                file=path,
                field="phone",
                line=lineno,
                message=f"number {error}",
                accepted=phones.ACCEPTED,
            )
        )
        return
    text = raw.strip()
    if not text.startswith(("+", "0")):
        digits = "".join(ch for ch in text if ch.isdigit())
        with contextlib.suppress(ValueError):
            numbers.add(phones.normalize("+" + digits))


def read_suppression_files(
    paths: Sequence[Path], *, default_region: str | None = None, field: str = "suppression_files"
) -> tuple[frozenset[str], list[Problem]]:
    """The union of several DNC files, and every problem of every one of them."""
    numbers: set[str] = set()
    problems: list[Problem] = []
    for path in paths:
        found, issues = read_suppression_file(path, default_region=default_region, field=field)
        numbers |= found
        problems.extend(issues)
    return frozenset(numbers), problems


#: what tells a file changed: modification time, size, inode, status-change time (a copy that
#: keeps the time and the size, ``cp -p``, still gets a new inode or ctime)
FileStamp = tuple[int, int, int, int]


def file_stamp(path: Path) -> FileStamp | None:
    """The file's stamp now; None when it cannot be read. Taken before a read, so a change
    made during it is seen at the next look."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino, info.st_ctime_ns


class LiveSuppression:
    """Do-not-call files that take additions while the daemon runs.

    ``refresh`` stats the files; one that changed since it was read is read again (in a
    thread: a list of millions of numbers must not stall the heartbeat) and its numbers are
    added; ``numbers`` is what the last refresh found. Someone who asks not to be called is
    not called again, whenever they asked. A number taken off a list stays blocked until the
    next start: a file read halfway through being written must not unblock anyone.
    """

    def __init__(
        self,
        files: Sequence[tuple[Path, FileStamp | None]],
        *,
        default_region: str | None,
        numbers: frozenset[str],
        field: str = "suppression_files",
    ) -> None:
        """``files``: each file with its stamp from before ``numbers`` were read from it."""
        self._region = default_region
        self._field = field
        self._numbers = numbers
        self._stamps = dict(files)

    @property
    def numbers(self) -> frozenset[str]:
        return self._numbers

    async def refresh(self) -> frozenset[str]:
        changed = [
            (path, now)
            for path, then in self._stamps.items()
            # None: gone or unreadable for now; its numbers stay blocked
            if (now := file_stamp(path)) is not None and now != then
        ]
        if not changed:
            return self._numbers
        read = await asyncio.to_thread(
            lambda: [
                read_suppression_file(path, default_region=self._region, field=self._field)
                for path, _ in changed
            ]
        )
        for (path, stamp), (found, problems) in zip(changed, read, strict=True):
            self._stamps[path] = stamp
            if problems:
                # the entries that can be read are blocked; the others wait for a fix
                log.error(
                    "dialer.dnc.unreadable",
                    file=str(path),
                    problems=[str(p) for p in problems[:10]],
                    count=len(problems),
                )
            added = found - self._numbers
            if added:
                self._numbers |= added
                log.info("dialer.dnc.added", file=str(path), numbers=len(added))
        return self._numbers
