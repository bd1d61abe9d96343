"""Reading a user's TOML file so that every problem can name its line.

tomllib parses but keeps no positions, so :class:`TomlSource` also scans the (already valid)
text once and records the line of every table header, key, array-of-tables entry, inline-table
key and array element::

    [window]                   -> ("window",)              line 1
    days = ["mon", "tue"]      -> ("window", "days")       line 2
                                  ("window", "days", 1)    line 2
    [[contacts]]               -> ("contacts", 0)          line 3
    phone = "+31612345601"     -> ("contacts", 0, "phone") line 4

:meth:`TomlSource.line` falls back to the nearest enclosing element it knows, so a problem deep
inside a value still points at the right neighbourhood.

Shared by the config file and the campaign files; CSV files only need :func:`decode_utf8` and
the two problems of a broken CSV record below.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.errors import Problem

__all__ = ["KeyPath", "TomlSource", "decode_utf8", "did_you_mean", "dotted", "read_bytes", "reason"]

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_LINE = re.compile(r"at line (\d+)")
_ACCEPTED_SUFFIX = re.compile(r"\s*\(accepted: [^()]*(\([^()]*\)[^()]*)*\)\s*$")
_SCALAR = re.compile(r"[^,\]}\n#]*")


def dotted(path: Sequence[str | int]) -> str:
    """("retry", "no_answer", "after") -> "retry.no_answer.after"; indices as [n]."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else f'"{part}"'
            text += f".{key}" if text else key
    return text


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """ " (did you mean 'assistant_id'?)" for a near miss, else ""."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def reason(exc: Exception) -> str:
    """An exception's message without a trailing "(accepted: …)": our Problems carry that."""
    return _ACCEPTED_SUFFIX.sub("", str(exc))


def read_bytes(path: Path, *, field: str = "file") -> bytes | Problem:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return Problem(file=path, field=field, message="file not found")
    except IsADirectoryError:
        return Problem(file=path, field=field, message="is a directory, not a file")
    except OSError as exc:
        return Problem(file=path, field=field, message=f"cannot be read: {exc.strerror or exc}")


