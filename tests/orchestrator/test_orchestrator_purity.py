"""The orchestrator's pure core stays pure: no torch, gRPC, node or emulation code behind it (DESIGN §3)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import edgesplit.orchestrator as orchestrator

MODULES = sorted(p.stem for p in Path(orchestrator.__file__).parent.glob("*.py") if p.stem != "__init__")


def test_importing_the_core_pulls_in_no_torch_grpc_or_node_code() -> None:
    imports = "; ".join(f"import edgesplit.orchestrator.{m}" for m in MODULES)
    probe = (
        f"import sys; {imports}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'grpc', 'transformers') "
        "or m.startswith(('edgesplit.node', 'edgesplit.transport', 'edgesplit.wire', 'edgesplit.sim'))); "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""
    assert "controller" in MODULES and "profiler" in MODULES  # the probe really imported the core


def test_no_module_of_the_core_reads_emulation_settings() -> None:
    """No name, attribute or key called ``emulation``/``speed_factor`` (docstrings may say why not)."""
    root = Path(orchestrator.__file__).parent
    offenders = []
    for m in MODULES:
        for node in ast.walk(ast.parse((root / f"{m}.py").read_text())):
            name = {ast.Name: "id", ast.Attribute: "attr", ast.Constant: "value"}.get(type(node))
            value = getattr(node, name, None) if name else None
            if isinstance(value, str) and value.lower() in ("emulation", "speed_factor", "emulated"):
                offenders.append(f"{m}:{node.lineno}")
    assert offenders == []
