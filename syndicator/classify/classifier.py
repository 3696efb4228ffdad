"""Which WCO regions and which topics an article is about, and why.

The gazetteer (``syndicator/data/regions.toml``, or ``classify.regions``) lists, for
every region, the names of its groupings, and for every country its names, adjectives,
places and customs agencies; it also lists *neutral* phrases (instruments named after
cities, funders, seats of international organisations) that contain place names but do
not make an article about those places. The taxonomy (``syndicator/data/topics.toml``, or
``classify.topics``) lists cue phrases per topic.

Matching is one pass of an Aho-Corasick automaton over normalised text (see
:mod:`syndicator.classify.tokens`), keeping whole words only and, where matches overlap,
the longest: "South Sudan" is not Sudan, "Papua New Guinea" is not Guinea, the
"Revised Kyoto Convention" is not Japan.

A region mention then gets a *role* from its context: a funder ("funded by
Japan"), an adviser or trainer ("experts from HMRC"), a venue ("a workshop held
in Brussels") or a market or origin ("exports to the Middle East"). Such
mentions do not count. The regions of an article are those of the subjects
named in its title; when the title names none, those that carry the body, and
``global`` when nothing does or when the body ranges over three regions or more
with none leading.

Everything here is pure: :meth:`Classifier.classify` takes text and returns a
:class:`Classification` with the evidence behind every decision.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import operator
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import ahocorasick

from syndicator.classify.corrections import Corrections
from syndicator.classify.names import (
    COMMON_NOUN,
    PERSON,
    PRODUCT,
    is_capitalised_text,
    may_name_person,
    name_role,
)
from syndicator.classify.taxonomy import (
    Taxonomy,
    load_toml,
    parse_toml,
    read_data,
    string_list,
)
from syndicator.classify.tokens import (
    SENTENCE_BREAK,
    is_acronym,
    normalize,
    normalize_phrase,
    plural_variants,
)
from syndicator.errors import ConfigError
from syndicator.models import REGION_SLUGS

log = logging.getLogger(__name__)

GLOBAL = "global"
NEUTRAL = "neutral"
# The [neutral] list of WCO-wide bodies and instruments: as a subject, they make a story global.
WCO_BODY = "wco"
ENGINE_VERSION = "1"

TITLE_WEIGHT = 3.0
LEAD_WEIGHT = 1.5
BODY_WEIGHT = 1.0
WCO_WIDE_REASON = "a WCO-wide body or instrument is the subject"
NO_SUBJECT_REASON = "no region named as a subject"
BODY_REASON = "named in the body"
BODY_SPREAD_PREFIX = "the body ranges over"
TITLE_REASON = "named in the title"
# Body regions scoring at least this share of the leading region are kept.
BODY_SHARE = 0.5
# When the body alone decides and it spreads over this many regions, the story is global.
SPREAD_REGIONS = 3

# Words before a mention (in the same clause) that make it a non-subject.
_ROLE_TRIGGERS: dict[str, tuple[str, ...]] = {
    "funder": (
        "funded by",
        "funding from",
        "funding of",
        "financed by",
        "financing from",
        "financial support from",
        "financial support of",
        "support of",
        "support from",
        "supported by",
        "sponsored by",
        "grant from",
        "donated by",
        "donation from",
        "assistance from",
        "assistance of",
        "assisted by",
        "backed by",
        "contribution from",
        "contribution of",
        "with funding",
        "paid for by",
        "thanks to",
    ),
    "adviser": (
        "experts from",
        "expert from",
        "trainers from",
        "trainer from",
        "advisers from",
        "advisors from",
        "adviser from",
        "advisor from",
        "consultants from",
        "consultant from",
        "specialists from",
        "mentors from",
        "instructors from",
        "delivered by",
        "facilitated by",
        "led by experts",
        "experience of",
        "expertise of",
        "expertise from",
        "experience from",
        "modelled on",
        "modeled on",
        "lessons from",
        "practices from",
        "practice from",
        "case studies from",
        "case study from",
        "examples from",
        "study visit to",
        "study visit",
        "study tour to",
        "benchmarking visit to",
        "counterparts in",
    ),
    "proposer": (
        "proposed by",
        "proposal from",
        "proposals from",
        "proposal by",
        "submitted by",
        "presented by",
        "put forward by",
        "drafted by",
        "co chaired by",
        "case submitted by",
        "volunteered",
    ),
    "neighbour": (
        "border with",
        "borders with",
        "border post with",
        "border posts with",
        "crossing with",
        "crossings with",
        "crossing point with",
        "frontier with",
        "boundary with",
        "bridge with",
        "road to",
        "route to",
    ),
    "host": (
        "at the invitation of",
        "invitation of",
        "thanked",
        "hosted by",
        "host country",
        "organised by",
        "organized by",
        "chaired by",
        "presided over by",
        "delegate from",
    ),
    "market": (
        "markets in",
        "markets across",
        "markets of",
        "market in",
        "exports to",
        "export to",
        "exported to",
        "destined for",
        "bound for",
        "loaded at",
        "loaded in",
        "shipped from",
        "originating in",
        "originating from",
        "imported from",
        "imports from",
        "arriving from",
        "transit to",
        "transiting to",
        "en route to",
        "destinations such as",
        "destinations in",
        "routes from",
        "routed through",
        "re routed through",
        "trafficked from",
        "smuggled from",
        "coming from",
    ),
}
# "<one of these> in|at <place>" makes the place a venue.
_VENUE_WORDS = frozenset(
    {
        "held",
        "hold",
        "holds",
        "hosted",
        "host",
        "hosts",
        "convene",
        "convenes",
        "meets",
        "gather",
        "gathers",
        "committee",
        "council",
        "commission",
        "board",
        "gathering",
        "workshops",
        "seminars",
        "conferences",
        "courses",
        "sessions",
        "consultations",
        "talks",
        "negotiations",
        "celebration",
        "celebrations",
        "presentation",
        "award",
        "signed",
        "met",
        "meet",
        "meeting",
        "meetings",
        "convened",
        "gathered",
        "session",
        "workshop",
        "seminar",
        "conference",
        "course",
        "forum",
        "summit",
        "event",
        "ceremony",
        "training",
        "mission",
        "place",
        "venue",
        "headquarters",
        "organized",
        "organised",
        "launched",
        "opened",
        "sidelines",
        "margins",
        "assembly",
        "retreat",
        "dialogue",
        "symposium",
        "exhibition",
        "roundtable",
    }
)
_VENUE_PREPOSITIONS = frozenset({"in", "at"})
_VENUE_FILLER = frozenset({"the", "city", "of", "capital", "its", "their"})
# Words right after a mention that make it a non-subject: "HMRC experts", "Japan-funded".
_ROLE_AFTER: dict[str, str] = {
    "expert": "adviser",
    "experts": "adviser",
    "trainers": "adviser",
    "trainer": "adviser",
    "advisers": "adviser",
    "advisors": "adviser",
    "consultants": "adviser",
    "mentors": "adviser",
    "instructors": "adviser",
    "funded": "funder",
    "financed": "funder",
    "sponsored": "funder",
    "supported": "funder",
    "funding": "funder",
    "donors": "funder",
    "donor": "funder",
    "support": "funder",
    "assistance": "funder",
    "financing": "funder",
    "backing": "funder",
    "grant": "funder",
    "grants": "funder",
    "hosted": "host",
    "hosts": "host",
}
# "<on|along|at|near|across> [the] <place> border": a place named for where, not about whom.
_BORDER_BEFORE = frozenset({"on", "along", "at", "near", "across", "to", "with"})
_BORDER_AFTER = frozenset({"border", "borders", "frontier", "boundary"})
# A title naming no place but one of these is about customs everywhere.
_GLOBAL_TITLE_WORDS = frozenset({"global", "worldwide", "world", "international"})

# In a title, "<A> <verb> <B>" makes A a donor when B is another subject: "Korea Aids Yemen".
_DONOR_VERBS = frozenset(
    {
        "aid",
        "aids",
        "support",
        "supports",
        "assist",
        "assists",
        "help",
        "helps",
        "fund",
        "funds",
        "finance",
        "finances",
        "donate",
        "donates",
        "sponsor",
        "sponsors",
        "equip",
        "equips",
        "train",
        "trains",
        "mentor",
        "mentors",
        "advise",
        "advises",
        "back",
        "backs",
    }
)
# Adjectives that are also languages, and the words that show they are meant as languages.
_LANGUAGES = frozenset(
    {
        "english",
        "french",
        "spanish",
        "portuguese",
        "arabic",
        "russian",
        "chinese",
        "german",
        "italian",
        "dutch",
        "japanese",
        "korean",
        "turkish",
        "persian",
        "swahili",
    }
)
_LANGUAGE_NOUNS = frozenset(
    {
        "language",
        "languages",
        "speaking",
        "speaker",
        "speakers",
        "version",
        "versions",
        "translation",
        "translations",
        "edition",
        "editions",
        "subtitles",
        "interpretation",
    }
)
# Mentions joined by these words share a role: "funded by Japan, Korea and China".
_CONNECTORS = frozenset({"and", "or", "of", "the", "as", "well", "its", "their", "s", "both"})
_CLAUSE_WINDOW = 8
# Characters before a mention that always hold its clause window (eight words of up to 24).
_CLAUSE_CHARS = 200
_AFTER_CHARS = 100


@dataclass(frozen=True, slots=True)
class Cue:
    """One phrase of the gazetteer or taxonomy and what it stands for."""

    phrase: str
    target: str  # a region slug, a topic slug, or "neutral"
    kind: str  # grouping, country, alias, adjective, place, agency, neutral kinds; cue, weak
    entity: str = ""  # the country or grouping the phrase names


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and every
# article makes dozens of these.
@dataclass(slots=True, eq=False)
class Mention:
    """A cue found in an article."""

    cue: Cue
    field: str  # "title" or "body"
    start: int
    end: int
    text: str
    role: str = ""
    trigger: str = ""
    weight: float = 0.0

    def with_weight(self, weight: float) -> Mention:
        return Mention(
            self.cue, self.field, self.start, self.end, self.text, self.role, self.trigger, weight
        )


@dataclass(frozen=True, slots=True)
class Region:
    slug: str
    name: str
    description: str = ""


@dataclass(slots=True)
class Classification:
    """The regions and topics of one article, with the evidence behind them."""

    regions: tuple[str, ...]
    topics: tuple[str, ...]
    region_reason: str = ""
    region_scores: dict[str, float] = field(default_factory=dict)
    topic_scores: dict[str, float] = field(default_factory=dict)
    mentions: list[Mention] = field(default_factory=list)
    topic_mentions: list[Mention] = field(default_factory=list)
    # How clearly the regions won: the share of the weakest chosen region's score that the
    # strongest region left out would still need to draw level (1: nothing else in sight).
    margin: float = 1.0
    # Why an editor should look at the decision: close call, no subject found,
    # conflicting title and body.
    doubts: tuple[str, ...] = ()


# --- loading -------------------------------------------------------------------------------


@dataclass(slots=True)
class Gazetteer:
    regions: dict[str, Region]
    cues: list[Cue]
    # normalised name -> the other country's place it may also be ("georgia": a US state)
    homonyms: dict[str, Cue] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Gazetteer:
        return cls.from_dict(load_toml(path, "regions"), path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> Gazetteer:
        regions: dict[str, Region] = {}
        cues: list[Cue] = []
        for index, entry in enumerate(data.get("region", [])):
            key = f"region[{index}]"
            slug = entry.get("slug")
            if slug not in REGION_SLUGS or slug == GLOBAL:
                raise ConfigError(
                    f"unknown region slug {slug!r}; expected one of "
                    f"{', '.join(s for s in REGION_SLUGS if s != GLOBAL)}",
                    path=path,
                    key=f"{key}.slug",
                )
            regions[slug] = Region(slug, str(entry.get("name", slug)), entry.get("description", ""))
            for phrase in string_list(path, f"{key}.groupings", entry.get("groupings")):
                cues.append(Cue(phrase, slug, "grouping", phrase))
        missing = [s for s in REGION_SLUGS if s != GLOBAL and s not in regions]
        if missing:
            raise ConfigError(f"no [[region]] entry for {', '.join(missing)}", path=path)
        regions[GLOBAL] = Region(GLOBAL, "Global", "Stories about no region in particular")
        for index, entry in enumerate(data.get("country", [])):
            key = f"country[{index}]"
            name = entry.get("name")
            region = entry.get("region")
            if not isinstance(name, str) or not name:
                raise ConfigError("every [[country]] needs a name", path=path, key=f"{key}.name")
            if region not in regions or region == GLOBAL:
                raise ConfigError(
                    f"unknown region {region!r} for {name}", path=path, key=f"{key}.region"
                )
            cues.append(Cue(name, region, "country", name))
            for kind, list_key in (
                ("alias", "aliases"),
                ("adjective", "adjectives"),
                ("place", "places"),
                ("agency", "agencies"),
            ):
                for phrase in string_list(path, f"{key}.{list_key}", entry.get(list_key)):
                    cues.append(Cue(phrase, region, kind, name))
        homonyms: dict[str, Cue] = {}
        countries = {c.entity: c.target for c in cues if c.kind == "country"}
        for index, entry in enumerate(data.get("homonym", [])):
            key = f"homonym[{index}]"
            name, country = entry.get("name"), entry.get("country")
            if not isinstance(name, str) or not normalize_phrase(name):
                raise ConfigError("every [[homonym]] needs a name", path=path, key=f"{key}.name")
            if country not in countries:
                raise ConfigError(
                    f"unknown country {country!r} for homonym {name!r}: name a [[country]]",
                    path=path,
                    key=f"{key}.country",
                )
            homonyms[normalize_phrase(name)] = Cue(name, countries[country], "homonym", country)
        neutral = data.get("neutral", {})
        if not isinstance(neutral, dict):
            raise ConfigError("must be a table of lists", path=path, key="neutral")
        for list_key, value in neutral.items():
            for phrase in string_list(path, f"neutral.{list_key}", value):
                cues.append(Cue(phrase, NEUTRAL, list_key, phrase))
        return cls(regions, cues, homonyms)


# --- matching ------------------------------------------------------------------------------


_TOPIC_KINDS = frozenset({"cue", "weak"})
_Match = tuple[int, int, Cue]


class _Found(NamedTuple):
    """What one pass of the matcher finds in a field."""

    regions: list[_Match]
    topics: list[_Match]
    triggers: list[int]  # where role triggers start
    background: list[int]  # where background clauses start


def _leftmost_longest(found: list[_Match]) -> list[_Match]:
    """At each position the longest match wins; a match starting inside a taken one is
    dropped ("Revised Kyoto Convention" hides Kyoto, "South Sudan" hides Sudan)."""
    if len(found) < 2:
        return found
    found.sort(key=_START)
    taken: list[_Match] = []
    last_start, last_end = -1, -1
    for candidate in found:
        start, end = candidate[0], candidate[1]
        if start == last_start:
            if end > last_end:
                # A longer match at the same place replaces the shorter ones taken there.
                while taken and taken[-1][0] == start:
                    taken.pop()
                taken.append(candidate)
                last_end = end
            elif end == last_end:
                taken.append(candidate)  # the same words with another meaning
        elif start >= last_end:
            taken.append(candidate)
            last_start, last_end = start, end
    return taken


_START = operator.itemgetter(0)


def _by_meaning(cues: list[Cue]) -> tuple[tuple[Cue, ...], tuple[Cue, ...]]:
    """Region and topic meanings of a phrase apart, so that matching need not sort them."""
    return (
        tuple(cue for cue in cues if cue.kind not in _TOPIC_KINDS),
        tuple(cue for cue in cues if cue.kind in _TOPIC_KINDS),
    )


# Kinds of phrases the matcher also finds for the rules, besides cues.
_TRIGGER_MARK = 0  # a role trigger ("funded by"), see _ROLE_TRIGGERS
_BACKGROUND_MARK = 1  # a background clause ("who had"), see _BACKGROUND


def _regex_starts(found: list[tuple[int, int, int]]) -> list[int]:
    """The starts of the phrases ``re.finditer`` would find among ``found``, the
    ``(start, rank, length)`` of every phrase occurring in a text: the first-ranked phrase
    wins at a position, and a phrase hides those starting within its ``length``."""
    if len(found) > 1:
        found.sort()
    starts: list[int] = []
    free = 0
    for start, _rank, length in found:
        if start >= free:
            starts.append(start)
            free = start + length
    return starts


class _Matcher:
    """Whole-word search for every gazetteer and taxonomy phrase in one pass.

    The pass goes over the lower-case text; a phrase written in capitals (an acronym:
    "US", "CAR") is found there too and kept where the text has it in capitals. The same
    pass finds where role triggers and background clauses start, as a regular expression
    ``" (first|second|...)"`` would, without trying every phrase at every space of the
    text."""

    def __init__(self, cues: list[Cue]) -> None:
        self.conflicts: list[tuple[Cue, Cue]] = []
        self._automaton: Any = ahocorasick.Automaton()
        lower: dict[str, list[Cue]] = {}
        cased: dict[str, list[Cue]] = {}
        for cue in cues:
            cased_form = normalize(cue.phrase).strip(" " + SENTENCE_BREAK)
            if not cased_form:
                continue
            if is_acronym(cue.phrase):
                self._add(cased, cased_form, cue)
            else:
                for variant in plural_variants(cased_form.lower()):
                    self._add(lower, variant, cue, primary=variant == cased_form.lower())
        # (kind, rank, length): the rank orders phrases starting at the same place, the
        # length (from the space before, and the one after a background clause, which its
        # expression consumes) is what a found phrase hides.
        marks: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        triggers = sorted(_TRIGGER_ROLE, key=len, reverse=True)  # the longest wins
        for kind, phrases, consumed in (
            (_TRIGGER_MARK, triggers, 1),
            (_BACKGROUND_MARK, _BACKGROUND, 2),
        ):
            for rank, phrase in enumerate(phrases):
                marks[phrase].append((kind, rank, len(phrase) + consumed))
        # Acronyms by their lower-case form: (the form in capitals, region and topic cues).
        acronyms: dict[str, list[tuple[str, tuple[Cue, ...], tuple[Cue, ...]]]] = defaultdict(list)
        for key, found in cased.items():
            acronyms[key.lower()].append((key, *_by_meaning(found)))
        # Keys are padded with spaces, and so is normalised text: only whole words match.
        for key in dict.fromkeys([*lower, *acronyms, *marks]):
            # The rare rest, checked at once: (trigger and background marks, acronyms).
            rest = None
            if key in marks or key in acronyms:
                rest = (tuple(marks.get(key, ())), tuple(acronyms.get(key, ())))
            value = (len(key), *_by_meaning(lower.get(key, [])), rest)
            self._automaton.add_word(f" {key} ", value)
        self._empty = not self._automaton
        if not self._empty:
            self._automaton.make_automaton()

    def _add(
        self, table: dict[str, list[Cue]], key: str, cue: Cue, *, primary: bool = True
    ) -> None:
        entries = table.setdefault(key, [])
        topic = cue.kind in _TOPIC_KINDS
        for existing in entries:
            if topic and existing.kind in _TOPIC_KINDS:
                # A phrase may signal several topics ("undervaluation": valuation, revenue).
                if existing.target == cue.target:
                    return
                continue
            if not topic and existing.kind not in _TOPIC_KINDS:
                # A place belongs to one region: the first meaning wins, the rest is reported.
                if existing.target != cue.target and primary:
                    self.conflicts.append((existing, cue))
                return
        entries.append(cue)

    def find(self, cased_text: str, lower_text: str) -> _Found:
        """Region and topic matches ``(start, end, cue)``, each non-overlapping, in order;
        where role triggers and background clauses start (at the space before them)."""
        regions: list[_Match] = []
        topics: list[_Match] = []
        marks: tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]] = ([], [])
        if self._empty:
            return _Found(regions, topics, [], [])
        add_region = regions.append
        add_topic = topics.append
        # A match of " words " ends at the trailing space; keep the words alone.
        for end, (length, region_cues, topic_cues, rest) in self._automaton.iter(lower_text):
            start = end - length
            for cue in region_cues:
                add_region((start, end, cue))
            for cue in topic_cues:
                add_topic((start, end, cue))
            if rest is not None:
                phrase_marks, acronyms = rest
                for kind, rank, span in phrase_marks:
                    marks[kind].append((start - 1, rank, span))
                if acronyms:
                    written = cased_text[start:end]
                    for capitals, acronym_regions, acronym_topics in acronyms:
                        if written == capitals:
                            for cue in acronym_regions:
                                add_region((start, end, cue))
                            for cue in acronym_topics:
                                add_topic((start, end, cue))
        return _Found(
            _leftmost_longest(regions),
            _leftmost_longest(topics),
            _regex_starts(marks[_TRIGGER_MARK]) if marks[_TRIGGER_MARK] else [],
            _regex_starts(marks[_BACKGROUND_MARK]) if marks[_BACKGROUND_MARK] else [],
        )


def _clause_before(text: str, start: int) -> list[str]:
    # The window words fit in a bounded slice: no need to split a whole long sentence.
    clause_start = text.rfind(SENTENCE_BREAK, max(0, start - _CLAUSE_CHARS), start) + 1
    return text[max(clause_start, start - _CLAUSE_CHARS) : start].split()[-_CLAUSE_WINDOW:]


def _words_after(text: str, end: int, count: int = 2) -> list[str]:
    # A bounded slice holds the few words wanted; they stop at the end of the sentence.
    words = text[end : end + _AFTER_CHARS].split()[: count + 1]
    if SENTENCE_BREAK in words:
        words = words[: words.index(SENTENCE_BREAK)]
    return words[:count]


_TRIGGER_ROLE = {trigger: role for role, triggers in _ROLE_TRIGGERS.items() for trigger in triggers}
_TRIGGER = re.compile(
    r" (" + "|".join(re.escape(t) for t in sorted(_TRIGGER_ROLE, key=len, reverse=True)) + r") "
)


def _role_before_at(text: str, start: int, trigger_starts: list[int]) -> tuple[str, str]:
    """:func:`_role_before` for the mention at ``start``, quick when nothing can apply: no
    trigger earlier in its clause and no "in" or "at" (or a filler) right before it."""
    index = bisect.bisect_left(trigger_starts, start) - 1
    nearest = trigger_starts[index] if index >= 0 else -1
    if nearest < 0 or nearest < start - _CLAUSE_CHARS or SENTENCE_BREAK in text[nearest:start]:
        end = start - 1
        while True:  # the first word before the mention that is not a filler ("of the")
            word_start = text.rfind(" ", 0, end) + 1
            word = text[word_start:end]
            if word not in _VENUE_FILLER or word_start == 0:
                break
            end = word_start - 1
        if word not in _VENUE_PREPOSITIONS:
            return "", ""
    return _role_before(_clause_before(text, start))


def _role_before(before: list[str]) -> tuple[str, str]:
    match = _TRIGGER.search(f" {' '.join(before)} ")
    if match:
        return _TRIGGER_ROLE[match.group(1)], match.group(1)
    trimmed = list(before)
    while trimmed and trimmed[-1] in _VENUE_FILLER:
        trimmed.pop()
    # "<event> ... in|at <place>": a workshop held in Brussels, a meeting of the
    # Contact Committee in Bern, a course in Doha.
    if len(trimmed) >= 2 and trimmed[-1] in _VENUE_PREPOSITIONS:
        for word in reversed(trimmed[:-1]):
            if word in _VENUE_WORDS:
                return "venue", f"{word} … {trimmed[-1]}"
    return "", ""


def _is_language(text: str, start: int, end: int) -> bool:
    """ "Available in English, French and Spanish": a language, not a country."""
    word = text[start:end]
    if word not in _LANGUAGES:
        return False
    before = _clause_before(text, start)[-3:]
    after = _words_after(text, end, 1)
    return (
        (bool(before) and before[-1] in {"in", "into"})
        or any(other in _LANGUAGES for other in before)
        or (bool(after) and after[0] in _LANGUAGE_NOUNS)
    )


# Names whose words say nothing of the topic: "Kenya Revenue Authority", "Port of Trade".
_NAMED_KINDS = frozenset({"agency", "place"})
_NAME_KINDS = frozenset({"country", "alias", "adjective", "place"})
# Roles that belong to one word, never shared with the names joined to it.
_OWN_ROLES = frozenset({PERSON, PRODUCT, COMMON_NOUN})


# Not frozen, for the speed of making one per field (see Mention).
@dataclass(slots=True)
class _Context:
    """What the roles of one field's mentions are read from."""

    lower: str
    cased: str
    field: str
    capitalised: bool = False
    persons: frozenset[str] = frozenset()  # names read as people elsewhere in the article


