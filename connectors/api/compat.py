"""Routes that let the Langfuse and InteractiveAI SDKs send to tracejudge unchanged (issue 10, item 4).

    POST /api/public/otel/v1/traces    both SDKs' spans: OTLP/HTTP, the same handling as `POST /api/v1/traces`
    POST /api/public/scores            Langfuse's scores: a list (or one object) of camelCase scores
    GET  /api/platform/v1/projects     InteractiveAI's discovery: the one project its public key names
    POST /api/platform/v1/organizations/{org_id}/projects/{project_id}/scores
                                       InteractiveAI's scores: one snake_case score
    *    /api/public/..., /api/platform/...   anything else (prompts, datasets...): a 404 saying what is served

The public key (the HTTP Basic user) names the project of the spans and scores (`compat.public_keys`, else
`default`); the secret key is not checked. A span's own resource-derived project is overridden for the whole
request. Scores are renamed to `POST /api/v1/scores`' fields (`id` becomes `score_id`) and stored through the
same validation and write (`store_scores`); fields tracejudge does not keep (`environment`, `queueId`...) are
ignored, as Langfuse ignores fields it does not know. The answers are what the SDKs read: Langfuse's 202
`{"message": "Accepted"}` or 207 with counts and errors for a list (`{"id"}` for one object); InteractiveAI's
`{"data": {"id"}}` (its SDK unwraps `data.id`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field
from starlette.responses import Response

from connectors.api.access import projects_of, require_project
from connectors.api.errors import ApiError, ErrorBody, error_responses
from connectors.api.score_models import ItemError
from connectors.api.scores import ConfigCheck, store_scores
from connectors.clickhouse.scores_store import ScoreAccess
from connectors.otlp.http import handle_export, otlp_success
from connectors.otlp.ingest import Ingestor
from dataflow.config import CompatConfig
from tracejudge_client.validation import MAX_BATCH

ORG_ID = "tracejudge"
DEFAULT_PROJECT = "default"
_COMMON = ("name", "value", "comment", "metadata", "timestamp", "source")
_SNAKE_CASE = ("trace_id", "observation_id", "session_id", "dataset_run_id", "data_type", "config_id")
# The SDKs' field names -> POST /api/v1/scores' (tracejudge_client.validation.FIELDS).
LANGFUSE_FIELDS = {
    "id": "score_id",
    "traceId": "trace_id",
    "observationId": "observation_id",
    "sessionId": "session_id",
    "datasetRunId": "dataset_run_id",
    "dataType": "data_type",
    "configId": "config_id",
    **{f: f for f in _COMMON},
}
INTERACTIVEAI_FIELDS = {
    "id": "score_id",
    **{f: f for f in (*_SNAKE_CASE, *_COMMON)},
}
SUPPORTED = (
    "tracejudge takes the Langfuse and InteractiveAI SDKs' spans (POST /api/public/otel/v1/traces) and scores "
    "(POST /api/public/scores; GET /api/platform/v1/projects and POST /api/platform/v1/organizations/{org}/"
    "projects/{project}/scores); prompts, datasets and the other routes are not supported"
)
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_basic = HTTPBasic(auto_error=False, description="public key : secret key (the secret is not checked)")
Credentials = Annotated[HTTPBasicCredentials | None, Depends(_basic)]


class PartialSuccess(BaseModel):
    rejectedSpans: str = Field(description="How many spans were refused (an int64 as text, as OTLP/JSON).")
    errorMessage: str = Field(description="The first problems.")


class OtlpAnswer(BaseModel):
    """OTLP's ExportTraceServiceResponse (as JSON here; protobuf for a protobuf request)."""

    partialSuccess: PartialSuccess | None = None


class ScoresAccepted(BaseModel):
    """Langfuse's 202: every score of the list stored."""

    message: Literal["Accepted"] = "Accepted"


class ScoreBatchResults(BaseModel):
    """Langfuse's 207: some scores of the list refused (the SDK logs the messages)."""

    accepted: int
    rejected: int
    errors: list[ItemError]


class ScoreId(BaseModel):
    id: str = Field(description="The stored score's id (`score_id`).")


class PlatformProject(BaseModel):
    id: str = Field(description="Stable id of the project (derived from its name).")
    orgId: str = Field(description=f"Always {ORG_ID!r}.")
    name: str = Field(description="The project the public key names.")


class PlatformProjects(BaseModel):
    data: list[PlatformProject]


class PlatformScoreCreated(BaseModel):
    data: ScoreId


def project_id(project: str) -> str:
    """A project's stable id in InteractiveAI's paths (safe in a URL whatever the name)."""
    return hashlib.sha256(project.encode()).hexdigest()[:16]


def renamed(doc: Any, names: Mapping[str, str], project: str) -> Any:
    """An SDK's score as `POST /api/v1/scores` takes it, in `project`; not an object: as it is (refused)."""
    if not isinstance(doc, dict):
        return doc
    fields = {names[k]: v for k, v in doc.items() if k in names and v is not None}
    return {**fields, "project": project}


