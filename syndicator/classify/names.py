"""Names that look like places but are not: people, products, brands and common nouns.

A gazetteer matches "Chad", "Guinea", "Jordan", "Turkey" and "China" wherever they
are written; whether the word names the country is a matter of context. These
rules read that context from the cased, normalised text (see
:mod:`syndicator.classify.tokens`):

* **people**: a title or role right before the name ("Officer Chad Morrison",
  "examiner Maria Guinea"), a capitalised first name before it ("Helena Lima",
  "Ana Montenegro") or a capitalised surname after it that the article uses on its
  own too ("Kenya Williams ... Williams said"). Once a name is a person's, every
  other mention of it in the article is that person (the title included);
* **products and brands**: a product noun right after the name ("Panama hats",
  "Swiss watches", "Turkish delight", "Air Jordan sneakers"), unless an industry
  word follows ("Brazil nut exporters" are Brazil's);
* **common nouns**: a name written in lower case in a properly capitalised text
  ("frozen turkey", "fine china", "guinea fowl").

Everything here is pure and works on word boundaries of normalised text: a cue at
``text[start:end]`` has a space on either side.
"""

from __future__ import annotations

from syndicator.classify.tokens import SENTENCE_BREAK

PERSON = "person"
PRODUCT = "product"
COMMON_NOUN = "common noun"

