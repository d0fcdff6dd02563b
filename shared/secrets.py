"""Local secrets: random, generated once per state directory, read wherever no variable sets them.

Like Jupyter's token, the first ``conveyor up`` / ``make up`` writes an approver token and MinIO root
keys to ``<state_dir>/secrets.json`` with mode 0600, so nothing on the machine works with a
password printed in a README. ``Settings`` reads that file (through ``LocalSecretsSource``) for
every secret whose ``CONVEYOR_*`` variable is unset; a variable always wins. Without the file the
well-known development values remain, and ``refuse_well_known`` stops any service that would
expose them beyond loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

if TYPE_CHECKING:
    from shared.settings import Settings

S = TypeVar("S", bound="Settings")

SECRETS_FILE = "secrets.json"
DEFAULT_STATE_DIR = Path.home() / ".local" / "state" / "conveyor"

# Values anyone can read in this repository or in MinIO's documentation.
WELL_KNOWN_MINIO_ACCESS_KEY = "conveyor"
WELL_KNOWN_MINIO_SECRET = "conveyor-local-dev-secret"
WELL_KNOWN_TOKEN = "conveyor-local-approver"
WELL_KNOWN_SECRETS = frozenset({WELL_KNOWN_MINIO_SECRET, WELL_KNOWN_TOKEN, "minioadmin", "minio123"})
LOCAL_ADMIN = "local-admin"
# The Kafka principal of the CLI and the SDK (shared.messaging.acls names every principal).
KAFKA_CLIENT_PRINCIPAL = "cli"


class ServiceKeys(BaseModel):
    """One service's own MinIO user."""

    access_key: str
    secret_key: SecretStr


class LocalSecrets(BaseModel):
    """What ``secrets.json`` holds."""

    approver_token: SecretStr
    minio_access_key: str
    minio_secret_key: SecretStr
    # Filled by infra.minio_users once MinIO runs: each service's own user (least privilege).
    services: dict[str, ServiceKeys] = {}
    # Filled by infra.kafka when SASL is on: each Kafka principal's SCRAM password.
    kafka: dict[str, SecretStr] = {}

    @classmethod
    def generate(cls) -> LocalSecrets:
        """Fresh random values (256 bits for the token and the secret key)."""
        return cls(
            approver_token=SecretStr(secrets.token_urlsafe(32)),
            minio_access_key=f"conveyor-{secrets.token_hex(6)}",
            minio_secret_key=SecretStr(secrets.token_urlsafe(32)),
        )

    def dump(self) -> str:
        """The file's JSON, secrets included."""
        return json.dumps(
            {
                "approver_token": self.approver_token.get_secret_value(),
                "minio_access_key": self.minio_access_key,
                "minio_secret_key": self.minio_secret_key.get_secret_value(),
                "services": {
                    name: {"access_key": keys.access_key, "secret_key": keys.secret_key.get_secret_value()}
                    for name, keys in sorted(self.services.items())
                },
            }
            # Only once SASL was turned on: without it the file stays as it always was.
            | (
                {"kafka": {name: key.get_secret_value() for name, key in sorted(self.kafka.items())}}
                if self.kafka
                else {}
            ),
            indent=2,
        )


def secrets_path(state_dir: Path) -> Path:
    """Where a state directory keeps its secrets."""
    return state_dir / SECRETS_FILE


def read_local_secrets(state_dir: Path) -> LocalSecrets | None:
    """The state directory's secrets, or None when none were generated."""
    try:
        return LocalSecrets.model_validate_json(secrets_path(state_dir).read_text())
    except FileNotFoundError:
        return None


def write_local_secrets(state_dir: Path, values: LocalSecrets) -> None:
    """Replace the file atomically, readable by its owner only."""
    path = secrets_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{SECRETS_FILE}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(values.dump())
    os.replace(partial, path)


