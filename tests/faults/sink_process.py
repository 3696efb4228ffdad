"""An SMTP sink in a process of its own, for tests whose senders are other processes:
``python -m tests.faults.sink_process PORT DELAY LOG`` accepts everything, taking DELAY
seconds a message, and appends a line per accepted message to LOG: the time, the
recipient and the Message-ID, tab-separated."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class LoggingHandler:
    def __init__(self, delay: float, log: Path) -> None:
        self.delay = delay
        self.log = log.open("a", encoding="utf-8", buffering=1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            time.sleep(self.delay)
        message_id = ""
        for line in (envelope.original_content or b"").split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                message_id = line.split(b":", 1)[1].strip().decode()
                break
            if not line:
                break
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.log.write(f"{time.time():.6f}\t{recipient}\t{message_id}\n")
        return "250 Message accepted for delivery"


def main(argv: list[str]) -> None:
    port, delay, log = int(argv[0]), float(argv[1]), Path(argv[2])
    controller = Controller(LoggingHandler(delay, log), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":  # pragma: no cover - run as a process by the tests
    main(sys.argv[1:])


def read_log(log: Path) -> list[tuple[float, str, str]]:
    """(time, recipient, Message-ID) of every message the sink accepted so far."""
    if not log.exists():
        return []
    found: list[tuple[float, str, str]] = []
    for line in log.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            found.append((float(parts[0]), parts[1], parts[2]))
    return found
