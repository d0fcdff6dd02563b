"""Run the ingest service: ``python -m services.ingest``."""

from services.ingest.memory import configure_memory

configure_memory()  # before anything loads Arrow or starts a thread

from services.ingest.app import NAME, create_app  # noqa: E402
from shared.service import run_app  # noqa: E402

run_app(NAME, create_app)