def _name_role_of(  # noqa: PLR0917 - the name's place, and the other cues' when known
    context: _Context,
    start: int,
    end: int,
    found: list[_Match],
    cue_starts: frozenset[int] | None = None,
    cue_ends: frozenset[int] | None = None,
) -> tuple[str, str]:
    """:func:`name_role` for the name at ``start`` among the matches ``found``."""
    return name_role(
        context.cased,
        start,
        end,
        body=context.field == "body",
        capitalised_text=context.capitalised,
        cue_starts=cue_starts if cue_starts is not None else frozenset(m[0] for m in found),
        cue_ends=cue_ends if cue_ends is not None else frozenset(m[1] for m in found),
    )


def _word_after(text: str, end: int) -> str:
    """The first word after the mention ending at ``end``, a possessive "s" skipped, within
    the next three words of its sentence; ``""`` when there is none."""
    position = end + 1  # text[end] is the space after the mention
    for _ in range(3):
        stop = text.find(" ", position)
        if stop < 0:
            return ""
        word = text[position:stop]
        if word == SENTENCE_BREAK:
            return ""
        if word != "s":
            return word
        position = stop + 1
    return ""


def _assign_roles(context: _Context, matched: _Found) -> list[Mention]:
    found = matched.regions
    if not found:
        return []
    text = context.lower
    field_name = context.field
    in_title = field_name == "title"
    persons = context.persons
    mentions: list[Mention] = []
    cue_starts: frozenset[int] = frozenset()
    cue_ends: frozenset[int] = frozenset()
    if not in_title:  # only the rules for running text look at the other cues
        cue_starts = frozenset(item[0] for item in found)
        cue_ends = frozenset(item[1] for item in found)
    wco_body_before = False
    trigger_starts = matched.triggers
    previous: Mention | None = None
    for start, end, cue in found:
        name = text[start:end]
        if cue.target == NEUTRAL:
            if cue.kind == WCO_BODY:
                wco_body_before = True
            mentions.append(Mention(cue, field_name, start, end, name, cue.kind, cue.phrase))
            continue
        role, trigger = "", ""
        if cue.kind in _NAME_KINDS:
            if name in persons:
                role, trigger = PERSON, f"{context.cased[start:end]} (a person, see body)"
            else:
                role, trigger = name_role(
                    context.cased,
                    start,
                    end,
                    body=not in_title,
                    capitalised_text=context.capitalised,
                    cue_starts=cue_starts,
                    cue_ends=cue_ends,
                )
        if not role:
            role, trigger = _role_before_at(text, start, trigger_starts)
        if not role and wco_body_before:
            # "Policy Commission Meets in Seoul": where a WCO body met.
            before = _clause_before(text, start)
            while before and before[-1] in _VENUE_FILLER:
                before.pop()
            if before and before[-1] in _VENUE_PREPOSITIONS:
                role, trigger = "venue", f"WCO body … {before[-1]}"
        if not role and name in _LANGUAGES and _is_language(text, start, end):
            role, trigger = "language", name
        if not role:
            after = _word_after(text, end)
            if after in _ROLE_AFTER:
                role, trigger = _ROLE_AFTER[after], after
            elif after in _BORDER_AFTER:
                before = [w for w in _clause_before(text, start)[-2:] if w != "the"]
                if before and before[-1] in _BORDER_BEFORE:
                    role, trigger = "border", f"{before[-1]} … {after}"
            elif (
                in_title
                and after in _DONOR_VERBS
                and any(
                    other[0] > end and other[2].target != NEUTRAL and other[2].entity != cue.entity
                    for other in found
                )
            ):
                role, trigger = "donor", after
        if not role and in_title and cue.kind == "grouping":
            role, trigger = _framework_role(text, start, cue, mentions)
        if not role and previous is not None and previous.role and previous.role not in _OWN_ROLES:
            gap = text[previous.end : start]
            gap_words = gap.split()
            if (
                SENTENCE_BREAK not in gap
                and len(gap_words) <= 4
                and all(word in _CONNECTORS for word in gap_words)
            ):
                role, trigger = previous.role, previous.trigger
        previous = Mention(cue, field_name, start, end, name, role, trigger)
        mentions.append(previous)
    return mentions


