"""Run the registry: ``python -m services.registry``."""

import uvicorn

from services.registry.app import create_app
from shared.logs import configure_logging
from shared.secrets import exit_if_exposed
from shared.settings import Settings

settings = Settings()
exit_if_exposed(settings, service="registry", hosts=[settings.registry_host])
configure_logging("registry")
uvicorn.run(create_app(settings), host=settings.registry_host, port=settings.registry_port, log_config=None)
