"""Run the train service: ``python -m services.train``."""

from services.train.app import NAME, create_app
from shared.service import run_app

run_app(NAME, create_app)
