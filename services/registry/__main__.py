"""Run the registry: ``python -m services.registry``."""

import logging
import socket
from urllib.parse import urlsplit

import uvicorn

from services.registry.app import create_app
from shared.logs import configure_logging
from shared.secrets import exit_if_exposed
from shared.settings import Settings

log = logging.getLogger("conveyor.registry")


def listeners(settings: Settings) -> list[socket.socket]:
    """The sockets this replica serves: its own address and, on one host, the registry's shared one.

    The other services (evaluate's champion look-up, the console, the CLI) know one registry
    address, ``registry_base_url``. A second replica on a port of its own left that address to the
    first alone: when the first was SIGKILLed, evaluate could reach no registry, its retries ran out
    and arrivals went to the dead-letter topic, so the survivor had nothing to register (issue 10).
    So with replicas every one also listens on that address, with SO_REUSEPORT: the kernel hands
    each new connection to a live listener, as a Kubernetes Service does to its ready pods.
    """
    own = (settings.registry_host, settings.registry_port)
    if settings.registry_replicas == 1:
        return [_listen(own, reuse_port=False)]
    shared = urlsplit(settings.registry_base_url)
    addresses = [own]
    # Only an address on the host this replica listens on; elsewhere (a Service name) routing is not ours.
    if shared.hostname == settings.registry_host and shared.port not in (None, settings.registry_port):
        addresses.append((settings.registry_host, shared.port))
    sockets = [_listen(own, reuse_port=True)]
    for address in addresses[1:]:
        try:
            sockets.append(_listen(address, reuse_port=True))
        except OSError as error:  # a registry started alone holds it without SO_REUSEPORT
            log.warning("not serving the registry's address %s:%d as well: %s", *address, error)
    return sockets


def _listen(address: tuple[str, int], *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


if __name__ == "__main__":
    settings = Settings()
    exit_if_exposed(settings, service="registry", hosts=[settings.registry_host])
    configure_logging("registry")
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None))
    server.run(sockets=listeners(settings))
