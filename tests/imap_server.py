"""A private Dovecot IMAP server for tests: its own configuration, users and mail in a
temp dir, IMAP with STARTTLS and IMAPS on free loopback ports, a certificate from a
test CA (trustme). Needs root, as in CI (Dovecot's master drops to its own users).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import trustme

from tests.daemons import require_daemon
from tests.smtp_sink import free_port

USER = "bounces"
PASSWORD = "imap-secret-1"


def require_dovecot() -> str:
    return require_daemon("dovecot", "dovecot-imapd", ("dovecot", "dovenull"))


class Dovecot:
    def __init__(self) -> None:
        self.command = require_dovecot()
        self.root = Path(tempfile.mkdtemp(prefix="dv-", dir="/tmp"))
        self.root.chmod(0o755)
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.ca = trustme.CA()
        self._process: subprocess.Popen[bytes] | None = None
        nobody = pwd.getpwnam("nobody")
        self._uid, self._gid = nobody.pw_uid, nobody.pw_gid

    @property
    def maildir(self) -> Path:
        return self.root / "home" / USER / "Maildir"

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def deliver(self, name: str, data: bytes) -> None:
        """Put a message in the INBOX, as a delivery agent would."""
        for sub in ("tmp", "new", "cur"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        target = self.maildir / "new" / name
        target.write_bytes(data)
        for path in (self.root / "home", self.root / "home" / USER, *self.maildir.rglob("*")):
            os.chown(path, self._uid, self._gid)
        os.chown(self.maildir, self._uid, self._gid)

    def __enter__(self) -> Dovecot:
        certificate = self.ca.issue_cert("127.0.0.1", "localhost")
        cert, key = self.root / "cert.pem", self.root / "key.pem"
        certificate.cert_chain_pems[0].write_to_path(str(cert))
        certificate.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        for sub in ("run", "state", "home"):
            (self.root / sub).mkdir()
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        config = self.root / "dovecot.conf"
        config.write_text(
            f"""\
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
first_valid_uid = {self._uid}
passdb {{
  driver = passwd-file
  args = {self.root}/users
}}
userdb {{
  driver = static
  args = uid={self._uid} gid={self._gid} home={self.root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""
        )
        self.deliver(".keep", b"")
        (self.maildir / "new" / ".keep").unlink()
        self._process = subprocess.Popen(
            [self.command, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.imaps_port), 1):
                    return self
            except OSError:
                time.sleep(0.1)
        self._stop()
        raise RuntimeError(f"dovecot did not start:\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""

    def _stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.communicate()
        elif self._process is not None:
            self._process.communicate()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop()
        shutil.rmtree(self.root, ignore_errors=True)
