"""The lineage record written beside every model artifact: where the model came from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from shared.events import ArtifactRef, LineageSummary
from shared.events.envelope import Frozen


class LineageRecord(Frozen):
    """Everything needed to explain, and reproduce, one trained model."""

    run_id: str
    pipeline: str
    dataset_version: str
    dataset: dict[str, ArtifactRef] = Field(description="raw, train and test splits")
    spec_version: str
    spec_uri: str
    code_version: str
    estimator: str
    search_kind: str
    search_space: dict[str, Any]
    hyperparameters: dict[str, Any]
    cv_metric: str
    cv_scores: list[float]
    cv_score: float
    seed: int
    features: dict[str, list[str]] = Field(description="numeric and categorical feature columns")
    environment: dict[str, Any] = Field(description="interpreter, libraries, packages, host, image, commit")
    started_at: datetime
    finished_at: datetime
    training_seconds: float

    def summary(self, *, lineage_uri: str) -> LineageSummary:
        """The part of the record that travels in events."""
        libraries = self.environment.get("libraries", {})
        return LineageSummary(
            run_id=self.run_id,
            dataset_version=self.dataset_version,
            spec_version=self.spec_version,
            code_version=self.code_version,
            hyperparameters=self.hyperparameters,
            framework="scikit-learn",
            framework_version=str(libraries.get("scikit-learn", "unknown")),
            training_image=self.environment.get("training_image"),
            lineage_uri=lineage_uri,
        )
