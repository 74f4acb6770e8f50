"""Regenerates wire/gen/ from wire/node.proto with grpc_tools.protoc (a developer tool, not runtime).

Run: python -m edgesplit.wire.regen
"""

from __future__ import annotations

import re
from pathlib import Path


def main() -> None:
    """Run protoc, then make the generated grpc module import its sibling relatively."""
    from grpc_tools import protoc

    here = Path(__file__).parent
    gen = here / "gen"
    code = protoc.main(
        [
            "protoc",
            f"-I{here}",
            f"--python_out={gen}",
            f"--pyi_out={gen}",
            f"--grpc_python_out={gen}",
            str(here / "node.proto"),
        ]
    )
    if code != 0:
        raise SystemExit(code)
    grpc_module = gen / "node_pb2_grpc.py"
    text = grpc_module.read_text()
    grpc_module.write_text(re.sub(r"^import node_pb2 as", "from . import node_pb2 as", text, flags=re.M))


if __name__ == "__main__":
    main()
