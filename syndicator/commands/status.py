"""``status``: the instances sharing the state database and the state of the outbox."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from syndicator.commands.common import EXIT_OK, load
from syndicator.state import coordination
from syndicator.state.db import State


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def status_report(state: State, *, now: datetime, heartbeat: timedelta) -> dict[str, Any]:
    """What ``status`` shows, as data: instances, the cycle holder, the outbox."""
    with state.engine.connect() as conn:
        found = coordination.instances(conn)
        holder = coordination.cycle_holder(conn)
        by_status = coordination.outbox_by_status(conn)
        by_instance = coordination.outbox_by_instance(conn)
        oldest = coordination.oldest_pending(conn)
    live = [instance for instance in found if instance.alive(now, heartbeat)]
    return {
        "database": state.engine.dialect.name,
        "instances": [
            {
                "id": instance.id,
                "host": instance.host,
                "pid": instance.pid,
                "roles": list(instance.roles),
                "started": _when(instance.started_at),
                "last_heartbeat": _when(instance.heartbeat_at),
                "alive": instance in live,
            }
            for instance in found
        ],
        "cycle_holder": holder,
        "cycle_instances": sum("cycle" in instance.roles for instance in live),
        "outbox": by_status,
        "sending_by_instance": by_instance,
        "oldest_pending": _when(oldest),
    }


def cmd_status(args: argparse.Namespace) -> int:
    config = load(args)
    state = State.open(config.state.url)
    try:
        report = status_report(
            state,
            now=datetime.now(UTC),
            heartbeat=timedelta(seconds=config.service.heartbeat_seconds),
        )
    finally:
        state.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"database: {report['database']}")
    print(f"instances: {len(report['instances'])}")
    for instance in report["instances"]:
        print(
            f"  {instance['id']}  roles {','.join(instance['roles'])}  "
            f"last heartbeat {instance['last_heartbeat']}  "
            f"{'alive' if instance['alive'] else 'gone'}"
        )
    print(f"cycle holder: {report['cycle_holder'] or '-'}")
    if not report["cycle_instances"]:
        print("warning: no live instance has the cycle role (see service.roles)")
    outbox = ", ".join(f"{key} {value}" for key, value in sorted(report["outbox"].items()))
    print(f"outbox: {outbox or 'empty'}")
    for owner, count in sorted(report["sending_by_instance"].items()):
        print(f"  sending by {owner}: {count}")
    print(f"oldest pending: {report['oldest_pending'] or '-'}")
    return EXIT_OK
