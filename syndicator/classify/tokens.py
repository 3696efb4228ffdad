"""Normalising text for cue matching.

Classification looks for gazetteer and taxonomy cues in article text with a
multi-pattern matcher. Text and cues both go through :func:`normalize`, which

* folds accents ("Türkiye" -> "Turkiye", "São Tomé" -> "Sao Tome");
* turns sentence punctuation (``. ; : ! ?``) into a ``|`` word of its own and
  every other non-word character into a space, so "Guinea-Bissau", "Guinea
  Bissau" and "guinea - bissau" look alike and a cue never matches across a
  sentence break;
* leaves exactly one space between words and one at each end, so that a cue
  searched for as ``" cue "`` can only match whole words;
* keeps the case, so that acronyms (``US``, ``CAR``, ``SAT``) can be matched
  case-sensitively while names are matched in lower case.

The lower-case form is ``normalize(text).lower()``: every character of the
normalised text is ASCII or lower-cases to one character, so both forms line up
position for position.
"""

from __future__ import annotations

import re
import unicodedata

SENTENCE_BREAK = "|"


class _FoldTable(dict[int, str]):
    """``str.translate`` table mapping each character to one ASCII-ish character."""

    def __missing__(self, codepoint: int) -> str:
        char = chr(codepoint)
        if char in ".;:!?":
            result = SENTENCE_BREAK
        elif char.isascii():
            result = char if char.isalnum() else " "
        elif char.isalnum():
            base = "".join(
                c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
            )
            if len(base) == 1 and base.isascii() and base.isalnum():
                result = base
            elif len(char.lower()) == 1 and len(char.upper()) == 1:
                result = char
            else:
                result = "x"
        else:
            result = " "
        self[codepoint] = result
        return result


_TABLE = _FoldTable()
# The same folding for ASCII text, as a byte table: bytes.translate is several times faster
# than str.translate through a mapping, and most articles are plain ASCII.
_ASCII_TABLE = bytes(ord(_TABLE[code]) if code < 128 else 32 for code in range(256))
_BREAK_BYTES = SENTENCE_BREAK.encode()
_SPACED_BREAK_BYTES = f" {SENTENCE_BREAK} ".encode()
_SPACES = re.compile(b"  +")


def normalize(text: str) -> str:
    """The cased, normalised form of ``text``: words between single spaces, padded."""
    # Every character maps to one character, which keeps str.translate on its fast path;
    # then breaks become words of their own and runs of spaces collapse.
    if text.isascii():
        folded = text.encode("ascii").translate(_ASCII_TABLE)
        # Folded text has no white space but spaces: collapsing their runs is splitting it
        # into words and joining them again, at a third of the cost.
        spaced = _SPACES.sub(b" ", folded.replace(_BREAK_BYTES, _SPACED_BREAK_BYTES))
        return f" {spaced.strip(b' ').decode('ascii')} "
    folded_text = text.translate(_TABLE).replace(SENTENCE_BREAK, f" {SENTENCE_BREAK} ")
    return f" {' '.join(folded_text.split())} "


def normalize_phrase(phrase: str) -> str:
    """The lower-case normalised words of a cue phrase, without padding or end breaks."""
    return normalize(phrase).lower().strip(" " + SENTENCE_BREAK)


def is_acronym(phrase: str) -> bool:
    """Cues written in capitals ("US", "CAR", "U.S.") are matched case-sensitively."""
    letters = [c for c in phrase if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def plural_variants(phrase: str) -> list[str]:
    """``phrase`` (normalised) plus the plural or possessive-less forms of its last word."""
    head, _, last = phrase.rpartition(" ")
    prefix = f"{head} " if head else ""
    variants = [phrase]
    if not last or not last[-1].isalpha():
        return variants
    if last.endswith("y") and len(last) > 2 and last[-2] not in "aeiou":
        variants.append(f"{prefix}{last[:-1]}ies")
    if last.endswith(("s", "x", "z", "ch", "sh")):
        variants.append(f"{prefix}{last}es")
    variants.append(f"{prefix}{last}s")
    return variants


def words(text: str) -> list[str]:
    """The lower-case normalised words of ``text``, sentence breaks dropped."""
    return normalize(text).lower().replace(SENTENCE_BREAK, " ").split()
