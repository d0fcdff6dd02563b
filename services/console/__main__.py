"""Run the console: ``python -m services.console``."""

import uvicorn

from services.console.app import create_app
from shared.logs import configure_logging
from shared.settings import Settings

settings = Settings()
configure_logging("console")
# Open event streams would otherwise hold a stop for uvicorn's whole graceful wait.
uvicorn.run(
    create_app(settings),
    host=settings.console_host,
    port=settings.console_port,
    log_config=None,
    timeout_graceful_shutdown=2,
)
