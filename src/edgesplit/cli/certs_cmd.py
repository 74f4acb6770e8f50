"""CLI: `edgesplit certs` — the cluster CA and the certificates that carry identity and trust.

Run: edgesplit certs init --dir pki/
     edgesplit certs issue mec1 --trusted --dir pki/
     edgesplit certs issue gateway --role gateway --dir pki/
     edgesplit certs request mec1 --out mec1-tls/        (on the node: key + CSR; sign with --csr)
     edgesplit certs show pki/mec1.crt [--dir pki/]
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgesplit.errors import ConfigError

certs_app = typer.Typer(
    help="The cluster PKI: a CA, and certificates naming each component's id, role and trust."
)


def _role(text: str) -> object:
    from edgesplit.security.pki import Role

    try:
        return Role(text)
    except ValueError:
        raise ConfigError(f"--role {text!r}: choose one of {', '.join(r.value for r in Role)}") from None


@certs_app.command("init")
def init_cmd(
    directory: Path = typer.Option(..., "--dir", help="Folder for ca.key (mode 0600) and ca.crt."),
    days: int = typer.Option(3650, "--days", min=1, help="Validity of the CA certificate."),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing CA (its certificates stop working)."
    ),
) -> None:
    """Create the cluster CA."""
    from edgesplit.security.pki import init_ca

    path = init_ca(directory, days, force)
    typer.echo(f"edgesplit certs: CA {path} (key {directory / 'ca.key'}, mode 0600)")


@certs_app.command("issue")
def issue_cmd(
    name: str = typer.Argument(..., help="The node id (or the gateway's / orchestrator's name)."),
    directory: Path = typer.Option(..., "--dir", help="The CA folder (`certs init`)."),
    trusted: bool = typer.Option(False, "--trusted", help="The node may run privacy-critical blocks."),
    role: str = typer.Option("node", "--role", help="node, gateway, orchestrator or admin."),
    days: int = typer.Option(365, "--days", min=1, help="Validity of the certificate."),
    csr: Path | None = typer.Option(
        None, "--csr", help="Sign this CSR (`certs request`) instead of making a key."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write NAME.crt (and NAME.key); default --dir."
    ),
    host: list[str] | None = typer.Option(
        None, "--host", help="Extra DNS name or IP in the certificate, e.g. for HTTPS clients (repeatable)."
    ),
) -> None:
    """Issue a certificate signed by the cluster CA; its SAN records the id, role and trust level."""
    from edgesplit.security.pki import Role, issue

    chosen = _role(role)
    assert isinstance(chosen, Role)
    files = issue(directory, name, chosen, trusted, days, csr, out, tuple(host or ()))
    trust = " trusted" if trusted else ""
    key = f", key {files.key} (mode 0600)" if files.key else ""
    typer.echo(f"edgesplit certs:{trust} {chosen.value} {name}: {files.cert}{key}")


@certs_app.command("request")
def request_cmd(
    name: str = typer.Argument(..., help="This component's id."),
    out: Path = typer.Option(..., "--out", help="Folder for NAME.key (mode 0600) and NAME.csr."),
) -> None:
    """On the component's own machine: a private key that never leaves it, and a CSR for the CA."""
    from cryptography.hazmat.primitives import serialization

    from edgesplit.security.pki import new_key_and_csr

    out.mkdir(parents=True, exist_ok=True)
    csr = new_key_and_csr(name, out / f"{name}.key")
    (out / f"{name}.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    typer.echo(f"edgesplit certs: key {out / (name + '.key')} (mode 0600), request {out / (name + '.csr')}")


@certs_app.command("show")
def show_cmd(
    cert: Path = typer.Argument(..., help="A certificate (PEM)."),
    directory: Path | None = typer.Option(None, "--dir", help="Also verify it against this CA folder."),
) -> None:
    """Print what a certificate says (JSON): id, role, trust, validity; verified when --dir is given."""
    from edgesplit.security.pki import CA_CERT_FILE, identity_of, load_cert, verify_issued

    loaded = load_cert(cert)
    if directory is not None:
        who = verify_issued(loaded, load_cert(directory / CA_CERT_FILE))
    else:
        who = identity_of(loaded)
    payload = {
        "name": who.name,
        "role": who.role.value,
        "trusted": who.trusted,
        "verified": directory is not None,
        "not_after": loaded.not_valid_after_utc.isoformat(),
    }
    typer.echo(json.dumps(payload))


def register(app: typer.Typer) -> None:
    """Attach `edgesplit certs` to the root app."""
    app.add_typer(certs_app, name="certs")
