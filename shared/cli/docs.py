"""``conveyor docs``: the AsyncAPI document of every event, as a page, with the HTTP APIs' OpenAPI."""

from __future__ import annotations

from pathlib import Path

import click

from shared.cli.context import CliContext, pass_cli
from shared.cli.output import console


@click.command()
@click.option("--port", default=8090, show_default=True, help="Where to serve the page (127.0.0.1).")
@click.option(
    "--html", "html_file", type=click.Path(path_type=Path), help="Write the page to a file instead."
)
@pass_cli
def docs(cli: CliContext, port: int, html_file: Path | None) -> None:
    """Serve the event contracts (AsyncAPI) and the HTTP APIs' OpenAPI documents."""
    # Imported here: generating the documents loads every service's code.
    import uvicorn
    from faststream.specification.asyncapi.site import get_asyncapi_html
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from services.docs import asyncapi_specification, openapi_documents

    page = get_asyncapi_html(asyncapi_specification(), try_it_out_path=None)
    if html_file is not None:
        html_file.write_text(page)
        console.print(f"wrote {html_file}")
        return
    apis = openapi_documents()
    routes = [
        Route("/", lambda _: HTMLResponse(page)),
        Route("/asyncapi.json", lambda _: JSONResponse(asyncapi_specification().to_jsonable())),
        *[Route(f"/openapi/{name}.json", lambda _, doc=doc: JSONResponse(doc)) for name, doc in apis.items()],
    ]
    console.print(
        f"event contracts at http://127.0.0.1:{port}/ (OpenAPI: /openapi/registry.json, "
        f"/openapi/deploy.json, /openapi/serving.json; the live APIs also serve /docs)"
    )
    uvicorn.run(Starlette(routes=routes), host="127.0.0.1", port=port, log_level="warning")
