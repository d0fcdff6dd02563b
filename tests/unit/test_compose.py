"""docker-compose.yml, the Dockerfile and .dockerignore agree with the code they start.

No Docker engine is needed: the files are parsed and compared with the settings model and the
service packages. Only the last test calls `docker compose config`, and only where it exists.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import importlib.util
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

SERVICES = ("ingest", "train", "evaluate", "registry", "deploy", "console")
MINIO_USERS = "minio-users"  # the one-shot step that makes the buckets and each service's MinIO user
ENV_PREFIX = "CONVEYOR_"
OTLP_GRPC_PORT, OTLP_HTTP_PORT = 4317, 4318
JAEGER_QUERY_PORT = 16686
MINIO_API_PORT = 9000
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ";;"}
_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}")


# --- reading the files ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    assert isinstance(document.get("services"), dict), "docker-compose.yml has no services"
    return document


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    return _final_stage(_instructions(DOCKERFILE.read_text()))


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    service = compose["services"].get(name)
    assert isinstance(service, dict), f"docker-compose.yml has no service {name!r}"
    return service


def _by_image(compose: dict[str, Any], image: str) -> str:
    """Name of the one service whose image is `image` (any tag)."""
    names = [
        name
        for name, service in compose["services"].items()
        if str(service.get("image", "")).split(":")[0].removeprefix("docker.io/") == image
    ]
    assert len(names) == 1, f"expected exactly one service with image {image}, found {names}"
    return names[0]


def _interpolate(value: Any) -> str:
    """The value compose would use with no variable set: `${X:-default}` becomes `default`."""
    return _INTERPOLATION.sub(lambda m: "$" if m.group(0) == "$$" else m.group(2) or "", str(value))


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.split("=", 1) for item in env]
        return {pair[0]: pair[1] if len(pair) == 2 else None for pair in pairs}
    return {key: None if value is None else str(value) for key, value in env.items()}


def _words(value: str | list[Any] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(item) for item in value]


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Each dependency with its condition (the short list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _port_range(text: Any) -> list[int]:
    first, _, last = str(text).split("/")[0].partition("-")
    return list(range(int(first), int(last or first) + 1))


def _ports(service: dict[str, Any]) -> dict[int, int | None]:
    """Container port -> published host port (None when only exposed to the other containers)."""
    ports: dict[int, int | None] = dict.fromkeys(
        (port for entry in service.get("expose", []) for port in _port_range(entry)), None
    )
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            targets, published = _port_range(entry["target"]), entry.get("published")
        else:
            parts = _interpolate(entry).split("/")[0].split(":")
            targets, published = _port_range(parts[-1]), parts[-2] if len(parts) >= 2 else None
        hosts = _port_range(published) if published not in (None, "") else [None] * len(targets)
        ports.update(zip(targets, hosts, strict=False))
    return ports


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    assert host and port.isdigit(), f"{address!r} is not host:port"
    return host, int(port)


def _listener_map(value: str) -> dict[str, str]:
    """`NAME://host:port,...` or `NAME:PROTOCOL,...` as {NAME: rest}."""
    pairs = (item.strip().split(":", 1) for item in value.split(",") if item.strip())
    return {name: rest.removeprefix("//") for name, rest in pairs}


def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    instructions, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def _env_instructions(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in stage:
        if keyword != "ENV":
            continue
        words = shlex.split(arguments)
        if words and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, equals, value = word.partition("=")
            if equals:
                env[key] = value
    return env


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _settings_classes(service_name: str) -> list[type[BaseSettings]]:
    """Settings, then every settings class of `services.<name>.settings` if that module exists."""
    classes: list[type[BaseSettings]] = [Settings]
    module_name = f"services.{service_name}.settings"
    if importlib.util.find_spec(module_name) is not None:
        module = importlib.import_module(module_name)
        classes += [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, BaseSettings) and obj not in (BaseSettings, *classes)
        ]
    return classes


def _settings_env_names(service_name: str) -> tuple[set[str], list[str]]:
    """Variables the settings model reads, with the classes consulted."""
    classes = _settings_classes(service_name)
    names: set[str] = set()
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for field_name, field in cls.model_fields.items():
            names.add(f"{prefix}{field_name}".upper())
            names.update(
                alias.upper() for alias in (field.alias, field.validation_alias) if isinstance(alias, str)
            )
    return names, [f"{cls.__module__}.{cls.__qualname__}" for cls in classes]


def _setting(compose: dict[str, Any], service_name: str, field_name: str) -> str | None:
    """A setting's value in that container: its variable in the file, else the field's default."""
    raw = _environment(_service(compose, service_name)).get(f"{ENV_PREFIX}{field_name.upper()}")
    if raw is not None:
        return _interpolate(raw)
    for cls in reversed(_settings_classes(service_name)):
        if field_name in cls.model_fields:
            default = cls.model_fields[field_name].default
            return None if default is None else str(default)
    return None


def _listeners(compose: dict[str, Any], service_name: str) -> dict[str, tuple[str | None, range]]:
    """Where the settings make that container listen: `<x>_host` with `<x>_port`, or with a range
    given by `<x>_port_base` and `<x>_port_count`."""
    fields = {field for cls in _settings_classes(service_name) for field in cls.model_fields}

    def number(field: str) -> int:
        return int(_setting(compose, service_name, field) or 0)

    listeners: dict[str, tuple[str | None, range]] = {}
    for prefix in (field.removesuffix("_host") for field in fields if field.endswith("_host")):
        host = _setting(compose, service_name, f"{prefix}_host")
        if f"{prefix}_port" in fields:
            listeners[prefix] = (host, range(number(f"{prefix}_port"), number(f"{prefix}_port") + 1))
        elif {f"{prefix}_port_base", f"{prefix}_port_count"} <= fields:
            base = number(f"{prefix}_port_base")
            listeners[prefix] = (host, range(base, base + number(f"{prefix}_port_count")))
    return listeners


def _shell_words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


# --- 1. commands and entry points -----------------------------------------------------------------


def test_the_conveyor_services_are_the_ones_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    built = {name for name, service in compose["services"].items() if "build" in service}
    assert built == {*SERVICES, MINIO_USERS}, (
        f"services built from this repository: {sorted(built)}; expected exactly {sorted(SERVICES)} "
        f"and {MINIO_USERS}"
    )
    for name in SERVICES:
        build = _service(compose, name)["build"]
        spec = {"context": build} if isinstance(build, str) else build
        context, dockerfile = spec.get("context", "."), spec.get("dockerfile", "Dockerfile")
        assert (REPO / context).resolve() == REPO, f"{name}: build context {context!r} is not the repo"
        assert (REPO / context / dockerfile).resolve() == DOCKERFILE, f"{name}: builds {dockerfile!r}"


@pytest.mark.parametrize("name", SERVICES)
def test_service_command_runs_a_real_entry_point(compose: dict[str, Any], name: str) -> None:
    command = _words(_service(compose, name).get("command"))
    assert command == ["python", "-m", f"services.{name}"], (
        f"{name}: command is {command}, expected `python -m services.{name}`"
    )
    module = f"{command[2]}.__main__"
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    assert origin is not None and origin.is_file(), (
        f"{name}: `python -m services.{name}` has no entry point: {module} not found "
        f"(services/{name}/__main__.py is missing)"
    )


# --- 2. environment = real settings ---------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_service_environment_names_only_real_settings(compose: dict[str, Any], name: str) -> None:
    known, classes = _settings_env_names(name)
    env = _environment(_service(compose, name))
    unknown = sorted(key for key in env if key.startswith(ENV_PREFIX) and key.upper() not in known)
    assert not unknown, (
        f"{name}: {unknown} set in docker-compose.yml but read by no settings field "
        f"(consulted {classes}); the service would silently ignore them"
    )


@pytest.mark.parametrize("name", SERVICES)
def test_service_reaches_the_infrastructure_by_service_name(compose: dict[str, Any], name: str) -> None:
    env = _environment(_service(compose, name))
    kafka = _service(compose, "kafka")
    advertised = set(_listener_map(_environment(kafka).get("KAFKA_ADVERTISED_LISTENERS") or "").values())
    bootstrap = (env.get("CONVEYOR_KAFKA_BOOTSTRAP_SERVERS") or "").split(",")
    for address in bootstrap:
        assert address.strip() in advertised, (
            f"{name}: CONVEYOR_KAFKA_BOOTSTRAP_SERVERS={address!r} is not one of kafka's "
            f"advertised listeners {sorted(advertised)}"
        )
    endpoint = _host_port(env.get("CONVEYOR_MINIO_ENDPOINT") or "")
    minio_name = _by_image(compose, "minio/minio")
    assert endpoint == (minio_name, MINIO_API_PORT), (
        f"{name}: CONVEYOR_MINIO_ENDPOINT is {endpoint}, expected {minio_name}:{MINIO_API_PORT}"
    )


@pytest.mark.parametrize("name", SERVICES)
def test_published_ports_are_where_the_service_listens(compose: dict[str, Any], name: str) -> None:
    published = set(_ports(_service(compose, name)))
    listeners = _listeners(compose, name)
    for port in sorted(published):
        assert any(port in ports for _, ports in listeners.values()), (
            f"{name} publishes port {port}, but no <x>_host/<x>_port setting makes it listen there"
        )
    for prefix, (host, ports) in listeners.items():
        if not published & set(ports):
            continue
        assert host in {"0.0.0.0", "::"}, (
            f"{name}: {prefix} listens on {host} inside its container, out of reach of its published "
            f"port(s) (set {ENV_PREFIX}{prefix.upper()}_HOST: 0.0.0.0)"
        )
        unpublished = sorted(set(ports) - published)
        assert not unpublished, f"{name}: {prefix} listens on {unpublished} too, which are not published"


@pytest.mark.parametrize("name", SERVICES)
def test_service_urls_point_at_the_conveyor_services(compose: dict[str, Any], name: str) -> None:
    for key, value in _environment(_service(compose, name)).items():
        target = key.removeprefix(ENV_PREFIX).removesuffix("_URL").lower()
        if not (key.startswith(ENV_PREFIX) and key.endswith("_URL") and target in SERVICES):
            continue
        url, port = urlsplit(_interpolate(value)), _setting(compose, target, f"{target}_port")
        assert (url.hostname, str(url.port)) == (target, port), (
            f"{name}: {key}={value!r}, but {target} listens on {target}:{port}"
        )


# --- 3. Kafka, MinIO, buckets, start-up order -----------------------------------------------------


def test_kafka_is_the_apache_image_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = _service(compose, "kafka")
    image, _, tag = str(kafka.get("image", "")).partition(":")
    assert image == "apache/kafka" and tag and tag != "latest", f"kafka image is {kafka.get('image')!r}"
    env = _environment(kafka)
    roles = {role.strip() for role in (env.get("KAFKA_PROCESS_ROLES") or "").split(",")}
    assert roles == {"broker", "controller"}, f"KAFKA_PROCESS_ROLES is {sorted(roles)}, not broker+controller"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env, "kafka is configured for ZooKeeper, not KRaft"
    zookeepers = [n for n, s in compose["services"].items() if "zookeeper" in str(s.get("image", "")).lower()]
    assert not zookeepers, f"KRaft needs no ZooKeeper, yet the file runs {zookeepers}"
    quorum = env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") or env.get("KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS")
    assert quorum, "KRaft needs KAFKA_CONTROLLER_QUORUM_VOTERS (or ..._BOOTSTRAP_SERVERS)"
    cluster_id = env.get("CLUSTER_ID") or ""
    try:
        raw = base64.urlsafe_b64decode(cluster_id + "==")
    except (binascii.Error, ValueError):
        raw = b""
    assert len(cluster_id) == 22 and len(raw) == 16, (
        f"CLUSTER_ID {cluster_id!r} is not a KRaft cluster id (16 bytes, URL-safe base64, 22 chars)"
    )


def test_kafka_listeners_serve_containers_and_host(compose: dict[str, Any]) -> None:
    kafka = _service(compose, "kafka")
    env = {key: value or "" for key, value in _environment(kafka).items()}
    # A listener may leave its host empty (`NAME://:9092`: every interface); only its port matters.
    listeners = {
        name: int(address.rpartition(":")[2])
        for name, address in _listener_map(env["KAFKA_LISTENERS"]).items()
    }
    advertised = {
        name: _host_port(addr) for name, addr in _listener_map(env["KAFKA_ADVERTISED_LISTENERS"]).items()
    }
    protocols = _listener_map(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"])
    controller = env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "")
    assert controller in listeners and controller not in advertised, f"controller listener {controller!r}"
    assert set(advertised) <= set(listeners), (
        f"advertised {sorted(advertised)} not all in {sorted(listeners)}"
    )
    assert all(protocols.get(name) == "PLAINTEXT" for name in listeners), f"protocol map {protocols}"
    internal = [name for name, (host, _) in advertised.items() if host == "kafka"]
    external = [name for name, (host, _) in advertised.items() if host in {"localhost", "127.0.0.1"}]
    assert len(internal) == 1 and len(external) == 1, (
        f"advertised listeners {advertised}: need one for the other containers (kafka:...) "
        "and one for the host (localhost:...)"
    )
    assert env.get("KAFKA_INTER_BROKER_LISTENER_NAME") == internal[0]
    published = _ports(kafka).get(listeners[external[0]])
    assert published == advertised[external[0]][1], (
        f"the host listener {external[0]} advertises localhost:{advertised[external[0]][1]} but its "
        f"container port {listeners[external[0]]} is published on {published}"
    )


def test_kafka_accepts_the_largest_event_and_suits_one_node(compose: dict[str, Any]) -> None:
    env = {key: value or "" for key, value in _environment(_service(compose, "kafka")).items()}
    largest = Settings.model_fields["kafka_max_message_bytes"].default
    for key in ("KAFKA_MESSAGE_MAX_BYTES", "KAFKA_REPLICA_FETCH_MAX_BYTES"):
        assert env.get(key, "").isdigit() and int(env[key]) >= largest, (
            f"{key}={env.get(key)!r} is below Settings.kafka_max_message_bytes={largest}"
        )
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "").lower() == "true", "auto-create topics is off"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert key in env, f"{key} missing: the default of 3 cannot be met by one broker"
    single_node = [key for key in env if key.endswith(("_REPLICATION_FACTOR", "_MIN_ISR"))]
    wrong = {key: env[key] for key in single_node if env[key] != "1"}
    assert not wrong, f"one broker: these must be 1: {wrong}"


@pytest.mark.parametrize("image", ["apache/kafka", "minio/minio"])
def test_infrastructure_has_a_healthcheck(compose: dict[str, Any], image: str) -> None:
    name = "kafka" if image == "apache/kafka" else _by_image(compose, image)
    check = _service(compose, name).get("healthcheck") or {}
    test = _words(check.get("test"))
    assert test and test[0] != "NONE" and not check.get("disable"), f"{name} has no healthcheck"
    if image == "minio/minio":
        assert not {"curl", "wget"} & set(" ".join(test).split()), "the MinIO image has no curl or wget"


@pytest.mark.parametrize("name", SERVICES)
def test_service_waits_for_healthy_infrastructure_and_buckets(compose: dict[str, Any], name: str) -> None:
    expected = {
        "kafka": "service_healthy",
        _by_image(compose, "minio/minio"): "service_healthy",
        MINIO_USERS: "service_completed_successfully",
    }
    deps = _depends_on(_service(compose, name))
    wrong = {dep: deps.get(dep) for dep, condition in expected.items() if deps.get(dep) != condition}
    assert not wrong, f"{name}: depends_on {wrong}, expected {expected}"


def test_the_minio_users_step_makes_every_services_user_with_the_root_keys(compose: dict[str, Any]) -> None:
    from infra.minio_users import environment_names
    from shared.access import WRITES

    service = _service(compose, MINIO_USERS)
    assert _words(service.get("command")) == ["python", "-m", "infra", "minio-users"]
    assert _depends_on(service).get(_by_image(compose, "minio/minio")) == "service_healthy"
    env = _environment(service)
    assert _host_port(_interpolate(env["CONVEYOR_MINIO_ENDPOINT"])) == ("minio", MINIO_API_PORT)
    minio_env = _environment(_service(compose, _by_image(compose, "minio/minio")))
    for setting, root in [
        ("CONVEYOR_MINIO_ACCESS_KEY", "MINIO_ROOT_USER"),
        ("CONVEYOR_MINIO_SECRET_KEY", "MINIO_ROOT_PASSWORD"),
    ]:
        assert env.get(setting) is not None and env.get(setting) == minio_env.get(root), (
            f"{MINIO_USERS}: {setting}={env.get(setting)!r}, MinIO: {root}={minio_env.get(root)!r}"
        )
    for name in WRITES:
        for variable in environment_names(name):
            assert env.get(variable) == f"${{{variable}:?set {variable} (see the top of this file)}}", (
                f"{MINIO_USERS}: {variable} is not required from the environment"
            )
    assert service.get("restart") == "no", "a one-shot step must not restart"


def test_the_minio_users_command_exists_and_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.__main__ import main

    for name in [name for name in os.environ if name.startswith("CONVEYOR_MINIO_")]:
        monkeypatch.delenv(name)
    assert main(["minio-users"]) == 1
    assert "set CONVEYOR_MINIO_INGEST_ACCESS_KEY, CONVEYOR_MINIO_INGEST_SECRET_KEY" in capsys.readouterr().err


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_with_its_own_minio_user_not_the_root_keys(
    compose: dict[str, Any], name: str
) -> None:
    from infra.minio_users import environment_names

    env = _environment(_service(compose, name))
    access, secret = environment_names(name)
    assert env["CONVEYOR_MINIO_ACCESS_KEY"] == f"${{{access}:?set {access} (see the top of this file)}}"
    assert env["CONVEYOR_MINIO_SECRET_KEY"] == f"${{{secret}:?set {secret} (see the top of this file)}}"


# --- 4. traces ------------------------------------------------------------------------------------


def test_jaeger_receives_otlp_from_every_service(compose: dict[str, Any]) -> None:
    jaeger_names = [n for n, s in compose["services"].items() if "jaeger" in str(s.get("image", ""))]
    assert len(jaeger_names) == 1, f"expected one Jaeger service, found {jaeger_names}"
    jaeger = _service(compose, jaeger_names[0])
    assert not str(jaeger["image"]).endswith(":latest") and ":" in str(jaeger["image"]), "pin Jaeger"
    assert (_environment(jaeger).get("COLLECTOR_OTLP_ENABLED") or "true").lower() == "true"
    ports = _ports(jaeger)
    assert {OTLP_GRPC_PORT, OTLP_HTTP_PORT} <= set(ports), f"Jaeger ports {sorted(ports)} lack OTLP"
    for name in SERVICES:
        endpoint = _environment(_service(compose, name)).get("CONVEYOR_OTLP_ENDPOINT") or ""
        url = urlsplit(endpoint)
        # The project exports with opentelemetry-exporter-otlp-proto-http: OTLP over HTTP.
        assert (url.scheme, url.hostname, url.port) == ("http", jaeger_names[0], OTLP_HTTP_PORT), (
            f"{name}: CONVEYOR_OTLP_ENDPOINT={endpoint!r}, expected http://{jaeger_names[0]}:{OTLP_HTTP_PORT}"
        )


def test_the_console_reads_traces_from_the_jaeger_query_port(compose: dict[str, Any]) -> None:
    jaeger = next(n for n, s in compose["services"].items() if "jaeger" in str(s.get("image", "")))
    url = urlsplit(_environment(_service(compose, "console")).get("CONVEYOR_JAEGER_QUERY_URL") or "")
    assert (url.scheme, url.hostname, url.port) == ("http", jaeger, JAEGER_QUERY_PORT)
    assert JAEGER_QUERY_PORT in set(_ports(_service(compose, jaeger)))


# --- 5. the image ---------------------------------------------------------------------------------


def test_dockerfile_base_and_start_command(dockerfile: list[tuple[str, str]]) -> None:
    base = dockerfile[0][1].split()[0]
    assert base.split("@")[0] == "python:3.11-slim", f"the image starts FROM {base}"
    entrypoints = [args for keyword, args in dockerfile if keyword == "ENTRYPOINT"]
    assert not entrypoints, (
        f"ENTRYPOINT {entrypoints} would be prepended to each compose command (python -m ...)"
    )
    for args in (args for keyword, args in dockerfile if keyword == "CMD"):
        try:
            command = json.loads(args)
        except json.JSONDecodeError:
            command = None
        assert isinstance(command, list) and command[:1] == ["python"], f"CMD {args} is not exec-form python"


def test_dockerfile_installs_the_project_without_dev_extras(dockerfile: list[tuple[str, str]]) -> None:
    runs = [args for keyword, args in dockerfile if keyword == "RUN"]
    assert not any("[dev]" in run or "--editable" in run or " -e " in run for run in runs), (
        "the image installs dev extras or an editable copy"
    )
    installs = [run for run in runs if re.search(r"pip install\b[^&;|]*\s\.(\s|$|&|;)", run)]
    assert installs, f"no RUN does `pip install .`: {runs}"
    assert any("--no-deps" not in run for run in installs), "no `pip install .` installs the dependencies"
    project = _pyproject()["project"]["name"]
    assert not re.search(rf"pip uninstall\b.*\b{re.escape(project)}\b", installs[-1]), (
        f"the last `pip install .` uninstalls {project} again: the image would not contain the project"
    )
    user = "root"
    for keyword, args in dockerfile:
        user = args.split(":")[0] if keyword == "USER" else user
        assert not (keyword == "RUN" and "pip install" in args and user not in {"root", "0"}), (
            f"`{args}` runs as USER {user}: it cannot write to the system site-packages"
        )


def test_dockerfile_copies_every_package_and_runs_as_non_root(dockerfile: list[tuple[str, str]]) -> None:
    copied: set[str] = set()
    for keyword, args in dockerfile:
        if keyword in {"COPY", "ADD"}:
            words = json.loads(args) if args.startswith("[") else shlex.split(args)
            sources = [word for word in words if not word.startswith("--")][:-1]  # the last is the target
            copied.update(source.removeprefix("./").rstrip("/") or "." for source in sources)
    find = _pyproject()["tool"]["setuptools"]["packages"]["find"]
    packages = sorted({pattern.rstrip("*").rstrip(".") for pattern in find.get("include", [])})
    missing = [name for name in ["pyproject.toml", *packages] if name not in copied and "." not in copied]
    assert not missing, f"the Dockerfile never copies {missing} into the image"
    users = [args.split(":")[0] for keyword, args in dockerfile if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"the services would run as root (USER {users})"


def test_dockerfile_turns_bentoml_tracking_off(dockerfile: list[tuple[str, str]]) -> None:
    value = _env_instructions(dockerfile).get("BENTOML_DO_NOT_TRACK")
    assert value is not None and value.lower() in {"true", "1"}, (
        f"BENTOML_DO_NOT_TRACK is {value!r}: BentoML would send usage data from every container"
    )


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    assert DOCKERIGNORE.is_file(), f"{DOCKERIGNORE} is missing"
    patterns = {line.strip().strip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    missing = {".venv", ".git", "tests"} - patterns
    assert not missing, f".dockerignore does not exclude {sorted(missing)}"
    assert patterns & {"**/__pycache__", "__pycache__"}, ".dockerignore does not exclude __pycache__"
    needed = {"pyproject.toml", "shared", "services", "infra", "*", "**"}
    assert not patterns & needed, f".dockerignore excludes what the image needs: {patterns & needed}"


# --- 6. secrets: required, never shipped -----------------------------------------------------------

SECRET_VARIABLES = (
    "CONVEYOR_MINIO_ACCESS_KEY",
    "CONVEYOR_MINIO_SECRET_KEY",
    "CONVEYOR_API_TOKENS",
    *(f"CONVEYOR_MINIO_{name.upper()}_{half}_KEY" for name in SERVICES for half in ("ACCESS", "SECRET")),
)
_REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]+\}$")


def _secret_values(compose: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(service, variable, raw value) of every credential any container gets."""
    names = {*SECRET_VARIABLES, "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    return [
        (service_name, key, value or "")
        for service_name, service in compose["services"].items()
        for key, value in _environment(service).items()
        if key in names
    ]