_NOBODY: frozenset[str] = frozenset()


def _persons_named(
    names: set[str], body_cased: str, body_lower: str, body_regions: list[_Match]
) -> frozenset[str]:
    """Those of ``names`` that the body shows to be people's (see :func:`name_role`)."""
    # Only a name beside a capitalised word or after a title can be a person's.
    same = [
        (start, end)
        for start, end, cue in body_regions
        if cue.kind in _NAME_KINDS
        and cue.target != NEUTRAL
        and body_lower[start:end] in names
        and may_name_person(body_cased, start, end)
    ]
    if not same:
        return _NOBODY
    # How the body is capitalised matters only to names written in lower case there.
    capitalised = any(body_cased[start:end].islower() for start, end in same) and (
        is_capitalised_text(body_cased)
    )
    body_context = _Context(body_lower, body_cased, "body", capitalised)
    starts = frozenset(match[0] for match in body_regions)
    ends = frozenset(match[1] for match in body_regions)
    return frozenset(
        body_lower[start:end]
        for start, end in same
        if _name_role_of(body_context, start, end, body_regions, starts, ends)[0] == PERSON
    )


def _lead_names_wco_body(body_regions: list[_Match], body_lower: str) -> bool:
    """Whether the first place or body the body names in its first sentence is a WCO-wide
    body or instrument (see :meth:`Classifier._decide_regions`)."""
    if not body_regions:
        return False
    lead_end = body_lower.find(SENTENCE_BREAK)
    start, _end, cue = body_regions[0]
    return (lead_end < 0 or start < lead_end) and cue.kind == WCO_BODY


