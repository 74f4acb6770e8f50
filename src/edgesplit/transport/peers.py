"""Channels to peers (nodes and gateway sinks) and the emulated link to each peer node id.

Shared by the node agent (forwarding to the next hop) and the gRPC client (first hop). Owns
channel lifetimes; knows nothing about models.
"""

from __future__ import annotations

import grpc

from edgesplit.transport.link import LinkShaper, LinkSpec
from edgesplit.wire.stubs import NodeStub, SinkStub, open_channel


class PeerPool:
    """One aio channel per address, reused; one ``LinkShaper`` per peer node id."""

    def __init__(
        self,
        links: dict[str, LinkSpec] | None = None,
        default_link: LinkSpec | None = None,
        own_id: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._own_id = own_id
        self._credentials = credentials
        self._local = LinkShaper(LinkSpec())
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._nodes: dict[str, NodeStub] = {}
        self._sinks: dict[str, SinkStub] = {}
        self._default = default_link or LinkSpec()
        self._shapers: dict[str, LinkShaper] = {}
        for peer, spec in (links or {}).items():
            self._shapers[peer] = LinkShaper(spec)

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = open_channel(address, self._credentials)
        return channel

    def node(self, address: str) -> NodeStub:
        stub = self._nodes.get(address)
        if stub is None:
            stub = self._nodes[address] = NodeStub(self._channel(address), peer=address)
        return stub

    def sink(self, address: str) -> SinkStub:
        stub = self._sinks.get(address)
        if stub is None:
            stub = self._sinks[address] = SinkStub(self._channel(address), peer=address)
        return stub

    def link(self, peer_node_id: str) -> LinkShaper:
        """The shaper for bytes sent to ``peer_node_id`` (the default link when none was set);
        bytes to this very node never cross a link."""
        if peer_node_id == self._own_id:
            return self._local
        shaper = self._shapers.get(peer_node_id)
        if shaper is None:
            shaper = self._shapers[peer_node_id] = LinkShaper(self._default)
        return shaper

    def set_links(self, links: dict[str, LinkSpec], default_link: LinkSpec) -> None:
        """Replace every link at run time (scenario events); existing shapers keep their queues."""
        self._default = default_link
        for peer, shaper in self._shapers.items():
            shaper.update(links.get(peer, default_link))
        for peer, spec in links.items():
            if peer not in self._shapers:
                self._shapers[peer] = LinkShaper(spec)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._nodes.clear()
        self._sinks.clear()
