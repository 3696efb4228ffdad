"""WebSub: tell a hub that feeds changed (https://www.w3.org/TR/websub/#publishing).

The hub then fetches the feeds and pushes them to its subscribers, so readers
that support WebSub see new articles within seconds instead of at their next
poll. A failed ping is reported to the caller, which tries again next cycle; it
never holds up publishing.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from urllib.parse import urlencode

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10


def ping(hub: str, feed_urls: list[str], timeout: float = TIMEOUT_SECONDS) -> list[str]:
    """POST ``hub.mode=publish`` for each feed URL; return the URLs the hub did not accept."""
    failed = []
    for url in feed_urls:
        body = urlencode({"hub.mode": "publish", "hub.url": url}).encode("ascii")
        request = urllib.request.Request(  # noqa: S310 - the operator's configured hub URL
            hub,
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            log.warning("WebSub hub %s unreachable for %s: %s; retrying next cycle", hub, url, exc)
            failed.append(url)
            continue
        if not 200 <= status < 300:
            log.warning("WebSub hub %s answered %s for %s; retrying next cycle", hub, status, url)
            failed.append(url)
    return failed
