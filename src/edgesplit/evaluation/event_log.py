"""The gateway's event log as a run sees it: decisions and committed plans, folded into a ModeRun
and narrated as they happen. Reads ``GET /v1/events``; decides nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgesplit.evaluation.runner import ModeRun, NarrateFn


async def last_event_seq(http: Any, url: str) -> int:
    events = await events_after(http, url, 0)
    return max((int(e.get("seq", 0)) for e in events), default=0)


async def events_after(http: Any, url: str, seq: int) -> list[dict[str, Any]]:
    resp = await http.get(f"{url}/v1/events", params={"after": seq, "follow": "false"}, timeout=10.0)
    return [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]


async def follow_events(
    http: Any,
    url: str,
    seq: int,
    t0_wall: float,
    stop: asyncio.Event,
    run: ModeRun,
    mode: str,
    narrate: NarrateFn | None,
) -> None:
    """Poll the gateway's event log while the load runs (narration and reconfigurations as they come)."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            seq = await collect_events(http, url, seq, t0_wall, run, mode, narrate)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def collect_events(
    http: Any,
    url: str,
    seq: int,
    t0_wall: float,
    run: ModeRun,
    mode: str,
    narrate: NarrateFn | None,
) -> int:
    """Fold events after ``seq`` into ``run``; returns the newest seq seen."""
    seen = {int(d.get("seq", 0)) for d in run.decisions}
    for event in await events_after(http, url, seq):
        seq = max(seq, int(event.get("seq", 0)))
        if int(event.get("seq", 0)) in seen:
            continue
        t_s = float(event.get("at", t0_wall)) - t0_wall
        run.decisions.append(event)
        if event.get("kind") == "plan_committed":
            chain = " ".join(f"{s['node']}[{s['start']}:{s['end']}]" for s in event.get("segments", []))
            run.reconfigurations.append((t_s, f"epoch {event.get('epoch')}: {chain}"))
            if narrate is not None:
                narrate(mode, t_s, f"commit: epoch {event.get('epoch')} -> {chain}")
        elif event.get("kind") == "decision" and narrate is not None and notable(event):
            narrate(mode, t_s, f"decision: {describe_decision(event)}")
    return seq


def notable(event: dict[str, Any]) -> bool:
    return bool(event.get("triggers")) or event.get("action") == "reconfigure"


def describe_decision(event: dict[str, Any]) -> str:
    """``latency(…) -> reconfigure (migrate on latency) [committed]`` from a decision's JSON."""
    triggers = ",".join(
        f"{t['kind']}({t['subject']})" if t.get("subject") else str(t["kind"])
        for t in event.get("triggers", [])
    )
    head = f"{triggers or 'no trigger'} -> {event.get('action')}"
    return f"{head} ({event.get('reason', '')}) [{event.get('outcome', '')}]"
