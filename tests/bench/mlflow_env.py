"""MLflow as a serving baseline, in a virtual environment of its own (never the project's).

The environment lives in ``~/.cache/conveyor/bench-venv`` with pinned versions; the model is
the same skops artifact Conveyor serves, rebuilt there and saved as an MLflow sklearn model.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings

# mlflow 3.18.0 is listed but its mlflow-skinny is not served; 3.17.2 is the newest that installs.
PINNED = (
    "mlflow==3.17.2",
    "scikit-learn==1.9.1",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "skops==0.16.0",
    "py-spy==0.4.3",
)

_EXPORT = """
import sys, skops.io as sio, mlflow.sklearn
data = open(sys.argv[1], "rb").read()
model = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
mlflow.sklearn.save_model(model, sys.argv[2], serialization_format="cloudpickle")
"""


@dataclass(frozen=True)
class BenchVenv:
    """The benchmark-only virtual environment."""

    path: Path

    @classmethod
    def default(cls) -> BenchVenv:
        """``<cache dir>/bench-venv``."""
        return cls(Settings().cache_dir / "bench-venv")

    def bin(self, name: str) -> Path:
        """An executable of the environment."""
        return self.path / "bin" / name

    def ensure(self) -> str | None:
        """Create or complete the environment; None when ready, else why it cannot be."""
        marker = self.path / ".bench-installed"
        wanted = "\n".join(PINNED)
        if marker.exists() and marker.read_text() == wanted:
            return None
        try:
            if not self.bin("python").exists():
                subprocess.run([sys.executable, "-m", "venv", str(self.path)], check=True, timeout=300)
            subprocess.run(
                [str(self.bin("pip")), "install", "--quiet", *PINNED],
                check=True,
                timeout=900,
                capture_output=True,
            )
        except (subprocess.SubprocessError, OSError) as error:
            detail = getattr(error, "stderr", b"") or b""
            return f"{error!r} {detail.decode(errors='replace')[-500:]}"
        marker.write_text(wanted)
        return None

    def export_model(self, skops_file: Path, destination: Path) -> None:
        """Save the skops model at ``skops_file`` as an MLflow model directory."""
        subprocess.run(
            [str(self.bin("python")), "-c", _EXPORT, str(skops_file), str(destination)],
            check=True,
            timeout=300,
            capture_output=True,
        )

    def serve_argv(self, model_dir: Path, *, port: int, workers: int) -> list[str]:
        """``mlflow models serve`` of ``model_dir`` in this environment's Python (no conda, no uv)."""
        return [
            str(self.bin("mlflow")), "models", "serve",
            "-m", str(model_dir),
            "--env-manager", "local",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", str(workers),
        ]  # fmt: skip
