"""The Kafka broker every service uses: safe producer defaults and trace propagation."""

from __future__ import annotations

import logging
import os
import socket

from faststream.kafka import KafkaBroker

from shared.messaging.security import broker_security
from shared.settings import Settings
from shared.telemetry import Telemetry


def create_broker(settings: Settings, *, telemetry: Telemetry | None = None) -> KafkaBroker:
    """A FastStream Kafka broker with an idempotent producer waiting for all replicas.

    aiokafka's defaults (``acks=1``, no idempotence) could lose or duplicate a published event.
    """
    middlewares = (telemetry.kafka_middleware(),) if telemetry else ()
    return KafkaBroker(
        # A list: FastStream hands a single string to aiokafka as one host, commas and all.
        settings.bootstrap_servers.split(","),
        # Host and pid name the process in the group's membership: which replica consumes which
        # partitions (and so owns which pipelines) shows in `kafka-consumer-groups --describe`.
        client_id=f"conveyor-{socket.gethostname()}-{os.getpid()}",
        # A broker that restarted is missing from metadata fetched while it was down; when the
        # group coordinator moves back to it, a client on 5-minute-old metadata (aiokafka's
        # default) cannot reach its coordinator and stops consuming for minutes (seen in the
        # cluster suite). Refreshed every few seconds, it finds the coordinator at once.
        metadata_max_age_ms=settings.kafka_metadata_max_age_ms,
        # Its own principal when the brokers require SASL (shared.messaging.security); else None.
        security=broker_security(settings),
        enable_idempotence=True,
        acks="all",
        max_request_size=settings.kafka_max_message_bytes,
        middlewares=middlewares,
        # Bodies reach the safe consumer as raw bytes: it validates them itself, so that a malformed
        # one goes to the dead-letter topic instead of failing inside FastStream.
        apply_types=False,
        # FastStream's messages then reach the root handler, which writes JSON lines with trace ids.
        logger=logging.getLogger("conveyor.kafka"),
    )
