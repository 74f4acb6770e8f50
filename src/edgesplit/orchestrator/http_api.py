"""The orchestrator process's own HTTP API: plan previews from the measured environment, health.

Run by ``edgesplit orchestrator --http-listen HOST:PORT``. ``GET /v1/plan/preview`` answers "where would
the planner put the model right now?" from the controller's current E(t) (its profiler snapshot, the
declared facts, live nodes only) without deploying anything. Other parts mount their own routes with
``extra_routers``. Errors are OpenAI-shaped, mapped by ``gateway.error_map`` (the one error table).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgesplit.errors import EdgesplitError, InvalidProblemError
from edgesplit.gateway.error_map import ApiError, bad_request, to_api_error
from edgesplit.listen import listen_socket, socket_url

if TYPE_CHECKING:
    from edgesplit.orchestrator.controller import AdaptiveController

Privacy = Literal["high", "none"]
ProblemSource = Callable[[Privacy | None], Mapping[str, Any]]
"""Builds the §4.2 problem dict for a privacy mode (None: the orchestrator's default). Called on the
event loop (it reads live controller state); solving then runs in a worker thread."""

PREVIEW_TIME_LIMIT_S = 5.0


def controller_problem(
    controller: AdaptiveController, clock: Callable[[], float] = time.monotonic
) -> ProblemSource:
    """A ``ProblemSource`` over the controller's profiler: measured speeds/links, declared trust/memory."""
    from edgesplit.orchestrator.problem_builder import build_problem

    def problem(privacy: Privacy | None) -> Mapping[str, Any]:
        now = clock()
        env = controller.profiler.snapshot(now)
        known = {n.node_id for n in controller.facts.nodes}
        dead = env.dead_nodes(now, controller.settings.heartbeat_timeout_s) & known
        mode: Privacy = privacy or controller.settings.privacy_default
        return build_problem(env, controller.blocks, controller.facts, privacy=mode, exclude=frozenset(dead))

    return problem


def preview(
    problem: Mapping[str, Any], solver: str, objective: str, time_limit_s: float = PREVIEW_TIME_LIMIT_S
) -> dict[str, Any]:
    """Solve ``problem`` (no side effects); the §4.2 plan JSON plus the node ids that were considered."""
    from edgesplit.orchestrator.planner import SOLVERS, parse_problem, solve

    if solver not in SOLVERS:
        raise InvalidProblemError(f"solver: unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if objective not in ("latency", "throughput"):
        raise InvalidProblemError(f"objective: must be latency or throughput (got {objective!r})")
    parsed = parse_problem(dict(problem))
    plan = solve(parsed, solver, objective=objective, time_limit_s=time_limit_s)  # type: ignore[arg-type]
    return {
        **plan.to_json(),
        "preview": True,
        "privacy": parsed.source.privacy,
        "nodes_considered": [n.id for n in parsed.nodes],
    }


def create_app(
    problem_source: ProblemSource,
    *,
    extra_routers: Sequence[APIRouter] = (),
    status: Callable[[], Mapping[str, Any]] | None = None,
    time_limit_s: float = PREVIEW_TIME_LIMIT_S,
) -> FastAPI:
    """The orchestrator's FastAPI app; ``status`` adds fields (e.g. the committed epoch) to ``/healthz``."""
    app = FastAPI(title="edgesplit orchestrator")
    plan_lock = asyncio.Lock()  # one preview solve at a time: the planner is CPU-bound

    async def _mapped(_: Request, exc: Exception) -> JSONResponse:
        return _error(to_api_error(exc))

    for kind in (ApiError, EdgesplitError, Exception):
        app.add_exception_handler(kind, _mapped)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(ApiError(exc.status_code, str(exc.detail), kind, None, None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = first.get("loc", ())
        return _error(bad_request(str(first.get("msg", "invalid request")), str(loc[-1]) if loc else None))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", **(status() if status else {})}

    @app.get("/v1/plan/preview")
    async def plan_preview(
        solver: str = "auto", objective: str = "latency", privacy: str | None = None
    ) -> dict[str, Any]:
        """The plan the planner would choose now (nothing is deployed)."""
        if privacy not in (None, "high", "none"):
            raise bad_request(f"privacy must be high or none (got {privacy!r})", "privacy")
        if objective not in ("latency", "throughput"):
            raise bad_request(f"objective must be latency or throughput (got {objective!r})", "objective")
        from edgesplit.orchestrator.planner import SOLVERS

        if solver not in SOLVERS:
            raise bad_request(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}", "solver")
        problem = problem_source(privacy)  # type: ignore[arg-type]
        async with plan_lock:
            return await asyncio.to_thread(preview, problem, solver, objective, time_limit_s)

    for router in extra_routers:
        app.include_router(router)
    return app


def _error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def bind(listen: str) -> socket.socket:
    """The orchestrator API's listening socket (port 0: any free port)."""
    return listen_socket(listen, "--http-listen", "127.0.0.1:0")


def url_of(sock: socket.socket) -> str:
    return socket_url(sock)


async def serve(app: FastAPI, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set (inside the orchestrator's own event loop)."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    )
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # the process owns signals
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        await task
