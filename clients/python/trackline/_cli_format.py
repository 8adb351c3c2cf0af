"""How the ``trackline`` command prints: tables, ``name  value`` fields, JSON, times and enum
names, with every stored value shown safely (control characters escaped, table cells cut to
80 characters, a value out of range printed raw rather than failing); and its argument
parser, which reports a bad command line in one line with exit status 1."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from typing import NoReturn

from google.protobuf import json_format
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_CELL = 80


def as_dict(msg: Message) -> dict[str, object]:
    """The message as the API's JSON spells it, fields at their defaults included."""
    return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)


def print_json(msgs: Message | Sequence[Message]) -> None:
    """One indented JSON object for a message, a list for a sequence of them."""
    data = as_dict(msgs) if isinstance(msgs, Message) else [as_dict(m) for m in msgs]
    print(json.dumps(data, indent=2, ensure_ascii=False))


def print_table(header: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> None:
    """Columns as wide as their widest cell; ``empty`` alone when there is no row."""
    body = [list(r) for r in rows]
    if not body:
        print(empty)
        return
    body = [[cell(c) for c in r] for r in body]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    for line in [list(header), *body]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def print_fields(fields: Sequence[tuple[str, str]]) -> None:
    """``name  value`` lines, the values aligned; neither is cut."""
    width = max(len(escaped(k)) for k, _ in fields)
    for key, value in fields:
        print(f"{escaped(key).ljust(width)}  {escaped(value)}")


def escaped(text: str) -> str:
    """``text`` with control characters shown as escapes, so that a stored value cannot
    break the layout or send the terminal escape sequences."""
    return _CONTROL_CHARS.sub(lambda m: repr(m.group())[1:-1], text)


def cell(text: str) -> str:
    text = escaped(text)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "\u2026"


def local_time(ms: int) -> str:
    """Local time of a millisecond timestamp; the raw number when it is out of range."""
    if not ms:
        return "-"
    try:
        return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


def enum_name(enum: EnumTypeWrapper, value: int, prefix: str) -> str:
    """The enum's name without ``prefix``; ``UNKNOWN(value)`` for a value it does not name."""
    try:
        name = enum.Name(value)
    except ValueError:
        return f"UNKNOWN({value})"
    return name.removeprefix(prefix)


class OneLineParser(argparse.ArgumentParser):
    """Reports a bad command line in one line and exit status 1, as every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r:.80}")
    return value
