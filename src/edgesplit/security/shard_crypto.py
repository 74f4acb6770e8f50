"""Encrypted shards at rest: AES-256-GCM with a random key per shard, and the release of a shard's key
to one node, wrapped (ECIES) to that node's certificate key, only when a plan assigns it the block.

File format of an encrypted shard: ``MAGIC`` (8 bytes) | nonce (12 bytes, fresh per encryption) |
ciphertext with its 16-byte tag. The additional data binds the bytes to the shard's name and its
epoch-independent id (the SHA-256 of the plaintext), so a file swapped for another shard's fails.
A wrapped key: ephemeral public key (DER) length (2 bytes) | ephemeral public key | nonce | key
ciphertext with tag, the wrapping key derived by HKDF-SHA256 from ECDH with the recipient's key and
bound to ``(node id, shard id)``. Pure functions over bytes and keys: no files except ``ShardKeyRing``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgesplit.errors import PrivacyViolationError, ShardIntegrityError

MAGIC = b"ESHARD1\n"
NONCE_BYTES = 12
KEY_BYTES = 32
WRAP_INFO = b"edgesplit shard key wrap v1"

PublicKey = ec.EllipticCurvePublicKey | x25519.X25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey


def shard_id(plaintext: bytes) -> str:
    """The shard's epoch-independent id: the SHA-256 of its plaintext (what the manifest calls it)."""
    return hashlib.sha256(plaintext).hexdigest()


def _aad(name: str, sid: str) -> bytes:
    return f"edgesplit-shard\x00{name}\x00{sid}".encode()


def new_shard_key() -> bytes:
    return AESGCM.generate_key(bit_length=8 * KEY_BYTES)


def encrypt_shard(plaintext: bytes, name: str, key: bytes, sid: str | None = None) -> bytes:
    """The encrypted file for shard ``name``; a fresh random 96-bit nonce every call."""
    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(name, sid or shard_id(plaintext)))


def is_encrypted(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


def decrypt_shard(blob: bytes, name: str, sid: str, key: bytes) -> bytes:
    """The plaintext of shard ``name``; ShardIntegrityError if the key, name, id or bytes are wrong."""
    if not is_encrypted(blob) or len(blob) < len(MAGIC) + NONCE_BYTES + 16:
        raise ShardIntegrityError(f"shard {name} is not an edgesplit encrypted shard")
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        plaintext = AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES :], _aad(name, sid))
    except InvalidTag:
        raise ShardIntegrityError(
            f"shard {name} does not decrypt: wrong key, tampered bytes, or another shard's file"
        ) from None
    if shard_id(plaintext) != sid:
        raise ShardIntegrityError(f"shard {name} decrypted to bytes whose SHA-256 is not its id {sid}")
    return plaintext


def _ephemeral_for(recipient: PublicKey) -> tuple[bytes, bytes]:
    """(shared secret, ephemeral public key DER) for an ECDH with ``recipient``."""
    if isinstance(recipient, x25519.X25519PublicKey):
        eph = x25519.X25519PrivateKey.generate()
        shared = eph.exchange(recipient)
        public = eph.public_key()
    else:
        eph_ec = ec.generate_private_key(recipient.curve)
        shared = eph_ec.exchange(ec.ECDH(), recipient)
        public = eph_ec.public_key()  # type: ignore[assignment]
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return shared, der


def _wrapping_key(shared: bytes, context: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=WRAP_INFO + context).derive(
        shared
    )


def _context(node_id: str, sid: str) -> bytes:
    return f"\x00{node_id}\x00{sid}".encode()


def wrap_key(key: bytes, recipient: PublicKey, node_id: str, sid: str) -> bytes:
    """``key`` encrypted to ``recipient`` (a certificate's EC key or an X25519 key), bound to the node and
    the shard: only that node's private key opens it, and only as that shard's key."""
    shared, der = _ephemeral_for(recipient)
    context = _context(node_id, sid)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_wrapping_key(shared, context)).encrypt(nonce, key, context)
    return len(der).to_bytes(2, "big") + der + nonce + sealed


def unwrap_key(wrapped: bytes, private_key: PrivateKey, node_id: str, sid: str) -> bytes:
    """The shard key from ``wrap_key``'s output; ShardIntegrityError if it was not wrapped for us."""
    try:
        size = int.from_bytes(wrapped[:2], "big")
        der, rest = wrapped[2 : 2 + size], wrapped[2 + size :]
        nonce, sealed = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
        eph = serialization.load_der_public_key(der)
        if isinstance(private_key, x25519.X25519PrivateKey) and isinstance(eph, x25519.X25519PublicKey):
            shared = private_key.exchange(eph)
        elif isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
            eph, ec.EllipticCurvePublicKey
        ):
            shared = private_key.exchange(ec.ECDH(), eph)
        else:
            raise ValueError("the wrapped key was made for another kind of key")
        context = _context(node_id, sid)
        return AESGCM(_wrapping_key(shared, context)).decrypt(nonce, sealed, context)
    except (InvalidTag, ValueError, IndexError) as exc:
        raise ShardIntegrityError(
            f"the key of shard {sid[:12]} was not wrapped for node {node_id}'s key: {exc or 'bad tag'}"
        ) from None


