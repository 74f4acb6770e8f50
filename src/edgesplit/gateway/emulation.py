"""PUT /v1/admin/emulation: replace the emulated links of the gateway's own sending direction at run time.

Testbed only (DESIGN §3): a scenario's link event must shape gateway → first hop as the node agents
shape their side (SetEmulation). Nothing here reaches the orchestrator's inputs: it keeps measuring.
The admin guard (token or loopback) is the app's middleware, shared with the other admin writes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from edgesplit.gateway.config import EmulatedLinkConfig, GatewayConfig
from edgesplit.gateway.error_map import ApiError, bad_request
from edgesplit.transport.base import LinkEmulator, SegmentClient

EMULATION_PATH = "/v1/admin/emulation"


class EmulationUpdate(BaseModel):
    """The whole new set of links from the source node; peers not named get ``default``."""

    model_config = ConfigDict(extra="forbid")

    links: dict[str, EmulatedLinkConfig]
    """Per peer node id: bandwidth (Mbit/s, 0 = unlimited), RTT and jitter (ms)."""
    default: EmulatedLinkConfig = EmulatedLinkConfig()
    """The link to every peer not in ``links``; by default unshaped."""


def emulation_router(config: GatewayConfig, client: SegmentClient) -> APIRouter:
    """The admin route that re-shapes ``client``'s links (409 when its transport emulates none)."""
    router = APIRouter()
    peers = {n.id for n in config.nodes} - {config.source_node}

    @router.put(EMULATION_PATH)
    async def put_emulation(request: Request) -> dict[str, Any]:
        try:
            update = EmulationUpdate.model_validate_json(await request.body())
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or "body"
            raise bad_request(f"invalid emulation update at `{where}`: {error['msg']}", "links") from exc
        unknown = sorted(set(update.links) - peers)
        if unknown:
            raise bad_request(
                f"no link from {config.source_node} to {', '.join(unknown)}: "
                f"peers are {', '.join(sorted(peers)) or 'none'}",
                "links",
            )
        if not isinstance(client, LinkEmulator):
            raise ApiError(
                409,
                "this gateway's transport emulates no links (in-process chain)",
                "invalid_request_error",
                None,
                "no_link_emulation",
            )
        client.set_links({p: link.spec() for p, link in update.links.items()}, update.default.spec())
        return update.model_dump()

    return router
