"""Tensor codec: torch tensors <-> `Tensor` messages as raw bytes + dtype + shape (never pickle).

Decoding validates everything a remote peer could get wrong (dtype name, byte count, size cap)
and raises ``SessionError``, so one bad message fails only its own session.
"""

from __future__ import annotations

import math

import torch

from edgesplit.errors import SessionError
from edgesplit.wire.gen import node_pb2

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}

DEFAULT_MAX_TENSOR_BYTES = 256 * 1024 * 1024


def encode_tensor(tensor: torch.Tensor) -> node_pb2.Tensor:
    """Little-endian raw bytes of a contiguous CPU copy, with its dtype name and shape."""
    name = _NAMES.get(tensor.dtype)
    if name is None:
        raise SessionError(f"cannot send a tensor of dtype {tensor.dtype}; supported: {sorted(DTYPES)}")
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return node_pb2.Tensor(data=data, dtype=name, shape=list(tensor.shape))


def decode_tensor(message: node_pb2.Tensor, max_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> torch.Tensor:
    """Rebuild a tensor; a wrong dtype name, negative dim, size mismatch or oversize is a SessionError."""
    dtype = DTYPES.get(message.dtype)
    if dtype is None:
        raise SessionError(f"unknown tensor dtype {message.dtype!r}; supported: {sorted(DTYPES)}")
    shape = tuple(int(d) for d in message.shape)
    if any(d < 0 for d in shape):
        raise SessionError(f"tensor shape {shape} has a negative dimension")
    itemsize = torch.empty((), dtype=dtype).element_size()
    expected = math.prod(shape) * itemsize
    if expected > max_bytes:
        raise SessionError(f"tensor of shape {shape} needs {expected} bytes, over the {max_bytes}-byte cap")
    if len(message.data) != expected:
        raise SessionError(
            f"tensor of shape {shape} and dtype {message.dtype} needs {expected} bytes, "
            f"got {len(message.data)}"
        )
    if expected == 0:
        return torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(bytearray(message.data), dtype=torch.uint8)
    return raw.view(dtype).reshape(shape)
