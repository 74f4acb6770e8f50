from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("data", "dtype", "shape")
    DATA_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, data: _Optional[bytes] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class HopSpec(_message.Message):
    __slots__ = ("node_id", "address", "start", "end")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    start: int
    end: int
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Sampling(_message.Message):
    __slots__ = ("temperature", "top_p", "has_seed", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    HAS_SEED_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    has_seed: bool
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., has_seed: _Optional[bool] = ..., seed: _Optional[int] = ...) -> None: ...

class HopTiming(_message.Message):
    __slots__ = ("node_id", "queue_s", "compute_s", "send_s")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_S_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    SEND_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    queue_s: float
    compute_s: float
    send_s: float
    def __init__(self, node_id: _Optional[str] = ..., queue_s: _Optional[float] = ..., compute_s: _Optional[float] = ..., send_s: _Optional[float] = ...) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("session_id", "step_id", "epoch", "hops", "hop_index", "position", "inputs", "sampling", "reply_address", "reply_node_id", "timings", "budget_s", "privacy_none", "continue_steps", "stop_token_ids", "continue_budget_s", "continued")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    HOP_INDEX_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    REPLY_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REPLY_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_S_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_NONE_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_STEPS_FIELD_NUMBER: _ClassVar[int]
    STOP_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_BUDGET_S_FIELD_NUMBER: _ClassVar[int]
    CONTINUED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    step_id: int
    epoch: int
    hops: _containers.RepeatedCompositeFieldContainer[HopSpec]
    hop_index: int
    position: int
    inputs: Tensor
    sampling: Sampling
    reply_address: str
    reply_node_id: str
    timings: _containers.RepeatedCompositeFieldContainer[HopTiming]
    budget_s: float
    privacy_none: bool
    continue_steps: int
    stop_token_ids: _containers.RepeatedScalarFieldContainer[int]
    continue_budget_s: float
    continued: bool
    def __init__(self, session_id: _Optional[str] = ..., step_id: _Optional[int] = ..., epoch: _Optional[int] = ..., hops: _Optional[_Iterable[_Union[HopSpec, _Mapping]]] = ..., hop_index: _Optional[int] = ..., position: _Optional[int] = ..., inputs: _Optional[_Union[Tensor, _Mapping]] = ..., sampling: _Optional[_Union[Sampling, _Mapping]] = ..., reply_address: _Optional[str] = ..., reply_node_id: _Optional[str] = ..., timings: _Optional[_Iterable[_Union[HopTiming, _Mapping]]] = ..., budget_s: _Optional[float] = ..., privacy_none: _Optional[bool] = ..., continue_steps: _Optional[int] = ..., stop_token_ids: _Optional[_Iterable[int]] = ..., continue_budget_s: _Optional[float] = ..., continued: _Optional[bool] = ...) -> None: ...

class StepAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StepBatch(_message.Message):
    __slots__ = ("steps",)
    STEPS_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[StepRequest]
    def __init__(self, steps: _Optional[_Iterable[_Union[StepRequest, _Mapping]]] = ...) -> None: ...

