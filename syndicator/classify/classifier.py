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

import contextlib
import hashlib
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick

from syndicator.classify.tokens import SENTENCE_BREAK, is_acronym, normalize, plural_variants
from syndicator.errors import ConfigError
from syndicator.models import REGION_SLUGS

GLOBAL = "global"
NEUTRAL = "neutral"
ENGINE_VERSION = "1"

TITLE_WEIGHT = 3.0
LEAD_WEIGHT = 1.5
BODY_WEIGHT = 1.0
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
    "host": (
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


@dataclass(frozen=True, slots=True)
class Cue:
    """One phrase of the gazetteer or taxonomy and what it stands for."""

    phrase: str
    target: str  # a region slug, a topic slug, or "neutral"
    kind: str  # grouping, country, alias, adjective, place, agency, neutral kinds; cue, weak
    entity: str = ""  # the country or grouping the phrase names


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Topic:
    slug: str
    name: str
    description: str
    cues: tuple[str, ...]
    weak_cues: tuple[str, ...] = ()


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


# --- loading -------------------------------------------------------------------------------


def _load_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{what} not found", path=path, hint=f"set classify.{what} in the configuration"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=path) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc


def _strings(path: Path, key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError("must be a list of strings", path=path, key=key)
    return [item for item in value if item.strip()]


@dataclass(slots=True)
class Gazetteer:
    regions: dict[str, Region]
    cues: list[Cue]

    @classmethod
    def load(cls, path: Path) -> Gazetteer:
        return cls.from_dict(_load_toml(path, "regions"), path)

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
            for phrase in _strings(path, f"{key}.groupings", entry.get("groupings")):
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
                for phrase in _strings(path, f"{key}.{list_key}", entry.get(list_key)):
                    cues.append(Cue(phrase, region, kind, name))
        neutral = data.get("neutral", {})
        if not isinstance(neutral, dict):
            raise ConfigError("must be a table of lists", path=path, key="neutral")
        for list_key, value in neutral.items():
            for phrase in _strings(path, f"neutral.{list_key}", value):
                cues.append(Cue(phrase, NEUTRAL, list_key, phrase))
        return cls(regions, cues)


@dataclass(slots=True)
class Taxonomy:
    topics: dict[str, Topic]

    @classmethod
    def load(cls, path: Path) -> Taxonomy:
        return cls.from_dict(_load_toml(path, "topics"), path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> Taxonomy:
        topics: dict[str, Topic] = {}
        for index, entry in enumerate(data.get("topic", [])):
            key = f"topic[{index}]"
            slug = entry.get("slug")
            if not isinstance(slug, str) or not slug or slug != slug.lower() or " " in slug:
                raise ConfigError(
                    f"invalid topic slug {slug!r}: use lower-case words joined by hyphens",
                    path=path,
                    key=f"{key}.slug",
                )
            if slug in topics:
                raise ConfigError(f"topic {slug!r} defined twice", path=path, key=f"{key}.slug")
            cues = _strings(path, f"{key}.cues", entry.get("cues"))
            if not cues:
                raise ConfigError(f"topic {slug!r} has no cues", path=path, key=f"{key}.cues")
            topics[slug] = Topic(
                slug=slug,
                name=str(entry.get("name", slug)),
                description=str(entry.get("description", "")),
                cues=tuple(cues),
                weak_cues=tuple(_strings(path, f"{key}.weak_cues", entry.get("weak_cues"))),
            )
        if not topics:
            raise ConfigError("no [[topic]] entries", path=path)
        return cls(topics)


# --- matching ------------------------------------------------------------------------------


_TOPIC_KINDS = frozenset({"cue", "weak"})
_Match = tuple[int, int, Cue]


def _leftmost_longest(found: list[_Match]) -> list[_Match]:
    """At each position the longest match wins; a match starting inside a taken one is
    dropped ("Revised Kyoto Convention" hides Kyoto, "South Sudan" hides Sudan)."""
    if len(found) < 2:
        return found
    found.sort(key=lambda item: (item[0], -item[1]))
    taken: list[_Match] = []
    last_start, last_end = -1, -1
    for candidate in found:
        same_span = candidate[0] == last_start and candidate[1] == last_end
        if candidate[0] >= last_end or same_span:
            taken.append(candidate)
            last_start, last_end = candidate[0], candidate[1]
    return taken


class _Matcher:
    """Whole-word search for every gazetteer and taxonomy phrase in one pass."""

    def __init__(self, cues: list[Cue]) -> None:
        self.conflicts: list[tuple[Cue, Cue]] = []
        self._lower: Any = ahocorasick.Automaton()
        self._cased: Any = ahocorasick.Automaton()
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
        # Keys are padded with spaces, and so is normalised text: only whole words match.
        for automaton, table in ((self._lower, lower), (self._cased, cased)):
            for key, found in table.items():
                automaton.add_word(f" {key} ", (len(key) + 2, tuple(found)))
            if table:
                automaton.make_automaton()
        self._has_lower = bool(lower)
        self._has_cased = bool(cased)

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

    def find(self, cased_text: str, lower_text: str) -> tuple[list[_Match], list[_Match]]:
        """Region and topic matches ``(start, end, cue)``, each non-overlapping, in order."""
        regions: list[_Match] = []
        topics: list[_Match] = []
        for automaton, text, present in (
            (self._lower, lower_text, self._has_lower),
            (self._cased, cased_text, self._has_cased),
        ):
            if not present:
                continue
            # A match of " words " ends at the trailing space; keep the words alone.
            for end, (length, cues) in automaton.iter(text):
                for cue in cues:
                    target = topics if cue.kind in _TOPIC_KINDS else regions
                    target.append((end - length + 2, end, cue))
        return _leftmost_longest(regions), _leftmost_longest(topics)


def _clause_before(text: str, start: int) -> list[str]:
    clause_start = text.rfind(SENTENCE_BREAK, 0, start) + 1
    return text[clause_start:start].split()[-_CLAUSE_WINDOW:]


def _words_after(text: str, end: int, count: int = 2) -> list[str]:
    stop = text.find(SENTENCE_BREAK, end)
    return text[end : stop if stop >= 0 else len(text)].split()[:count]


_TRIGGER_ROLE = {trigger: role for role, triggers in _ROLE_TRIGGERS.items() for trigger in triggers}
_TRIGGER = re.compile(
    r" (" + "|".join(re.escape(t) for t in sorted(_TRIGGER_ROLE, key=len, reverse=True)) + r") "
)


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


def _assign_roles(text: str, found: list[tuple[int, int, Cue]], field_name: str) -> list[Mention]:
    mentions: list[Mention] = []
    subjects_in_title = [item for item in found if item[2].target != NEUTRAL]
    previous: Mention | None = None
    for start, end, cue in found:
        role, trigger = "", ""
        if cue.target == NEUTRAL:
            role, trigger = cue.kind, cue.phrase
        else:
            role, trigger = _role_before(_clause_before(text, start))
            if not role and _is_language(text, start, end):
                role, trigger = "language", text[start:end]
            after = [word for word in _words_after(text, end, 3) if word != "s"]
            if not role and after and after[0] in _ROLE_AFTER:
                role, trigger = _ROLE_AFTER[after[0]], after[0]
            if not role and after and after[0] in _BORDER_AFTER:
                before = [w for w in _clause_before(text, start)[-2:] if w != "the"]
                if before and before[-1] in _BORDER_BEFORE:
                    role, trigger = "border", f"{before[-1]} … {after[0]}"
            if (
                not role
                and field_name == "title"
                and after
                and after[0] in _DONOR_VERBS
                and any(
                    other[0] > end and other[2].entity != cue.entity for other in subjects_in_title
                )
            ):
                role, trigger = "donor", after[0]
            if not role and previous is not None and previous.role and previous.role != "neutral":
                gap = text[previous.end : start]
                gap_words = gap.split()
                if (
                    SENTENCE_BREAK not in gap
                    and len(gap_words) <= 4
                    and all(word in _CONNECTORS for word in gap_words)
                ):
                    role, trigger = previous.role, previous.trigger
        mention = Mention(cue, field_name, start, end, text[start:end], role, trigger)
        mentions.append(mention)
        if cue.target != NEUTRAL:
            previous = mention
    return mentions


class Classifier:
    """Regions and topics for article text, from a gazetteer and a taxonomy."""

    def __init__(self, gazetteer: Gazetteer, taxonomy: Taxonomy, *, fingerprint: str = "") -> None:
        self.gazetteer = gazetteer
        self.taxonomy = taxonomy
        self.fingerprint = fingerprint or ENGINE_VERSION
        topic_cues: list[Cue] = []
        for topic in taxonomy.topics.values():
            topic_cues.extend(Cue(phrase, topic.slug, "cue", topic.slug) for phrase in topic.cues)
            topic_cues.extend(
                Cue(phrase, topic.slug, "weak", topic.slug) for phrase in topic.weak_cues
            )
        self._matcher = _Matcher(gazetteer.cues + topic_cues)

    @classmethod
    def load(cls, regions_path: Path, topics_path: Path) -> Classifier:
        digest = hashlib.sha256(ENGINE_VERSION.encode())
        for path in (regions_path, topics_path):
            # An unreadable file is reported by the loaders below, with a clearer message.
            with contextlib.suppress(OSError):
                digest.update(path.read_bytes())
        return cls(
            Gazetteer.load(regions_path),
            Taxonomy.load(topics_path),
            fingerprint=digest.hexdigest()[:16],
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
        title_regions, title_topics = self._matcher.find(title_cased, title_lower)
        body_regions, body_topics = self._matcher.find(body_cased, body_lower)
        mentions = _assign_roles(title_lower, title_regions, "title") + _assign_roles(
            body_lower, body_regions, "body"
        )
        regions, reason, scores, mentions = self._decide_regions(mentions, title_lower, body_lower)
        topics, topic_scores, topic_mentions = _decide_topics(
            title_lower, title_topics, body_lower, body_topics
        )
        return Classification(
            regions=regions,
            topics=topics,
            region_reason=reason,
            region_scores=scores,
            topic_scores=topic_scores,
            mentions=mentions,
            topic_mentions=topic_mentions,
        )

    def decide(self, title: str, body: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The regions and topics :meth:`classify` gives, without the explanation.

        This is what reading a store needs. The role of a place (subject, venue, funder ...)
        is weighed only where it can change the regions: a title that names exactly one
        region as its subject decides alone (see :meth:`_decide_regions`), so then the
        places of the body are not analysed.
        """
        title_cased = normalize(title)
        body_cased = normalize(body)
        title_lower = title_cased.lower()
        body_lower = body_cased.lower()
        title_regions, title_topics = self._matcher.find(title_cased, title_lower)
        body_regions, body_topics = self._matcher.find(body_cased, body_lower)
        topics = _decide_topics(title_lower, title_topics, body_lower, body_topics)[0]
        mentions = _assign_roles(title_lower, title_regions, "title")
        subjects = {mention.cue.target for mention in mentions if not mention.role}
        if len(subjects) == 1:
            return (subjects.pop(),), topics
        mentions += _assign_roles(body_lower, body_regions, "body")
        return self._decide_regions(mentions, title_lower, body_lower)[0], topics

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
            mention = found.with_weight(weight)
            weighted.append(mention)
            if weight:
                scores[mention.cue.target] += weight
                if mention.field == "title":
                    title_regions[mention.cue.target] = (
                        title_regions.get(mention.cue.target, 0.0) + weight
                    )
        ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        if title_regions:
            # One region named as a subject in the title is the answer, whatever the body
            # says: decide() skips the body's roles then, so keep the two in step.
            chosen = [slug for slug, _ in ordered if slug in title_regions]
            return tuple(chosen), "named in the title", dict(ordered), weighted
        if not ordered:
            return (GLOBAL,), "no region named as a subject", {}, weighted
        if _GLOBAL_TITLE_WORDS & set(title_lower.split()):
            return (GLOBAL,), "a worldwide story by its title", dict(ordered), weighted
        top = ordered[0][1]
        kept = [slug for slug, score in ordered if score >= top * BODY_SHARE]
        if len(kept) >= SPREAD_REGIONS:
            return (
                (GLOBAL,),
                f"the body ranges over {len(kept)} regions with none leading",
                dict(ordered),
                weighted,
            )
        return tuple(kept), "named in the body", dict(ordered), weighted


def _decide_topics(
    title_lower: str, title_found: list[_Match], body_lower: str, body_found: list[_Match]
) -> tuple[tuple[str, ...], dict[str, float], list[Mention]]:
    """A topic needs one cue, a weak cue in the title, or two weak cues in the body."""
    strong: set[str] = set()
    weak_title: set[str] = set()
    weak_body: dict[str, int] = defaultdict(int)
    scores: dict[str, float] = defaultdict(float)
    mentions: list[Mention] = []
    for field_name, lower, found in (
        ("title", title_lower, title_found),
        ("body", body_lower, body_found),
    ):
        for start, end, cue in found:
            weight = TITLE_WEIGHT if field_name == "title" else BODY_WEIGHT
            if cue.kind == "weak":
                weight /= 2
                if field_name == "title":
                    weak_title.add(cue.target)
                else:
                    weak_body[cue.target] += 1
            else:
                strong.add(cue.target)
            scores[cue.target] += weight
            mentions.append(Mention(cue, field_name, start, end, lower[start:end], "", "", weight))
    chosen = strong | weak_title | {slug for slug, count in weak_body.items() if count >= 2}
    ordered = sorted(chosen, key=lambda slug: (-scores[slug], slug))
    return tuple(ordered), dict(scores), mentions
