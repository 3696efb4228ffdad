"""The deliverability commands as an operator runs them: real subprocesses, real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from syndicator.state.db import State
from tests.conftest import ROOT
from tests.mail.test_bounces import SECRET, mail_everyone, report_for, status_of


def run(config: Path, *argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "syndicator", "--config", str(config), *argv],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_bounces_process_reads_standard_input(
    install: Path, tmp_path: Path, state_url: str
) -> None:
    mailed = mail_everyone(tmp_path, "gone@example.net", "stays@example.net", url=state_url)
    mailed.state.close()
    # The installation's own state (``state_url`` is its absolute address).
    text = install.read_text()
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET)
    text = text.replace("[mail]\n", f'[mail]\nunsubscribe_secret_file = "{secret_file}"\n')
    install.write_text(text)
    data = report_for(
        "exchange-dsn.eml", key=mailed.keys["gone@example.net"], recipient="gone@example.net"
    )
    done = run(install, "bounces", "process", "-", stdin=data)
    assert done.returncode == 0, done.stderr
    assert b"1 read, 1 counted, 0 ignored; 1 suspended" in done.stdout
    assert b"hard (dsn) for gone@example.net: suspended (hard bounce 5.1.10)" in done.stderr
    again = run(install, "bounces", "process", "-", stdin=data)
    assert b"already processed" in again.stderr
    state = State.open(state_url)
    try:
        assert status_of(state, "gone@example.net") == "suspended"
        assert status_of(state, "stays@example.net") == "active"
    finally:
        state.close()
    missing = run(install, "bounces", "process", str(tmp_path / "nothing-here"))
    assert missing.returncode == 1
    assert missing.stderr.decode().count("\n") == 1 and b"nothing-here" in missing.stderr


def test_suppress_import_export_list_remove(install: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "suppressed.csv"
    csv_file.write_text(
        "entry,reason,date\n"
        "Someone@Example.ORG,asked by phone,2026-01-31\n"
        "*@spamtrap.example,known trap,\n"
        "not an address,oops,\n"
        "other@example.org,,2026-13-45\n"
        "someone@example.org,again,\n"
    )
    done = run(install, "suppress", "import", str(csv_file))
    assert done.returncode == 1  # problems were found; the good rows still count
    errors = done.stderr.decode().strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"{csv_file}:4: ") and "not an address" in errors[0]
    assert errors[1].startswith(f"{csv_file}:5: ") and "2026-13-45" in errors[1]
    assert b"2 added, 1 already listed" in done.stdout
    listed = run(install, "suppress", "list").stdout.decode()
    assert "someone@example.org" in listed and "2026-01-31  asked by phone" in listed
    assert "*@spamtrap.example" in listed
    exported = run(install, "suppress", "export").stdout.decode().splitlines()
    assert exported[0] == "entry,reason,date"
    assert exported[1].startswith("*@spamtrap.example,known trap,")
    assert exported[2] == "someone@example.org,asked by phone,2026-01-31T00:00:00+00:00"
    # The export imports again as the same list.
    (tmp_path / "again.csv").write_text("\n".join(exported) + "\n")
    assert b"0 added, 2 already listed" in run(install, "suppress", "import",
                                               str(tmp_path / "again.csv")).stdout  # fmt: skip
    assert run(install, "suppress", "remove", "SOMEONE@example.org").returncode == 0
    gone = run(install, "suppress", "remove", "someone@example.org")
    assert gone.returncode == 1 and b"not on the list" in gone.stderr
    assert run(install, "suppress", "add", "not-an-address").returncode == 1