class StepResult(_message.Message):
    __slots__ = ("session_id", "step_id", "token_id", "timings", "error_code", "error_message", "failed_node_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FAILED_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    step_id: int
    token_id: int
    timings: _containers.RepeatedCompositeFieldContainer[HopTiming]
    error_code: str
    error_message: str
    failed_node_id: str
    def __init__(self, session_id: _Optional[str] = ..., step_id: _Optional[int] = ..., token_id: _Optional[int] = ..., timings: _Optional[_Iterable[_Union[HopTiming, _Mapping]]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., failed_node_id: _Optional[str] = ...) -> None: ...

class ResultAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StepResults(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StepResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StepResult, _Mapping]]] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class PingReply(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class EndSessionReply(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    def __init__(self, dropped: _Optional[int] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("plan_json", "signature")
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    plan_json: bytes
    signature: bytes
    def __init__(self, plan_json: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SegmentRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class PrepareReply(_message.Message):
    __slots__ = ("epoch", "segments", "load_s")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    LOAD_S_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    segments: _containers.RepeatedCompositeFieldContainer[SegmentRange]
    load_s: float
    def __init__(self, epoch: _Optional[int] = ..., segments: _Optional[_Iterable[_Union[SegmentRange, _Mapping]]] = ..., load_s: _Optional[float] = ...) -> None: ...

class EpochRequest(_message.Message):
    __slots__ = ("epoch", "signed", "signature")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    signed: bytes
    signature: bytes
    def __init__(self, epoch: _Optional[int] = ..., signed: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class EpochReply(_message.Message):
    __slots__ = ("epoch", "segments")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    segments: _containers.RepeatedCompositeFieldContainer[SegmentRange]
    def __init__(self, epoch: _Optional[int] = ..., segments: _Optional[_Iterable[_Union[SegmentRange, _Mapping]]] = ...) -> None: ...

class EmulationUpdate(_message.Message):
    __slots__ = ("emulation_json",)
    EMULATION_JSON_FIELD_NUMBER: _ClassVar[int]
    emulation_json: str
    def __init__(self, emulation_json: _Optional[str] = ...) -> None: ...

class EmulationReply(_message.Message):
    __slots__ = ("emulation_json",)
    EMULATION_JSON_FIELD_NUMBER: _ClassVar[int]
    emulation_json: str
    def __init__(self, emulation_json: _Optional[str] = ...) -> None: ...

class TelemetryRequest(_message.Message):
    __slots__ = ("peers",)
    class PeersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PEERS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.ScalarMap[str, str]
    def __init__(self, peers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ProbeRequest(_message.Message):
    __slots__ = ("from_node_id", "payload")
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    from_node_id: str
    payload: bytes
    def __init__(self, from_node_id: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class ProbeReply(_message.Message):
    __slots__ = ("received_bytes",)
    RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    received_bytes: int
    def __init__(self, received_bytes: _Optional[int] = ...) -> None: ...

class LinkProbe(_message.Message):
    __slots__ = ("peer", "rtt_s", "bandwidth_bps", "seq", "probe_bytes")
    PEER_FIELD_NUMBER: _ClassVar[int]
    RTT_S_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_BPS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PROBE_BYTES_FIELD_NUMBER: _ClassVar[int]
    peer: str
    rtt_s: float
    bandwidth_bps: float
    seq: int
    probe_bytes: int
    def __init__(self, peer: _Optional[str] = ..., rtt_s: _Optional[float] = ..., bandwidth_bps: _Optional[float] = ..., seq: _Optional[int] = ..., probe_bytes: _Optional[int] = ...) -> None: ...

class SegmentStats(_message.Message):
    __slots__ = ("start", "end", "prefill_s_per_token", "decode_s_per_step", "steps", "sessions")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PREFILL_S_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DECODE_S_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    prefill_s_per_token: float
    decode_s_per_step: float
    steps: int
    sessions: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., prefill_s_per_token: _Optional[float] = ..., decode_s_per_step: _Optional[float] = ..., steps: _Optional[int] = ..., sessions: _Optional[int] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("node_id", "cpu_utilization", "rss_bytes", "gpu_utilization", "segments", "activation_bytes_in", "activation_bytes_out", "queue_depth", "active_sessions", "epochs", "uptime_s", "block_decode_s", "block_prefill_s", "busy_s_total", "mem_available_bytes", "seq", "cached_blocks", "shard_fetch_bps", "link_probes", "profile_decode_s", "profile_prefill_s", "profile_utilization", "background_utilization")
    class BlockDecodeSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: float
        def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
    class BlockPrefillSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: float
        def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
    class ProfileDecodeSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: float
        def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
    class ProfilePrefillSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: float
        def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    BLOCK_DECODE_S_FIELD_NUMBER: _ClassVar[int]
    BLOCK_PREFILL_S_FIELD_NUMBER: _ClassVar[int]
    BUSY_S_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEM_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CACHED_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    SHARD_FETCH_BPS_FIELD_NUMBER: _ClassVar[int]
    LINK_PROBES_FIELD_NUMBER: _ClassVar[int]
    PROFILE_DECODE_S_FIELD_NUMBER: _ClassVar[int]
    PROFILE_PREFILL_S_FIELD_NUMBER: _ClassVar[int]
    PROFILE_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cpu_utilization: float
    rss_bytes: int
    gpu_utilization: float
    segments: _containers.RepeatedCompositeFieldContainer[SegmentStats]
    activation_bytes_in: int
    activation_bytes_out: int
    queue_depth: int
    active_sessions: int
    epochs: _containers.RepeatedScalarFieldContainer[int]
    uptime_s: float
    block_decode_s: _containers.ScalarMap[int, float]
    block_prefill_s: _containers.ScalarMap[int, float]
    busy_s_total: float
    mem_available_bytes: int
    seq: int
    cached_blocks: _containers.RepeatedScalarFieldContainer[int]
    shard_fetch_bps: float
    link_probes: _containers.RepeatedCompositeFieldContainer[LinkProbe]
    profile_decode_s: _containers.ScalarMap[int, float]
    profile_prefill_s: _containers.ScalarMap[int, float]
    profile_utilization: float
    background_utilization: float
    def __init__(self, node_id: _Optional[str] = ..., cpu_utilization: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., gpu_utilization: _Optional[float] = ..., segments: _Optional[_Iterable[_Union[SegmentStats, _Mapping]]] = ..., activation_bytes_in: _Optional[int] = ..., activation_bytes_out: _Optional[int] = ..., queue_depth: _Optional[int] = ..., active_sessions: _Optional[int] = ..., epochs: _Optional[_Iterable[int]] = ..., uptime_s: _Optional[float] = ..., block_decode_s: _Optional[_Mapping[int, float]] = ..., block_prefill_s: _Optional[_Mapping[int, float]] = ..., busy_s_total: _Optional[float] = ..., mem_available_bytes: _Optional[int] = ..., seq: _Optional[int] = ..., cached_blocks: _Optional[_Iterable[int]] = ..., shard_fetch_bps: _Optional[float] = ..., link_probes: _Optional[_Iterable[_Union[LinkProbe, _Mapping]]] = ..., profile_decode_s: _Optional[_Mapping[int, float]] = ..., profile_prefill_s: _Optional[_Mapping[int, float]] = ..., profile_utilization: _Optional[float] = ..., background_utilization: _Optional[float] = ...) -> None: ...

class KVExportRequest(_message.Message):
    __slots__ = ("session_id", "start", "end")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    start: int
    end: int
    def __init__(self, session_id: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class LayerKV(_message.Message):
    __slots__ = ("layer", "keys", "values")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    layer: int
    keys: Tensor
    values: Tensor
    def __init__(self, layer: _Optional[int] = ..., keys: _Optional[_Union[Tensor, _Mapping]] = ..., values: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class KVState(_message.Message):
    __slots__ = ("session_id", "start", "end", "length", "layers", "epoch")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    start: int
    end: int
    length: int
    layers: _containers.RepeatedCompositeFieldContainer[LayerKV]
    epoch: int
    def __init__(self, session_id: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., length: _Optional[int] = ..., layers: _Optional[_Iterable[_Union[LayerKV, _Mapping]]] = ..., epoch: _Optional[int] = ...) -> None: ...

class KVImportReply(_message.Message):
    __slots__ = ("length",)
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    length: int
    def __init__(self, length: _Optional[int] = ...) -> None: ...
