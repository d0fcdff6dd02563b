"""The console's routes: each turns a request into a view from ``views`` and a template, or an action.

Actions forward the approver token from its cookie to the registry or deploy API (which check it
again), or, for replaying dead letters, check it here against the same token book.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote
from uuid import UUID

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from services.console import traces, views
from services.console.bias import BiasReader
from services.console.feed import Changes
from services.console.figures import Readings
from services.console.guard import COOKIE_FLAGS, SESSION_COOKIE, TOKEN_COOKIE, Guard, Refused
from services.console.timeline import Timeline
from shared.clients.deploy import DeployClient
from shared.clients.registry import ApiError, RegistryClient
from shared.messaging import TransientError
from shared.messaging.dead_letters import (
    REASONS,
    UNKNOWN_REASON,
    DeadLetterError,
    dead_letter_topics,
    read_dead_letters,
    replay,
)
from shared.settings import Settings
from shared.storage import ArtifactStore, IntegrityError, ObjectNotFoundError
from shared.uris import AllowedLocation, UnsafeUriError

# No inline script or style may run: an event field that smuggled markup in would stay inert even
# if it escaped escaping. Reports from MinIO are served sandboxed on top of that.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
)
REPORT_POLICY = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_KEEPALIVE_S = 15.0
RELEASE_ACTIONS = ("pause", "resume", "promote", "abort")


@dataclass(frozen=True)
class Ports:
    """What the routes read and act through."""

    settings: Settings
    timeline: Timeline
    changes: Changes
    guard: Guard
    registry: RegistryClient
    deploy: DeployClient
    store: ArtifactStore
    templates: Jinja2Templates
    bias: BiasReader
    readings: Readings = field(default_factory=Readings)


def routes(ports: Ports) -> list[Route]:
    """Every page, fragment and action of the console."""
    p = ports

    # The table of every pipeline changes only when an event is folded in: rendered once per revision
    # of the timeline (a thousand rows take Jinja2 tens of milliseconds), not once per request.
    table = _Memo()

    def pipelines_table() -> Markup:
        return table.get(
            p.timeline.revision,
            lambda: Markup(
                p.templates.get_template("_pipelines.html").render(rows=views.pipeline_rows(p.timeline))
            ),
        )

    async def pipelines(request: Request) -> Response:
        return render(p, request, "pipelines.html", table=pipelines_table())

    async def pipelines_fragment(request: Request) -> Response:
        return secure_html(pipelines_table())

    async def arrival(request: Request) -> Response:
        found = _arrival(p, request)
        trace = await asyncio.to_thread(traces.arrival_trace, p.settings, found.trace_id)
        steps = views.arrival_steps(found)
        bars = views.trace_bars(trace.spans)
        return render(p, request, "arrival.html", arrival=found, steps=steps, trace=trace, bars=bars)

    async def arrival_trace(request: Request) -> Response:
        found = _arrival(p, request)
        trace = await asyncio.to_thread(traces.arrival_trace, p.settings, found.trace_id)
        return render(
            p, request, "_trace.html", arrival=found, trace=trace, bars=views.trace_bars(trace.spans)
        )

    async def arrival_graph(request: Request) -> Response:
        found = _arrival(p, request)
        return render(p, request, "_graph.html", arrival=found, steps=views.arrival_steps(found))

    async def group(request: Request) -> Response:
        pipeline = request.path_params["pipeline"]
        wanted = _int(request.query_params.get("version"))
        before = _int(request.query_params.get("before"))
        # The version to show is known before the list arrives when the events named it: ask for both at once.
        known = wanted or p.timeline.latest_version(pipeline)
        try:
            if known is None:
                listed, detail = await asyncio.to_thread(_group, p.registry, pipeline, None)
            else:
                listed, detail = await asyncio.gather(
                    asyncio.to_thread(p.registry.versions, pipeline),
                    asyncio.to_thread(_version, p.registry, pipeline, known),
                )
        except ApiError as error:
            # Arrivals the events show (a rejected dataset, a training still running, versions a
            # registry with other storage announced) have a page while this registry has no group.
            if error.status_code != 404 or pipeline not in p.timeline.pipelines:
                raise
            listed, detail = [], None
        bias, bias_note = await asyncio.to_thread(p.bias.of, detail) if detail else (None, None)
        view = views.group_view(
            p.timeline, pipeline=pipeline, versions=listed, selected=detail, before=before
        )
        return render(p, request, "group.html", group=view, bias=bias, bias_note=bias_note)

    async def decide(request: Request) -> Response:
        form = await _form(p, request)
        pipeline, version = request.path_params["pipeline"], request.path_params["version"]
        approve = request.path_params["action"] == "approve"
        token = request.cookies.get(TOKEN_COOKIE)
        p.guard.allowed(token, role="approver")
        await asyncio.to_thread(
            _decide, p.settings, token, pipeline, version, approve, form.get("comment", "")
        )
        done = f"version {version} {'approved' if approve else 'rejected'}"
        return _back(f"/groups/{pipeline}?version={version}", done)

    async def deployments(request: Request) -> Response:
        listed = await asyncio.to_thread(p.deploy.deployments)
        live = await asyncio.gather(*(asyncio.to_thread(views.live_view, p.readings, d) for d in listed))
        shown = [views.deployment_view(p.timeline, one) for one in live]
        return render(p, request, "deployments.html", deployments=shown)

    async def deployment_figures(request: Request) -> Response:
        deployment = await asyncio.to_thread(p.deploy.deployment, request.path_params["pipeline"])
        live = await asyncio.to_thread(views.live_view, p.readings, deployment)
        return render(p, request, "_figures.html", live=live)

    async def rollback(request: Request) -> Response:
        await _form(p, request)
        pipeline = request.path_params["pipeline"]
        token = request.cookies.get(TOKEN_COOKIE)
        p.guard.allowed(token, role="operator")
        done = await asyncio.to_thread(_rollback, p.settings, token, pipeline)
        return _back("/deployments", f"{pipeline} rolled back to version {done['version']}")

    async def steer_release(request: Request) -> Response:
        form = await _form(p, request)
        pipeline, action = request.path_params["pipeline"], request.path_params["action"]
        if action not in RELEASE_ACTIONS:
            return _back("/deployments", f"unknown release action {action!r}")
        token = request.cookies.get(TOKEN_COOKIE)
        p.guard.allowed(token, role="operator")
        reason = str(form.get("reason", ""))[:1000]
        client = DeployClient(p.settings.deploy_base_url, token=token)
        done = await asyncio.to_thread(client.release, pipeline, action, reason=reason)
        return _back("/deployments", f"{pipeline}: release {action} ({', '.join(done['events'])})")

    async def dead_letters(request: Request) -> Response:
        topics = await dead_letter_topics(p.settings)
        topic = request.query_params.get("topic") or (topics[0] if topics else None)
        found = await read_dead_letters(p.settings, topic) if topic in topics else None
        return render(
            p,
            request,
            "dead_letters.html",
            topics=topics,
            topic=topic,
            found=found,
            reasons=[*REASONS, UNKNOWN_REASON],
            payload=_payload,
        )

    async def replay_letters(request: Request) -> Response:
        form = await _form(p, request)
        p.guard.allowed(request.cookies.get(TOKEN_COOKIE), role="operator")
        topic, reason = form.get("topic", ""), form.get("reason", "")
        reasons = [reason] if reason in (*REASONS, UNKNOWN_REASON) else [*REASONS, UNKNOWN_REASON]
        sent = await replay(p.settings, topic, reasons=reasons)
        return _back(f"/dead-letters?topic={quote(topic)}", f"{len(sent)} letters replayed from {topic}")

    async def report(request: Request) -> Response:
        uri = request.query_params.get("uri", "")
        allowed = [AllowedLocation(p.settings.artifacts_bucket)]
        location = p.store.locate(uri, allowed=allowed)
        body = await asyncio.to_thread(p.store.get_verified, location)
        if location.key.endswith(".json"):  # a report's JSON names its human-readable page
            page_uri = json.loads(body).get("html")
            if not isinstance(page_uri, str):
                return HTMLResponse("this report has no page", status_code=404)
            body = await asyncio.to_thread(p.store.get_verified, p.store.locate(page_uri, allowed=allowed))
        return HTMLResponse(body, headers={"Content-Security-Policy": REPORT_POLICY})

    async def login(request: Request) -> Response:
        form = await _form(p, request)
        token = form.get("token", "").strip()
        principal = p.guard.allowed(token, role=None)
        response = _back(_local(form.get("next")), f"signed in as {principal.user}")
        response.set_cookie(TOKEN_COOKIE, token, **COOKIE_FLAGS)  # type: ignore[arg-type]
        return response

    async def logout(request: Request) -> Response:
        form = await _form(p, request)
        response = _back(_local(form.get("next")), "signed out")
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response

    async def events(request: Request) -> Response:
        return StreamingResponse(
            _stream(p.changes, request), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    return [
        Route("/", pipelines),
        Route("/fragments/pipelines", pipelines_fragment),
        Route("/arrivals/{correlation_id:uuid}", arrival),
        Route("/arrivals/{correlation_id:uuid}/graph", arrival_graph),
        Route("/arrivals/{correlation_id:uuid}/trace", arrival_trace),
        Route("/groups/{pipeline}", group),
        Route("/groups/{pipeline}/versions/{version:int}/{action:str}", decide, methods=["POST"]),
        Route("/deployments", deployments),
        Route("/deployments/{pipeline}/figures", deployment_figures),
        Route("/deployments/{pipeline}/rollback", rollback, methods=["POST"]),
        Route("/deployments/{pipeline}/release/{action}", steer_release, methods=["POST"]),
        Route("/dead-letters", dead_letters),
        Route("/dead-letters/replay", replay_letters, methods=["POST"]),
        Route("/reports", report),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", events),
    ]


def render(ports: Ports, request: Request, template: str, **context: Any) -> Response:
    """A page (autoescaped), with the browser's session cookie and the page's security headers."""
    session = request.cookies.get(SESSION_COOKIE) or ports.guard.new_session()
    context.update(
        csrf=ports.guard.csrf_token(session),
        signed_in=bool(request.cookies.get(TOKEN_COOKIE)),
        notice=request.query_params.get("notice"),
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    )
    response = ports.templates.TemplateResponse(
        request, template, context, status_code=context.pop("status", 200)
    )
    if request.cookies.get(SESSION_COOKIE) != session:
        response.set_cookie(SESSION_COOKIE, session, **COOKIE_FLAGS)  # type: ignore[arg-type]
    secure(response)
    return response


class _Memo:
    """One value, kept until the key it was computed for changes."""

    def __init__(self) -> None:
        self._key: object = object()
        self._value: Any = None

    def get(self, key: object, compute: Callable[[], Any]) -> Any:
        """The value for ``key``, computed only when the key changed."""
        if key != self._key:
            self._value, self._key = compute(), key
        return self._value


def secure_html(html: str) -> Response:
    """A fragment with the page's security headers."""
    response = HTMLResponse(html)
    secure(response)
    return response


