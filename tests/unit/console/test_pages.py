"""The console's guard and templates: CSRF, approver tokens, escaping, the vendored script."""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.console.app import HERE, templates
from services.console.guard import Guard, Refused
from services.console.pages import RELEASE_ACTIONS, _local
from services.console.timeline import Timeline
from services.console.views import arrival_steps, pipeline_rows
from services.deploy.records import ReleaseState
from shared.events import DataArrived, ReleaseWindow, VersionFigures
from shared.release import ReleaseSpec

TOKENS = SecretStr('{"good": {"user": "ann", "role": "approver"}, "look": {"user": "bob", "role": "reader"}}')


def guard() -> Guard:
    return Guard.create(secret=SecretStr("s"), tokens=TOKENS)


def test_a_form_needs_the_csrf_token_of_its_own_session() -> None:
    g = guard()
    session = g.new_session()
    g.check_form(session=session, token=g.csrf_token(session))
    for other_session, token in [(session, "forged"), (g.new_session(), g.csrf_token(session)), (None, None)]:
        with pytest.raises(Refused) as refused:
            g.check_form(session=other_session, token=token)
        assert refused.value.status_code == 403 and "CSRF" in refused.value.message


def test_each_action_needs_a_token_whose_role_allows_it() -> None:
    g = guard()
    assert g.allowed("good", role="approver").user == "ann"
    assert g.allowed("look", role=None).user != "ann"  # any valid token signs in
    for token, role, status in [
        (None, None, 401),
        ("", "approver", 401),
        ("bad", None, 401),
        ("look", "approver", 403),
        ("good", "operator", 403),  # an approver may not roll back or replay
    ]:
        with pytest.raises(Refused) as refused:
            g.allowed(token, role=role)
        assert refused.value.status_code == status


def test_sign_in_goes_back_only_to_a_console_path() -> None:
    assert _local("/groups/churn?version=2&notice=x") == "/groups/churn?version=2"
    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil", None, ""):
        assert _local(elsewhere) == "/"


def test_markup_from_events_is_escaped_in_every_template_that_shows_it() -> None:
    payload = "<script>alert(1)</script>"
    timeline = Timeline()
    arrival = DataArrived.first(
        producer="sdk", pipeline="churn", uri=f"s3://conveyor-landing/churn/{payload}.csv"
    )
    timeline.add(arrival)
    env = templates().env
    found = timeline.arrivals[arrival.correlation_id]
    graph = env.get_template("_graph.html").render(arrival=found, steps=arrival_steps(found))
    error = env.get_template("error.html").render(title=payload, message=payload, csrf="c")
    rows = env.get_template("_pipelines.html").render(rows=pipeline_rows(timeline))
    for html in (graph, error):
        assert payload not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "churn" in rows


def test_pages_load_only_their_own_scripts() -> None:
    base = (HERE / "templates" / "base.html").read_text()
    sources = re.findall(r'<script src="([^"]+)"', base)
    assert sources == ["/static/vendor/htmx.min.js", "/static/console.js"]
    assert "<script>" not in "".join(p.read_text() for p in (HERE / "templates").glob("*.html"))


def test_the_vendored_htmx_is_the_pinned_npm_file_with_its_licence() -> None:
    vendor = HERE / "static" / "vendor"
    recorded = re.search(r"\| htmx.min.js \|.*\| ([0-9a-f]{64}) \|", (vendor / "README.md").read_text())
    assert recorded is not None
    assert hashlib.sha256((vendor / "htmx.min.js").read_bytes()).hexdigest() == recorded.group(1)
    assert "Zero-Clause BSD" in (vendor / "htmx.LICENSE").read_text()
    assert Path(vendor / "htmx.min.js").read_text().count("2.0.11") >= 1


def test_a_release_shows_its_windows_and_actions_with_breaches_as_text() -> None:
    breach = "server errors: 6 of 60 <b>requests</b>"
    window = ReleaseWindow(
        step=1,
        share=10.0,
        seconds=60.0,
        candidate=VersionFigures(version=2, requests=60, errors=6, error_rate=0.1, p99_ms=9.5, accuracy=0.5),
        baseline=VersionFigures(version=1, requests=540, errors=0, error_rate=0.0, p99_ms=8.0, accuracy=0.96),
        prediction_psi=0.01,
        breaches=[breach],
    )
    state = ReleaseState(
        version=2,
        baseline=1,
        strategy="canary",
        spec=ReleaseSpec(strategy="canary"),
        approval_event_id=uuid.uuid4(),
        windows=[window],
    )
    deployment = {"pipeline": "churn", "release": state.model_dump(mode="json")}
    html = templates().env.get_template("_release.html").render(d=deployment, csrf="c")
    assert "canary of v2 beside v1 · window 1 · running" in html
    assert "60 / 540" in html and "6 / 0" in html and "0.5 / 0.96" in html
    assert "<b>" not in html and "&lt;b&gt;requests&lt;/b&gt;" in html
    for action in RELEASE_ACTIONS:
        assert f'action="/deployments/churn/release/{action}"' in html
    assert (
        templates()
        .env.get_template("_release.html")
        .render(d={"pipeline": "churn", "release": None}, csrf="c")
        .strip()
        == ""
    )
