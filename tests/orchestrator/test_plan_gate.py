"""Signed plans and the node-side gate: refusals by example, and the protocol's invariants by
hypothesis (epochs never go back, a bad signature is never applied, one epoch per session)."""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edgesplit.errors import ConfigError, PlanRejectedError
from edgesplit.orchestrator.plan_gate import PlanGate
from edgesplit.orchestrator.plans import ControlMessage, MessageKind, Plan, boundaries_of, canonical_bytes
from edgesplit.orchestrator.signing import (
    SignedMessage,
    generate_key,
    load_or_create_private_key,
    load_private_key,
    plan_verifier,
    public_key_from_text,
    public_key_text,
    sign,
    sign_bytes,
)

KEY = generate_key()
OTHER = generate_key()


def _plan(epoch: int) -> Plan:
    return Plan(epoch, ("device", "mec1", "mec1", "device"), model="tiny")


@functools.cache
def prepare(epoch: int, key: Ed25519PrivateKey = KEY) -> SignedMessage:
    return sign(ControlMessage(MessageKind.PREPARE, epoch, _plan(epoch)), key)


@functools.cache
def command(kind: MessageKind, epoch: int, key: Ed25519PrivateKey = KEY) -> SignedMessage:
    return sign(ControlMessage(kind, epoch), key)


def test_plan_round_trips_and_segments_are_half_open() -> None:
    plan = _plan(3)
    assert [str(s) for s in plan.segments] == ["device[0:1]", "mec1[1:3]", "device[3:4]"]
    assert boundaries_of(plan.assignment) == (1, 3)
    assert Plan.from_dict(plan.to_dict()) == plan


def test_canonical_bytes_do_not_depend_on_key_order() -> None:
    assert (
        canonical_bytes({"b": 1, "a": [1, 2]})
        == canonical_bytes({"a": [1, 2], "b": 1})
        == b'{"a":[1,2],"b":1}'
    )


def test_the_normal_protocol_prepare_commit_release() -> None:
    gate = PlanGate(KEY.public_key())
    assert gate.handle(prepare(1)).plan == _plan(1)
    gate.handle(command(MessageKind.COMMIT, 1))
    gate.handle(prepare(2))
    assert gate.active_epoch == 1  # old plan keeps serving until commit
    gate.handle(command(MessageKind.COMMIT, 2))
    assert gate.active_epoch == 2 and set(gate.draining) == {1}
    gate.handle(command(MessageKind.RELEASE, 1))
    assert gate.draining == {}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([prepare(1, OTHER)], "signature does not verify"),
        ([prepare(2), prepare(1)], "epoch 2 was already seen"),
        ([prepare(2), prepare(2)], "epoch 2 was already seen"),
        ([command(MessageKind.COMMIT, 1)], "no prepare"),
        ([prepare(1), command(MessageKind.COMMIT, 1), command(MessageKind.COMMIT, 1)], "replayed commit"),
        ([prepare(1), command(MessageKind.ABORT, 1), command(MessageKind.COMMIT, 1)], "no prepare"),
        ([prepare(1), command(MessageKind.COMMIT, 1), command(MessageKind.RELEASE, 1)], "active epoch"),
        ([prepare(1), command(MessageKind.ABORT, 2)], "not prepared"),
        ([prepare(1), command(MessageKind.COMMIT, 1, OTHER)], "signature does not verify"),
    ],
)
def test_refusals_name_the_reason_and_change_nothing(messages: list[SignedMessage], expected: str) -> None:
    gate = PlanGate(KEY.public_key())
    *ok, bad = messages
    for m in ok:
        gate.handle(m)
    before = (gate.highest_seen, gate.pending, gate.active, dict(gate.draining))
    with pytest.raises(PlanRejectedError, match=expected):
        gate.handle(bad)
    assert (gate.highest_seen, gate.pending, gate.active, dict(gate.draining)) == before


def test_tampered_payload_is_refused_before_parsing() -> None:
    good = prepare(1)
    tampered = SignedMessage(good.payload.replace(b'"mec1"', b'"evil"'), good.signature)
    with pytest.raises(PlanRejectedError, match="signature"):
        PlanGate(KEY.public_key()).handle(tampered)
    garbage = SignedMessage(b"\x00not json", KEY.sign(b"edgesplit-control-v1\n\x00not json"))
    with pytest.raises(PlanRejectedError, match="not JSON"):
        PlanGate(KEY.public_key()).handle(garbage)


def test_a_restarted_node_given_its_highest_epoch_still_refuses_replays() -> None:
    with pytest.raises(PlanRejectedError, match="already seen"):
        PlanGate(KEY.public_key(), highest_seen=7).handle(prepare(5))


def test_sessions_move_forward_only_and_start_on_the_active_epoch() -> None:
    gate = PlanGate(KEY.public_key())
    for m in (prepare(1), command(MessageKind.COMMIT, 1)):
        gate.handle(m)
    assert gate.admit_step("s", 1) is False
    gate.handle(prepare(2))
    with pytest.raises(PlanRejectedError, match="not committed"):
        gate.admit_step("s", 2)
    gate.handle(command(MessageKind.COMMIT, 2))
    assert gate.admit_step("s", 1) is False  # still in flight on the draining epoch
    with pytest.raises(PlanRejectedError, match="superseded"):
        gate.admit_step("new", 1)
    assert gate.admit_step("s", 2) is True  # moved: the node drops its epoch-1 KV
    with pytest.raises(PlanRejectedError, match="already moved"):
        gate.admit_step("s", 1)