# Titles, ranks and roles written right before a person's name.
_PERSON_TITLES = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "dr",
        "prof",
        "professor",
        "officer",
        "inspector",
        "examiner",
        "auditor",
        "analyst",
        "agent",
        "handler",
        "broker",
        "specialist",
        "sergeant",
        "sgt",
        "captain",
        "capt",
        "lieutenant",
        "superintendent",
        "comptroller",
        "colonel",
        "major",
        "constable",
        "corporal",
        "commander",
        "spokesperson",
        "spokesman",
        "spokeswoman",
        "colleague",
        "nicknamed",
        "surnamed",
        "coach",
        "player",
        "athlete",
        "singer",
        "actor",
        "actress",
        "author",
        "journalist",
        "reporter",
    }
)
# Capitalised words that come before a place's name as part of it or of an organisation's,
# never as a first name: "Lake Chad", "Greater Accra", "Port Sudan".
_PLACE_MODIFIERS = frozenset(
    {
        "lake",
        "mount",
        "mt",
        "cape",
        "port",
        "greater",
        "metro",
        "metropolitan",
        "central",
        "northern",
        "southern",
        "eastern",
        "western",
        "north",
        "south",
        "east",
        "west",
        "upper",
        "lower",
        "new",
        "old",
        "inner",
        "outer",
        "saint",
        "st",
        "san",
        "santa",
        "fort",
        "bay",
        "gulf",
        "river",
        "hotel",
        "airport",
        "customs",
        "revenue",
        "republic",
        "kingdom",
        "state",
        "federal",
        "national",
        "royal",
        "grand",
        "rural",
        "urban",
        "coastal",
        "mainland",
        "continental",
        "french",
        "british",
        "spanish",
        "dutch",
        "portuguese",
        "the",
        "of",
        "in",
        "and",
        "for",
        "from",
        "to",
        "with",
        "by",
        "on",
        "at",
        "as",
        "a",
        "an",
        "all",
        "both",
        "including",
        "officials",
        "delegates",
        "members",
        "member",
        "countries",
        "partners",
        "neighbouring",
        "neighboring",
        "landlocked",
        "post",
        "pre",
        "anti",
        "pan",
        "trans",
        "sub",
        "non",
        "says",
        "said",
    }
)
# Capitalised words after a place's name that continue a name of a place or an
# organisation, never a surname: "Kenya Airways", "Chad Basin", "Jordan Valley".
_NAME_CONTINUATIONS = frozenset(
    {
        "customs",
        "revenue",
        "general",
        "tax",
        "taxes",
        "authority",
        "administration",
        "ports",
        "port",
        "airport",
        "airports",
        "airways",
        "airlines",
        "air",
        "border",
        "borders",
        "police",
        "ministry",
        "government",
        "trade",
        "chamber",
        "post",
        "posts",
        "postal",
        "railways",
        "railway",
        "rail",
        "shipping",
        "maritime",
        "marine",
        "coast",
        "guard",
        "bureau",
        "office",
        "department",
        "agency",
        "service",
        "services",
        "directorate",
        "council",
        "commission",
        "embassy",
        "consulate",
        "mission",
        "delegation",
        "team",
        "national",
        "federal",
        "central",
        "development",
        "investment",
        "export",
        "exports",
        "import",
        "imports",
        "free",
        "economic",
        "valley",
        "river",
        "lake",
        "basin",
        "sea",
        "province",
        "region",
        "state",
        "city",
        "highway",
        "road",
        "corridor",
        "bank",
        "institute",
        "university",
        "college",
        "school",
        "academy",
        "forum",
        "group",
        "association",
        "federation",
        "union",
        "company",
        "limited",
        "ltd",
        "inc",
        "holdings",
        "telecom",
        "power",
        "energy",
        "oil",
        "petroleum",
        "mining",
        "standards",
        "food",
        "drugs",
        "medicines",
        "inland",
        "container",
        "depot",
        "terminal",
        "cup",
        "declaration",
        "convention",
        "protocol",
        "agreement",
        "act",
        "law",
        "code",
        "tariff",
        "window",
        "single",
        "day",
        "week",
        "pavilion",
        "high",
        "vision",
        "plan",
        "strategy",
        "programme",
        "program",
        "project",
        "initiative",
        "pipeline",
        "broadcasting",
        "news",
        "times",
        "herald",
        "tribune",
        "today",
    }
)
# Goods named after a place or people: "Panama hats", "Brazil nuts", "Swiss watches".
_PRODUCT_NOUNS = frozenset(
    {
        "watch",
        "watches",
        "hat",
        "hats",
        "nut",
        "nuts",
        "delight",
        "sneakers",
        "sneaker",
        "shoes",
        "trainers",
        "carpet",
        "carpets",
        "rug",
        "rugs",
        "cheese",
        "cheeses",
        "chocolate",
        "chocolates",
        "vodka",
        "whisky",
        "whiskey",
        "cigar",
        "cigars",
        "rum",
        "perfume",
        "perfumes",
        "handbags",
        "porcelain",
        "fowl",
        "fowls",
        "pepper",
        "peppers",
        "necks",
        "wings",
        "legs",
        "drumsticks",
        "thighs",
        "breasts",
        "carcasses",
        "meat",
        "brand",
        "brands",
        "branded",
        "knives",
        "army",
    }
)
# Words after a product that make the place a subject again: "Brazil nut exporters".
_INDUSTRY_WORDS = frozenset(
    {
        "exporters",
        "exporter",
        "producers",
        "producer",
        "growers",
        "industry",
        "industries",
        "sector",
        "farmers",
        "makers",
        "manufacturers",
        "exports",
        "production",
        "output",
    }
)


# Words after a person's name at the start of a sentence: "Ana Montenegro, a customs auditor".
_APPOSITION = frozenset({"a", "an", "who", "whose", "said", "says", "told", "added", "explained"})


# Characters either side of a name that hold the few words the rules look at.
_WINDOW = 64


def _capitalised(word: str) -> bool:
    return len(word) > 1 and word[0].isupper() and not word.isupper() and word.isalpha()


_NOT_UPPER = bytes(c for c in range(256) if not 65 <= c <= 90)
_NOT_LETTER = bytes(c for c in range(256) if not (65 <= c <= 90 or 97 <= c <= 122))


def is_capitalised_text(cased: str) -> bool:
    """Whether ``cased`` (normalised, so nearly all ASCII) is written with capitals where
    English has them, neither all lower nor all upper case: only then does a lower-case
    place name mean a common noun."""
    ascii_text = cased.encode("ascii", "ignore")
    letters = len(ascii_text.translate(None, _NOT_LETTER))
    upper = len(ascii_text.translate(None, _NOT_UPPER))
    return 0 < upper < letters * 0.5


