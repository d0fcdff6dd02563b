"""Helm, built once from its Go module and cached, to render the chart under infra/kubernetes/.

The chart is checked offline: ``helm template`` renders it with no cluster, and the tests validate
every rendered object against the Kubernetes schemas that kubernetes-validate bundles.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from infra import process
from shared.settings import Settings

MODULE = "helm.sh/helm/v4/cmd/helm"
VERSION = "v4.3.2"
CHART = Path(__file__).parent / "kubernetes" / "conveyor"
EXAMPLES = Path(__file__).parent / "kubernetes" / "examples"


def binary_path(settings: Settings) -> Path:
    """Where the built helm binary is cached, one directory per pinned version."""
    return settings.cache_dir / f"helm-{VERSION}" / "helm"


def ensure_binary(settings: Settings) -> Path:
    """Build helm with `go install` unless it is cached; return its path."""
    binary = binary_path(settings)
    # `go install` writes the binary only once the build succeeded, so its presence means complete.
    if not binary.exists():
        process.run_build(
            ["go", "install", f"{MODULE}@{VERSION}"],
            env={"GOBIN": str(binary.parent)},
            what=f"helm {VERSION} build (first run only, a few minutes)",
            log=settings.state_dir / "logs" / "helm-build.log",
        )
    return binary


def render(settings: Settings, *, values: list[Path] | None = None, release: str = "conveyor") -> str:
    """The chart rendered as YAML documents (``helm template``, no cluster needed)."""
    argv = [str(ensure_binary(settings)), "template", release, str(CHART)]
    for path in values or []:
        argv += ["--values", str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise process.InfraError(f"helm template failed:\n{result.stderr}")
    return result.stdout
