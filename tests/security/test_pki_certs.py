"""The cluster PKI: key files 0600, identity and trust read back from certificates, refusals."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from edgesplit.errors import ConfigError
from edgesplit.security.pki import (
    Role,
    check_declared_trust,
    identity_of,
    init_ca,
    issue,
    load_cert,
    new_key_and_csr,
    verify_issued,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_and_node_keys_are_private_and_certs_name_id_role_trust(tmp_path: Path) -> None:
    ca_cert = init_ca(tmp_path)
    trusted = issue(tmp_path, "mec1", Role.NODE, trusted=True)
    plain = issue(tmp_path, "cloud", Role.NODE)
    gateway = issue(tmp_path, "gw", Role.GATEWAY)
    assert _mode(tmp_path / "ca.key") == 0o600
    assert trusted.key is not None and _mode(trusted.key) == 0o600
    ca = load_cert(ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    who = verify_issued(load_cert(trusted.cert), ca)
    assert (who.name, who.role, who.trusted) == ("mec1", Role.NODE, True)
    assert verify_issued(load_cert(plain.cert), ca).trusted is False
    assert verify_issued(load_cert(gateway.cert), ca).role is Role.GATEWAY
    san = load_cert(trusted.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "edgesplit:trust=trusted" in san.get_values_for_type(x509.UniformResourceIdentifier)


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    init_ca(ours)
    init_ca(theirs)
    forged = issue(theirs, "mec1", Role.NODE, trusted=True)
    with pytest.raises(ConfigError, match="not signed by the cluster CA"):
        verify_issued(load_cert(forged.cert), load_cert(ours / "ca.crt"))
    # What it claims is readable, but only verification makes it an identity.
    assert identity_of(load_cert(forged.cert)).trusted is True


def test_csr_flow_keeps_the_private_key_on_its_machine(tmp_path: Path) -> None:
    ca_dir, node_dir = tmp_path / "ca", tmp_path / "node"
    init_ca(ca_dir)
    node_dir.mkdir()
    from cryptography.hazmat.primitives import serialization

    csr = new_key_and_csr("edge7", node_dir / "edge7.key")
    (node_dir / "edge7.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    files = issue(ca_dir, "edge7", Role.NODE, csr_path=node_dir / "edge7.csr")
    assert files.key is None and not (ca_dir / "edge7.key").exists()
    cert = load_cert(files.cert)
    key = serialization.load_pem_private_key((node_dir / "edge7.key").read_bytes(), None)
    assert cert.public_key() == key.public_key()
    assert _mode(node_dir / "edge7.key") == 0o600


def test_init_refuses_to_overwrite_and_trust_is_for_nodes_only(tmp_path: Path) -> None:
    init_ca(tmp_path)
    with pytest.raises(ConfigError, match="already holds a CA"):
        init_ca(tmp_path)
    with pytest.raises(ConfigError, match="carries no trust"):
        issue(tmp_path, "gw", Role.GATEWAY, trusted=True)
    with pytest.raises(ConfigError, match="not usable"):
        issue(tmp_path, "../evil", Role.NODE)


def test_cluster_file_trust_must_match_the_certificates(tmp_path: Path) -> None:
    init_ca(tmp_path)
    issue(tmp_path, "device", Role.NODE, trusted=True)
    issue(tmp_path, "cloud", Role.NODE, trusted=False)
    ca = load_cert(tmp_path / "ca.crt")
    check_declared_trust({"device": True, "cloud": False}, tmp_path, ca)  # consistent: accepted
    with pytest.raises(ConfigError, match="cloud: its certificate says untrusted"):
        check_declared_trust({"device": True, "cloud": True}, tmp_path, ca)
    with pytest.raises(ConfigError, match="mec9: no certificate"):
        check_declared_trust({"mec9": True}, tmp_path, ca)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgesplit.cli.main", "certs", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_certs_cli_init_issue_show_and_misuse(tmp_path: Path) -> None:
    assert _cli("init", "--dir", str(tmp_path)).returncode == 0
    assert _cli("issue", "mec1", "--trusted", "--dir", str(tmp_path)).returncode == 0
    shown = _cli("show", str(tmp_path / "mec1.crt"), "--dir", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) | {"not_after": None} == {
        "name": "mec1",
        "role": "node",
        "trusted": True,
        "verified": True,
        "not_after": None,
    }
    again = _cli("init", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already holds a CA" in again.stderr
    bad_role = _cli("issue", "x", "--role", "king", "--dir", str(tmp_path))
    assert bad_role.returncode == 2 and "--role" in bad_role.stderr
    no_ca = _cli("issue", "x", "--dir", str(tmp_path / "empty"))
    assert no_ca.returncode == 2 and "certs init" in no_ca.stderr