def test_every_credential_is_required_from_the_environment(compose: dict[str, Any]) -> None:
    found = _secret_values(compose)
    assert {key for _, key, _ in found} >= {*SECRET_VARIABLES, "MINIO_ROOT_PASSWORD"}
    for service_name, key, value in found:
        required = _REQUIRED.match(value)
        assert required and required.group(1) in SECRET_VARIABLES, (
            f"{service_name}: {key}={value!r} is not ${{CONVEYOR_...:?why}}: compose starts without it"
        )


def test_no_well_known_secret_is_in_the_file() -> None:
    from shared.secrets import WELL_KNOWN_SECRETS

    text = COMPOSE_FILE.read_text()
    assert [secret for secret in WELL_KNOWN_SECRETS if secret in text] == []


@pytest.mark.parametrize("name", ["registry", "deploy"])
def test_the_http_services_get_the_api_tokens(compose: dict[str, Any], name: str) -> None:
    assert "CONVEYOR_API_TOKENS" in _environment(_service(compose, name)), (
        f"{name} listens on 0.0.0.0: without CONVEYOR_API_TOKENS it would refuse to start"
    )


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_names_its_own_kafka_principal_with_sasl_off_by_default(
    compose: dict[str, Any], name: str
) -> None:
    from shared.messaging.acls import SERVICES as PRINCIPALS

    env = _environment(_service(compose, name))
    assert name in PRINCIPALS and env["CONVEYOR_KAFKA_SASL_USERNAME"] == name
    # Its own variable, no working default: with SASL on and none set, the service says so and stops.
    assert env["CONVEYOR_KAFKA_SASL_PASSWORD"] == f"${{CONVEYOR_KAFKA_{name.upper()}_PASSWORD:-}}"
    assert Settings(kafka_sasl=_interpolate(env["CONVEYOR_KAFKA_SASL"])).kafka_sasl is False


