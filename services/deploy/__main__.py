"""Run the deploy service: ``python -m services.deploy``."""

import uvicorn

from services.deploy.app import create_app
from services.deploy.settings import DeploySettings
from shared.logs import configure_logging
from shared.secrets import exit_if_exposed

settings = DeploySettings()
exit_if_exposed(settings, service="deploy", hosts=[settings.deploy_host, settings.serving_host])
configure_logging("deploy")
uvicorn.run(create_app(settings), host=settings.deploy_host, port=settings.deploy_port, log_config=None)
