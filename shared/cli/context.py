"""What every command needs: the settings and the clients built from them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import click

from shared.auth import Principal, Role, RoleRefused, TokenBook, audit
from shared.cli.output import UserError
from shared.clients.datasets import DatasetClient
from shared.clients.registry import RegistryClient
from shared.secrets import approver_token
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore


@dataclass
class CliContext:
    """Settings, and clients created only when a command uses them."""

    settings: Settings
    json_output: bool = False

    @cached_property
    def store(self) -> ArtifactStore:
        """The artifact store."""
        store = ArtifactStore.from_settings(self.settings)
        store.ensure_buckets()
        return store

    @cached_property
    def specs(self) -> SpecStore:
        """Pipeline specs."""
        return SpecStore(self.store, bucket=self.settings.artifacts_bucket)

    def registry(self, token: str | None = None) -> RegistryClient:
        """A client of the registry's API (with a bearer token when one is given or configured)."""
        return RegistryClient(self.settings.registry_base_url, token=token or approver_token(self.settings))

    def require(self, role: Role, *, action: str, target: str, token: str | None = None) -> Principal:
        """The caller, for a command that goes to Kafka directly, if its token holds ``role`` (audited).

        The token is checked against CONVEYOR_API_TOKENS (this machine's secrets.json when unset);
        Kafka ACLs, not this check, are what hold against a client that skips the CLI.
        """
        try:
            principal = TokenBook.from_secret(self.settings.api_tokens).check(
                token or approver_token(self.settings), role=role, action=action
            )
        except RoleRefused as refused:
            raise UserError(f"{refused} (set CONVEYOR_API_TOKEN or --token)") from None
        audit(principal, action=action, target=target, outcome="requested")
        return principal

    def datasets(self, token: str | None = None) -> DatasetClient:
        """A client of the registry's dataset routes (they all need a token)."""
        configured = self.settings.api_token.get_secret_value() if self.settings.api_token else None
        return DatasetClient(self.settings.registry_base_url, token=token or configured)


pass_cli = click.make_pass_decorator(CliContext)
