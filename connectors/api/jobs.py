"""Re-scoring routes (issue 11): `POST /api/v1/rules/{id}/rewind`, `POST /api/v1/rules/{id}/backfill`,
`POST /api/v1/score-traces`, and the jobs they start: `GET /api/v1/jobs`, `GET /api/v1/jobs/{id}`,
`POST /api/v1/jobs/{id}/cancel`.

A dry run plans the job now (one query) and answers its estimate, writing nothing; a real run stores the job
queued and answers 202 with its id; the process's job runner (`dataflow/jobs/runner.py`) picks it up at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from connectors.api.access import require_project, visible
from connectors.api.blocking import run
from connectors.api.errors import ApiError, error_responses
from connectors.api.job_models import (
    MAX_TRACE_IDS,
    BackfillRequest,
    DryRun,
    JobCounts,
    JobList,
    JobStarted,
    JobView,
    RewindRequest,
    ScoreTracesRequest,
)
from connectors.api.params import iso_ns, parse_time
from connectors.clickhouse.job_traces import JobTraces
from connectors.clickhouse.jobs_store import JobStore
from connectors.clickhouse.rules_store import RuleStore
from dataflow.errors import RuleCompileError
from dataflow.jobs.estimate import estimate
from dataflow.jobs.manual import as_scope, manual_spec
from dataflow.jobs.model import MANUAL_PREFIX, Candidate, Job, JobKind, JobState
from dataflow.judging.connections import ConnectionSpec
from dataflow.rules.model import CompiledRule, RuleSpec, compile_rule

BACKFILL_LAST = 50


@dataclass(frozen=True)
class JobsDeps:
    store: JobStore
    traces: JobTraces
    rules: RuleStore
    connection: Callable[[str], ConnectionSpec | None]
    wake: Callable[[], None]  # tell this process's runner a job is queued


def job_view(job: Job) -> JobView:
    p = job.progress
    end = job.finished_ns or (job.heartbeat_ns if job.state == JobState.RUNNING else 0)
    elapsed = (end - job.started_ns) / 1e9 if job.started_ns and end > job.started_ns else 0.0
    rate = p.processed / elapsed if elapsed > 0 else 0.0
    left = max(0, p.total - p.processed)
    eta = left / rate if rate > 0 and not job.state.finished else None
    return JobView(
        job_id=job.job_id, kind=job.kind.value, rule_id=job.rule_id, rule_version=job.rule_version,
        project=job.project, params=job.params, state=job.state.value,
        counts=JobCounts(
            total=p.total, processed=p.processed, matched=p.matched, filtered_out=p.filtered_out,
            sampled_out=p.sampled_out, scored=p.scored, errors=p.errors, shed=dict(p.shed),
            judge_calls=p.judge_calls, cost_usd=round(p.cost_usd, 6),
        ),
        rate_per_s=round(rate, 2), eta_s=None if eta is None else round(eta, 1), paused=job.paused,
        last_error=job.last_error, process=job.process, created_at=iso_ns(job.created_ns),
        started_at=iso_ns(job.started_ns) if job.started_ns else None,
        finished_at=iso_ns(job.finished_ns) if job.finished_ns else None,
    )  # fmt: skip


def _compiled(spec: RuleSpec) -> CompiledRule:
    try:
        return compile_rule(spec)
    except RuleCompileError as exc:
        raise ApiError(400, str(exc), "scorers") from exc


def _window(since: str | None, until: str | None) -> tuple[int, int]:
    since_ns = parse_time(since, "since")
    until_ns = parse_time(until, "until") or time.time_ns()
    if since is not None and until_ns <= since_ns:
        raise ApiError(400, "until must be later than since", "until")
    return since_ns, until_ns


def build_jobs_router(deps: JobsDeps) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["jobs"], responses=error_responses(422))

    async def saved_rule(request: Request, rule_id: str) -> RuleSpec:
        spec: RuleSpec | None = await run(deps.rules.get, rule_id)
        if spec is None or not visible(request, spec.project):
            raise ApiError(404, f"rule {rule_id} not found")
        return spec

    async def start(job: Job, plan: list[Candidate], rules: list[CompiledRule], sampling: CompiledRule | None,
                    dry_run: bool) -> JSONResponse:  # fmt: skip
        if dry_run:
            est = estimate(plan, rules, sampling, deps.connection)
            return JSONResponse(DryRun(**vars(est)).model_dump(), status_code=200)
        await run(deps.store.save, job)
        deps.wake()
        return JSONResponse(JobStarted(job_id=job.job_id).model_dump(), status_code=202)

    def new_job(kind: JobKind, spec: RuleSpec | None, project: str, params: dict[str, Any]) -> Job:
        job_id = uuid.uuid4().hex
        rule_id = spec.id if spec is not None else f"{MANUAL_PREFIX}{job_id}"
        version = spec.version if spec is not None else 0
        return Job(job_id, kind, rule_id, version, project, params, created_ns=time.time_ns())

    responses = {200: {"model": DryRun, "description": "dry_run: the estimate."},
                 202: {"model": JobStarted, "description": "The job, queued."}, **error_responses(400, 404)}  # fmt: skip

    @router.post("/rules/{rule_id}/rewind", status_code=202, response_model=JobStarted | DryRun, responses=responses,
                 summary="Re-score the rule's traces that started in a window (current version)")  # fmt: skip
    async def rewind(request: Request, rule_id: str, body: RewindRequest) -> JSONResponse:
        spec = await saved_rule(request, rule_id)
        rule = _compiled(spec)
        since_ns, until_ns = _window(body.since, body.until)
        job = new_job(JobKind.REWIND, spec, spec.project, {"since_ns": since_ns, "until_ns": until_ns})
        plan = await run(deps.traces.window, rule, since_ns, until_ns) if body.dry_run else []
        return await start(job, plan, [rule], rule, body.dry_run)

    @router.post("/rules/{rule_id}/backfill", status_code=202, response_model=JobStarted | DryRun, responses=responses,
                 summary="Score the rule's most recent matching traces (default the last 50), or a window")  # fmt: skip
    async def backfill(request: Request, rule_id: str, body: BackfillRequest) -> JSONResponse:
        spec = await saved_rule(request, rule_id)
        rule = _compiled(spec)
        if body.since is not None and body.last is not None:
            raise ApiError(400, "give either last or since (with until), not both", "last")
        if body.since is not None:
            since_ns, until_ns = _window(body.since, body.until)
            params: dict[str, Any] = {"since_ns": since_ns, "until_ns": until_ns}
        else:
            params = {"last": body.last or BACKFILL_LAST, "until_ns": _window(None, body.until)[1]}
        job = new_job(JobKind.BACKFILL, spec, spec.project, params)
        plan = await run(deps.traces.plan, job, rule) if body.dry_run else []
        return await start(job, plan, [rule], rule, body.dry_run)

    @router.post("/score-traces", status_code=202, response_model=JobStarted | DryRun, responses=responses,
                 summary="Score the listed traces now with a rule's scorers or given ones (no filter, no sampling)")  # fmt: skip
    async def score_traces(request: Request, body: ScoreTracesRequest) -> JSONResponse:
        trace_ids, span_ids = _ids(body.trace_ids, 32, "trace_ids"), _ids(body.span_ids, 16, "span_ids")
        if not trace_ids or len(trace_ids) > MAX_TRACE_IDS:
            raise ApiError(
                400, f"between 1 and {MAX_TRACE_IDS:,} trace ids, not {len(trace_ids)}", "trace_ids"
            )
        named = body.rule_id or next((s.get("rule_id") for s in body.scorers if "rule_id" in s), None)
        spec = await saved_rule(request, str(named)) if named else None
        scope = body.scope if "scope" in body.model_fields_set or spec is None else spec.scope
        if span_ids and scope != "span":
            raise ApiError(400, "span_ids need scope 'span'", "span_ids")
        params = {"trace_ids": trace_ids, "scope": scope, "span_ids": span_ids,
                  "scorers": [] if spec else body.scorers, "project": body.project}  # fmt: skip
        project = spec.project if spec else body.project or ""
        job = new_job(JobKind.SCORE_TRACES, spec, project, params)
        plan = await run(deps.traces.plan, job, None)
        projects = sorted({body.project or c.project for c in plan}) or [body.project or "default"]
        for p in {project, *projects} - {""}:
            require_project(request, p)
        if spec is not None:
            rules = [_compiled(as_scope(spec, scope))]
        else:
            if not body.scorers:
                raise ApiError(400, "give scorers, or a rule_id whose scorers to use", "scorers")
            try:
                rules = [compile_rule(manual_spec(job.rule_id, p, body.scorers, scope)) for p in projects]
            except RuleCompileError as exc:
                raise ApiError(400, str(exc), "scorers") from exc
        if not job.project:
            job = job.with_(project=projects[0] if len(projects) == 1 else "")
        return await start(job, plan, rules, None, body.dry_run)

    @router.get("/jobs", response_model=JobList, summary="Jobs, newest first")
    async def list_jobs(
        request: Request,
        rule_id: Annotated[str, Query(description="Only this rule's jobs.")] = "",
        state: Annotated[str, Query(description="Only jobs in this state.")] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JobList:
        if state and state not in {s.value for s in JobState}:
            raise ApiError(400, f"state must be one of {', '.join(s.value for s in JobState)}", "state")
        jobs = [j for j in await run(deps.store.jobs, rule_id, state, limit) if visible(request, j.project)]
        return JobList(jobs=[job_view(j) for j in jobs], count=len(jobs))

    @router.get("/jobs/{job_id}", response_model=JobView, responses=error_responses(404), summary="One job")
    async def get_job(request: Request, job_id: str) -> JobView:
        job = await run(deps.store.get, job_id)
        if job is None or not visible(request, job.project):
            raise ApiError(404, f"job {job_id} not found")
        return job_view(job)

    @router.post("/jobs/{job_id}/cancel", response_model=JobView, responses=error_responses(404),
                 summary="Cancel a job: it stops within a few seconds; what it scored stays (an ended job: as is)")  # fmt: skip
    async def cancel_job(request: Request, job_id: str) -> JobView:
        job = await run(deps.store.get, job_id)
        if job is None or not visible(request, job.project):
            raise ApiError(404, f"job {job_id} not found")
        if job.state.finished:
            return job_view(job)
        await run(deps.store.request_cancel, job_id)
        if job.state == JobState.QUEUED:
            job = job.with_(state=JobState.CANCELLED, finished_ns=time.time_ns())
            await run(deps.store.save, job)
        deps.wake()
        return job_view(job)

    return router


def _ids(values: list[str], digits: int, field: str) -> list[str]:
    out = []
    for i, value in enumerate(values):
        if len(value) != digits or any(ch not in "0123456789abcdefABCDEF" for ch in value):
            raise ApiError(400, f"{field}[{i}]: must be {digits} hex digits", field)
        out.append(value.lower())
    return list(dict.fromkeys(out))


__all__ = ["JobsDeps", "build_jobs_router", "job_view"]
