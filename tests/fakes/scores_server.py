"""A TEST FAKE of tracejudge's ``POST /api/v1/scores``, for testing and benchmarking the Python client offline.

It takes what the client posts (a JSON list of score objects; one object is taken as a list of one), keeps
the scores in ``received`` (in arrival order) and the requests' headers in ``headers``, and answers 200
``{"accepted": N, "score_ids": [...], "errors": []}``, unless a scripted answer is waiting in ``script``: each
:class:`Answer` (a status, a ``Retry-After``, a body) is used by the next request, in order, and the scores of
a request answered with an error are not kept.

In-process: ``FakeScores().start()`` (port 0: the OS chooses; ``port=`` a fixed one, e.g. to bring a stopped
server back on its address), ``.url``, ``.stop()``. As a process: ``python -m tests.fakes.scores_server
--port 0 [--no-record]`` prints ``READY <port>`` and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Answer:
    """A scripted answer: ``status``, a ``Retry-After`` header when not None, a JSON ``body``."""

    status: int
    retry_after: str | None = None
    body: dict[str, Any] = field(default_factory=dict)


class FakeScores:
    """The fake server; thread-safe."""

    def __init__(self, record: bool = True) -> None:
        self.record = record
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.requests = 0
        self.script: deque[Answer] = deque()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, port: int = 0) -> FakeScores:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, headers, body = fake.handle(self.path, dict(self.headers.items()), raw)
                payload = json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((HOST, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="fake-scores", daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body) of the answer to one POST."""
        if path != "/api/v1/scores":
            return 404, {}, {"error": {"code": "not_found", "message": path}}
        with self.lock:
            self.requests += 1
            self.headers.append({k.lower(): v for k, v in headers.items()})
            answer = self.script.popleft() if self.script else None
            if answer is not None:
                return answer.status, _retry_after(answer), answer.body
            doc = json.loads(raw)
            scores = doc if isinstance(doc, list) else [doc]
            if self.record:
                self.received.extend(scores)
        ids = [str(score.get("score_id") or i) for i, score in enumerate(scores)]
        return 200, {}, {"accepted": len(scores), "score_ids": ids, "errors": []}


def _retry_after(answer: Answer) -> dict[str, str]:
    return {} if answer.retry_after is None else {"retry-after": answer.retry_after}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="TEST FAKE of tracejudge's POST /api/v1/scores.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="count the requests, keep no scores")
    args = parser.parse_args(argv)
    fake = FakeScores(record=not args.no_record).start(args.port)
    print(f"READY {fake.port}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
