"""Models evaluate has loaded, kept by artifact digest within a memory budget.

Each candidate is scored beside its pipeline's champion, and once approved it is the champion
the next candidate meets: without the cache every evaluation loads two models, with it usually
one. Loading verifies the artifact's digest before deserialising it; a kept model is found by
the same digest, so it is the same bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from shared.events import ArtifactRef
from shared.model_format import load_model
from shared.storage import ArtifactStore


class LoadedModels:
    """The most recently used models whose artifacts add up to at most ``budget_bytes``."""

    def __init__(self, store: ArtifactStore, *, budget_bytes: int) -> None:
        self._store = store
        self._budget = budget_bytes
        self._kept: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, ref: ArtifactRef) -> Any:
        """The model of ``ref``: kept, or fetched, verified and loaded (raises as ``load_model`` does)."""
        with self._lock:
            kept = self._kept.get(ref.sha256)
            if kept is not None:
                self._kept.move_to_end(ref.sha256)
                return kept[0]
        model = load_model(self._store.get(ref))
        size = ref.size_bytes
        if 0 < size <= self._budget:
            with self._lock:
                self._kept[ref.sha256] = (model, size)
                while sum(kept_size for _, kept_size in self._kept.values()) > self._budget:
                    self._kept.popitem(last=False)
        return model

    def digests(self) -> list[str]:
        """The digests of the models kept, least recently used first."""
        with self._lock:
            return list(self._kept)
