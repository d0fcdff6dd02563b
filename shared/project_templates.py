"""Project templates: a ready pipeline project (spec, sample data, README, CI workflow) for one task.

What SageMaker Projects gives a team, as files in a repository: the spec is checked on every pull
request (``conveyor pipeline check``) and applied, with the data published, on every merge. The
sample data comes from scikit-learn's bundled data sets, so ``conveyor init`` needs no network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes

SPEC_FILE = "pipeline.yaml"
DATA_FILE = "data/sample.csv"
WORKFLOW_FILE = ".github/workflows/conveyor.yml"


class ProjectExistsError(FileExistsError):
    """The target directory already holds files: a template never overwrites anything."""


@dataclass(frozen=True)
class Template:
    """One task's spec text (``{name}`` filled in), its sample data and a line about it."""

    about: str
    target: str
    spec: str
    data: Callable[[], pd.DataFrame]


def _breast_cancer() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    columns = [
        "mean radius",
        "mean texture",
        "mean area",
        "mean smoothness",
        "mean concavity",
        "worst radius",
    ]
    sample = frame[columns].rename(columns=lambda c: c.replace(" ", "_"))
    sample["benign"] = frame["target"]
    return sample


def _diabetes() -> pd.DataFrame:
    frame = load_diabetes(as_frame=True, scaled=False).frame
    names = {"s1": "tc", "s2": "ldl", "s3": "hdl", "s4": "tch", "s5": "ltg", "s6": "glucose"}
    sample = frame.rename(columns=names).rename(columns={"target": "progression"})
    sample["sex"] = sample["sex"].astype(int)
    return sample


CLASSIFICATION_SPEC = """\
# The pipeline spec: what Conveyor does with each dataset that arrives for "{name}".
# Check it: `conveyor pipeline check pipeline.yaml`; apply it: `conveyor pipeline apply pipeline.yaml`.
name: {name}
target: benign            # 1 for a benign tumour, 0 for a malignant one
task: classification
features:
  numeric: [mean_radius, mean_texture, mean_area, mean_smoothness, mean_concavity, worst_radius]
  categorical: []
  # Computed inside the model from the columns above, so the endpoint and batch jobs compute them
  # too: requests carry only the declared columns. Functions: log, sqrt, abs, clip, where, month...
  derived:
    - name: growth
      expr: worst_radius / mean_radius
    - name: concave
      expr: mean_concavity > 0.1
preprocessing:
  numeric:
    imputer: median
    log: [mean_area]
estimator:
  path: sklearn.linear_model.LogisticRegression
  params: {{max_iter: 1000}}
  search:
    kind: grid
    space: {{C: [0.1, 1.0, 10.0]}}
    folds: 3
primary_metric: f1_macro
gates:
  - {{metric: accuracy, min: 0.85}}
approval: auto            # manual: a person approves each version (conveyor models approve)
deployment: {{realtime: true, batch: true}}
"""

REGRESSION_SPEC = """\
# The pipeline spec: what Conveyor does with each dataset that arrives for "{name}".
# Check it: `conveyor pipeline check pipeline.yaml`; apply it: `conveyor pipeline apply pipeline.yaml`.
name: {name}
target: progression       # disease progression one year after the baseline measurements
task: regression
features:
  numeric: [age, bmi, bp, tc, ldl, hdl, tch, ltg, glucose]
  categorical: [sex]
  # Computed inside the model from the columns above, so the endpoint and batch jobs compute them
  # too: requests carry only the declared columns. Functions: log, sqrt, abs, clip, where, month...
  derived:
    - name: weight_class
      expr: where(bmi >= 30, 'obese', where(bmi >= 25, 'overweight', 'normal'))
    - name: pressure_per_decade
      expr: bp / clip(age / 10, 1, 10)
preprocessing:
  numeric:
    imputer: median
    log: [glucose]
estimator:
  path: sklearn.linear_model.Ridge
  search:
    kind: grid
    space: {{alpha: [0.1, 1.0, 10.0]}}
    folds: 3
primary_metric: rmse
gates:
  - {{metric: r2, min: 0.2}}
approval: auto            # manual: a person approves each version (conveyor models approve)
deployment: {{realtime: true, batch: true}}
"""

