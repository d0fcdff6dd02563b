"""Local Kafka (KRaft) and MinIO servers for development and tests, run as processes without Docker.

``python -m infra up|down|status`` from a shell; ``infra.up(settings)`` and the per-server
functions from tests that stop one server and start it again.
"""

from infra.kafka import kafka_ready, start_kafka, stop_kafka
from infra.minio import minio_ready, start_minio, stop_minio
from infra.process import InfraError
from infra.stack import ServerStatus, down, status, up

__all__ = [
    "InfraError",
    "ServerStatus",
    "down",
    "kafka_ready",
    "minio_ready",
    "start_kafka",
    "start_minio",
    "status",
    "stop_kafka",
    "stop_minio",
    "up",
]
