"""Opt-in SASL/SCRAM and ACLs for the local Kafka (``CONVEYOR_KAFKA_SASL=1``).

Clients (services, CLI, SDK) reach the brokers only over SASL_PLAINTEXT with SCRAM-SHA-512, each
as its own principal; the StandardAuthorizer denies what no ACL allows, and the ACLs
(shared.messaging.acls) let only the registry write the approval topics. Brokers talk to each
other on the same listener as the SCRAM principal ``broker``. The controller listener cannot use
SCRAM (its credentials live in the metadata log the controllers serve), so it uses SASL PLAIN
with one static principal, ``controller``: left PLAINTEXT, the brokers would reach the controllers
as ``ANONYMOUS``, which would then have to be a super user, and anyone reaching a controller port
could change the ACLs. Every password is random, drawn once into ``<state>/secrets.json`` (0600);
the server.properties that embed the brokers' own are 0600 too. SCRAM credentials are written
into the metadata when storage is formatted (``--add-scram``), so brokers can authenticate to each
other before the cluster has any metadata, and again through the Admin API at every start
(infra/kafka/KafkaAccess.java), with the ACLs, so that a principal or rule added later reaches an
existing state.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydantic import SecretStr

from infra import process
from shared.messaging.acls import ADMIN, BROKER, PRINCIPALS, SUPER_USERS, acls
from shared.messaging.security import MECHANISM
from shared.secrets import ensure_kafka_principals, read_local_secrets
from shared.settings import Settings

CONTROLLER = "controller"
ACCESS_TOOL = Path(__file__).parent / "kafka" / "KafkaAccess.java"
LISTENER = "SASL_PLAINTEXT"
# Written beside a broker's server.properties once its storage was formatted with SCRAM credentials.
MARKER = "sasl-formatted"


def ensure_passwords(settings: Settings) -> dict[str, SecretStr]:
    """Every principal's password (and the controller listener's), drawn on first use."""
    return ensure_kafka_principals(settings.state_dir, (*PRINCIPALS, CONTROLLER))


def passwords(settings: Settings) -> dict[str, SecretStr]:
    """The passwords drawn earlier; fail with the reason when there are none."""
    values = read_local_secrets(settings.state_dir)
    if values is None or not all(name in values.kafka for name in (*PRINCIPALS, CONTROLLER)):
        raise process.InfraError(f"no Kafka SASL credentials in {settings.state_dir}: start Kafka first")
    return dict(values.kafka)


def as_principal(settings: Settings, principal: str) -> Settings:
    """``settings`` whose Kafka clients authenticate as ``principal`` (SASL mode only)."""
    if not settings.kafka_sasl:
        return settings
    password = passwords(settings)[principal]
    return settings.model_copy(update={"kafka_sasl_username": principal, "kafka_sasl_password": password})


def as_admin(settings: Settings) -> Settings:
    """``settings`` as the ``admin`` super user (topics, ACLs, readiness probes)."""
    return as_principal(settings, ADMIN)


def sasl_properties(settings: Settings, *, host: str, port: int, controller: str) -> dict[str, str]:
    """The listener, authentication and authorization lines of a SASL broker's server.properties."""
    keys = {name: value.get_secret_value() for name, value in passwords(settings).items()}
    scram = f'username="{BROKER}" password="{keys[BROKER]}";'
    plain = f'username="{CONTROLLER}" password="{keys[CONTROLLER]}" user_{CONTROLLER}="{keys[CONTROLLER]}";'
    return {
        "listeners": f"{LISTENER}://{host}:{port},CONTROLLER://{controller}",
        "advertised.listeners": f"{LISTENER}://{host}:{port}",
        "listener.security.protocol.map": f"{LISTENER}:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": LISTENER,
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        f"listener.name.{LISTENER.lower()}.sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.{LISTENER.lower()}.{MECHANISM.lower()}.sasl.jaas.config": (
            f"org.apache.kafka.common.security.scram.ScramLoginModule required {scram}"
        ),
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain}"
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": ";".join(f"User:{name}" for name in (*SUPER_USERS, CONTROLLER)),
        "allow.everyone.if.no.acl.found": "false",
    }


def format_arguments(settings: Settings) -> list[str]:
    """``--add-scram`` for every principal, for kafka-storage format."""
    return [
        argument
        for name, password in sorted(passwords(settings).items())
        if name != CONTROLLER
        for argument in ("--add-scram", f"{MECHANISM}=[name={name},password={password.get_secret_value()}]")
    ]


def check_formatted_for_sasl(home: Path, data: Path) -> None:
    """Refuse a log directory formatted without SCRAM credentials: its brokers could not log in."""
    if (data / "meta.properties").exists() and not (home / MARKER).exists():
        raise process.InfraError(
            f"{data} was formatted without SASL credentials; CONVEYOR_KAFKA_SASL=1 needs a fresh "
            "Kafka state (another CONVEYOR_STATE_DIR, or remove that directory)"
        )


def apply_access(settings: Settings, libs: Path) -> str:
    """Upsert every principal's SCRAM credential and make the brokers' ACLs exactly Conveyor's."""
    keys = passwords(settings)
    lines = [
        f"bootstrap {settings.bootstrap_servers}",
        f"login {ADMIN} {keys[ADMIN].get_secret_value()}",
        *(f"scram {name} {keys[name].get_secret_value()}" for name in PRINCIPALS),
        *(rule.line() for rule in acls()),
    ]
    argv = ["java", "-Dlog4j2.level=warn", "-cp", f"{libs}/*", str(ACCESS_TOOL)]
    result = subprocess.run(
        argv, input="\n".join(lines) + "\n", capture_output=True, text=True, check=False, timeout=180
    )
    if result.returncode != 0:
        raise process.InfraError(f"Kafka principals and ACLs not applied:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def service_principal(settings: Settings, service: str) -> dict[str, str]:
    """The CONVEYOR_KAFKA_SASL* variables a service process gets in SASL mode: its own principal."""
    if not settings.kafka_sasl:
        return {}
    values = read_local_secrets(settings.state_dir)
    password = values.kafka.get(service) if values else None
    if password is None:  # not drawn yet (a `down` before any `up`): the service would fail loudly
        return {"CONVEYOR_KAFKA_SASL": "1"}
    return {
        "CONVEYOR_KAFKA_SASL": "1",
        "CONVEYOR_KAFKA_SASL_USERNAME": service,
        "CONVEYOR_KAFKA_SASL_PASSWORD": password.get_secret_value(),
    }


_CLI_OPERATIONS = {
    "READ": "Read",
    "WRITE": "Write",
    "CREATE": "Create",
    "IDEMPOTENT_WRITE": "IdempotentWrite",
}


def acl_commands(bootstrap: str) -> list[str]:
    """The ACLs as kafka-acls.sh commands, for a Kafka this module does not run (compose, Strimzi...)."""
    resource = {"TOPIC": "--topic", "GROUP": "--group"}
    return [
        f"kafka-acls.sh --bootstrap-server {bootstrap} --command-config admin.properties --add "
        f"--allow-principal User:{rule.principal} --operation {_CLI_OPERATIONS[rule.operation]} "
        + ("--cluster" if rule.resource == "CLUSTER" else f"{resource[rule.resource]} '{rule.name}'")
        for rule in acls()
    ]