def ensure_local_secrets(state_dir: Path, *, minio_root: tuple[str, SecretStr] | None = None) -> LocalSecrets:
    """The state directory's secrets, generated on first use (mode 0600).

    ``minio_root``: keys a MinIO data directory of an earlier version was already created with,
    kept instead of random ones so that it still opens.
    """
    existing = read_local_secrets(state_dir)
    if existing is not None:
        return existing
    state_dir.mkdir(parents=True, exist_ok=True)
    fresh = LocalSecrets.generate()
    if minio_root is not None:
        fresh = fresh.model_copy(
            update={"minio_access_key": minio_root[0], "minio_secret_key": minio_root[1]}
        )
    try:  # O_EXCL: of two first starts at once, one writes and both read the same values
        descriptor = os.open(secrets_path(state_dir), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return ensure_local_secrets(state_dir)
    with os.fdopen(descriptor, "w") as file:
        file.write(fresh.dump())
    return fresh


def ensure_kafka_principals(state_dir: Path, names: Iterable[str]) -> dict[str, SecretStr]:
    """Each of ``names``' SCRAM password, drawn now for those without one (mode 0600 like the rest)."""
    values = ensure_local_secrets(state_dir)
    missing = [name for name in names if name not in values.kafka]
    if missing:
        fresh = {name: SecretStr(secrets.token_urlsafe(32)) for name in missing}
        values = values.model_copy(update={"kafka": {**values.kafka, **fresh}})
        write_local_secrets(state_dir, values)
    return dict(values.kafka)


def ensure_service_keys(state_dir: Path, names: Iterable[str]) -> dict[str, ServiceKeys]:
    """Each of ``names``' own MinIO keys, drawn now for those without (infra.minio_users makes the users)."""
    values = ensure_local_secrets(state_dir)
    missing = [name for name in names if name not in values.services]
    if missing:
        fresh = {name: new_service_keys(name) for name in missing}
        values = values.model_copy(update={"services": {**values.services, **fresh}})
        write_local_secrets(state_dir, values)
    return dict(values.services)


def new_service_keys(service: str) -> ServiceKeys:
    """Random keys for a service's MinIO user (its name in the access key, for MinIO's audit log)."""
    return ServiceKeys(
        access_key=f"{service}-{secrets.token_hex(6)}", secret_key=SecretStr(secrets.token_urlsafe(32))
    )


def with_local_secrets(settings: S, *, minio_root: tuple[str, SecretStr] | None = None) -> S:
    """``settings`` with the state directory's secrets (generated now if need be) where none was set."""
    values = ensure_local_secrets(settings.state_dir, minio_root=minio_root)
    update = {
        "minio_access_key": values.minio_access_key,
        "minio_secret_key": values.minio_secret_key,
        "api_tokens": SecretStr(api_tokens_of(values)),
    }
    return settings.model_copy(
        update={name: value for name, value in update.items() if name not in settings.model_fields_set}
    )


def api_tokens_of(values: LocalSecrets) -> str:
    """The CONVEYOR_API_TOKENS value that grants the local token the admin role."""
    return json.dumps({values.approver_token.get_secret_value(): {"user": LOCAL_ADMIN, "role": "admin"}})


def approver_token(settings: Settings | None = None) -> str | None:
    """The token this machine's clients present: CONVEYOR_API_TOKEN, else the state directory's.

    The CLI, the SDK and the console call this; None when neither exists.
    """
    if settings is None:
        from shared.settings import Settings

        settings = Settings()
    if settings.api_token is not None:
        return settings.api_token.get_secret_value()
    values = read_local_secrets(settings.state_dir)
    return values.approver_token.get_secret_value() if values else None


class LocalSecretsSource(PydanticBaseSettingsSource):
    """A settings source below the environment: the state directory's secrets.json, when it exists."""

    def __init__(self, settings_cls: type[BaseSettings], *above: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._above = above

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: ``__call__`` returns every value at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values = read_local_secrets(self._state_dir())
        if values is None:
            return {}
        found = {
            "minio_access_key": values.minio_access_key,
            "minio_secret_key": values.minio_secret_key.get_secret_value(),
            "api_tokens": api_tokens_of(values),
            # Not api_token: a service's settings are written into the environment of the processes
            # it starts; clients read the token with approver_token() instead.
        }
        # The Kafka principal named above (a service's own), else the CLI and SDK's.
        principal = self._above_value("kafka_sasl_username") or KAFKA_CLIENT_PRINCIPAL
        if principal in values.kafka:
            found["kafka_sasl_username"] = principal
            found["kafka_sasl_password"] = values.kafka[principal].get_secret_value()
        return found

    def _state_dir(self) -> Path:
        return Path(self._above_value("state_dir") or DEFAULT_STATE_DIR)

    def _above_value(self, name: str) -> Any:
        for source in self._above:
            with contextlib.suppress(Exception):  # a bad value is reported by the settings model itself
                value = source().get(name)
                if value:
                    return value
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name (or 0.0.0.0-like wildcard spelled otherwise) may be reachable from anywhere


def well_known_secrets(settings: Settings) -> list[str]:
    """Which of the settings' secrets are ones anyone could know."""
    found = []
    if settings.minio_secret_key.get_secret_value() in WELL_KNOWN_SECRETS:
        found.append("CONVEYOR_MINIO_SECRET_KEY")
    try:
        tokens = json.loads(settings.api_tokens.get_secret_value())
    except ValueError:
        tokens = {}
    if any(token in WELL_KNOWN_SECRETS for token in tokens):
        found.append("CONVEYOR_API_TOKENS")
    return found


class WellKnownSecretRefused(RuntimeError):
    """A service would listen beyond loopback with a secret anyone could know."""


def refuse_well_known(settings: Settings, *, service: str, hosts: list[str]) -> None:
    """Raise (one line) if ``service`` listens on a non-loopback host with a well-known secret.

    The entry points turn it into ``SystemExit`` (``exit_if_exposed``): a one-line reason, exit 1.
    """
    exposed = [host for host in hosts if not is_loopback(host)]
    known = well_known_secrets(settings)
    if exposed and known:
        raise WellKnownSecretRefused(
            f"{service} refuses to listen on {', '.join(exposed)} with the well-known default "
            f"{' and '.join(known)}: set real secrets (or listen on 127.0.0.1 only)"
        )


def exit_if_exposed(settings: Settings, *, service: str, hosts: list[str]) -> None:
    """Stop a process before it listens, with a one-line reason, if ``refuse_well_known`` refuses."""
    try:
        refuse_well_known(settings, service=service, hosts=hosts)
    except WellKnownSecretRefused as refused:
        raise SystemExit(f"error: {refused}") from None
