"""The console reads a version's bias figures from its evaluation report in a real MinIO, by digest."""

from __future__ import annotations

import json

from services.console.bias import BiasReader
from shared.storage import ArtifactStore, ObjectLocation

REPORT = {
    "scores": {
        "task": "classification",
        "rows": 40,
        "metrics": {"accuracy": 0.9},
        "sensitive_attribute": "region",
        "by_group": {
            "north": {"rows": 15, "metrics": {"accuracy": 0.8, "positive_rate": 0.4}},
            "south": {"rows": 25, "metrics": {"accuracy": 0.96, "positive_rate": 0.5}},
        },
        "group_gaps": {"accuracy": 0.16, "positive_rate": 0.1},
    },
    "html": "s3://x/report.html",
}


def test_bias_figures_are_read_from_the_report_the_registry_names(store: ArtifactStore, bucket: str) -> None:
    ref = store.put(ObjectLocation(bucket, "churn/run-1/report.json"), json.dumps(REPORT).encode())
    reader = BiasReader(store, bucket=bucket)
    figures, note = reader.of({"report": ref.model_dump(mode="json")})
    assert note is None and figures is not None
    assert [(g.group, g.rows, g.metrics["accuracy"]) for g in figures.groups] == [
        ("north", 15, 0.8),
        ("south", 25, 0.96),
    ]
    assert figures.gaps == {"accuracy": 0.16, "positive_rate": 0.1}


def test_a_report_other_than_the_one_recorded_is_not_shown(store: ArtifactStore, bucket: str) -> None:
    ref = store.put(ObjectLocation(bucket, "churn/run-2/report.json"), json.dumps(REPORT).encode())
    reader = BiasReader(store, bucket=bucket)
    forged = {**ref.model_dump(mode="json"), "sha256": "0" * 64}
    assert reader.of({"report": forged}) == (None, "evaluation report not readable: IntegrityError")
    elsewhere = {**ref.model_dump(mode="json"), "uri": "s3://another-bucket/churn/run-2/report.json"}
    assert reader.of({"report": elsewhere}) == (None, "evaluation report not readable: UnsafeUriError")
    assert reader.of({"report": None}) == (None, "this version has no evaluation report")
    no_groups = store.put(ObjectLocation(bucket, "churn/run-3/report.json"), b'{"scores": {}, "html": "x"}')
    assert reader.of({"report": no_groups.model_dump(mode="json")}) == (
        None,
        "no sensitive attribute in this version's spec",
    )
