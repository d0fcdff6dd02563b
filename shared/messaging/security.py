"""The SASL settings a Kafka client passes when the brokers require them (CONVEYOR_KAFKA_SASL=1).

Every client Conveyor creates (FastStream brokers, aiokafka producers, consumers and admin
clients) takes its options from here, so each authenticates as the principal its settings name:
a service as itself (infra.services passes its own credentials), the CLI and SDK as ``cli``.
Without SASL these are empty and the clients connect exactly as before.
"""

from __future__ import annotations

from typing import Any

from faststream.security import SASLScram512

from shared.settings import Settings

MECHANISM = "SCRAM-SHA-512"


class KafkaCredentialsMissing(RuntimeError):
    """SASL is on but the settings name no principal or password."""


def credentials(settings: Settings) -> tuple[str, str] | None:
    """(principal, password) when SASL is on; None otherwise."""
    if not settings.kafka_sasl:
        return None
    password = settings.kafka_sasl_password
    if not settings.kafka_sasl_username or password is None or not password.get_secret_value():
        raise KafkaCredentialsMissing(
            "CONVEYOR_KAFKA_SASL is on but no Kafka principal is configured: set "
            "CONVEYOR_KAFKA_SASL_USERNAME and _PASSWORD, or start the stack once (conveyor up) "
            f"to write them to {settings.state_dir / 'secrets.json'}"
        )
    return settings.kafka_sasl_username, password.get_secret_value()


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client: SASL_PLAINTEXT with SCRAM-SHA-512, or none."""
    found = credentials(settings)
    if found is None:
        return {}
    username, password = found
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }


def broker_security(settings: Settings) -> SASLScram512 | None:
    """The same, as FastStream's KafkaBroker takes it."""
    found = credentials(settings)
    if found is None:
        return None
    username, password = found
    # use_ssl=False: SASL_PLAINTEXT (TLS is the operator's, in front of or instead of loopback).
    return SASLScram512(username=username, password=password, use_ssl=False)
