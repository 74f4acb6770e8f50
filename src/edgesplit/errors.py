"""Every edgesplit exception, in one tree.

    EdgesplitError                      base; ``exit_code`` is what the CLI exits with
    ├── UserInputError          (F)     bad input from a person: a file, a flag, a request; CLI exit 2
    │   ├── ConfigError         (F)     a cluster/scenario/problem file fails validation
    │   │   ├── InvalidProblemError (F) a planner problem is malformed (code "invalid_problem")
    │   │   └── ScenarioError   (F)     a benchmark scenario fails validation (code "invalid_scenario")
    │   ├── ModelLoadError      (F)     checkpoint missing, corrupt, or not a decoder-only LM
    │   ├── UnsupportedArchitectureError (F)  a model whose layers cannot be found or split
    │   ├── UnsupportedOptionError (F)  a known API option edgesplit does not implement
    │   ├── SegmentSpecError    (F)     segments overlap, leave a gap or go out of range
    │   └── InfeasibleError     (F)     no assignment satisfies memory, links and privacy
    ├── ShardIntegrityError     (F)     a shard's bytes do not match its manifest's SHA-256
    ├── SessionError            (R)     one session's step failed (bad tensor, unknown session); others go on
    │   └── SessionNotFoundError (R)    the node holds no KV cache for that session (re-prefill)
    ├── CapacityError           (R)     a bounded queue or memory cap is full; retry later
    ├── TransportError          (R)     a peer did not answer in time or the channel broke
    │   └── NodeUnavailableError (R)    a node is gone; the orchestrator plans around it
    ├── PlanRejectedError       (F)     a plan with a bad signature, an old epoch or a replayed commit
    ├── PrivacyViolationError   (F)     a step would run a privacy-critical block on an untrusted node
    └── ServiceDeadError        (F)     a background loop died; every waiter hears about it

(R) recoverable: the caller may retry or route around it. (F) fatal for that request or command.
"""

from __future__ import annotations


class EdgesplitError(Exception):
    """Base of every edgesplit error."""

    exit_code: int = 1
    code: str = "error"
    node_id: str = ""
    """The node a failure was reported at, when known (the gateway tells the orchestrator)."""


class UserInputError(EdgesplitError):
    """Bad input from a person; the CLI prints one line and exits 2."""

    exit_code = 2
    code = "invalid_input"


class ConfigError(UserInputError):
    code = "invalid_config"


class InvalidProblemError(ConfigError):
    """A planner problem (file or mapping) is malformed; the message names the field."""

    code = "invalid_problem"


class ScenarioError(ConfigError):
    """A scenario file (cluster + workload + SLA + events) is invalid; raised before anything starts."""

    code = "invalid_scenario"


class ModelLoadError(UserInputError):
    code = "model_load_failed"


class UnsupportedArchitectureError(UserInputError):
    code = "unsupported_architecture"


class UnsupportedOptionError(UserInputError):
    """A known OpenAI option edgesplit does not implement (kept explicit, never silently ignored)."""

    code = "unsupported_option"

    def __init__(self, message: str, param: str = "") -> None:
        super().__init__(message)
        self.param = param


class SegmentSpecError(UserInputError):
    code = "invalid_segments"


class InfeasibleError(UserInputError):
    code = "infeasible"


class ShardIntegrityError(EdgesplitError):
    exit_code = 2
    code = "shard_integrity"


class SessionError(EdgesplitError):
    code = "session_error"


class SessionNotFoundError(SessionError):
    code = "session_not_found"


class StreamHaltedError(SessionError):
    """A chain-driven session stopped feeding tokens back because the gateway halted it (not a failure:
    its caches hold exactly the tokens delivered so far)."""

    code = "stream_halted"


class CapacityError(EdgesplitError):
    code = "capacity"


class TransportError(EdgesplitError):
    code = "transport"


class NodeUnavailableError(TransportError):
    code = "node_unavailable"


class PlanRejectedError(EdgesplitError):
    code = "plan_rejected"


class PrivacyViolationError(EdgesplitError):
    code = "privacy_violation"


class ServiceDeadError(EdgesplitError):
    code = "service_dead"