# --- 7. the real parser ---------------------------------------------------------------------------

# What a user puts in .env (`conveyor token --env`); compose refuses the file without them.
TEST_SECRETS = {
    "CONVEYOR_MINIO_ACCESS_KEY": "compose-test",
    "CONVEYOR_MINIO_SECRET_KEY": "compose-test-secret",
    "CONVEYOR_API_TOKENS": '{"t": {"user": "u", "role": "admin"}}',
    **{
        name: f"compose-test-{name.lower()}"
        for name in SECRET_VARIABLES
        if name.startswith("CONVEYOR_MINIO_")
    },
}


def _compose(*args: str, secrets: bool = True) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not on PATH: `docker compose config` not run")
    env = {k: v for k, v in os.environ.items() if k not in TEST_SECRETS}
    return subprocess.run(
        [docker, "compose", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**env, **TEST_SECRETS} if secrets else env,
    )


def test_docker_compose_config_accepts_the_file(compose: dict[str, Any]) -> None:
    if _compose("version").returncode != 0:
        pytest.skip("docker is on PATH but has no compose plugin: `docker compose config` not run")
    result = _compose("-f", str(COMPOSE_FILE), "config", "-q")
    if result.returncode != 0 and "Cannot connect to the Docker daemon" in result.stderr:
        pytest.skip("this docker compose needs an engine even for `config`")
    assert result.returncode == 0, f"docker compose config rejected the file:\n{result.stderr}"
    missing = _compose("-f", str(COMPOSE_FILE), "config", "-q", secrets=False)
    assert missing.returncode != 0 and "CONVEYOR_" in missing.stderr, "compose started without secrets"
    # compose's own reading of the anchors and merge keys must match the one checked above.
    resolved = json.loads(_compose("-f", str(COMPOSE_FILE), "config", "--format", "json").stdout)
    for name in SERVICES:
        ours, theirs = _service(compose, name), resolved["services"][name]
        assert theirs["command"] == _words(ours["command"]), f"{name}: compose reads another command"
        conditions = {dep: spec["condition"] for dep, spec in theirs["depends_on"].items()}
        assert conditions == _depends_on(ours), f"{name}: compose reads other depends_on {conditions}"
        assert set(theirs["environment"]) == set(_environment(ours)), f"{name}: environment differs"


# --- 4. scaling out (cluster mode) ----------------------------------------------------------------

SCALABLE = ("ingest", "train", "evaluate")


@pytest.mark.parametrize("name", SCALABLE)
def test_consumer_services_scale_by_deploy_replicas_defaulting_to_one(
    compose: dict[str, Any], name: str
) -> None:
    replicas = str(_service(compose, name).get("deploy", {}).get("replicas", ""))
    assert _INTERPOLATION.fullmatch(replicas), f"{name}: deploy.replicas {replicas!r} is not a ${{VAR:-1}}"
    assert _interpolate(replicas) == "1", f"{name}: deploy.replicas defaults to {_interpolate(replicas)}"
    assert not _ports(_service(compose, name)), f"{name}: a published port would stop a second replica"


def test_kafka_partitions_match_the_settings_default(compose: dict[str, Any]) -> None:
    env = _environment(_service(compose, "kafka"))
    assert str(env.get("KAFKA_NUM_PARTITIONS")) == str(Settings.model_fields["kafka_partitions"].default)
