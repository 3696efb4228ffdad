"""Text for the operator's terminal: control characters shown, JSON kept valid."""

from __future__ import annotations

import io
import json

from syndicator.terminal import PrintableStream, printable


def test_controls_are_shown_as_escapes_and_lines_and_tabs_pass() -> None:
    assert printable("a\x1b[2Jb\x07\n\tc") == "a\\x1b[2Jb\\x07\n\tc"
    assert printable("\r\x7f\x85\u202eevil\u200b") == "\\x0d\\u007f\\u0085\\u202eevil\\u200b"
    assert printable("José, 日本語, Türkiye") == "José, 日本語, Türkiye"


def test_json_written_through_the_stream_stays_json_with_the_same_text() -> None:
    value = {"keyword": "\x1b]0;x\x07 \x85 \u202e \u2028 é"}
    out = io.StringIO()
    PrintableStream(out).write(json.dumps(value, ensure_ascii=False))
    assert json.loads(out.getvalue()) == value
    assert all(ord(char) >= 0x20 for char in out.getvalue())
    assert "\u202e" not in out.getvalue() and "\x85" not in out.getvalue()
