"""The cluster's small PKI: a CA, certificates naming a component's id, role and trust, key files.

A certificate is the only source of a component's identity and of a node's trust: both live in SAN
URIs (``edgesplit:id=mec1``, ``edgesplit:role=node``, ``edgesplit:trust=trusted``) that only the CA
can write, like Kubernetes' node-restriction labels. Pure of gRPC; private keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgesplit.errors import ConfigError

TLS_SERVER_NAME = "edgesplit"
"""The DNS SAN every component certificate carries; channels verify servers against it."""
CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
DEFAULT_CA_DAYS = 3650
DEFAULT_LEAF_DAYS = 365
_URI_PREFIX = "edgesplit:"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Role(enum.StrEnum):
    """What a certificate's holder is allowed to be."""

    NODE = "node"  # hosts segments; serves steps, forwards to peers
    GATEWAY = "gateway"  # sends first hops, receives results
    ORCHESTRATOR = "orchestrator"  # sends signed plans, reads telemetry
    ADMIN = "admin"  # operator tools (`edgesplit up`'s trace player)


@dataclass(frozen=True)
class Identity:
    """Who a verified certificate names: its id, role and (for nodes) whether it is trusted."""

    name: str
    role: Role
    trusted: bool


@dataclass(frozen=True)
class IssuedFiles:
    """Where ``issue`` wrote a component's certificate and (unless from a CSR) its private key."""

    cert: Path
    key: Path | None


def check_name(name: str) -> str:
    """Component ids become file names and SAN URIs: letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"name {name!r} is not usable in a certificate; use letters, digits, '.', '_' or '-' "
            "(at most 63, not starting with a symbol)"
        )
    return name


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PEM, created 0600 from the start (never world-readable, not even for a moment)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def init_ca(directory: Path, days: int = DEFAULT_CA_DAYS, force: bool = False) -> Path:
    """Create the cluster CA in ``directory`` (``ca.key`` 0600, ``ca.crt``); returns the cert path."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not force and (cert_path.exists() or key_path.exists()):
        raise ConfigError(
            f"{directory} already holds a CA; pass --force to replace it (old certs stop working)"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgesplit cluster CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not cert_path.exists() or not key_path.exists():
        raise ConfigError(f"no CA in {directory}; run `edgesplit certs init --dir {directory}` first")
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path} is not an EC private key")
    return load_cert(cert_path), key


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read certificate {path}: {exc}") from None


def new_key_and_csr(name: str, key_path: Path) -> x509.CertificateSigningRequest:
    """On the component's own machine: a private key (0600) and a CSR the CA holder signs."""
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(key_path, key)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, check_name(name))])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def issue(
    directory: Path,
    name: str,
    role: Role = Role.NODE,
    trusted: bool = False,
    days: int = DEFAULT_LEAF_DAYS,
    csr_path: Path | None = None,
    out_dir: Path | None = None,
    hosts: tuple[str, ...] = (),
) -> IssuedFiles:
    """Sign a certificate for ``name`` with the CA in ``directory``.

    Without ``csr_path`` a fresh key is generated next to the certificate (``NAME.key``, 0600); with
    it, only the CSR's public key is certified and no private key ever leaves its machine. Trust is a
    node property; a non-node certificate is never trusted. ``hosts`` (DNS names or IP addresses) are
    added to the SAN for clients that check a host name, e.g. HTTPS clients of the gateway.
    """
    check_name(name)
    if trusted and role is not Role.NODE:
        raise ConfigError(f"--trusted applies to nodes; a {role.value} certificate carries no trust")
    ca_cert, ca_key = load_ca(directory)
    out = out_dir or directory
    out.mkdir(parents=True, exist_ok=True)
    key_path: Path | None = None
    if csr_path is None:
        key_path = out / f"{name}.key"
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(key_path, key)
        public_key = key.public_key()
    else:
        try:
            csr = x509.load_pem_x509_csr(csr_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read CSR {csr_path}: {exc}") from None
        if not csr.is_signature_valid:
            raise ConfigError(f"CSR {csr_path} has a bad signature")
        csr_key = csr.public_key()
        if not isinstance(csr_key, ec.EllipticCurvePublicKey):
            raise ConfigError(f"CSR {csr_path} must carry an EC P-256 key")
        public_key = csr_key
    cert = _leaf(ca_cert, ca_key, public_key, Identity(name, role, trusted), days, hosts)
    cert_path = out / f"{name}.crt"
    _write_cert(cert_path, cert)
    return IssuedFiles(cert=cert_path, key=key_path)


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    who: Identity,
    days: int,
    hosts: tuple[str, ...] = (),
) -> x509.Certificate:
    now = _now()
    trust = "trusted" if who.trusted else "untrusted"
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName(TLS_SERVER_NAME),
            *(_host_name(h) for h in hosts),
            x509.UniformResourceIdentifier(f"{_URI_PREFIX}id={who.name}"),
            x509.UniformResourceIdentifier(f"{_URI_PREFIX}role={who.role.value}"),
            x509.UniformResourceIdentifier(f"{_URI_PREFIX}trust={trust}"),
        ]
    )
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, who.name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def identity_of(cert: x509.Certificate) -> Identity:
    """Read id, role and trust from the SAN URIs (no verification: see ``verify_issued``)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ConfigError("the certificate has no subjectAltName: not issued by `edgesplit certs`") from None
    fields: dict[str, str] = {}
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(_URI_PREFIX):
            key, _, value = uri.removeprefix(_URI_PREFIX).partition("=")
            fields[key] = value
    try:
        return Identity(fields["id"], Role(fields["role"]), fields.get("trust") == "trusted")
    except (KeyError, ValueError):
        raise ConfigError(f"the certificate names no edgesplit id/role (SAN URIs: {fields})") from None


def verify_issued(
    cert: x509.Certificate, ca_cert: x509.Certificate, at: dt.datetime | None = None
) -> Identity:
    """The identity of ``cert`` if the CA signed it and it is valid now; else ``ConfigError``."""
    at = at or _now()
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigError(
            f"certificate {cert.subject.rfc4514_string()} is not signed by the cluster CA: {exc}"
        ) from None
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise ConfigError(
            f"certificate {cert.subject.rfc4514_string()} is valid {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; issue a new one"
        )
    return identity_of(cert)


def check_declared_trust(declared: dict[str, bool], cert_dir: Path, ca_cert: x509.Certificate) -> None:
    """Refuse a cluster file that calls a node trusted unless its CA-signed certificate says so.

    ``declared`` maps node id -> the file's ``trusted``; node certificates are ``cert_dir/ID.crt``.
    """
    problems = []
    for node_id, trusted in sorted(declared.items()):
        if not trusted:
            continue
        path = cert_dir / f"{node_id}.crt"
        if not path.exists():
            problems.append(f"{node_id}: no certificate {path}")
            continue
        who = verify_issued(load_cert(path), ca_cert)
        if who.name != node_id or who.role is not Role.NODE:
            problems.append(f"{node_id}: {path} names {who.role.value} {who.name!r}")
        elif not who.trusted:
            problems.append(f"{node_id}: its certificate says untrusted")
    if problems:
        raise ConfigError(
            "the cluster file marks nodes trusted that their certificates do not: "
            + "; ".join(problems)
            + " (issue with `edgesplit certs issue ID --trusted`, or set trusted: false)"
        )
