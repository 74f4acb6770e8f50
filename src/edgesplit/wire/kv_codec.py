"""KV-cache transfer messages: ``KVTransfer`` <-> ``KVState`` (raw tensor bytes + dtype + shape, no pickle).

Decoding validates what a peer could get wrong and raises ``SessionError`` for that session only.
"""

from __future__ import annotations

from edgesplit.errors import SessionError
from edgesplit.model.kv_cache import KVSnapshot
from edgesplit.wire.gen import node_pb2
from edgesplit.wire.messages import KVTransfer
from edgesplit.wire.tensors import DEFAULT_MAX_TENSOR_BYTES, decode_tensor, encode_tensor


def kv_to_pb(transfer: KVTransfer) -> node_pb2.KVState:
    snap = transfer.snapshot
    return node_pb2.KVState(
        session_id=snap.session_id,
        start=transfer.start,
        end=transfer.end,
        length=snap.length,
        epoch=transfer.epoch,
        layers=[
            node_pb2.LayerKV(layer=index, keys=encode_tensor(keys), values=encode_tensor(values))
            for index, (keys, values) in sorted(snap.layers.items())
        ],
    )


def kv_from_pb(msg: node_pb2.KVState, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> KVTransfer:
    layers = {}
    for layer in msg.layers:
        if layer.layer in layers:
            raise SessionError(f"KV for session {msg.session_id} repeats layer {layer.layer}")
        layers[int(layer.layer)] = (
            decode_tensor(layer.keys, max_tensor_bytes),
            decode_tensor(layer.values, max_tensor_bytes),
        )
    if msg.length < 0:
        raise SessionError(f"KV for session {msg.session_id} has negative length {msg.length}")
    snap = KVSnapshot(msg.session_id, int(msg.length), layers)
    return KVTransfer(int(msg.start), int(msg.end), snap, int(msg.epoch))