@dataclass(frozen=True)
class KeyRequest:
    """A node asking for block keys under a signed plan: who it is (from its verified certificate)."""

    node_id: str
    trusted: bool
    public_key: PublicKey


def release_keys(
    ring: ShardKeyRing,
    request: KeyRequest,
    assigned_blocks: Iterable[int],
    requested_blocks: Iterable[int],
    privacy_blocks: Iterable[int],
) -> dict[int, bytes]:
    """Wrapped keys of ``requested_blocks`` for ``request.node_id``: only blocks the signed plan assigns
    it, and never a privacy-critical block to an untrusted node (PrivacyViolationError names them)."""
    assigned, wanted, critical = set(assigned_blocks), set(requested_blocks), set(privacy_blocks)
    refused = sorted(wanted - assigned)
    if refused:
        raise PrivacyViolationError(
            f"node {request.node_id} asked for the keys of blocks {refused} the plan does not assign it"
        )
    exposed = sorted(wanted & critical) if not request.trusted else []
    if exposed:
        raise PrivacyViolationError(
            f"node {request.node_id} is not trusted: no key for privacy-critical block(s) {exposed}"
        )
    return {
        b: wrap_key(ring.key(b), request.public_key, request.node_id, ring.shard_ids[b])
        for b in sorted(wanted)
    }


def may_hold(block: int, trusted: bool, privacy_blocks: Iterable[int]) -> bool:
    """Whether a node may keep ``block``'s shard at all, even encrypted (never a critical one untrusted)."""
    return trusted or block not in set(privacy_blocks)


class ShardKeyRing:
    """The registry's per-shard keys and shard ids, in one 0600 JSON file beside the encrypted store."""

    def __init__(self, keys: Mapping[int, bytes], shard_ids: Mapping[int, str]) -> None:
        self._keys = dict(keys)
        self.shard_ids = dict(shard_ids)

    def key(self, block: int) -> bytes:
        return self._keys[block]

    def save(self, path: Path) -> None:
        body = {
            str(b): {"key": k.hex(), "shard_id": self.shard_ids[b]} for b, k in sorted(self._keys.items())
        }
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ShardKeyRing:
        body = json.loads(path.read_text())
        return cls(
            {int(b): bytes.fromhex(v["key"]) for b, v in body.items()},
            {int(b): str(v["shard_id"]) for b, v in body.items()},
        )


def encrypt_store(plain_dir: Path, out_dir: Path) -> ShardKeyRing:
    """Write ``plain_dir``'s shard store (model/shards.py format) encrypted into ``out_dir``: each block
    file under its own fresh key, the manifest listing the ciphertext's size and SHA-256 (what nodes
    fetch and verify), the small files (config, tokenizer) as they are. Returns the keys: keep them
    apart from the store (``ShardKeyRing.save``), they are what makes the files readable."""
    manifest = json.loads((plain_dir / "manifest.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    keys: dict[int, bytes] = {}
    ids: dict[int, str] = {}
    for entry in manifest["blocks"]:
        plaintext = (plain_dir / entry["file"]).read_bytes()
        sid = shard_id(plaintext)
        if sid != entry["sha256"]:
            raise ShardIntegrityError(f"{plain_dir / entry['file']} does not match its manifest's SHA-256")
        index = int(entry["index"])
        keys[index], ids[index] = new_shard_key(), sid
        blob = encrypt_shard(plaintext, entry["file"], keys[index], sid)
        (out_dir / entry["file"]).write_bytes(blob)
        entry["bytes"], entry["sha256"] = len(blob), hashlib.sha256(blob).hexdigest()
    for name in {"config.json", *manifest.get("tokenizer_files", ())}:
        if (plain_dir / name).is_file():
            (out_dir / name).write_bytes((plain_dir / name).read_bytes())
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return ShardKeyRing(keys, ids)


def decrypt_block_file(path: Path, sid: str, key: bytes) -> bytes:
    """The plaintext safetensors bytes of an encrypted block file (its file name is part of the AAD)."""
    return decrypt_shard(path.read_bytes(), path.name, sid, key)
