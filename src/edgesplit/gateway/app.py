"""The gateway's FastAPI app: OpenAI-compatible endpoints plus the admin views (cluster, plan, metrics).

Owns routing and error-to-HTTP wiring only; the request flow lives in ``serving``, the loop in ``decoder``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgesplit.errors import EdgesplitError
from edgesplit.gateway.auth import Authorise, error_response
from edgesplit.gateway.config import GatewayConfig
from edgesplit.gateway.decoder import DecodeLimits, Decoder
from edgesplit.gateway.emulation import EMULATION_PATH, EmulationUpdate, emulation_router
from edgesplit.gateway.error_map import ApiError, bad_request, to_api_error
from edgesplit.gateway.events import EventLog
from edgesplit.gateway.limits import RequestLimits
from edgesplit.gateway.metrics import GatewayMetrics
from edgesplit.gateway.openapi_doc import document_request_bodies
from edgesplit.gateway.protocol import ChatCompletionRequest, CompletionRequest, now_s
from edgesplit.gateway.routes import CommittedPlan, RouteBook, route_from_segments
from edgesplit.gateway.serving import GatewayService
from edgesplit.gateway.text import TextCodec
from edgesplit.transport.base import Route, SegmentClient

#: Extra per-node telemetry for GET /v1/cluster (e.g. what the orchestrator gathered), keyed by node id.
TelemetrySource = Callable[[], Awaitable[dict[str, dict[str, Any]]]]


class PlanSegment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str
    start: int = Field(ge=0)
    end: int = Field(ge=1)
    address: str | None = None


class PlanCommit(BaseModel):
    """PUT /v1/plan: the orchestrator commits a plan the nodes have prepared (DESIGN §4.6 step 2)."""

    model_config = ConfigDict(extra="forbid")
    epoch: int = Field(ge=1)
    segments: list[PlanSegment] = Field(min_length=1)
    cost: dict[str, float] = Field(default_factory=dict)
    solver: str = ""


def create_app(
    config: GatewayConfig,
    client: SegmentClient,
    *,
    codec: TextCodec | None = None,
    routes: RouteBook | None = None,
    route: Route | None = None,
    telemetry: TelemetrySource | None = None,
) -> FastAPI:
    """Build the gateway over ``client``; ``codec`` defaults to the checkpoint at ``config.model_path``.

    Without ``route`` (a plan to start on, e.g. for an in-process client) the gateway answers 503 until
    an orchestrator commits a plan with PUT /v1/plan.
    """
    codec = codec or TextCodec.from_checkpoint(config.model_path)
    routes = routes or RouteBook(
        trusted_nodes=frozenset(n.id for n in config.nodes if n.trusted),
        privacy_blocks=frozenset(config.privacy_blocks),
        privacy_wait_s=config.privacy_wait_s,
    )
    metrics = GatewayMetrics()
    if route is not None:
        routes.commit(CommittedPlan(route))
        metrics.plan_epoch.set(route.epoch)
    limits = DecodeLimits(
        request_timeout_s=config.request_timeout_s,
        step_timeout_s=config.step_timeout_s,
        max_reprefills=config.max_reprefills,
        failover_wait_s=config.failover_wait_s,
        chain_driven=config.chain_driven,
    )
    decoder = Decoder(client, routes, codec.eos_token_ids, limits)
    service = GatewayService(config, codec, decoder, metrics)
    addresses = {n.id: n.address for n in config.nodes}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await decoder.drain()
        await client.close()

    events = EventLog()
    app = FastAPI(title="edgesplit gateway", lifespan=lifespan)
    app.state.service = service
    app.state.routes = routes
    app.state.metrics = metrics
    app.state.orchestrator_url = None

    async def _mapped_error(_: Request, exc: Exception) -> JSONResponse:
        error = to_api_error(exc)
        metrics.request_errors.labels(str(error.status)).inc()
        return error_response(error)

    # Expected errors go through Starlette's exception middleware; anything else is a logged 500.
    for kind in (ApiError, EdgesplitError, TimeoutError, Exception):
        app.add_exception_handler(kind, _mapped_error)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(ApiError(exc.status_code, str(exc.detail), kind, None, None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(bad_request(str(exc.errors()[0].get("msg", "invalid request"))))

    app.add_middleware(Authorise, config=config)
    app.add_middleware(RequestLimits, config=config)  # outermost: size and rate before anything else

    @app.get("/health")
    async def health() -> JSONResponse:
        plan = routes.plan
        if plan is None:
            return error_response(ApiError(503, "no plan committed yet", "unavailable_error", None, None))
        return JSONResponse({"status": "ok", "epoch": plan.route.epoch})

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {
            "id": config.model_name,
            "object": "model",
            "created": now_s(),
            "owned_by": "edgesplit",
            "max_model_len": codec.context_tokens,
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await service.completion(await request.body())

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await service.chat(await request.body())

    @app.get("/v1/plan")
    async def get_plan() -> dict[str, Any]:
        plan = routes.plan
        if plan is None:
            return {"epoch": 0, "segments": [], "cost": {}, "solver": ""}
        return plan.as_json()

    @app.put("/v1/plan")
    async def put_plan(request: Request) -> dict[str, Any]:
        try:
            commit = PlanCommit.model_validate_json(await request.body())
        except ValidationError as exc:
            raise bad_request(f"invalid plan: {exc.errors()[0]['msg']}", "segments") from exc
        unknown = [s.node for s in commit.segments if s.address is None and not addresses.get(s.node)]
        if unknown:
            raise bad_request(f"no address known for node(s) {', '.join(unknown)}", "segments")
        blocks = codec.num_blocks
        if blocks is not None and commit.segments[-1].end != blocks:
            raise bad_request(
                f"the plan ends at block {commit.segments[-1].end} but the model has {blocks} blocks",
                "segments",
            )
        route = route_from_segments(
            commit.epoch,
            [(s.node, s.address or addresses[s.node], s.start, s.end) for s in commit.segments],
        )
        routes.commit(CommittedPlan(route, commit.cost, commit.solver))
        metrics.plan_epoch.set(commit.epoch)
        await events.add({"kind": "plan_committed", **(routes.plan.as_json() if routes.plan else {})})
        return routes.plan.as_json() if routes.plan else {}

    @app.put("/v1/orchestrator")
    async def put_orchestrator(request: Request) -> dict[str, Any]:
        """The orchestrator says where its own HTTP API is (for the plan preview proxy)."""
        try:
            url = json.loads(await request.body()).get("url")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise bad_request('send {"url": "http://HOST:PORT"}', "url") from exc
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise bad_request("`url` must be an http(s) URL", "url")
        app.state.orchestrator_url = url.rstrip("/")
        return {"url": app.state.orchestrator_url}

    @app.get("/v1/plan/preview")
    async def plan_preview(request: Request) -> Response:
        """Proxied to the orchestrator: the plan it would choose now from what it measures."""
        url = app.state.orchestrator_url
        if url is None:
            raise ApiError(503, "no orchestrator has announced itself to this gateway", "unavailable_error")
        import httpx

        try:
            async with httpx.AsyncClient(timeout=config.request_timeout_s) as http:
                resp = await http.get(f"{url}/v1/plan/preview", params=dict(request.query_params))
        except httpx.HTTPError as exc:
            raise ApiError(
                503, f"the orchestrator at {url} did not answer: {exc}", "unavailable_error"
            ) from exc
        return Response(resp.content, status_code=resp.status_code, media_type="application/json")

    @app.get("/v1/events")
    async def get_events(after: int = 0, follow: bool = True) -> StreamingResponse:
        """Decisions with their reasons, as SSE; ``follow=false`` ends after what is stored."""
        return StreamingResponse(events.follow(after, follow), media_type="text/event-stream")

    @app.post("/v1/events")
    async def post_event(request: Request) -> dict[str, Any]:
        """The orchestrator records a decision (its JSON form, e.g. trigger, candidates, chosen plan)."""
        try:
            event = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad_request(f"the event is not valid JSON: {exc}", None, "invalid_json") from exc
        if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
            raise bad_request("an event is a JSON object with a string `kind`", "kind")
        return await events.add(event)

    app.include_router(emulation_router(config, client))

    @app.get("/v1/observations")
    async def observations(after: int = 0) -> dict[str, Any]:
        """For the orchestrator's monitoring cycle: steps measured after sequence number ``after``."""
        return decoder.observations.snapshot(after)

    @app.get("/v1/cluster")
    async def cluster() -> dict[str, Any]:
        extra = await telemetry() if telemetry else {}
        plan = routes.plan
        return {
            "model": config.model_name,
            "gateway_pid": os.getpid(),
            "epoch": plan.route.epoch if plan else 0,
            "requests_running": service.running,
            "nodes": [
                {**n.model_dump(), **_process_stats(n.pid), **extra.get(n.id, {})} for n in config.nodes
            ],
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    document_request_bodies(
        app,
        {
            ("POST", "/v1/completions"): CompletionRequest,
            ("POST", "/v1/chat/completions"): ChatCompletionRequest,
            ("PUT", "/v1/plan"): PlanCommit,
            ("PUT", EMULATION_PATH): EmulationUpdate,
        },
        config.model_name,
    )
    return app


def _process_stats(pid: int | None) -> dict[str, Any]:
    """Memory and CPU of a node process on this machine (psutil); empty when it runs elsewhere."""
    if pid is None:
        return {}
    import psutil

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return {
                "alive": proc.is_running(),
                "rss_bytes": proc.memory_info().rss,
                "cpu_percent": proc.cpu_percent(),
            }
    except psutil.Error:
        return {"alive": False}
