"""Ed25519 signing of control messages, and the orchestrator key's life on disk.

Owns key files (private key mode 0600) and the sign/verify step; verification happens on the raw
bytes before any parsing. Knows nothing about transports or what a node does with a plan.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgesplit.errors import ConfigError, PlanRejectedError
from edgesplit.orchestrator.plans import ControlMessage, canonical_bytes

# Domain separation: a signature over edgesplit plan bytes can never be valid for anything else.
_DOMAIN = b"edgesplit-control-v1\n"
_PUBLIC_PREFIX = "ed25519:"


@dataclass(frozen=True)
class SignedMessage:
    """Canonical JSON bytes of a ``ControlMessage`` and the orchestrator's signature over them."""

    payload: bytes
    signature: bytes

    def to_json(self) -> str:
        return json.dumps(
            {
                "payload": base64.b64encode(self.payload).decode(),
                "signature": base64.b64encode(self.signature).decode(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SignedMessage:
        try:
            data = json.loads(text)
            return cls(base64.b64decode(data["payload"]), base64.b64decode(data["signature"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise PlanRejectedError(f"malformed signed message: {exc!r}") from exc


def sign(message: ControlMessage, key: Ed25519PrivateKey) -> SignedMessage:
    payload = canonical_bytes(message.to_dict())
    return SignedMessage(payload, key.sign(_DOMAIN + payload))


def verify(signed: SignedMessage, public_key: Ed25519PublicKey) -> ControlMessage:
    """Check the signature over the raw bytes, and only then parse them."""
    plan_verifier(public_key)(signed.payload, signed.signature)
    try:
        data = json.loads(signed.payload)
    except ValueError as exc:
        raise PlanRejectedError(f"signed payload is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PlanRejectedError("signed payload is not a JSON object")
    return ControlMessage.from_dict(data)


def sign_bytes(payload: bytes, key: Ed25519PrivateKey) -> bytes:
    """Signature over already-canonical bytes (e.g. ``wire.messages.PlanSpec.canonical()``)."""
    return key.sign(_DOMAIN + payload)


def plan_verifier(public_key: Ed25519PublicKey) -> Callable[[bytes, bytes], None]:
    """A ``(payload, signature) -> None`` check for a node's plan hook; raises ``PlanRejectedError``."""

    def check(payload: bytes, signature: bytes) -> None:
        try:
            public_key.verify(signature, _DOMAIN + payload)
        except InvalidSignature as exc:
            raise PlanRejectedError(
                "plan signature does not verify against the configured orchestrator key; "
                "check that the node's `orchestrator_public_key` matches the orchestrator's key file"
            ) from exc

    return check


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write PKCS#8 PEM, created with mode 0600 (never world- or group-readable, not even briefly)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"orchestrator key {path} has mode {mode:o}; run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise ConfigError(f"orchestrator key {path} is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"orchestrator key {path} is not an Ed25519 key")
    return key


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """The orchestrator's key: created on first start, then kept (nodes trust its public half)."""
    if path.exists():
        return load_private_key(path)
    key = generate_key()
    save_private_key(key, path)
    return key


def public_key_text(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """``ed25519:<base64 of the 32 raw bytes>`` — short enough to paste into a node's config."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _PUBLIC_PREFIX + base64.b64encode(raw).decode()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    if not text.startswith(_PUBLIC_PREFIX):
        raise ConfigError(f"orchestrator public key must start with {_PUBLIC_PREFIX!r}, got {text[:16]!r}")
    try:
        raw = base64.b64decode(text[len(_PUBLIC_PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ConfigError(f"orchestrator public key is not 32 base64-encoded bytes: {exc}") from exc
