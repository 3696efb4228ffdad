"""Turning queued matches into messages: the composer the outbox calls.

It knows the site and mail settings, the display names of regions and topics,
and the unsubscribe secret (which also signs each subscriber's manage link);
:func:`syndicator.mail.compose.compose` does the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.utils import parseaddr

from syndicator.config import Config
from syndicator.mail.compose import (
    Composer,
    MailSettings,
    Recipient,
    describe_filters,
    make_message_id,
)
from syndicator.mail.private_feeds import private_feed_url
from syndicator.mail.signup import manage_token
from syndicator.mail.unsubscribe import make_token
from syndicator.models import Article
from syndicator.publish.feeds import Names
from syndicator.state.records import SubscriberRecord


class Mailer:
    def __init__(self, config: Config, names: Names, secret: bytes) -> None:
        self.settings = MailSettings(
            sender=config.mail.from_,
            site_title=config.site.title,
            base_url=config.site.base_url,
            list_id=config.list_id,
        )
        self.names = names
        self.secret = secret
        # Renders each set of articles once, then only the recipient's parts per message.
        self.composer = Composer(self.settings, names)
        # Many subscribers share filters: describe each combination once.
        self._described: dict[tuple[tuple[str, ...], ...], str] = {}
        # Every mail links to its manage page when the HTTP server offers it.
        self.manage_pages = config.subscriptions_enabled
        # ... and to its reader's private feed when the HTTP server serves those; the
        # generations of rotated feeds are handed in by whoever reads state.
        self.private_feeds = config.http.enabled
        self.feed_generations: dict[int, int] = {}
        self.sender_address = parseaddr(config.mail.from_)[1]
        self.domain = self.sender_address.rpartition("@")[2] or "localhost"
        self._mailto = f"mailto:{self.sender_address}?subject="

    def _filters(self, record: SubscriberRecord) -> str:
        key = (
            record.regions,
            record.topics,
            record.keywords,
            record.exclude_regions,
            record.exclude_topics,
        )
        described = self._described.get(key)
        if described is None:
            described = self._described[key] = describe_filters(*key, self.names)
        return described

    def recipient(self, record: SubscriberRecord) -> Recipient:
        token = make_token(self.secret, record.id, record.email)
        manage = manage_token(self.secret, record.id, record.email)
        return Recipient(
            email=record.email,
            name=record.name,
            filters=self._filters(record),
            cadence=record.cadence,
            unsubscribe_url=f"{self.settings.base_url}unsubscribe/{token}",
            # quote("unsubscribe " + token): a token's characters are all URL-safe.
            unsubscribe_mailto=f"{self._mailto}unsubscribe%20{token}",
            manage_url=(f"{self.settings.base_url}manage/{manage}" if self.manage_pages else ""),
            feed_url=(
                private_feed_url(
                    self.settings.base_url,
                    self.secret,
                    record.id,
                    self.feed_generations.get(record.id, 0),
                )
                if self.private_feeds
                else ""
            ),
            group_by=record.group_by,
        )

    def __call__(
        self, record: SubscriberRecord, articles: Sequence[Article], kind: str, now: datetime
    ) -> tuple[str, bytes]:
        key = f"{record.id}:{kind}:{now.isoformat()}:{','.join(a.id for a in articles)}"
        message_id = make_message_id(key, self.domain)
        body = self.composer.compose_bytes(
            self.recipient(record), articles, now=now, message_id=message_id
        )
        return message_id, body
