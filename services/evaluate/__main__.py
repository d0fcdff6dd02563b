"""Run the evaluate service: ``python -m services.evaluate``."""

from services.evaluate.app import NAME, create_app
from shared.service import run_app

run_app(NAME, create_app)
