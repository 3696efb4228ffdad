"""``304 Not Modified`` answers per second: our daemon's HTTP server against nginx.

Feed readers poll with ``If-None-Match``; most answers are 304. Both servers serve
the same published directory on loopback, one worker process each, and wrk sends
conditional requests for the same feed with the ETag each server gave.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.generate import write_store
from benchmarks.pipeline import free_port, install

FEED = "feeds/all.atom"


def _etag(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our http URL
                response.read()
                return str(response.headers["ETag"])
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _wrk(url: str, etag: str, seconds: int, connections: int) -> float:
    output = subprocess.run(
        [
            _tool("wrk"),
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            f"If-None-Match: {etag}",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    statuses = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if statuses:
        raise RuntimeError(f"{url}: {statuses.group(1)} answers were not 304:\n{output}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    return float(found.group(1))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"needs {name} (Debian package {name})")
    return path


def _nginx_config(root: Path, output_dir: Path, port: int) -> Path:
    config = root / "nginx.conf"
    config.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            pid {root}/nginx.pid;
            error_log {root}/nginx-error.log;
            events {{ worker_connections 1024; }}
            http {{
                access_log off;
                types {{ application/atom+xml atom; }}
                client_body_temp_path {root}/body;
                proxy_temp_path {root}/proxy;
                fastcgi_temp_path {root}/fastcgi;
                uwsgi_temp_path {root}/uwsgi;
                scgi_temp_path {root}/scgi;
                server {{
                    listen 127.0.0.1:{port};
                    location /feeds/ {{ alias {output_dir}/; }}
                }}
            }}
            """
        )
    )
    return config


def run(seconds: int = 5, connections: int = 50) -> dict[str, Any]:
    for tool in ("nginx", "wrk"):
        _tool(tool)
    root = Path(tempfile.mkdtemp(prefix="syndicator-http-"))
    root.chmod(0o755)  # nginx's worker may run as another user
    processes: list[subprocess.Popen[bytes]] = []
    try:
        config = install(root)
        write_store(root / "articles", 200)
        ours_port, nginx_port = free_port(), free_port()
        text = config.read_text() + f'\n[http]\nlisten = "127.0.0.1:{ours_port}"\n'
        config.write_text(text.replace("[store]\n", "[store]\nreload_interval = 3600\n"))
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "syndicator", "--config", str(config), "run"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        ours_url = f"http://127.0.0.1:{ours_port}/{FEED}"
        ours_etag = _etag(ours_url, time.monotonic() + 60)
        nginx_config = _nginx_config(root, root / "feeds", nginx_port)
        processes.append(
            subprocess.Popen(
                [_tool("nginx"), "-c", str(nginx_config), "-p", str(root), "-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        nginx_url = f"http://127.0.0.1:{nginx_port}/{FEED}"
        nginx_etag = _etag(nginx_url, time.monotonic() + 30)
        ours = _wrk(ours_url, ours_etag, seconds, connections)
        baseline = _wrk(nginx_url, nginx_etag, seconds, connections)
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "name": "304 Not Modified answers per second",
        "connections": connections,
        "seconds": 1 / ours,
        "requests_per_second": ours,
        "baseline": "nginx (one worker) serving the same directory",
        "baseline_seconds": 1 / baseline,
        "baseline_requests_per_second": baseline,
        "ratio": baseline / ours,
        "share_of_baseline": ours / baseline,
        "target": "report the ratio",
    }
