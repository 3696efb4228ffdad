"""``preview EMAIL``: the next mail for a subscriber, changing nothing."""

from __future__ import annotations

import argparse
import sys

from syndicator.commands.common import EXIT_OK, now, open_all
from syndicator.errors import NotFoundError
from syndicator.mail import roster
from syndicator.mail.addresses import lookup_address
from syndicator.mail.mailer import Mailer
from syndicator.mail.unsubscribe import load_secret
from syndicator.pipeline import names_from
from syndicator.state.matches import pending_articles
from syndicator.state.readers import rotated_private_feeds


def cmd_preview(args: argparse.Namespace) -> int:
    config, classifier, state = open_all(args)
    try:
        with state.engine.connect() as conn:
            record = roster.find_subscriber(conn, lookup_address(args.email))
            articles = pending_articles(conn, record.id) if record else []
        if record is None:
            raise NotFoundError(
                f"no subscriber {args.email!r} in state",
                hint="entries of the subscribers file are added at the next cycle",
            )
        if not articles:
            due = (
                f"; the next {record.cadence} digest is due "
                f"{record.next_digest_at:%Y-%m-%d %H:%M} UTC"
                if record.next_digest_at
                else ""
            )
            print(f"nothing waiting for {record.email} ({record.status}){due}", file=sys.stderr)
            return EXIT_OK
        with state.engine.connect() as conn:
            secret_row = state.get_meta(conn, "unsubscribe_secret")
            generations = rotated_private_feeds(conn)
        secret = (
            bytes.fromhex(secret_row)
            if secret_row and config.mail.unsubscribe_secret_file is None
            else load_secret(state, config.mail.unsubscribe_secret_file)
        )
    finally:
        state.close()
    mailer = Mailer(config, names_from(classifier), secret)
    mailer.feed_generations = generations
    _, message = mailer(record, articles, record.cadence, now())
    sys.stdout.write(message.decode("utf-8").replace("\r\n", "\n"))
    return EXIT_OK
