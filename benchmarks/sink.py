"""An SMTP sink that counts Message-IDs, in a process of its own (run by benchmarks.scaleout).

``python -m benchmarks.sink PORT`` accepts every message on 127.0.0.1:PORT and prints
``ready``. Each line ``count`` on standard input prints, as JSON, how many messages
arrived since the last count, how many distinct Message-IDs they had and the most
copies of one, then starts counting again; end of input stops the sink.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def message_id(content: bytes) -> bytes:
    """The Message-ID header's value (empty if none), from the header lines only."""
    for line in content.split(b"\r\n"):
        if not line:
            break
        if line[:11].lower() == b"message-id:":
            return line[11:].strip()
    return b""


class CountingHandler:
    def __init__(self) -> None:
        self.seen: Counter[bytes] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        found = message_id(envelope.original_content or b"")
        with self.lock:
            self.seen[found] += 1
        return "250 OK"

    def take(self) -> dict[str, int]:
        with self.lock:
            seen, self.seen = self.seen, Counter()
        return {
            "messages": sum(seen.values()),
            "distinct": len(seen),
            "most_copies": max(seen.values(), default=0),
        }


def main() -> None:
    handler = CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(json.dumps(handler.take()), flush=True)
    controller.stop()


if __name__ == "__main__":
    main()
