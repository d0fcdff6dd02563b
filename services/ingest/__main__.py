"""Run the ingest service: ``python -m services.ingest``."""

from services.ingest.memory import allocate_arrow_through_malloc

allocate_arrow_through_malloc()  # before anything loads Arrow

from services.ingest.app import NAME, create_app  # noqa: E402
from shared.service import run_app  # noqa: E402

run_app(NAME, create_app)
