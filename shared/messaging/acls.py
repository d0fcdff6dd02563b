"""Who may do what on Kafka when SASL is on: one principal per service, and the topics each writes.

The point is the approval topics: only the registry's principal may write ``ModelRegistered``,
``ModelApproved``, ``ModelRejected`` and ``ModelPromoted``, so a client holding any other
service's credentials cannot forge an approval (the registry's signature still guards the events
themselves, shared.approvals). Everyone may read every topic (the events are the system's shared
record; the console and the CLI show them all) and join consumer groups; a service writes the
events it publishes and the dead-letter topics of what it consumes. Topics are created by
``admin`` (infra.kafka) before the services start. A service may "create" only the topics it
consumes, which then exist: FastStream's subscribers ask for them at every start, and an existing
topic is no error, where a refusal would be a warning in every log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared import topics
from shared.topics import dead_letter_topic

Operation = Literal["READ", "WRITE", "CREATE", "IDEMPOTENT_WRITE"]
Resource = Literal["TOPIC", "GROUP", "CLUSTER"]

# Super users: the brokers among themselves, and the operator (topics, ACLs, dead-letter replays).
BROKER = "broker"
ADMIN = "admin"
SERVICES = ("ingest", "train", "evaluate", "registry", "deploy", "console")
CLIENT = "cli"  # the CLI and the SDK (shared.secrets.KAFKA_CLIENT_PRINCIPAL)
PRINCIPALS = (*SERVICES, CLIENT, ADMIN, BROKER)
SUPER_USERS = (BROKER, ADMIN)

# The lifecycle decisions: whoever writes these decides what gets served.
REGISTRY_TOPICS = (
    topics.MODEL_REGISTERED,
    topics.MODEL_APPROVED,
    topics.MODEL_REJECTED,
    topics.MODEL_PROMOTED,
)

WRITES: dict[str, tuple[str, ...]] = {
    "ingest": (topics.DATASET_VALIDATED, topics.DATASET_REJECTED),
    "train": (topics.MODEL_TRAINED, topics.TRAINING_FAILED),
    "evaluate": (topics.MODEL_EVALUATED,),
    "registry": REGISTRY_TOPICS,
    "deploy": (
        topics.MODEL_DEPLOYED,
        topics.DEPLOYMENT_FAILED,
        topics.BATCH_PREDICTION_COMPLETED,
        topics.BATCH_PREDICTION_FAILED,
        topics.PREDICTIONS_CAPTURED,
        topics.DRIFT_CHECKED,
        topics.DRIFT_DETECTED,
        topics.RETRAIN_REQUESTED,
        *topics.RELEASE_TOPICS,
    ),
    "console": (),
    CLIENT: (topics.DATA_ARRIVED, topics.BATCH_PREDICTION_REQUESTED, topics.RETRAIN_REQUESTED),
}

# What each service consumes, so that it may dead-letter it.
CONSUMES: dict[str, tuple[str, ...]] = {
    "ingest": (topics.DATA_ARRIVED, topics.RETRAIN_REQUESTED),
    "train": (topics.DATASET_VALIDATED,),
    "evaluate": (topics.MODEL_TRAINED,),
    "registry": (
        topics.MODEL_EVALUATED,
        topics.MODEL_DEPLOYED,
        *topics.RELEASE_TOPICS,
    ),
    "deploy": (
        topics.MODEL_APPROVED,
        topics.MODEL_PROMOTED,
        topics.BATCH_PREDICTION_REQUESTED,
        topics.PREDICTIONS_CAPTURED,
    ),
}


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: ``principal`` may ``operation`` the resource ``name`` (``*``: every one)."""

    principal: str
    operation: Operation
    resource: Resource
    name: str

    def line(self) -> str:
        """The rule as infra/kafka/KafkaAccess.java reads it."""
        return f"acl {self.principal} {self.operation} {self.resource} {self.name}"


def acls() -> list[Acl]:
    """Every rule the brokers hold in SASL mode (super users need none)."""
    rules: set[Acl] = set()
    for principal in (*SERVICES, CLIENT):
        rules |= {
            Acl(principal, "READ", "TOPIC", "*"),  # READ implies DESCRIBE
            Acl(principal, "READ", "GROUP", "*"),
            # FastStream's producers are idempotent; without a topic to write, the console needs this.
            Acl(principal, "IDEMPOTENT_WRITE", "CLUSTER", "kafka-cluster"),
        }
        written = (*WRITES.get(principal, ()), *map(dead_letter_topic, CONSUMES.get(principal, ())))
        rules |= {Acl(principal, "WRITE", "TOPIC", topic) for topic in written}
        rules |= {Acl(principal, "CREATE", "TOPIC", topic) for topic in CONSUMES.get(principal, ())}
    return sorted(rules)


def may_write(principal: str, topic: str) -> bool:
    """Whether the rules let ``principal`` write ``topic``."""
    if principal in SUPER_USERS:
        return True
    return any(a.principal == principal and a.operation == "WRITE" and a.name == topic for a in acls())
