"""CLI: `edgesplit up` and `edgesplit gateway`; `edgesplit orchestrator` lives in ``orchestrator_cmd``.

Run: edgesplit up examples/mec-3node.yaml
     edgesplit gateway CLUSTER.yaml --listen 0.0.0.0:8000
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgesplit.errors import ConfigError


def _load(cluster_file: Path) -> Any:
    from edgesplit.cluster.loader import load_cluster

    return load_cluster(cluster_file)


def _resolve_model(spec: str, base: Path) -> Path:
    """A `builtin:` spec or a folder (relative folders are relative to the cluster file)."""
    from edgesplit.model.builtin import resolve_model

    if not spec.startswith("builtin:") and not Path(spec).is_absolute():
        spec = str((base / spec).resolve())
    return resolve_model(spec)


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


def _tls(tls_dir: Path, name: str, role: str, declared: dict[str, bool]) -> Any:
    """This process's mTLS files (``tls_dir/NAME.*``); refuses nodes the cluster calls trusted that
    their certificates (``tls_dir/ID.crt``) do not."""
    from edgesplit.security.pki import Role, check_declared_trust, load_cert
    from edgesplit.transport.tls import TlsConfig, TlsFilesConfig

    files = TlsFilesConfig.in_dir(tls_dir, name)
    tls = TlsConfig.load(files)
    tls.expect(name, Role(role))
    check_declared_trust(declared, tls_dir, load_cert(files.ca_cert))
    return files, tls


def up(
    cluster_file: Path,
    timeout_s: float,
    interval_s: float | None = None,
    cooldown_s: float | None = None,
    insecure: bool = False,
    improve_interval_s: float | None = None,
) -> None:
    from edgesplit.cluster.launcher import run_up

    cluster = _load(cluster_file)
    model_path = _resolve_model(cluster.model, cluster_file.parent)
    extra = [] if interval_s is None else ["--interval", str(interval_s)]
    extra += [] if cooldown_s is None else ["--cooldown", str(cooldown_s)]
    extra += [] if improve_interval_s is None else ["--improve-interval", str(improve_interval_s)]
    raise SystemExit(run_up(cluster, model_path, timeout_s, extra, insecure=insecure))


def gateway(
    cluster_file: Path | None,
    config_file: Path | None,
    listen: str,
    ready_file: Path | None,
    reply_host: str | None = None,
    api_keys: list[str] | None = None,
    admin_token_file: Path | None = None,
    tls_dir: Path | None = None,
    tls_name: str = "gateway",
    https: bool = False,
) -> None:
    from edgesplit.gateway.config import GatewayConfig
    from edgesplit.gateway.server import serve

    if (cluster_file is None) == (config_file is None):
        raise ConfigError("give either a CLUSTER.yaml or --config GATEWAY.json")
    if config_file is not None:
        try:
            config = GatewayConfig.model_validate_json(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"bad gateway config {config_file}: {str(exc).splitlines()[0]}") from None
    else:
        from edgesplit.cluster.roles import gateway_config

        assert cluster_file is not None
        cluster = _load(cluster_file)
        config = gateway_config(cluster, _resolve_model(cluster.model, cluster_file.parent))
        missing = [n.id for n in config.nodes if not n.address]
        if missing:
            raise ConfigError(f"{cluster_file}: node(s) {', '.join(missing)} need an `address: HOST:PORT`")
    if api_keys:
        config = config.model_copy(update={"api_keys": list(api_keys)})
    if admin_token_file is not None:
        config = config.model_copy(update={"admin_token": _read_token(admin_token_file)})
    if reply_host is not None:
        # Nodes on other machines deliver results to this host; listen on every interface.
        config = config.model_copy(update={"reply_host": reply_host, "reply_listen": "0.0.0.0:0"})
    tls_files = None
    if tls_dir is not None:
        tls_files, _ = _tls(tls_dir, tls_name, "gateway", {n.id: n.trusted for n in config.nodes})
    serve(config, listen, ready_file, tls_files, https)


def register(app: typer.Typer) -> None:
    """Attach `up`, `gateway` and (from ``orchestrator_cmd``) `orchestrator` to the root app."""
    from edgesplit.cli import orchestrator_cmd

    @app.command("up")
    def up_cmd(
        cluster_file: Path = typer.Argument(..., help="CLUSTER.yaml (DESIGN §4.3)."),
        timeout_s: float = typer.Option(180.0, "--timeout", help="Seconds to wait for every process."),
        interval_s: float | None = typer.Option(
            None, "--interval", min=0.01, help="Orchestrator monitoring period Δt in seconds (default 1)."
        ),
        cooldown_s: float | None = typer.Option(
            None, "--cooldown", min=0.0, help="Override the cluster file's T_cool (seconds), e.g. in tests."
        ),
        insecure: bool = typer.Option(
            False, "--insecure", help="Debugging only: no mTLS between the processes (default: a fresh CA)."
        ),
        improve_interval_s: float | None = typer.Option(
            None,
            "--improve-interval",
            min=0.01,
            help="Orchestrator: seconds between untriggered checks for a clearly better plan (default 120).",
        ),
    ) -> None:
        """Start a local cluster on loopback: node agents, gateway, orchestrator; Ctrl-C stops all."""
        up(cluster_file, timeout_s, interval_s, cooldown_s, insecure, improve_interval_s)

    @app.command("gateway")
    def gateway_cmd(
        cluster_file: Path | None = typer.Argument(None, help="CLUSTER.yaml with node addresses."),
        config_file: Path | None = typer.Option(None, "--config", help="GATEWAY.json (GatewayConfig)."),
        listen: str = typer.Option("127.0.0.1:8000", "--listen", help="HOST:PORT (port 0: any)."),
        ready_file: Path | None = typer.Option(None, "--ready-file", help="Write {url, pid} when serving."),
        reply_host: str | None = typer.Option(
            None, "--reply-host", help="This machine's address as the nodes can reach it (multi-machine)."
        ),
        api_key: list[str] | None = typer.Option(
            None, "--api-key", help="Require `Authorization: Bearer KEY` on /v1/* (repeatable)."
        ),
        admin_token_file: Path | None = typer.Option(
            None, "--admin-token-file", help="Token the orchestrator must present to commit plans."
        ),
        tls_dir: Path | None = typer.Option(
            None, "--tls-dir", help="mTLS to the nodes: folder with ca.crt, NAME.crt/.key and node certs."
        ),
        tls_name: str = typer.Option("gateway", "--tls-name", help="NAME of this gateway's certificate."),
        https: bool = typer.Option(
            False, "--https", help="Serve the HTTP API over TLS with that certificate."
        ),
    ) -> None:
        """Run the OpenAI-compatible gateway in front of running node agents."""
        gateway(
            cluster_file,
            config_file,
            listen,
            ready_file,
            reply_host,
            api_key,
            admin_token_file,
            tls_dir=tls_dir,
            tls_name=tls_name,
            https=https,
        )

    orchestrator_cmd.register(app)
