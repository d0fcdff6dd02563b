"""An endpoint port is picked only where a listener can bind, not merely where nothing listens."""

from __future__ import annotations

import socket

from services.deploy.workers import can_listen, port_in_use


def test_a_client_connections_local_port_is_not_offered_to_an_endpoint() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname()) as client:
            local_port = client.getsockname()[1]
            # Nothing listens there, yet a listener cannot bind it (the CI failure this guards).
            assert not port_in_use("127.0.0.1", local_port)
            assert not can_listen("127.0.0.1", local_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        assert can_listen("127.0.0.1", free)
        assert not can_listen("127.0.0.1", server.getsockname()[1])