def decode_utf8(data: bytes, path: Path) -> str | Problem:
    """The text of a UTF-8 file (a BOM, as Excel writes it, is allowed), or where it is not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start : exc.start + 1].hex()
        return Problem(
            file=path,
            field="encoding",
            line=line,
            message=f"is not UTF-8 (byte 0x{bad} at offset {exc.start})",
            accepted="UTF-8 text; re-save the file as 'UTF-8' (e.g. 'CSV UTF-8' in Excel)",
        )
    nul = text.find("\x00")
    if nul >= 0:
        # PostgreSQL refuses NUL in text; a UTF-16 file read as UTF-8 is full of them
        return Problem(
            file=path,
            field="encoding",
            line=text.count("\n", 0, nul) + 1,
            message="has a NUL character (a UTF-16 file, or binary data)",
            accepted="UTF-8 text; re-save the file as 'UTF-8' (e.g. 'CSV UTF-8' in Excel)",
        )
    return text.removeprefix("\ufeff")


CSV_QUOTING = (
    "a field holding the separator, a line break or a quote mark is quoted, with its quote "
    'marks doubled: "Jan ""JJ"" Smit"'
)


def quote_runs_on(path: Path, line: int, last: int) -> Problem:
    """A CSV record across several lines: in a do-not-call list, a quote left open, which
    would swallow the entries after it into one field (and call those people)."""
    return Problem(
        file=path,
        field="row",
        line=line,
        message=f"a quoted field opened on this line runs on to line {last}: a stray '\"'?",
        accepted="one entry per line; " + CSV_QUOTING,
    )


def unreadable_record(path: Path, line: int, reached: int, exc: Exception) -> Problem:
    """csv.reader (strict) gave up on the record that starts on ``line``."""
    if str(exc) == "unexpected end of data":
        message = "a quoted field opened on this line is never closed: a stray '\"'?"
    else:
        where = f" (read on to line {reached})" if reached > line else ""
        message = f"unreadable CSV: {exc}{where}"
    return Problem(file=path, field="row", line=line, message=message, accepted=CSV_QUOTING)


@dataclass
class TomlSource:
    """One parsed TOML file: its bytes (for hashing), its data and where each key sits."""

    path: Path
    raw: bytes
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> TomlSource | Problem:
        raw = read_bytes(path)
        if isinstance(raw, Problem):
            return raw
        text = decode_utf8(raw, path)
        if isinstance(text, Problem):
            return text
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            found = _TOML_LINE.search(message)
            return Problem(
                file=path,
                field="syntax",
                line=int(found.group(1)) if found else None,
                message=f"not valid TOML: {message}",
                accepted='TOML (https://toml.io); strings need quotes, e.g. name = "x"',
            )
        return cls(path=path, raw=raw, data=data, lines=_Scanner(text).scan())

    def line(self, path: Sequence[str | int]) -> int:
        """The line of ``path``, or of its nearest enclosing element that has one.

        A key that is missing altogether has no line; its table's header is the best pointer,
        and for a top-level key that is the top of the file (line 1).
        """
        key = tuple(path)
        while key:
            found = self.lines.get(key)
            if found is not None:
                return found
            key = key[:-1]
        return 1

    def problem(
        self,
        path: Sequence[str | int],
        message: str,
        *,
        accepted: str | None = None,
        field: str | None = None,
    ) -> Problem:
        return Problem(
            file=self.path,
            field=field if field is not None else (dotted(path) or "(file)"),
            line=self.line(path),
            message=message,
            accepted=accepted,
        )


class _Scanner:
    """A position-only pass over text tomllib has already accepted.

    Because the input is known to be valid, the scanner needs no error handling; what it must
    get right is skipping strings (a multi-line system prompt may contain lines that look like
    ``[headers]`` or ``key = value``) and comments.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.aot_counts: dict[KeyPath, int] = {}

    # -- low level -----------------------------------------------------------------------
    def _peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def _advance(self, n: int = 1) -> None:
        chunk = self.text[self.pos : self.pos + n]
        self.line += chunk.count("\n")
        self.pos += n

    def _skip_ws(self, *, newlines: bool) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self._advance()
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self._advance((len(self.text) if end < 0 else end) - self.pos)
            else:
                return

    def _string(self) -> str:
        """Consume a string of any of the four kinds; return its (roughly unescaped) value."""
        for quote in ('"""', "'''"):
            if self._peek(3) == quote:
                self._advance(3)
                end = self.pos
                while True:
                    end = self.text.find(quote, end)
                    if quote == '"""' and _escaped(self.text, end):
                        end += 1
                        continue
                    break
                # up to two extra quotes may close a multi-line string ('""""' is legal)
                while self.text[end + 3 : end + 4] == quote[0]:
                    end += 1
                value = self.text[self.pos : end]
                self._advance(end + 3 - self.pos)
                return value
        quote = self._peek()
        self._advance()
        start = self.pos
        while True:
            ch = self.text[self.pos]
            if ch == "\\" and quote == '"':
                self._advance(2)
                continue
            if ch == quote:
                break
            self._advance()
        value = self.text[start : self.pos]
        self._advance()
        if quote == '"':
            # Good enough for locating keys: the common escapes only.
            value = value.replace('\\"', '"').replace("\\\\", "\\")
        return value

    def _key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self._skip_ws(newlines=False)
            if self._peek() in ('"', "'"):
                parts.append(self._string())
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                assert match is not None, "tomllib accepted this text"
                parts.append(match.group(0))
                self._advance(match.end() - self.pos)
            self._skip_ws(newlines=False)
            if self._peek() != ".":
                return parts
            self._advance()

    # -- structure -----------------------------------------------------------------------
    def scan(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self._skip_ws(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            if self._peek() == "[":
                table = self._header()
            else:
                self._keyval(table)

    def _header(self) -> KeyPath:
        line = self.line
        array = self._peek(2) == "[["
        self._advance(2 if array else 1)
        keys = self._key()
        self._advance(2 if array else 1)
        concrete: KeyPath = ()
        for i, key in enumerate(keys):
            concrete = (*concrete, key)
            last = i == len(keys) - 1
            if array and last:
                index = self.aot_counts.get(concrete, 0)
                self.aot_counts[concrete] = index + 1
                self.lines.setdefault(concrete, line)
                concrete = (*concrete, index)
            elif concrete in self.aot_counts:
                # [a.b] under [[a]] belongs to the latest element of a
                concrete = (*concrete, self.aot_counts[concrete] - 1)
        self.lines[concrete] = line
        return concrete

    def _keyval(self, table: KeyPath) -> None:
        line = self.line
        path = (*table, *self._key())
        self.lines.setdefault(path, line)
        self._skip_ws(newlines=False)
        self._advance()  # "="
        self._skip_ws(newlines=False)
        self._value(path)

    def _value(self, path: KeyPath) -> None:
        ch = self._peek()
        if ch in ('"', "'"):
            self._string()
        elif ch == "[":
            self._advance()
            index = 0
            while True:
                self._skip_ws(newlines=True)
                if self._peek() == "]":
                    self._advance()
                    return
                self.lines[(*path, index)] = self.line
                self._value((*path, index))
                index += 1
                self._skip_ws(newlines=True)
                if self._peek() == ",":
                    self._advance()
        elif ch == "{":
            self._advance()
            while True:
                self._skip_ws(newlines=True)
                if self._peek() == "}":
                    self._advance()
                    return
                line = self.line
                key = (*path, *self._key())
                self.lines.setdefault(key, line)
                self._skip_ws(newlines=False)
                self._advance()  # "="
                self._skip_ws(newlines=False)
                self._value(key)
                self._skip_ws(newlines=True)
                if self._peek() == ",":
                    self._advance()
        else:
            # numbers, booleans, dates: a date-time may contain one space, so stop only at
            # the characters that can end a value
            match = _SCALAR.match(self.text, self.pos)
            assert match is not None
            self._advance(match.end() - self.pos)


def _escaped(text: str, at: int) -> bool:
    """Is the character at ``at`` preceded by an odd number of backslashes?"""
    count = 0
    while at - count - 1 >= 0 and text[at - count - 1] == "\\":
        count += 1
    return count % 2 == 1