def may_name_person(cased: str, start: int, end: int) -> bool:
    """Whether :func:`name_role` could find the name at ``cased[start:end]`` to be a
    person's: only beside a capitalised word or after a title or role."""
    before = cased[cased.rfind(" ", 0, start - 1) + 1 : start - 1]
    after_end = cased.find(" ", end + 1)
    following = cased[end + 1 : after_end]
    if following == "s":  # a possessive: "Guinea's"
        following = cased[after_end + 1 : cased.find(" ", after_end + 1)]
    return (
        before[:1].isupper()
        or following[:1].isupper()
        or following == "s"  # "Guinea's s": leave such text to name_role
        or before.lower() in _PERSON_TITLES
    )


def name_role(
    cased: str,
    start: int,
    end: int,
    *,
    body: bool,
    capitalised_text: bool,
    cue_starts: frozenset[int],
    cue_ends: frozenset[int],
) -> tuple[str, str]:
    """``(role, trigger)`` when the name at ``cased[start:end]`` is not a place; else ``("", "")``.

    ``body`` says whether this is running text (titles are Title Case, so capitals say
    nothing there); ``cue_starts`` and ``cue_ends`` are where other gazetteer cues start
    and end, which are never part of a person's name.
    """
    name = cased[start:end]
    # The words either side, found without splitting the text: most names are places, and
    # this runs for every one of them.
    before_start = cased.rfind(" ", 0, start - 1) + 1
    before = cased[before_start : start - 1] or SENTENCE_BREAK
    after_end = cased.find(" ", end + 1)
    following = cased[end + 1 : after_end]
    if following == "s":  # a possessive: "Guinea's"
        following = cased[after_end + 1 : cased.find(" ", after_end + 1)]
    if (
        not following[:1].isupper()
        and not before[:1].isupper()
        and following not in _PRODUCT_NOUNS
        and before not in _PERSON_TITLES
        and not (body and capitalised_text and name.islower())
    ):
        return "", ""
    if (
        not body  # in a title, only a product noun after or a title before can apply
        and following != "s"
        and following.lower() not in _PRODUCT_NOUNS
        and before.lower() not in _PERSON_TITLES
    ):
        return "", ""
    after = [word for word in cased[end : end + _WINDOW].split()[:3] if word != "s"][:2]
    if after:
        following = after[0].lower()
        if following in _PRODUCT_NOUNS and (
            len(after) < 2 or after[1].lower() not in _INDUSTRY_WORDS
        ):
            return PRODUCT, f"{name} {after[0]}"
    if body and capitalised_text and name.islower() and before != SENTENCE_BREAK:
        return COMMON_NOUN, name
    if before.lower() in _PERSON_TITLES:
        return PERSON, f"{before} {name}"
    if not body:
        return "", ""
    if (
        _capitalised(before)
        and before.lower() not in _PLACE_MODIFIERS
        and start - 1 not in cue_ends
    ):
        around = cased[max(0, start - _WINDOW) : start].split()
        if (len(around) >= 2 and around[-2] != SENTENCE_BREAK) or (
            bool(after) and after[0] in _APPOSITION
        ):
            # "examiner Maria Guinea"; at the start of a sentence only with what the person
            # is or said next: "Ana Montenegro, a customs auditor".
            return PERSON, f"{before} {name}"
    if (
        after
        and cased[end : end + 3] != " s "
        and _capitalised(after[0])
        and after[0].lower() not in _NAME_CONTINUATIONS
        and end + 1 not in cue_starts
    ):
        surname = after[0]
        # A surname is used again on its own ("Morrison said"); a word that only ever
        # follows the name is part of it ("Chad Basin").
        alone = cased.count(f" {surname} ") - cased.count(f" {name} {surname} ")
        if alone > 0:
            return PERSON, f"{name} {surname}"
    return "", ""
