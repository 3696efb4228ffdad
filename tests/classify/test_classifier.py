"""Classification: editor-labelled articles, the classic traps, and the engine's rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.generate import article_texts
from syndicator.classify.classifier import Classifier, Gazetteer, Taxonomy
from syndicator.errors import ConfigError
from syndicator.store.files import read_file
from tests.conftest import DATA_DIR, SAMPLE_STORE


def _labelled(store: Path, labels: Path) -> list[Any]:
    expected = json.loads(labels.read_text(encoding="utf-8"))["articles"]
    articles, errors = read_file(store)
    assert errors == []
    assert {a.title for a in articles} == set(expected)
    return [pytest.param(a, expected[a.title], id=a.id[:60]) for a in articles]


LABELLED = [
    *_labelled(SAMPLE_STORE, DATA_DIR / "wco-news-sample.labels.json"),
    *_labelled(DATA_DIR / "wco-news-dev.txt", DATA_DIR / "wco-news-dev.labels.json"),
    *_labelled(DATA_DIR / "wco-news-dev2.txt", DATA_DIR / "wco-news-dev2.labels.json"),
    *_labelled(DATA_DIR / "wco-news-dev3.txt", DATA_DIR / "wco-news-dev3.labels.json"),
    *_labelled(DATA_DIR / "wco-news-dev4.txt", DATA_DIR / "wco-news-dev4.labels.json"),
    *_labelled(DATA_DIR / "wco-news-dev5.txt", DATA_DIR / "wco-news-dev5.labels.json"),
]


@pytest.mark.parametrize(("article", "label"), LABELLED)
def test_labelled_articles(classifier: Classifier, article: Any, label: dict[str, Any]) -> None:
    result = classifier.classify(article.title, article.body)
    required = set(label["regions"])
    allowed = required | set(label.get("allowed", []))
    assert required <= set(result.regions) <= allowed, result.region_reason
    missing = [topic for topic in label["topics"] if topic not in result.topics]
    assert missing == []


def test_gazetteer_has_no_conflicting_cues(classifier: Classifier) -> None:
    assert [(a.phrase, a.target, b.target) for a, b in classifier.conflicts] == []


def regions_of(classifier: Classifier, title: str, body: str = "Officials met.") -> set[str]:
    return set(classifier.classify(title, body).regions)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Mongolia Appoints First Woman to Head Customs Office", {"asia-pacific"}),
        ("Nigeria Customs Service Seizes Counterfeit Drugs", {"west-central-africa"}),
        ("Niger Customs Opens New Border Post", {"west-central-africa"}),
        ("Papua New Guinea Customs Modernises Tariff", {"asia-pacific"}),
        ("Guinea-Bissau Joins Regional Transit Scheme", {"west-central-africa"}),
        ("South Sudan Automates Cargo Clearance", {"east-southern-africa"}),
        ("Sudan Restores Clearance at Port Sudan", {"mena"}),
        ("Dominican Republic Launches AEO Programme", {"americas"}),
        ("Colombo Port Introduces Electronic Manifests", {"asia-pacific"}),
        ("Colombia Adopts Electronic Manifests", {"americas"}),
        ("Oman Customs Launches Single Window", {"mena"}),
        ("Romania Customs Tightens Excise Controls", {"europe"}),
        ("Uzbekistan Simplifies Transit Rules", {"europe"}),
        ("Georgia and Armenia Agree on Joint Controls", {"europe"}),
        ("Turkiye Expands Green Lane", {"europe"}),
        ("Israel Customs Introduces Advance Processing", {"europe"}),
        ("Iran Customs Expands Green Lane", {"asia-pacific"}),
        ("Afghanistan Reopens Border Crossing", {"asia-pacific"}),
        ("Egypt Launches Advance Cargo Information System", {"mena"}),
        ("Mauritania Deploys Mobile Scanners", {"west-central-africa"}),
        ("DR Congo Customs Tightens Controls", {"west-central-africa"}),
        ("Djibouti Connects Port Operators to Single Window", {"east-southern-africa"}),
        ("Korea and Mexico Sign Mutual Recognition Arrangement", {"asia-pacific", "americas"}),
    ],
)
def test_whole_words_nesting_and_wco_grouping(
    classifier: Classifier, title: str, expected: set[str]
) -> None:
    assert regions_of(classifier, title) == expected


@pytest.mark.parametrize(
    "body",
    [
        "The project was carried out with funding from the Korea Customs Cooperation Fund.",
        "The training was supported by JICA and delivered by experts from HMRC.",
        "The meeting was held at WCO headquarters in Brussels.",
        "Officials reviewed the Revised Kyoto Convention and the Revised Arusha Declaration.",
        "The Istanbul Convention, the Nairobi Convention and the Johannesburg Convention apply.",
        "A workshop held in Geneva gathered delegates.",
    ],
)
def test_funders_venues_and_instruments_are_not_subjects(classifier: Classifier, body: str) -> None:
    assert regions_of(classifier, "Customs Administrations Review Procedures", body) == {"global"}


def test_title_counts_more_than_a_passing_mention(classifier: Classifier) -> None:
    body = (
        "Jamaica Customs Agency completed a programme with experts from Canada. "
        "The agency said Mexico and the United Kingdom had shown interest."
    )
    assert regions_of(classifier, "Jamaica Strengthens Audit", body) == {"americas"}


def test_no_region_cue_means_global(classifier: Classifier) -> None:
    result = classifier.classify("WCO Publishes Guidance", "The guidance covers procedures.")
    assert result.regions == ("global",)


def test_body_decides_when_the_title_names_no_place(classifier: Classifier) -> None:
    body = "Customs officers of Kenya and Uganda launched joint patrols at the border."
    assert regions_of(classifier, "Joint Patrols Launched", body) == {"east-southern-africa"}


def test_body_spread_over_many_regions_is_global(classifier: Classifier) -> None:
    body = (
        "The survey covered Japan, Nigeria, Mexico and France. "
        "Responses came from customs administrations of every size."
    )
    assert regions_of(classifier, "Survey of Customs Practices", body) == {"global"}


def test_acronyms_match_only_in_capitals(classifier: Classifier) -> None:
    assert regions_of(classifier, "US Customs Issues Ruling") == {"americas"}
    assert regions_of(classifier, "Let us talk about customs") == {"global"}


def test_explanation_records_roles_and_weights(classifier: Classifier) -> None:
    result = classifier.classify(
        "Somali Customs Officers Complete Leadership Course in Doha",
        "The course was funded by Japan.",
    )
    assert result.regions == ("east-southern-africa",)
    roles = {m.text: (m.role, m.weight) for m in result.mentions}
    assert roles["somali"] == ("", 3.0)
    assert roles["doha"][0] == "venue"
    assert roles["japan"][0] == "funder"


def test_topics_need_a_cue_or_repeated_weak_cues(classifier: Classifier) -> None:
    result = classifier.classify(
        "Customs Launches Authorized Economic Operator Programme", "Certified traders benefit."
    )
    assert "aeo" in result.topics
    assert classifier.classify("Customs News", "Nothing in particular.").topics == ()


def _minimal(groupings: list[str]) -> Gazetteer:
    data = {
        "region": [
            {"slug": slug, "name": slug, "groupings": groupings if slug == "europe" else []}
            for slug in (
                "americas",
                "east-southern-africa",
                "west-central-africa",
                "europe",
                "mena",
                "asia-pacific",
            )
        ],
        "country": [{"name": "Malta", "region": "europe", "places": ["Valletta"]}],
        "neutral": {"instruments": ["Valletta Accord"]},
    }
    return Gazetteer.from_dict(data, Path("regions.toml"))


def test_engine_on_a_tiny_gazetteer() -> None:
    taxonomy = Taxonomy.from_dict(
        {"topic": [{"slug": "transit", "name": "Transit", "cues": ["transit"]}]},
        Path("topics.toml"),
    )
    classifier = Classifier(_minimal(["Mediterranean"]), taxonomy)
    assert classifier.classify("Valletta Port Expands", "x").regions == ("europe",)
    assert classifier.classify("Valletta Accord Signed", "x").regions == ("global",)
    assert classifier.classify("Maltas Transit Rules", "x").regions == ("europe",)
    assert classifier.classify("Malta's transit", "x").topics == ("transit",)


def test_gazetteer_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "regions.toml"
    path.write_text('[[region]]\nslug = "atlantis"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"region\[0\]\.slug: unknown region slug 'atlantis'"):
        Gazetteer.load(path)
    with pytest.raises(ConfigError, match="no \\[\\[region\\]\\] entry"):
        Gazetteer.from_dict({}, path)
    with pytest.raises(ConfigError, match="no cues"):
        Taxonomy.from_dict({"topic": [{"slug": "x"}]}, path)


@pytest.mark.parametrize(
    ("title", "body"),
    [
        ("WCO Launches Online Course", "The course is available in English, French and Spanish."),
        ("WCO Publishes Guide", "A Portuguese version of the guide will follow."),
        ("Green Customs Dialogue Convenes in Nairobi", "Delegates discussed climate action."),
        (
            "WCO and UPU Update Guidelines",
            "They met at a meeting of the Contact Committee in Bern.",
        ),
    ],
)
def test_languages_and_venues_are_not_subjects(
    classifier: Classifier, title: str, body: str
) -> None:
    assert regions_of(classifier, title, body) == {"global"}


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Japan Funds Mobile Scanners for Tajik Posts on Afghan Border", {"europe"}),
        ("Tunisia Customs Launches AEO Programme with EU Support", {"mena"}),
    ],
)
def test_borders_and_support_in_titles(
    classifier: Classifier, title: str, expected: set[str]
) -> None:
    assert regions_of(classifier, title) == expected


def test_a_phrase_may_signal_two_topics(classifier: Classifier) -> None:
    topics = classifier.classify("ZIMRA Targets Undervaluation of Fuel", "Checks began.").topics
    assert {"customs-valuation", "revenue"} <= set(topics)


def _every_stored_article() -> list[Any]:
    """Every article of every labelled set under tests/data, and the sample store."""
    stores = [SAMPLE_STORE, *sorted(DATA_DIR.rglob("*.txt")), *sorted(DATA_DIR.rglob("*.md"))]
    found = []
    for store in stores:
        found.extend(read_file(store)[0])
    return found


def test_decide_gives_what_classify_gives_on_every_labelled_set(classifier: Classifier) -> None:
    """The store's reader skips role analysis where it cannot change the regions; the
    regions and topics must be those of the full classification, article by article."""
    articles = _every_stored_article()
    assert len(articles) > 100
    titles_alone = 0
    for article in articles:
        full = classifier.classify(article.title, article.body)
        assert classifier.decide(article.title, article.body) == (full.regions, full.topics), (
            article.location
        )
        titles_alone += full.region_reason == "named in the title" and len(full.regions) == 1
    assert titles_alone > 0  # the shortcut was taken


def test_decide_gives_what_classify_gives_on_synthetic_articles(classifier: Classifier) -> None:
    for title, body in article_texts(2_000):
        full = classifier.classify(title, body)
        assert classifier.decide(title, body) == (full.regions, full.topics), title