async def store_renamed(
    items: list[Any],
    names: Mapping[str, str],
    project: str,
    store: ScoreAccess,
    check: ConfigCheck,
    single: bool,
) -> tuple[list[str], list[ItemError]]:
    """`store_scores` of the SDK's scores, its errors naming the fields as the SDK sent them."""
    sent_as = {ours: theirs for theirs, ours in names.items()}
    docs = [renamed(doc, names, project) for doc in items]
    try:
        ids, errors = await store_scores(docs, store, check, single=single)
    except ApiError as exc:
        if exc.field in sent_as:
            message = exc.message.replace(f"{exc.field}:", f"{sent_as[exc.field]}:", 1)
            raise ApiError(exc.status_code, message, sent_as[exc.field]) from exc
        raise
    return ids, [e.model_copy(update={"field": sent_as.get(e.field, e.field)}) for e in errors]


LANGFUSE_MAX_SCORES = 10 * MAX_BATCH  # one Langfuse post, stored in chunks of MAX_BATCH


def build_compat_router(
    ingestor: Ingestor, store: ScoreAccess, check_configs: ConfigCheck, config: CompatConfig
) -> APIRouter:
    router = APIRouter(tags=["compat"], responses=error_responses(401, 422))

    def project_of(creds: HTTPBasicCredentials | None) -> str:
        return config.public_keys.get(creds.username, DEFAULT_PROJECT) if creds else DEFAULT_PROJECT

    @router.post(
        "/api/public/otel/v1/traces",
        response_model=OtlpAnswer,
        summary="The SDKs' spans: OTLP/HTTP (protobuf or JSON, gzip/deflate), in the public key's project",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            }
        },
    )
    async def otel_traces(request: Request, creds: Credentials) -> Response:
        return await handle_export(
            request, ingestor, "api", otlp_success, project_of(creds), projects_of(request)
        )

    @router.post(
        "/api/public/scores",
        response_model=ScoresAccepted | ScoreBatchResults | ScoreId,
        status_code=202,
        responses={
            200: {"model": ScoreId, "description": "One object, stored."},
            207: {"model": ScoreBatchResults, "description": "A list, some (or all) scores refused."},
            **error_responses(400, 503),
        },
        summary="Langfuse's scores: a list of camelCase scores (202, or 207 when some are refused), or one (200)",
    )
    async def langfuse_scores(request: Request, creds: Credentials, body: Any = Body(...)) -> JSONResponse:  # noqa: B008
        require_project(request, project_of(creds))
        if not isinstance(body, dict | list):
            raise ApiError(400, "the body must be a score (a JSON object) or a list of scores", "body")
        items = body if isinstance(body, list) else [body]
        if len(items) > LANGFUSE_MAX_SCORES:
            raise ApiError(400, f"at most {LANGFUSE_MAX_SCORES} scores per request, not {len(items)}", "body")
        single = isinstance(body, dict)
        ids: list[str] = []
        errors: list[ItemError] = []
        # The SDK flushes up to `flush_at` scores (512 by default, settable higher) in one post and does not
        # retry a 400: a large list is stored in chunks of MAX_BATCH, not refused.
        for start in range(0, len(items), MAX_BATCH):
            chunk_ids, chunk_errors = await store_renamed(
                items[start : start + MAX_BATCH],
                LANGFUSE_FIELDS,
                project_of(creds),
                store,
                check_configs,
                single,
            )
            ids += chunk_ids
            errors += [e.model_copy(update={"index": e.index + start}) for e in chunk_errors]
        if single:
            return JSONResponse(ScoreId(id=ids[0]).model_dump(), status_code=200)
        if errors:
            results = ScoreBatchResults(accepted=len(ids), rejected=len(errors), errors=errors)
            return JSONResponse(results.model_dump(mode="json"), status_code=207)
        return JSONResponse(ScoresAccepted().model_dump(), status_code=202)

    @router.get(
        "/api/platform/v1/projects",
        response_model=PlatformProjects,
        summary="InteractiveAI's project discovery: the project the public key names",
    )
    async def platform_projects(creds: Credentials) -> PlatformProjects:
        project = project_of(creds)
        return PlatformProjects(data=[PlatformProject(id=project_id(project), orgId=ORG_ID, name=project)])

    @router.post(
        "/api/platform/v1/organizations/{org_id}/projects/{platform_project}/scores",
        response_model=PlatformScoreCreated,
        status_code=201,
        responses=error_responses(400, 404, 503),
        summary="InteractiveAI's scores: one snake_case score, in the public key's project",
    )
    async def platform_score(
        request: Request,
        org_id: str,
        platform_project: str,
        creds: Credentials,
        body: Any = Body(...),  # noqa: B008
    ) -> PlatformScoreCreated:
        project = project_of(creds)
        require_project(request, project)
        if (org_id, platform_project) != (ORG_ID, project_id(project)):
            raise ApiError(404, f"no project {platform_project} in organization {org_id} for this public key")
        ids, _ = await store_renamed([body], INTERACTIVEAI_FIELDS, project, store, check_configs, True)
        return PlatformScoreCreated(data=ScoreId(id=ids[0]))

    async def unsupported(request: Request, rest: str) -> None:
        raise ApiError(404, f"{request.method} {request.url.path} is not served: {SUPPORTED}")

    for prefix in ("/api/public", "/api/platform"):
        for method in _METHODS:  # one route per method: one OpenAPI operation id each
            router.add_api_route(
                prefix + "/{rest:path}",
                unsupported,
                methods=[method],
                response_model=ErrorBody,
                status_code=404,
                name=f"unsupported_{prefix.rsplit('/', 1)[1]}_{method.lower()}",
                summary=f"Any other {prefix} route: 404, saying what tracejudge serves",
            )

    return router