def _framework_role(text: str, start: int, cue: Cue, earlier: list[Mention]) -> tuple[str, str]:
    """A grouping named after the acting country in a title, not joined to it by "and", is a
    framework it applies: "Egypt Prepares to Apply COMESA Certificates" is Egypt's story."""
    for mention in reversed(earlier):
        if mention.role or mention.cue.target in {NEUTRAL, cue.target}:
            continue
        if mention.cue.kind == "grouping":
            return "", ""
        gap = text[mention.end : start].split()
        if not gap or "and" in gap:
            return "", ""
        return "framework", f"{mention.text} … {text[start : start + len(cue.phrase)]}"
    return "", ""


def _matcher_of(gazetteer: Gazetteer, taxonomy: Taxonomy) -> _Matcher:
    topic_cues: list[Cue] = []
    for topic in taxonomy.topics.values():
        topic_cues.extend(Cue(phrase, topic.slug, "cue", topic.slug) for phrase in topic.cues)
        topic_cues.extend(Cue(phrase, topic.slug, "weak", topic.slug) for phrase in topic.weak_cues)
    return _Matcher(gazetteer.cues + topic_cues)


def _code_sources() -> list[bytes]:
    """What a cached matcher depends on besides the two files: the code that builds and
    reads it, and the pyahocorasick installed (an automaton is its own pickle format)."""
    sources = [
        Path(sys.modules[name].__file__ or "").read_bytes()
        for name in (
            __name__,
            "syndicator.classify.taxonomy",
            "syndicator.classify.names",
            "syndicator.classify.tokens",
        )
    ]
    library = Path(ahocorasick.__file__ or "").stat()
    sources.append(f"{ahocorasick.__file__} {library.st_size} {library.st_mtime_ns}".encode())
    return sources


