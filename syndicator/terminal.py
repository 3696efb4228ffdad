"""What reaches the operator's terminal: text with its control characters made visible.

Subscriber names, keywords and addresses come from strangers (the subscription form), and
article titles from the store. Printed raw, an ESC or BEL in them could clear, recolour or
retitle the operator's terminal, and a bidi override could reorder what they read. Every
command writes through :class:`PrintableStream`, which shows such characters as Python
escapes (``\\x1b``, ``\\u202e``) and passes line feeds and tabs through; JSON output stays
valid JSON.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

# C0 controls but tab and line feed, DEL, C1 controls, zero-width and bidi format
# characters, line and paragraph separators, and the byte-order mark.
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    # C0 controls as \x1b; the rest as \u0085, \u202e, which JSON reads back as the same
    # character (json.dumps already escapes C0 controls, and passes the rest through raw).
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x20 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every character that could steer a terminal shown as an escape."""
    return _UNPRINTABLE.sub(_escape, text)


class PrintableStream:
    """A text stream that writes :func:`printable` text to ``stream``; the rest is ``stream``'s."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(printable(text))
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