def test_signed_message_json_round_trip() -> None:
    m = prepare(4)
    assert SignedMessage.from_json(m.to_json()) == m


def test_private_key_is_created_0600_kept_and_loose_modes_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "orchestrator.pem"
    key = load_or_create_private_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_text(load_or_create_private_key(path)) == public_key_text(key)  # kept, not replaced
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_private_key(path)


def test_public_key_text_round_trip_and_bad_text() -> None:
    text = public_key_text(KEY)
    assert text.startswith("ed25519:")
    gate = PlanGate(public_key_from_text(text))
    gate.handle(prepare(1))
    with pytest.raises(ConfigError):
        public_key_from_text("ed25519:AAAA")
    with pytest.raises(ConfigError):
        public_key_from_text("rsa:whatever")


class GateProtocol(RuleBasedStateMachine):
    """Random interleavings of well- and badly-signed prepare/commit/release/abort and session steps.

    Epochs are drawn small and next to the gate's state, so replays, commits and moves happen often.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate = PlanGate(KEY.public_key())
        self.max_seen = 0
        self.max_active = 0
        self.accepted: set[bytes] = set()
        self.session_epochs: dict[str, list[int]] = {}

    def _send(self, message: SignedMessage, good_key: bool) -> None:
        snapshot = (self.gate.highest_seen, self.gate.pending, self.gate.active, dict(self.gate.draining))
        try:
            applied = self.gate.handle(message)
        except PlanRejectedError:
            after = (self.gate.highest_seen, self.gate.pending, self.gate.active, dict(self.gate.draining))
            assert after == snapshot  # a refusal changes nothing
            return
        assert good_key, "a message signed by another key was applied"
        assert message.payload not in self.accepted, "a replayed message was applied twice"
        self.accepted.add(message.payload)
        if applied.kind is MessageKind.RELEASE:  # its sessions lost their segments: they start afresh
            self.session_epochs = {k: v for k, v in self.session_epochs.items() if v[-1] != applied.epoch}

    def _epoch(self, offset: int) -> int:
        return max(0, self.gate.highest_seen + offset)

    @rule(offset=st.integers(-2, 1), good=st.booleans())
    def send_prepare(self, offset: int, good: bool) -> None:
        self._send(prepare(self._epoch(offset), KEY if good else OTHER), good)

    @rule(kind=st.sampled_from([MessageKind.COMMIT, MessageKind.RELEASE, MessageKind.ABORT]),
          offset=st.integers(-3, 1), good=st.booleans())  # fmt: skip
    def send_command(self, kind: MessageKind, offset: int, good: bool) -> None:
        self._send(command(kind, self._epoch(offset), KEY if good else OTHER), good)

    @rule()
    def advance(self) -> None:
        """The orchestrator's happy path: prepare the next epoch and commit it."""
        nxt = self.gate.highest_seen + 1
        self._send(prepare(nxt), True)
        self._send(command(MessageKind.COMMIT, nxt), True)

    @precondition(lambda self: self.gate.active is not None)
    @rule(session=st.sampled_from(["a", "b", "c"]), offset=st.integers(-3, 0))
    def step(self, session: str, offset: int) -> None:
        epoch = max(0, (self.gate.active_epoch or 0) + offset)
        try:
            moved = self.gate.admit_step(session, epoch)
        except PlanRejectedError:
            return
        history = self.session_epochs.setdefault(session, [])
        assert not history or epoch >= history[-1], "a session went back to an older epoch"
        assert moved == (bool(history) and epoch > history[-1])
        history.append(epoch)

    @rule(session=st.sampled_from(["a", "b", "c"]))
    def end(self, session: str) -> None:
        self.gate.end_session(session)
        self.session_epochs.pop(session, None)

    @invariant()
    def epochs_never_go_back(self) -> None:
        assert self.gate.highest_seen >= self.max_seen
        self.max_seen = self.gate.highest_seen
        active = self.gate.active_epoch or 0
        assert active >= self.max_active
        self.max_active = active

    @invariant()
    def one_epoch_per_session_and_it_is_committed(self) -> None:
        committed = {self.gate.active_epoch, *self.gate.draining}
        for session, epoch in self.gate.sessions.items():
            assert epoch in committed
            if session in self.session_epochs:
                assert self.session_epochs[session][-1] == epoch
        assert all(e < (self.gate.active_epoch or 0) for e in self.gate.draining)
        if self.gate.pending is not None:
            assert self.gate.pending.epoch == self.gate.highest_seen > (self.gate.active_epoch or 0)


TestGateProtocol = GateProtocol.TestCase
TestGateProtocol.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)


def test_plan_verifier_checks_raw_plan_bytes_for_a_node_hook() -> None:
    payload = b'{"epoch":3,"segments":[{"end":4,"node":"mec1","start":0}]}'
    check = plan_verifier(KEY.public_key())
    check(payload, sign_bytes(payload, KEY))
    with pytest.raises(PlanRejectedError, match="does not verify"):
        check(payload.replace(b"mec1", b"evil"), sign_bytes(payload, KEY))
    with pytest.raises(PlanRejectedError, match="does not verify"):
        check(payload, sign_bytes(payload, OTHER))
