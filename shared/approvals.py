"""Only the registry approves: its Ed25519 signature on every ModelApproved, checked before serving.

Anyone who can write to Kafka can publish a ``ModelApproved``, and the deploy service used to trust
the digest the event itself carried: a forged event was served (the unauthenticated-registry class
of CVE, MLflow CVE-2023-6014, reached through the bus). Two answers were possible: ask the
registry's HTTP API before serving, or verify a signature the registry puts on the event. We sign:
the check holds without the registry being up (a deploy service restarting, healing or replaying
an approval while the registry is away still serves what was approved, and nothing more), it costs
no request per deployment, and the proof travels with the event to anyone else who consumes it.

The key pair is the registry's: generated at its first start and kept in MinIO under
``registry/keys/``, where only the registry may write (shared.access) and only it may read the
private half. The signature covers what decides what is served (pipeline, version, run, artifact
URI and SHA-256), not the envelope: a replay of a genuine approval is the same approval.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import threading
from typing import TypeVar

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from shared.events import ServableVersion
from shared.storage import ArtifactStore, ObjectConflictError, ObjectNotFoundError
from shared.uris import ObjectLocation

E = TypeVar("E", bound=ServableVersion)

KEY_PREFIX = "registry/keys/"
PRIVATE_KEY = f"{KEY_PREFIX}approvals-ed25519.pem"
PUBLIC_KEY = f"{KEY_PREFIX}approvals-ed25519.pub.pem"
_MODE = "rfc8032"


class ApprovalNotTrusted(ValueError):
    """A ModelApproved that the registry did not sign, or whose content changed after signing."""


def signed_content(event: ServableVersion) -> bytes:
    """The bytes the registry signs: what decides which artifact is served, canonically encoded."""
    fields = {
        "pipeline": event.pipeline,
        "version": event.version,
        "run_id": event.run_id,
        "model_uri": event.model.uri,
        "model_sha256": event.model.sha256,
        # An approval for staging must not pass for a promotion to production, nor the reverse.
        "kind": type(event).__name__,
        "environment": getattr(event, "environment", ""),
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


class ApprovalSigner:
    """The registry's half: loads (or creates, once) the key pair in MinIO and signs approvals."""

    def __init__(self, store: ArtifactStore, *, bucket: str) -> None:
        self._store = store
        self._bucket = bucket
        self._key: ECC.EccKey | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read the key pair, generating it on the registry's first start (one writer wins a race)."""
        with self._lock:
            if self._key is not None:
                return
            private = ObjectLocation(self._bucket, PRIVATE_KEY)
            try:
                pem = self._store.get_verified(private)
            except ObjectNotFoundError:
                fresh = ECC.generate(curve="ed25519")
                with contextlib.suppress(ObjectConflictError):  # another replica's came first: use it
                    self._store.put(private, fresh.export_key(format="PEM").encode())
                pem = self._store.get_verified(private)
            key = ECC.import_key(pem.decode())
            public = key.public_key().export_key(format="PEM").encode()
            self._store.put(ObjectLocation(self._bucket, PUBLIC_KEY), public)
            self._key = key

    def sign(self, event: E) -> E:
        """``event`` with the registry's signature."""
        self.load()
        assert self._key is not None
        signature = eddsa.new(self._key, _MODE).sign(signed_content(event))
        return event.model_copy(update={"signature": base64.b64encode(signature).decode()})


class ApprovalVerifier:
    """The deploy service's half: the registry's public key from MinIO, and the check."""

    def __init__(self, store: ArtifactStore, *, bucket: str) -> None:
        self._store = store
        self._bucket = bucket
        self._key: ECC.EccKey | None = None

    def verify(self, event: ServableVersion) -> None:
        """Return if the registry signed exactly this approval; else raise ``ApprovalNotTrusted``."""
        if not event.signature:
            raise ApprovalNotTrusted(
                f"{event.pipeline} version {event.version}: the approval carries no registry signature"
            )
        try:
            signature = base64.b64decode(event.signature, validate=True)
        except (binascii.Error, ValueError):
            raise ApprovalNotTrusted("the approval's signature is not base64") from None
        verifier = eddsa.new(self._public_key(), _MODE)
        try:
            verifier.verify(signed_content(event), signature)
        except ValueError:
            raise ApprovalNotTrusted(
                f"{event.pipeline} version {event.version} ({event.model.uri}, sha256 {event.model.sha256}): "
                "the registry's signature does not match: not an approval the registry made"
            ) from None

    def _public_key(self) -> ECC.EccKey:
        if self._key is None:
            location = ObjectLocation(self._bucket, PUBLIC_KEY)
            try:
                pem = self._store.get_verified(location)
            except ObjectNotFoundError:
                raise ApprovalNotTrusted(
                    f"no registry key at {location.uri}: no approval is trusted before the registry starts"
                ) from None
            self._key = ECC.import_key(pem.decode())
        return self._key
