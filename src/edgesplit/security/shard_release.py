"""Encrypted shards on the live path: the orchestrator's encrypted registry store and the per-node keys
a signed prepare carries; a node's opening of the ciphertext files in its cache, in memory only.

Keys travel inside the signed prepare's ``shards`` meta as ``keys: {node id: {block: {"sid", "key"}}}``
(``key`` is ``wrap_key``'s output in hex, bound to that node's certificate key and the shard id), and
only for the blocks the plan assigns that node. Without TLS (``--insecure``) there are no node
certificates to wrap to: the registry then serves the plain store, as before (debugging only).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from edgesplit.errors import ConfigError, PrivacyViolationError, ShardIntegrityError
from edgesplit.security.shard_crypto import (
    KeyRequest,
    PrivateKey,
    ShardKeyRing,
    decrypt_shard,
    encrypt_store,
    is_encrypted,
    release_keys,
    unwrap_key,
)

log = logging.getLogger(__name__)

KEYS_FILE = "shard_keys.json"


def encrypted_store(plain_dir: Path, out_dir: Path, keys_path: Path) -> ShardKeyRing:
    """The encrypted copy of ``plain_dir`` in ``out_dir`` with its keys in ``keys_path`` (0600): reused
    while its shard ids are the plain store's SHA-256s, else written afresh under new keys."""
    plain = json.loads((plain_dir / "manifest.json").read_text())
    wanted = {int(b["index"]): str(b["sha256"]) for b in plain["blocks"]}
    if keys_path.is_file() and (out_dir / "manifest.json").is_file():
        try:
            ring = ShardKeyRing.load(keys_path)
            if ring.shard_ids == wanted and all(
                (out_dir / str(b["file"])).is_file() for b in plain["blocks"]
            ):
                return ring
        except (OSError, ValueError, KeyError):
            pass
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    ring = encrypt_store(plain_dir, tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    ring.save(keys_path)
    tmp.rename(out_dir)
    return ring


def node_recipients(cert_dir: Path, ca_cert_path: Path, node_ids: Iterable[str]) -> dict[str, KeyRequest]:
    """Each node's key-release identity from its CA-verified certificate ``cert_dir/ID.crt``: the trust
    and public key there, never what a config or message claims."""
    from edgesplit.security.pki import Role, load_cert, verify_issued

    ca = load_cert(ca_cert_path)
    out = {}
    for node_id in node_ids:
        cert = load_cert(cert_dir / f"{node_id}.crt")
        who = verify_issued(cert, ca)
        if who.name != node_id or who.role is not Role.NODE:
            raise ConfigError(
                f"{cert_dir / f'{node_id}.crt'} names {who.role.value} {who.name!r}, not node {node_id}"
            )
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | x25519.X25519PublicKey):
            raise ConfigError(
                f"node {node_id}'s certificate key cannot receive shard keys (EC or X25519 only)"
            )
        out[node_id] = KeyRequest(node_id, who.trusted, key)
    return out


def release_for_plan(
    ring: ShardKeyRing,
    recipients: Mapping[str, KeyRequest],
    segments: Iterable[tuple[str, int, int]],
    privacy_blocks: Iterable[int],
) -> dict[str, dict[str, dict[str, str]]]:
    """The ``keys`` meta of a prepare: per node, the wrapped keys of exactly the blocks it is assigned.

    A node the plan would give a privacy-critical block untrusted gets no key at all (it refuses that
    fetch itself and the prepare aborts); a node without a certificate gets none either.
    """
    assigned: dict[str, set[int]] = {}
    for node_id, start, end in segments:
        assigned.setdefault(node_id, set()).update(range(start, end))
    critical = frozenset(privacy_blocks)
    out: dict[str, dict[str, dict[str, str]]] = {}
    for node_id, blocks in sorted(assigned.items()):
        request = recipients.get(node_id)
        if request is None:
            log.warning("no certificate for node %s: its prepare carries no shard keys", node_id)
            continue
        try:
            wrapped = release_keys(ring, request, blocks, blocks, critical)
        except PrivacyViolationError as exc:
            log.warning("shard keys withheld: %s", exc)
            continue
        out[node_id] = {str(b): {"sid": ring.shard_ids[b], "key": w.hex()} for b, w in wrapped.items()}
    return out


def offered_keys(raw: Any, node_id: str | None) -> dict[int, tuple[str, bytes]]:
    """This node's ``block -> (shard id, wrapped key)`` from a prepare's ``keys`` meta (empty if none)."""
    if node_id is None or not isinstance(raw, Mapping) or not isinstance(raw.get(node_id), Mapping):
        return {}
    try:
        return {int(b): (str(v["sid"]), bytes.fromhex(str(v["key"]))) for b, v in raw[node_id].items()}
    except (KeyError, TypeError, ValueError):
        return {}


def load_private_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey):
        raise ConfigError("the node's TLS key cannot open shard keys (EC or X25519 only)")
    return key


class ShardOpener:
    """A node's shard keys as its signed prepares delivered them (wrapped), opened only to decrypt a file
    in memory; the cache on disk keeps the ciphertext."""

    def __init__(self) -> None:
        self._wrapped: dict[int, tuple[str, bytes]] = {}
        self._identity: tuple[str, PrivateKey] | None = None

    def identify(self, node_id: str, key_pem: bytes) -> None:
        self._identity = (node_id, load_private_key(key_pem))

    def offer(self, keys: Mapping[int, tuple[str, bytes]]) -> None:
        self._wrapped.update(keys)

    def open(self, index: int, file: str, blob: bytes) -> bytes:
        """The safetensors bytes of block ``index``'s file (as is when the store is not encrypted)."""
        if not is_encrypted(blob):
            return blob
        entry = self._wrapped.get(index)
        if entry is None or self._identity is None:
            raise ShardIntegrityError(
                f"block {index}: its shard is encrypted and no signed plan gave this node its key"
            )
        sid, wrapped = entry
        node_id, private_key = self._identity
        return decrypt_shard(blob, file, sid, unwrap_key(wrapped, private_key, node_id, sid))


def encrypted_registry(
    plain_dir: Path, state_dir: Path, tls_dir: Path, node_ids: Iterable[str], privacy_blocks: Iterable[int]
) -> tuple[Path, Callable[[Iterable[tuple[str, int, int]]], dict[str, dict[str, dict[str, str]]]]]:
    """The orchestrator's encrypted store (``state_dir/shards.enc``, keys in ``state_dir/shard_keys.json``)
    and the function giving a plan's segments their ``keys`` meta."""
    out_dir = state_dir / "shards.enc"
    ring = encrypted_store(plain_dir, out_dir, state_dir / KEYS_FILE)
    recipients = node_recipients(tls_dir, tls_dir / "ca.crt", node_ids)
    critical = frozenset(privacy_blocks)
    return out_dir, lambda segments: release_for_plan(ring, recipients, segments, critical)