def secure(response: Response) -> None:
    """The headers every console page carries."""
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"


def error_handlers(ports: Ports) -> dict[Any, Any]:
    """How refusals and failures of the APIs behind the console show: a clear page, the right status."""

    def page(request: Request, status: int, title: str, message: str) -> Response:
        return render(ports, request, "error.html", status=status, title=title, message=message)

    async def refused(request: Request, error: Exception) -> Response:
        assert isinstance(error, Refused)
        title = "Sign-in needed" if error.status_code == 401 else "Not allowed"
        return page(request, error.status_code, f"{error.status_code} {title}", error.message)

    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        titles = {401: "Sign-in needed", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
        title = titles.get(error.status_code, "Refused")
        return page(request, error.status_code, f"{error.status_code} {title}", error.detail)

    async def unavailable(request: Request, error: Exception) -> Response:
        return page(request, 503, "503 A service is unavailable", str(error))

    async def bad_input(request: Request, error: Exception) -> Response:
        return page(request, 400, "400 Bad request", str(error))

    async def missing(request: Request, error: Exception) -> Response:
        return page(request, 404, "404 Not found", str(error) or "nothing here")

    return {
        Refused: refused,
        ApiError: api_error,
        TransientError: unavailable,
        UnsafeUriError: bad_input,
        DeadLetterError: bad_input,
        ObjectNotFoundError: missing,
        IntegrityError: unavailable,
        LookupError: missing,
        404: missing,
    }


async def _stream(changes: Changes, request: Request) -> AsyncIterator[str]:
    with changes.listen() as queue:
        yield ": connected\n\n"
        while not await request.is_disconnected():
            try:
                keys = await asyncio.wait_for(queue.get(), timeout=_KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            yield f"event: change\ndata: {json.dumps(sorted(keys))}\n\n"


async def _form(ports: Ports, request: Request) -> dict[str, str]:
    """The posted form, once its CSRF token is checked."""
    body = (await request.body()).decode(errors="replace")
    form = {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}
    ports.guard.check_form(session=request.cookies.get(SESSION_COOKIE), token=form.get("csrf"))
    return form


def _arrival(ports: Ports, request: Request) -> Any:
    correlation_id: UUID = request.path_params["correlation_id"]
    found = ports.timeline.arrivals.get(correlation_id)
    if found is None:
        raise LookupError(f"no arrival {correlation_id} in the events read so far")
    return found


def _group(
    registry: RegistryClient, pipeline: str, wanted: int | None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    listed = registry.versions(pipeline)
    number = wanted or max((v["version"] for v in listed), default=None)
    return listed, registry.version(pipeline, number) if number else None


def _version(registry: RegistryClient, pipeline: str, number: int) -> dict[str, Any] | None:
    try:
        return registry.version(pipeline, number)
    except ApiError as error:
        if error.status_code == 404:
            return None
        raise


def _decide(
    settings: Settings, token: str | None, pipeline: str, version: int, approve: bool, comment: str
) -> None:
    client = RegistryClient(settings.registry_base_url, token=token)
    try:
        client.decide(pipeline, version, approve=approve, comment=comment[:4000])
    finally:
        client.close()


def _rollback(settings: Settings, token: str | None, pipeline: str) -> dict[str, Any]:
    return DeployClient(settings.deploy_base_url, token=token).rollback(pipeline)


def _back(path: str, notice: str) -> RedirectResponse:
    joiner = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{joiner}notice={quote(notice)}", status_code=303)


def _local(path: str | None) -> str:
    """Only a path on this console is a place to go back to (no open redirect)."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path.split("?notice=")[0].split("&notice=")[0]
    return "/"


def _payload(value: bytes) -> str:
    text = value.decode(errors="replace")
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
