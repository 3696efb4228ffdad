"""The ``meta`` table: small named values (schema version, revisions, marks, fingerprints)."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from syndicator.state.db import get_meta, set_meta

__all__ = ["classified_with", "get_meta", "record_classifier", "set_meta"]

_CLASSIFIER = "classifier"


def classified_with(conn: Connection) -> str | None:
    """The fingerprint of the classifier (gazetteer and taxonomy) the articles were
    classified with."""
    return get_meta(conn, _CLASSIFIER)


def record_classifier(conn: Connection, fingerprint: str) -> None:
    set_meta(conn, _CLASSIFIER, fingerprint)
