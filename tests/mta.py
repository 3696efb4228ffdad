"""A private Postfix for tests: its own configuration, queue and mailboxes in a temp dir.

It listens on a free loopback port and never relays off the machine: mail for
``LOCAL_DOMAIN`` goes to Postfix's local delivery agent (which accepts every address
at RCPT, then bounces those with no account); mail for the domains in ``routes`` goes
to the given loopback SMTP servers; mail for ``BOUNCE_DOMAIN`` lands in Maildirs under
``mailboxes/`` (``bounces@`` and, with the ``+`` delimiter, every ``bounces+...@``).
Anything else is refused. Needs root (Postfix's master runs as root), as in CI.

Postfix is the real thing here: the bounces it writes are the DSNs operators get.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.daemons import require_daemon
from tests.smtp_sink import free_port

LOCAL_DOMAIN = "local.syndicator.test"
BOUNCE_DOMAIN = "news.syndicator.test"
MTA_HOSTNAME = "mta.syndicator.test"
_SERVICES = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def require_postfix() -> str:
    """The postfix command; skips the test where it cannot run, fails in CI."""
    return require_daemon("postfix", "postfix", ("postfix",))


class Postfix:
    """``with Postfix(routes={"refusing.test": sink_port}) as mta: ...``"""

    def __init__(self, *, routes: dict[str, int] | None = None) -> None:
        self.command = require_postfix()
        # Short: Postfix's UNIX-domain sockets live under the queue directory, and their
        # paths must fit in 108 bytes; readable: Postfix's unprivileged processes use it.
        # mkdtemp's 0700 would keep Postfix's unprivileged processes out.
        self.root = Path(tempfile.mkdtemp(prefix="pf-", dir="/tmp"))
        self.root.chmod(0o755)
        self.config = self.root / "etc"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        self.mailboxes = self.root / "mailboxes"
        self.log = self.root / "maillog"
        self.port = free_port()
        self.routes = routes or {}
        nobody = pwd.getpwnam("nobody")
        self._uid, self._gid = nobody.pw_uid, nobody.pw_gid

    @property
    def bounce_maildir(self) -> Path:
        return self.mailboxes / "bounces"

    def _main_cf(self) -> str:
        transports = ", ".join(
            f"{domain}=smtp:[127.0.0.1]:{port}" for domain, port in self.routes.items()
        )
        relay_domains = " ".join(self.routes)
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": MTA_HOSTNAME,
            "mydomain": "syndicator.test",
            "myorigin": MTA_HOSTNAME,
            "mydestination": f"{LOCAL_DOMAIN}, {MTA_HOSTNAME}",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "relay_domains": relay_domains,
            "transport_maps": f"inline:{{ {transports} }}" if transports else "",
            # Every local address is accepted at RCPT; unknown ones bounce afterwards.
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "virtual_mailbox_domains": BOUNCE_DOMAIN,
            "virtual_mailbox_base": self.mailboxes,
            "virtual_mailbox_maps": f"inline:{{ bounces@{BOUNCE_DOMAIN}=bounces/ }}",
            "virtual_uid_maps": f"static:{self._uid}",
            "virtual_gid_maps": f"static:{self._gid}",
            "virtual_minimum_uid": "1",
            "recipient_delimiter": "+",
            # Give up at the first temporary failure (a full mailbox) and say so at once.
            "maximal_queue_lifetime": "0",
            "bounce_queue_lifetime": "0",
            "delay_warning_time": "0",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "disable_dns_lookups": "yes",
            "smtp_host_lookup": "native",
            "smtp_connect_timeout": "5s",
            "biff": "no",
            "maillog_file": self.log,
            "maillog_file_prefixes": self.root,
            "smtputf8_enable": "no",
        }
        return "".join(f"{key} = {value}\n" for key, value in settings.items())

    def __enter__(self) -> Postfix:
        for directory in (self.config, self.queue, self.data, self.mailboxes):
            directory.mkdir(parents=True, exist_ok=True)
        os.chown(self.mailboxes, self._uid, self._gid)
        os.chown(self.data, pwd.getpwnam("postfix").pw_uid, pwd.getpwnam("postfix").pw_gid)
        (self.config / "main.cf").write_text(self._main_cf(), encoding="utf-8")
        (self.config / "master.cf").write_text(
            _SERVICES.format(listen=f"127.0.0.1:{self.port}"), encoding="utf-8"
        )
        self._postfix("check")
        self._postfix("start")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with __import__("socket").create_connection(("127.0.0.1", self.port), 1):
                    return self
            except OSError:
                time.sleep(0.1)
        self._stop()
        raise RuntimeError(f"postfix did not listen on port {self.port}:\n{self.log_text()}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop(self) -> None:
        subprocess.run(
            [self.command, "-c", str(self.config), "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )

    def _postfix(self, action: str) -> None:
        done = subprocess.run(
            [self.command, "-c", str(self.config), action],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"postfix {action} failed: {done.stdout}{done.stderr}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def wait_for_bounces(self, count: int, timeout: float = 60) -> list[Path]:
        """The files in the bounce Maildir once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        found: list[Path] = []
        while time.monotonic() < deadline:
            found = (
                sorted((self.bounce_maildir / "new").glob("*"))
                if (self.bounce_maildir / "new").is_dir()
                else []
            )
            if len(found) >= count:
                return found
            time.sleep(0.2)
        raise AssertionError(
            f"{len(found)} bounces after {timeout} s, expected {count}:\n{self.log_text()[-4000:]}"
        )
