"""Run `tracejudge run` in this process with its OTLP/gRPC port taken; print what the failed start left behind.

    python -m tests.integration.failed_start DATA_DIR GRPC_PORT

The gRPC receiver is started last (after the log, the flow, the judge loop, the reloaders, the decode pool and
the HTTP servers), so its taken port fails start-up late. Prints one JSON line: the exit code, the threads started by the run that are
still alive, child processes still running, files under DATA_DIR still open, and whether the HTTP ports it claimed
can be claimed again. chDB allows one data directory per process, hence a process of its own.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path

import psutil

from tracejudge import cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _can_listen(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def main(data_dir: Path, grpc_port: int) -> dict[str, object]:
    http_port, api_port = _free_port(), _free_port()
    before = {t.ident for t in threading.enumerate()}
    code = cli.main([
        "run", "--data-dir", str(data_dir), "--otlp-grpc-port", str(grpc_port),
        "--otlp-http-port", str(http_port), "--api-port", str(api_port),
    ])  # fmt: skip
    me = psutil.Process()
    # multiprocessing's resource tracker lives as long as this process, by design; anything else is a leak.
    children = [" ".join(p.cmdline()) for p in me.children(recursive=True)]
    logs = [str(data_dir.resolve() / name) for name in ("wal", "recovery")]
    return {
        "code": code,
        "threads": sorted(t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()),
        "children": [c for c in children if "resource_tracker" not in c],
        "open_files": [f.path for f in me.open_files() if f.path.startswith(tuple(logs))],
        "ports_free": _can_listen(http_port) and _can_listen(api_port),
    }


if __name__ == "__main__":
    report = main(Path(sys.argv[1]), int(sys.argv[2]))
    print(json.dumps(report), flush=True)
    sys.stderr.flush()
    os._exit(0)  # what a leaky start left running must not keep this report from arriving
