"""mTLS for every gRPC channel and server, built in one place from a component's certificate files.

Channels present the component's certificate and accept only servers signed by the cluster CA;
servers require a client certificate from the same CA. Who a peer is (id, role, trust) is read from
its verified certificate (``context.auth_context()``), never from a message field or a config file.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from pydantic import BaseModel, ConfigDict

from edgesplit.errors import ConfigError
from edgesplit.security.pki import Identity, Role, identity_of, load_cert, verify_issued

CONTROL_ROLES = frozenset({Role.ORCHESTRATOR, Role.ADMIN})
DATA_ROLES = frozenset({Role.GATEWAY, Role.NODE})

NODE_POLICY: Mapping[str, frozenset[Role]] = {
    "Step": DATA_ROLES,
    "StepMany": DATA_ROLES,
    "Prepare": CONTROL_ROLES,
    "Commit": CONTROL_ROLES,
    "Release": CONTROL_ROLES,
    "SetEmulation": CONTROL_ROLES,
    "ExportKV": frozenset({Role.GATEWAY}),  # a session's KV cache is its data: only the gateway moves it
    "ImportKV": frozenset({Role.GATEWAY}),
    "HaltSession": frozenset({Role.GATEWAY}),
}
"""Node RPCs restricted by the caller's certificate role; the rest (health, telemetry, ping,
EndSession) take any certificate of the cluster."""

SINK_POLICY: Mapping[str, frozenset[Role]] = {
    "Deliver": frozenset({Role.NODE}),
    "DeliverMany": frozenset({Role.NODE}),
}
"""Only nodes deliver step results to a gateway."""


class TlsFilesConfig(BaseModel):
    """A component's TLS files (from `edgesplit certs`): the cluster CA, its certificate and key."""

    model_config = ConfigDict(extra="forbid")

    ca_cert: Path
    """The cluster CA certificate (``ca.crt``): the only issuer peers are accepted from."""
    cert: Path
    """This component's certificate (PEM), naming its id, role and trust."""
    key: Path
    """This component's private key (PEM, mode 0600)."""

    @classmethod
    def in_dir(cls, directory: Path, name: str) -> TlsFilesConfig:
        """The layout `edgesplit certs` writes: ``ca.crt``, ``NAME.crt``, ``NAME.key``."""
        return cls(
            ca_cert=directory / "ca.crt", cert=directory / f"{name}.crt", key=directory / f"{name}.key"
        )


@dataclass(frozen=True)
class TlsConfig:
    """Loaded and checked TLS material of one process; ``identity`` is what its certificate says."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    identity: Identity

    @classmethod
    def load(cls, files: TlsFilesConfig) -> TlsConfig:
        """Read the files and check the certificate is the CA's (refuse to start otherwise)."""
        try:
            ca_pem, cert_pem, key_pem = (p.read_bytes() for p in (files.ca_cert, files.cert, files.key))
        except OSError as exc:
            raise ConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
        identity = verify_issued(load_cert(files.cert), load_cert(files.ca_cert))
        return cls(ca_pem, cert_pem, key_pem, identity)

    def expect(self, name: str, role: Role) -> Identity:
        """The identity, if the certificate names ``role`` ``name``; a mismatch is a config error."""
        if self.identity.name != name or self.identity.role is not role:
            raise ConfigError(
                f"{role.value} {name!r} was given the certificate of {self.identity.role.value} "
                f"{self.identity.name!r}; issue one with `edgesplit certs issue {name} --role {role.value}`"
            )
        return self.identity

    @functools.cached_property
    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=self.key_pem, certificate_chain=self.cert_pem
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)], root_certificates=self.ca_pem, require_client_auth=True
        )


def channel_credentials(tls: TlsConfig | None) -> grpc.ChannelCredentials | None:
    return None if tls is None else tls.channel_credentials


def new_server(
    tls: TlsConfig | None, options: list[tuple[str, Any]], policy: Mapping[str, frozenset[Role]]
) -> grpc.aio.Server:
    """An aio server; with TLS, calls named in ``policy`` are refused to other certificate roles."""
    interceptors = [] if tls is None else [RoleGate(policy)]
    return grpc.aio.server(options=options, interceptors=interceptors)


def bind(server: grpc.aio.Server, listen: str, tls: TlsConfig | None) -> int:
    """Add the listening port (mTLS when ``tls`` is set); returns the bound port (0: failed)."""
    if tls is None:
        return int(server.add_insecure_port(listen))
    return int(server.add_secure_port(listen, tls.server_credentials()))


@functools.lru_cache(maxsize=256)
def _identity_from_pem(pem: bytes) -> Identity | None:
    try:
        return identity_of(x509.load_pem_x509_certificate(pem))
    except (ValueError, ConfigError):
        return None


def peer_identity(context: grpc.aio.ServicerContext) -> Identity | None:
    """The caller's identity from its verified certificate (None on an insecure channel)."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    return _identity_from_pem(bytes(pems[0])) if pems else None


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class RoleGate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a restricted call (PERMISSION_DENIED) unless the caller's certificate has an allowed role."""

    def __init__(self, policy: Mapping[str, frozenset[Role]]) -> None:
        self._policy = dict(policy)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        roles = self._policy.get(str(details.method).rsplit("/", 1)[-1])
        if handler is None or roles is None or handler.unary_unary is None:
            return handler
        inner: Handler = handler.unary_unary
        method = str(details.method)

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            who = peer_identity(context)
            if who is None or who.role not in roles:
                named = "no edgesplit certificate" if who is None else f"{who.role.value} {who.name!r}"
                allowed = ", ".join(sorted(r.value for r in roles))
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{method} is for {allowed} certificates; caller is {named}",
                )
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
