"""``TraceJudge``: the application's client. Scores are validated in the caller's thread and queued; a
background thread posts them (``_sender.Sender``).

No method raises into the application or waits on the network: a bad argument is a logged warning naming the
field (the same validation as the API, ``validation.validate_score``), a full queue drops its oldest score
(counted in ``dropped``), an unreachable server is retried in the background. Only ``flush`` and ``shutdown``
wait, and only as long as they are told.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from datetime import datetime
from typing import Any, Literal

import httpx
from opentelemetry import trace

from tracejudge_client._made import new_score_id, utc_now
from tracejudge_client._sender import Sender
from tracejudge_client.validation import ScoreInvalid, check_score, rfc3339

logger = logging.getLogger("tracejudge_client")

DEFAULT_API_URL = "http://localhost:8080"
SCORES_PATH = "/api/v1/scores"
DataType = Literal["NUMERIC", "CATEGORICAL", "BOOLEAN"]


class TraceJudge:
    """A client of one tracejudge service.

    Each argument left None is read from the environment: ``TRACEJUDGE_API_URL`` (default
    ``http://localhost:8080``), ``TRACEJUDGE_API_KEY`` (sent as ``Authorization: Bearer ...`` when set) and
    ``TRACEJUDGE_PROJECT`` (the scores' ``project``; unset: the server decides). Scores are posted every
    ``flush_interval_s`` seconds (sooner when 1,000 are waiting); at most ``max_queue`` wait, the oldest dropped
    beyond; ``timeout_s`` bounds each HTTP request and ``shutdown``. Thread-safe. A bad setting (a URL that is
    not http(s), a queue under 1, an interval or timeout not above 0) is a ValueError here, never later.

    Counters: ``sent`` (accepted by the server), ``dropped`` (pushed out of a full queue, or scored after
    shutdown), ``failed`` (refused by the server, or given up at shutdown).
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        project: str | None = None,
        flush_interval_s: float = 1.0,
        max_queue: int = 10_000,
        timeout_s: float = 5,
    ) -> None:
        self.api_url = (api_url or os.environ.get("TRACEJUDGE_API_URL") or DEFAULT_API_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("TRACEJUDGE_API_KEY") or None
        self.project = project or os.environ.get("TRACEJUDGE_PROJECT") or None
        self.timeout_s = timeout_s
        scheme = self.api_url.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            msg = f"api_url (or TRACEJUDGE_API_URL) must start with http:// or https://, not {self.api_url!r}"
            raise ValueError(msg)
        # TLS set up here, once: loading the CA bundle takes ~40 ms holding the GIL, which in the background
        # thread would stall the application at its first score. A plain-HTTP URL needs none (redirects are
        # not followed, so no request ever goes elsewhere).
        self._tls: ssl.SSLContext | None = httpx.create_ssl_context() if scheme == "https" else None
        self._sender = Sender(
            self.api_url + SCORES_PATH,
            self._make_http,
            flush_interval_s=flush_interval_s,
            max_queue=max_queue,
            timeout_s=timeout_s,
        )
        self._warned: set[str] = set()  # the once-per-client warnings already logged
        # The last span resource seen and the project it names (a resource is immutable; most apps have one).
        self._resource_project: tuple[object, str] = (None, "")

    @property
    def sent(self) -> int:
        """Scores the server accepted."""
        return self._sender.sent

    @property
    def dropped(self) -> int:
        """Scores dropped before posting: pushed out of a full queue, or scored after ``shutdown``."""
        return self._sender.dropped

    @property
    def failed(self) -> int:
        """Scores the server refused, or given up on at shutdown."""
        return self._sender.failed

    def create_score(
        self,
        *,
        name: str,
        value: float | str,
        session_id: str | None = None,
        dataset_run_id: str | None = None,
        trace_id: str | None = None,
        observation_id: str | None = None,
        score_id: str | None = None,
        data_type: DataType | None = None,
        comment: str | None = None,
        config_id: str | None = None,
        metadata: Any | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Score a trace (``trace_id``), one of its spans (``observation_id`` too), a session or a dataset run.
        Returns at once; the score is posted in the background."""
        self._score(
            self.project, name=name, value=value, session_id=session_id, dataset_run_id=dataset_run_id,
            trace_id=trace_id, observation_id=observation_id, score_id=score_id, data_type=data_type,
            comment=comment, config_id=config_id, metadata=metadata, timestamp=timestamp,
        )  # fmt: skip

    def score_current_span(
        self,
        *,
        name: str,
        value: float | str,
        score_id: str | None = None,
        data_type: DataType | None = None,
        comment: str | None = None,
        config_id: str | None = None,
    ) -> None:
        """Score the active OpenTelemetry span (its trace id and span id). Outside any span: a warning (once
        per client) and nothing sent."""
        ids = self._current_ids("score_current_span")
        if ids is not None:
            self._score(
                self.project or ids[2] or None, name=name, value=value, trace_id=ids[0], observation_id=ids[1],
                score_id=score_id, data_type=data_type, comment=comment, config_id=config_id,
            )  # fmt: skip

    def score_current_trace(
        self,
        *,
        name: str,
        value: float | str,
        score_id: str | None = None,
        data_type: DataType | None = None,
        comment: str | None = None,
        config_id: str | None = None,
    ) -> None:
        """Score the trace of the active OpenTelemetry span. Outside any span: a warning (once per client) and
        nothing sent."""
        ids = self._current_ids("score_current_trace")
        if ids is not None:
            self._score(
                self.project or ids[2] or None, name=name, value=value, trace_id=ids[0], score_id=score_id,
                data_type=data_type, comment=comment, config_id=config_id,
            )  # fmt: skip

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every score created before this call is delivered (or refused); False when ``timeout_s``
        seconds pass first (None: no limit)."""
        return self._sender.flush(timeout_s)

    def shutdown(self) -> None:
        """Deliver what is queued (for up to ``timeout_s`` seconds) and stop the background thread. Scores
        created afterwards are dropped. Also done at interpreter exit."""
        self._sender.shutdown()

    def _score(self, project: str | None, *, name: str, **fields: Any) -> None:
        """create_score's work with the score's project given (None: the server's default); `fields` are
        create_score's other keyword arguments."""
        try:
            body = _body(project, name, fields)
        except ScoreInvalid as exc:
            logger.warning("tracejudge: score %r not sent: %s", name, exc)
            return
        except Exception:
            logger.warning("tracejudge: score %r not sent", name, exc_info=True)
            return
        try:
            queued = self._sender.put(body)
        except Exception:  # the sender thread could not start (no threads left): never the caller's problem
            logger.warning("tracejudge: score %r not sent", name, exc_info=True)
            return
        if not queued:
            self._warn_once("closed", "tracejudge: scores after shutdown() are dropped")

    def _make_http(self) -> httpx.Client:
        """The HTTP client of the background thread (one for the client's life)."""
        headers = {"user-agent": "tracejudge-client"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        verify: ssl.SSLContext | bool = self._tls if self._tls is not None else False
        return httpx.Client(headers=headers, timeout=self.timeout_s, verify=verify, follow_redirects=False)

    def _current_ids(self, caller: str) -> tuple[str, str, str] | None:
        """The active span's (trace id, span id) as lowercase hex, and the project its resource names ('' when
        none, or an API-only span); None (warned once) outside a valid span."""
        span = trace.get_current_span()
        context = span.get_span_context()
        if not context.is_valid:
            self._warn_once("no-span", f"tracejudge: {caller} outside any active span: nothing is scored")
            return None
        resource = getattr(span, "resource", None)  # an SDK span has one; the API's own spans do not
        known = self._resource_project  # one tuple, replaced whole: thread-safe
        if resource is not known[0]:
            known = (resource, _resource_project(resource))
            self._resource_project = known
        return format(context.trace_id, "032x"), format(context.span_id, "016x"), known[1]

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)


def _body(project: str | None, name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The score object to post: the arguments given (None left out), checked as the API checks them
    (ScoreInvalid naming the field), with a ``score_id`` and a ``timestamp`` when the caller gave none.

    Those two are made here, not by the server: a retried batch the server had stored replaces itself instead
    of adding a second row, and a score made while the service is down keeps its own time. They are added
    after the check (what the client makes is valid), a caller's datetime checked as it is, then formatted."""
    body = {k: v for k, v in fields.items() if v is not None}
    for made in ("score_id", "timestamp"):  # an empty one is none given
        if made in body and not body[made]:
            del body[made]
    body["name"] = name
    if project is not None:
        body["project"] = project
    if "metadata" in body:
        body["metadata"] = _snapshot(body["metadata"])
    check_score(body)
    given = body.get("timestamp")
    body["timestamp"] = (
        utc_now() if given is None else rfc3339(given) if isinstance(given, datetime) else given
    )
    if "score_id" not in body:
        body["score_id"] = new_score_id()
    return body


def _snapshot(metadata: Any) -> Any:
    """``metadata`` as JSON values, copied now: the application may change its dict after the call, and
    what is not JSON is refused here, naming the field, instead of in the sender thread."""
    try:
        return json.loads(json.dumps(metadata, allow_nan=False))
    except Exception as exc:  # TypeError, ValueError, RecursionError
        field, problem = "metadata", f"must be JSON ({type(exc).__name__}: {exc})"
        raise ScoreInvalid(field, problem) from exc


# The resource attributes the service reads a trace's project from, in its default order (ingest.project_keys):
# a score made inside a span before its trace is stored gets the project its trace will have.
PROJECT_KEYS = (
    "tracejudge.project", "dokimos.project", "dokimos.project.name", "openinference.project.name", "service.name",
)  # fmt: skip


def _resource_project(resource: object) -> str:
    """The project a span's resource names ('' when none does, or no resource)."""
    attributes = getattr(resource, "attributes", None) or {}
    for key in PROJECT_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return ""