TEMPLATES: Mapping[str, Template] = MappingProxyType(
    {
        "classification": Template(
            about="benign or malignant, from six tumour measurements (scikit-learn's breast-cancer data)",
            target="benign",
            spec=CLASSIFICATION_SPEC,
            data=_breast_cancer,
        ),
        "regression": Template(
            about="disease progression in a year, from ten measurements (scikit-learn's diabetes data)",
            target="progression",
            spec=REGRESSION_SPEC,
            data=_diabetes,
        ),
    }
)

WORKFLOW = """\
# Checks the pipeline spec on every pull request; on every merge to main, applies it and publishes
# the data, which trains, evaluates and (if it passes its gates) deploys a new model version.
name: conveyor {name}
on:
  pull_request:
  push:
    branches: [main]
env:
  # Where your team installs Conveyor from (a wheel, a package index or a Git URL).
  CONVEYOR_PACKAGE: ${{{{ vars.CONVEYOR_PACKAGE || 'conveyor' }}}}
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {{python-version: "3.11"}}
      - run: pip install "$CONVEYOR_PACKAGE"
      - run: conveyor pipeline check {spec}
  publish:
    if: github.event_name == 'push'
    needs: check
    runs-on: ubuntu-latest
    env:
      # The platform this project publishes to: set these as repository secrets.
      CONVEYOR_KAFKA_BOOTSTRAP_SERVERS: ${{{{ secrets.CONVEYOR_KAFKA_BOOTSTRAP_SERVERS }}}}
      CONVEYOR_MINIO_ENDPOINT: ${{{{ secrets.CONVEYOR_MINIO_ENDPOINT }}}}
      CONVEYOR_MINIO_ACCESS_KEY: ${{{{ secrets.CONVEYOR_MINIO_ACCESS_KEY }}}}
      CONVEYOR_MINIO_SECRET_KEY: ${{{{ secrets.CONVEYOR_MINIO_SECRET_KEY }}}}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {{python-version: "3.11"}}
      - run: pip install "$CONVEYOR_PACKAGE"
      - run: conveyor pipeline apply {spec}
      - run: conveyor data publish {data} --pipeline {name}
"""

README = """\
# {name}

A Conveyor pipeline project ({template}): {about}.

| file | what it is |
|------|------------|
| `{spec}` | the pipeline spec: target, features and derived columns, estimator, quality gates, deployment |
| `{data}` | sample data, {rows} rows (from scikit-learn's bundled data sets) |
| `{workflow}` | GitHub Actions: checks the spec on pull requests; applies it, publishes the data on merge |

## Run it against a local Conveyor

```sh
conveyor up                       # Kafka, MinIO and the services
conveyor pipeline check {spec}    # validate without applying
conveyor pipeline apply {spec}
conveyor data publish {data} --pipeline {name}
conveyor events                   # watch it train, evaluate and deploy (Ctrl-C to stop)
conveyor models list {name}
conveyor predict {name} --row '{row}'
```

A request carries only the columns of `features.numeric` and `features.categorical`; the derived
columns are computed inside the model, the same way in training, on the endpoint and in batch jobs.

## Continuous integration

Set the repository variable `CONVEYOR_PACKAGE` (where to install Conveyor from) and the secrets
`CONVEYOR_KAFKA_BOOTSTRAP_SERVERS`, `CONVEYOR_MINIO_ENDPOINT`, `CONVEYOR_MINIO_ACCESS_KEY` and
`CONVEYOR_MINIO_SECRET_KEY`. Replace `{data}` with your own data (CSV or Parquet, same columns).
"""


def render(name: str, template: str) -> dict[str, bytes]:
    """The project's files (relative path to content) for pipeline ``name`` from ``template``."""
    chosen = TEMPLATES[template]
    frame = chosen.data()
    first_row = json.dumps(frame.drop(columns=[chosen.target]).head(1).to_dict(orient="records")[0])
    values = {
        "name": name,
        "template": template,
        "about": chosen.about,
        "spec": SPEC_FILE,
        "data": DATA_FILE,
        "workflow": WORKFLOW_FILE,
        "rows": len(frame),
        "row": first_row,
    }
    return {
        SPEC_FILE: chosen.spec.format(**values).encode(),
        DATA_FILE: frame.to_csv(index=False).encode(),
        "README.md": README.format(**values).encode(),
        WORKFLOW_FILE: WORKFLOW.format(**values).encode(),
    }


def write_project(directory: Path, *, name: str, template: str) -> list[Path]:
    """Write the project into ``directory`` (new or empty); return the files written."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ProjectExistsError(f"{directory} already exists and is not an empty directory")
    written = []
    for relative, content in render(name, template).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written
