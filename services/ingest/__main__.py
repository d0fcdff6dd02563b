"""Run the ingest service: ``python -m services.ingest``."""

from services.ingest.app import NAME, create_app
from shared.service import run_app

run_app(NAME, create_app)
