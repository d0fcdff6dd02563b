"""Run the deploy service: ``python -m services.deploy``."""

import uvicorn

from services.deploy.app import create_app
from services.deploy.settings import DeploySettings
from shared.logs import configure_logging

settings = DeploySettings()
configure_logging("deploy")
uvicorn.run(create_app(settings), host=settings.deploy_host, port=settings.deploy_port, log_config=None)