def _valid_entry(entry: object) -> tuple[Gazetteer, Taxonomy, _Matcher] | None:
    """``entry`` if it is what :meth:`Classifier.load` stores, else None."""
    if (
        isinstance(entry, tuple)
        and len(entry) == 3
        and isinstance(entry[0], Gazetteer)
        and isinstance(entry[1], Taxonomy)
        and isinstance(entry[2], _Matcher)
    ):
        return entry
    return None


class Classifier:
    """Regions and topics for article text, from a gazetteer and a taxonomy."""

    def __init__(
        self,
        gazetteer: Gazetteer,
        taxonomy: Taxonomy,
        *,
        fingerprint: str = "",
        corrections: Corrections | None = None,
        _matcher: _Matcher | None = None,
    ) -> None:
        self.gazetteer = gazetteer
        self.taxonomy = taxonomy
        self.corrections = corrections if corrections is not None else Corrections()
        self.fingerprint = fingerprint or ENGINE_VERSION
        self._matcher = _matcher if _matcher is not None else _matcher_of(gazetteer, taxonomy)

    @classmethod
    def load(
        cls,
        regions_path: Path,
        topics_path: Path,
        corrections_path: Path | None = None,
        *,
        cache_dir: Path | None = None,
    ) -> Classifier:
        """The classifier of a gazetteer, a taxonomy and, optionally, editors' corrections.

        Its fingerprint covers all three files, so a change to any of them has every
        stored article classified (and corrected) again. With ``cache_dir``, the gazetteer,
        taxonomy and matcher built from the two files are kept there and read back while
        neither file (nor the code) changes (see :mod:`syndicator.classify.cache`)."""
        regions_data = read_data(regions_path, "regions")
        try:
            topics_data = read_data(topics_path, "topics")
        except ConfigError:
            # A gazetteer that does not load is the first problem reported, as it always was.
            Gazetteer.from_dict(parse_toml(regions_data, regions_path), regions_path)
            raise
        hashed = [ENGINE_VERSION.encode(), regions_data, topics_data]
        built: tuple[Gazetteer, Taxonomy, _Matcher] | None = None
        if cache_dir is not None:
            from syndicator.classify import cache  # noqa: PLC0415

            entry = cache.entry_path(cache_dir, (regions_path, topics_path))
            key = cache.cache_key([*_code_sources(), regions_data, topics_data])
            built = _valid_entry(cache.read(entry, key))
        if built is None:
            gazetteer = Gazetteer.from_dict(parse_toml(regions_data, regions_path), regions_path)
            taxonomy = Taxonomy.from_dict(parse_toml(topics_data, topics_path), topics_path)
            built = (gazetteer, taxonomy, _matcher_of(gazetteer, taxonomy))
            if cache_dir is not None:
                cache.write(entry, key, built)
        gazetteer, taxonomy, matcher = built
        corrections = Corrections()
        if corrections_path is not None:
            corrections = Corrections.load(
                corrections_path, frozenset(gazetteer.regions), frozenset(taxonomy.topics)
            )
            for problem in corrections.problems:
                log.warning("%s", problem)
            hashed.append(corrections.digest.encode())
        return cls(
            gazetteer,
            taxonomy,
            fingerprint=hashlib.sha256(b"".join(hashed)).hexdigest()[:16],
            corrections=corrections,
            _matcher=matcher,
        )

    @property
    def conflicts(self) -> list[tuple[Cue, Cue]]:
        """Phrases given two different meanings (the first one wins)."""
        return self._matcher.conflicts

    def classify(self, title: str, body: str) -> Classification:
        title_cased = normalize(title)
        body_cased = normalize(body)
        title_lower = title_cased.lower()
        body_lower = body_cased.lower()
        title_found = self._matcher.find(title_cased, title_lower)
        body_found = self._matcher.find(body_cased, body_lower)
        regions, reason, scores, mentions = self._classify_regions(
            title_cased, title_lower, title_found, body_cased, body_lower, body_found
        )
        topics, topic_scores, topic_mentions = _decide_topics(
            title_lower, title_found, body_lower, body_found
        )
        margin, doubts = _doubts(regions, reason, scores, mentions, title_lower)
        return Classification(
            regions=regions,
            topics=topics,
            margin=margin,
            doubts=doubts,
            region_reason=reason,
            region_scores=scores,
            topic_scores=topic_scores,
            mentions=mentions,
            topic_mentions=topic_mentions,
        )

    def _classify_regions(  # noqa: PLR0917 - both fields, each cased, lower and matched
        self,
        title_cased: str,
        title_lower: str,
        title_found: _Found,
        body_cased: str,
        body_lower: str,
        body_found: _Found,
        title_mentions: list[Mention] | None = None,
    ) -> tuple[tuple[str, ...], str, dict[str, float], list[Mention]]:
        """The regions of an article and why; ``title_mentions`` when the title's roles are
        known already (they depend on the body only through the names it shows to be
        people's)."""
        # Lower-case names ("frozen turkey") are common nouns only in properly capitalised
        # text; the capitals of a text are counted only when it has such a name.
        capitalised = any(
            body_cased[start:end].islower()
            for start, end, cue in body_found.regions
            if cue.kind in _NAME_KINDS
        ) and is_capitalised_text(body_cased)
        body_mentions = _assign_roles(
            _Context(body_lower, body_cased, "body", capitalised), body_found
        )
        if title_mentions is None:
            persons = frozenset(m.text for m in body_mentions if m.role == PERSON)
            title_mentions = _assign_roles(
                _Context(title_lower, title_cased, "title", persons=persons), title_found
            )
        mentions = self._resolve_homonyms(title_mentions + body_mentions)
        return self._decide_regions(mentions, title_lower, body_lower)

    def decide(self, title: str, body: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The regions and topics :meth:`classify` gives, without the explanation.

        This is what reading a store needs, so the roles of places are weighed only where
        they can change the regions (see :meth:`_decide_regions`):

        * a title naming exactly one region as its subject decides alone, so the places
          of the body are not analysed, except those that can change a title's name: a
          word the body shows to be a person's (a name another country also uses sends
          the article through the whole classification);
        * a title naming none leaves a WCO-wide story, a worldwide title or a body naming
          no region ``global``, whatever the roles in the body.
        """
        title_cased = normalize(title)
        body_cased = normalize(body)
        title_lower = title_cased.lower()
        body_lower = body_cased.lower()
        title_found = self._matcher.find(title_cased, title_lower)
        body_found = self._matcher.find(body_cased, body_lower)
        topics = _decide_topics(title_lower, title_found, body_lower, body_found, explain=False)[0]
        title_regions = title_found.regions
        body_regions = body_found.regions
        homonyms = self.gazetteer.homonyms
        names: set[str] = set()
        for start, end, cue in title_regions:
            if cue.target != NEUTRAL:
                name = title_lower[start:end]
                if name in homonyms:
                    return self._classify_regions(
                        title_cased, title_lower, title_found, body_cased, body_lower, body_found
                    )[0], topics
                if cue.kind in _NAME_KINDS:
                    names.add(name)
        persons = _persons_named(names, body_cased, body_lower, body_regions) if names else _NOBODY
        title_mentions = _assign_roles(
            _Context(title_lower, title_cased, "title", persons=persons), title_found
        )
        subjects = {m.cue.target for m in title_mentions if not m.role}
        if len(subjects) == 1:
            return (subjects.pop(),), topics
        if not subjects and (
            any(m.cue.kind == WCO_BODY for m in title_mentions)
            or _lead_names_wco_body(body_regions, body_lower)
            or all(cue.target == NEUTRAL for _start, _end, cue in body_regions)
            or _GLOBAL_TITLE_WORDS & set(title_lower.split())
        ):
            return (GLOBAL,), topics
        return self._classify_regions(
            title_cased,
            title_lower,
            title_found,
            body_cased,
            body_lower,
            body_found,
            title_mentions,
        )[0], topics

    def _resolve_homonyms(self, mentions: list[Mention]) -> list[Mention]:
        """ "Georgia" beside Atlanta or CBP, "Paris, Texas": a name another country also
        uses means that country's place when the article names that country and nothing
        else of the first one."""
        homonyms = self.gazetteer.homonyms
        if not homonyms or not any(m.text in homonyms for m in mentions):
            return mentions
        entities = defaultdict(set)
        for mention in mentions:
            if mention.role not in _OWN_ROLES:
                entities[mention.cue.entity].add(mention.text)
        resolved = []
        for found in mentions:
            other = homonyms.get(found.text)
            if (
                other is not None
                and not found.role
                and other.entity in entities
                and entities[found.cue.entity] <= {found.text}
            ):
                trigger = f"a place in {other.entity}, which the article names"
                resolved.append(
                    Mention(other, found.field, found.start, found.end, found.text, "", trigger)
                )
            else:
                resolved.append(found)
        return resolved

    def _decide_regions(
        self, mentions: list[Mention], title_lower: str, body_lower: str
    ) -> tuple[tuple[str, ...], str, dict[str, float], list[Mention]]:
        lead_end = body_lower.find(SENTENCE_BREAK)
        weighted: list[Mention] = []
        scores: dict[str, float] = defaultdict(float)
        title_regions: dict[str, float] = {}
        for found in mentions:
            weight = 0.0
            if not found.role:
                if found.field == "title":
                    weight = TITLE_WEIGHT
                elif lead_end < 0 or found.start < lead_end:
                    weight = LEAD_WEIGHT
                else:
                    weight = BODY_WEIGHT
            found.weight = weight
            mention = found
            weighted.append(mention)
            if weight:
                scores[mention.cue.target] += weight
                if mention.field == "title":
                    title_regions[mention.cue.target] = (
                        title_regions.get(mention.cue.target, 0.0) + weight
                    )
        ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        if title_regions:
            chosen = [slug for slug, _ in ordered if slug in title_regions]
            return tuple(chosen), TITLE_REASON, dict(ordered), weighted
        lead_subject = next(
            (m for m in mentions if m.field == "body" and (lead_end < 0 or m.start < lead_end)),
            None,
        )
        if any(m.field == "title" and m.cue.kind == WCO_BODY for m in mentions) or (
            lead_subject is not None and lead_subject.cue.kind == WCO_BODY
        ):
            return (GLOBAL,), WCO_WIDE_REASON, dict(ordered), weighted
        if not ordered:
            return (GLOBAL,), NO_SUBJECT_REASON, {}, weighted
        if _GLOBAL_TITLE_WORDS & set(title_lower.split()):
            return (GLOBAL,), "a worldwide story by its title", dict(ordered), weighted
        top = ordered[0][1]
        kept = [slug for slug, score in ordered if score >= top * BODY_SHARE]
        if len(kept) >= SPREAD_REGIONS:
            return (
                (GLOBAL,),
                f"{BODY_SPREAD_PREFIX} {len(kept)} regions with none leading",
                dict(ordered),
                weighted,
            )
        return tuple(kept), BODY_REASON, dict(ordered), weighted


CLOSE_CALL = "close call"
NO_SUBJECT = "no subject found"
CONFLICT = "conflicting title and body"
# A decision won by less than this share of its score is a close call.
CLOSE_MARGIN = 0.25
# The body is about something else when other regions outweigh the title's there this much.
CONFLICT_RATIO = 2.0


def _doubts(
    regions: tuple[str, ...],
    reason: str,
    scores: dict[str, float],
    mentions: list[Mention],
    title_lower: str,
) -> tuple[float, tuple[str, ...]]:
    """The margin of a region decision and the reasons an editor should review it."""
    doubts: list[str] = []
    chosen = [scores.get(slug, 0.0) for slug in regions if slug != GLOBAL]
    left_out = [score for slug, score in scores.items() if slug not in regions]
    margin = 1.0
    if reason == TITLE_REASON:
        # How far the title's regions lead whatever else the article names.
        margin = max(0.0, 1.0 - max(left_out, default=0.0) / min(chosen))
    elif scores and (reason == BODY_REASON or reason.startswith(BODY_SPREAD_PREFIX)):
        # How far the decision is from the line that keeps a body region (a share of the
        # leading one): the weakest region kept above it, the strongest left out below it.
        ranked = sorted(scores.values(), reverse=True)
        line = ranked[0] * BODY_SHARE
        kept = [score for score in ranked if score >= line]
        below = [score for score in ranked if score < line]
        if len(kept) > 1:
            margin = min(margin, (kept[-1] - line) / kept[-1])
        if below:
            margin = min(margin, (line - below[0]) / line)
    if reason == NO_SUBJECT_REASON:
        margin = 0.0
        # A title naming the WCO, another organisation or the world says whose story it is.
        title_says = (_GLOBAL_TITLE_WORDS | {"wco"}) & set(title_lower.split()) or any(
            m.field == "title" for m in mentions
        )
        if not title_says and any(m.cue.target != NEUTRAL for m in mentions):
            doubts.append(
                f"{NO_SUBJECT}: every place is named as something else "
                "(funder, venue, person, product ...)"
            )
    elif margin < CLOSE_MARGIN and reason != TITLE_REASON:
        doubts.append(f"{CLOSE_CALL}: margin {margin:.2f}")
    if reason == TITLE_REASON:
        body: dict[str, float] = defaultdict(float)
        for mention in mentions:
            if mention.field == "body" and mention.weight:
                body[mention.cue.target] += mention.weight
        ours = sum(score for slug, score in body.items() if slug in regions)
        others = {slug: score for slug, score in body.items() if slug not in regions}
        if others:
            slug, score = max(others.items(), key=lambda item: (item[1], item[0]))
            if score >= 3.0 and score >= CONFLICT_RATIO * ours:
                doubts.append(
                    f"{CONFLICT}: the title names {', '.join(regions)}, "
                    f"the body is mostly about {slug}"
                )
    return round(margin, 2), tuple(doubts)


# Words that put what follows in the background: "officers who had completed a training course".
_BACKGROUND = (
    "who had",
    "who have",
    "which had",
    "had attended",
    "had completed",
    "had recently",
    "recently completed",
    "having attended",
    "after attending",
    "previously",
    "last year",
    "in the past",
)


# How far before a cue (in characters, within its sentence) a background word reaches.
_BACKGROUND_REACH = 60


def _is_passing(lower: str, start: int, marks: list[int]) -> bool:
    if not marks:
        return False
    index = bisect.bisect_left(marks, start) - 1
    if index < 0:
        return False
    mark = marks[index]
    return mark >= start - _BACKGROUND_REACH and SENTENCE_BREAK not in lower[mark:start]


# Weak cues the body needs for a topic (two are enough when one is in the first sentence).
_WEAK_IN_BODY = 3


def _decide_topics(
    title_lower: str,
    title: _Found,
    body_lower: str,
    body: _Found,
    *,
    explain: bool = True,
) -> tuple[tuple[str, ...], dict[str, float], list[Mention]]:
    """A topic needs a cue, or a weak cue in the title, or two weak cues in the body.

    A cue inside an agency's or a place's name ("Kenya Revenue Authority") counts as
    a weak cue that supports but never decides alone; one in a background
    clause after the first sentence ("officers who had attended a training course") is a
    passing mention and does not count."""
    lead_end = body_lower.find(SENTENCE_BREAK)
    marks = body.background
    strong: set[str] = set()
    weak_title: set[str] = set()
    weak_body: dict[str, int] = defaultdict(int)
    weak_outside: set[str] = set()
    weak_lead: set[str] = set()
    scores: dict[str, float] = defaultdict(float)
    mentions: list[Mention] = []
    for field_name, lower, matched, full_weight in (
        ("title", title_lower, title, TITLE_WEIGHT),
        ("body", body_lower, body, BODY_WEIGHT),
    ):
        found = matched.topics
        if not found:
            continue
        in_body = field_name == "body"
        # The names of agencies and places, in order, and the next one not behind a cue.
        names = [(start, end) for start, end, cue in matched.regions if cue.kind in _NAMED_KINDS]
        name_index = 0
        # Cues after the first sentence may be passing mentions.
        passing_after = lead_end if in_body and marks and lead_end >= 0 else len(lower)
        for start, end, cue in found:
            target = cue.target
            role = ""
            if names:
                while name_index < len(names) and names[name_index][1] < end:
                    name_index += 1
                if name_index < len(names) and names[name_index][0] <= start:
                    role = "in a name"
            if not role and start > passing_after and _is_passing(lower, start, marks):
                role = "passing"
                weight = 0.0
            elif role or cue.kind == "weak":
                weight = full_weight / 2
                if in_body:
                    weak_body[target] += 1
                    if start < lead_end or lead_end < 0:
                        weak_lead.add(target)
                else:
                    weak_title.add(target)
                if not role:
                    weak_outside.add(target)
            else:
                weight = full_weight
                strong.add(target)
            scores[target] += weight
            if explain:
                mentions.append(
                    Mention(cue, field_name, start, end, lower[start:end], role, role, weight)
                )
    supported = {
        slug
        for slug in weak_outside
        if slug in weak_title
        or weak_body.get(slug, 0) >= _WEAK_IN_BODY
        or (slug in weak_lead and weak_body[slug] >= 2)
    }
    chosen = strong | supported
    if len(chosen) < 2:
        return tuple(chosen), dict(scores), mentions
    ordered = sorted(chosen, key=lambda slug: (-scores[slug], slug))
    return tuple(ordered), dict(scores), mentions
