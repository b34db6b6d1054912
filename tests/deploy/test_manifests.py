"""Static checks of the deployment files against the code they start.

deploy/docker/Dockerfile, docker-compose.yml and deploy/k8s/ are parsed (PyYAML, a small
Dockerfile reader) and compared with the code base:

* every process command is a real entry point: the uvicorn factory is importable, each Celery
  ``-A`` module exists, defines ``app`` and is the one ``services.launcher`` starts, ``-Q`` is the
  queue ``shared.celery_app`` routes that service's tasks to, ``wardrobe ...`` parses with the real
  CLI (health checks are ``wardrobe ping`` of the container's own service, the one-shot database
  preparation is ``wardrobe migrate``; no ``python -c`` one-liners);
* each image installs its service's extra and, where it runs a model, exactly one ONNX Runtime
  build (the ``cpu`` or ``gpu`` extra, chosen by the ``ORT_BUILD`` build argument);
* every environment variable set for a Wardrobe container is a field of that service's settings
  class (case-insensitively, as pydantic-settings reads them), and its value validates;
* probes and health checks hit real gateway routes on the port uvicorn listens on;
* compose ``depends_on`` / volumes, kustomization resources / patches / components, ConfigMap /
  Secret / PVC / HPA references all resolve;
* every settings field is documented in docs/deploy.md.

No network, no Docker engine. If ``kubectl`` (with its built-in kustomize) or ``kustomize`` is on
PATH, the overlays are also rendered and the rendered objects checked, every one (but KEDA's, checked
against their CRDs' schemas) strictly against Kubernetes 1.37's schemas (kubernetes-validate, offline);
otherwise that is skipped.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.gateway.config import GatewaySettings
from services.hedger.config import HedgerSettings
from services.inference.config import InferenceSettings
from services.sweeper.config import SweeperSettings
from services.trainer.config import TrainerSettings
from shared.celery_app import QUEUES
from shared.config import CommonSettings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
K8S = REPO / "deploy" / "k8s"
DOCS = REPO / "docs" / "deploy.md"

SERVICES = ("gateway", "inference", "hedger", "sweeper", "trainer")
WORKERS = ("inference", "hedger", "sweeper")
# Which settings class reads a container's environment (by container / compose service name, else
# by image name). The migrations run from the gateway image but read only the common settings.
SETTINGS: dict[str, type[CommonSettings]] = {
    "gateway": GatewaySettings,
    "inference": InferenceSettings,
    "hedger": HedgerSettings,
    "trainer": TrainerSettings,
    "sweeper": SweeperSettings,
    "migrate": CommonSettings,
}
# Environment variables that configure Python itself rather than Wardrobe.
RUNTIME_ENV = {"PATH", "HOME", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_DISABLE_PIP_VERSION_CHECK"}
GATEWAY_PORT = 8000


# --- readers --------------------------------------------------------------------------------------
@dataclass
class Stage:
    name: str
    base: str
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    healthcheck: list[str] | None = None
    user: str | None = None
    expose: list[int] = field(default_factory=list)
    copies_from: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: dict[str, Stage]

    def chain(self, name: str) -> list[Stage]:
        """``name`` and the stages it is built FROM, outermost first."""
        out = [self.stages[name]]
        while out[-1].base in self.stages:
            out.append(self.stages[out[-1].base])
        return out

    def resolved(self, name: str) -> Stage:
        """The stage with what it inherits (ENV, CMD, ENTRYPOINT, HEALTHCHECK, USER) filled in."""
        chain = self.chain(name)
        merged = Stage(name, chain[-1].base)
        for stage in reversed(chain):
            merged.env.update(stage.env)
            if stage.entrypoint is not None:
                merged.entrypoint, merged.cmd = stage.entrypoint, None  # ENTRYPOINT resets CMD
            for attr in ("cmd", "healthcheck", "user"):
                if getattr(stage, attr) is not None:
                    setattr(merged, attr, getattr(stage, attr))
            merged.expose += stage.expose
        return merged

    def argv(self, name: str) -> list[str]:
        stage = self.resolved(name)
        return (stage.entrypoint or []) + (stage.cmd or [])


def _instructions(text: str) -> list[tuple[str, str]]:
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):  # comment lines inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, rest = buf.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buf = ""
    return out


@cache
def dockerfile() -> Dockerfile:
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in _instructions(DOCKERFILE.read_text()):
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            (args if current is None else current.args)[name] = default
        elif keyword == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert m, f"every stage is named: FROM {rest}"
            current = stages.setdefault(m.group(2), Stage(m.group(2), m.group(1)))
        elif current is None:
            continue
        elif keyword == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                current.env[key] = value
        elif keyword in ("CMD", "ENTRYPOINT"):
            setattr(current, keyword.lower(), json.loads(rest))  # exec form only
        elif keyword == "HEALTHCHECK":
            m = re.search(r"\bCMD\s+(\[.*\])\s*$", rest)
            assert m, f"HEALTHCHECK in exec form: {rest}"
            current.healthcheck = json.loads(m.group(1))
        elif keyword == "USER":
            current.user = rest
        elif keyword == "EXPOSE":
            current.expose += [int(p.split("/")[0]) for p in rest.split()]
        elif keyword == "COPY":
            current.copies_from += re.findall(r"--from=(\S+)", rest)
        elif keyword == "RUN":
            current.runs.append(rest)
    return Dockerfile(args, stages)


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


@cache
def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def static_objects(directory: Path) -> list[dict]:
    """The objects a kustomization's ``resources`` list, recursively (no patches applied)."""
    out: list[dict] = []
    for entry in kustomization(directory).get("resources", []):
        path = (directory / entry).resolve()
        out += static_objects(path) if path.is_dir() else _load_all(path)
    return out


def secret_templates() -> dict[str, dict]:
    """The Secrets of base/secret.example.yaml by name (wardrobe-secrets, wardrobe-gateway-secrets)."""
    return {o["metadata"]["name"]: o for o in _load_all(K8S / "base" / "secret.example.yaml")}


@cache
def gateway_app():
    pytest.importorskip("fastapi")
    from services.gateway.main import create_app

    # Building the app touches neither Redis nor the database (the lifespan does, at start-up).
    return create_app(GatewaySettings(redis_url="redis://unused.invalid:6379/0"))


def is_gateway_route(path: str, method: str = "GET") -> bool:
    """Whether the gateway's router fully matches ``method path``: the routing itself, not a list of
    route objects (FastAPI's included routers are not plain routes)."""
    from starlette.routing import Match

    scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": [], "query_string": b""}
    return any(route.matches(scope)[0] == Match.FULL for route in gateway_app().router.routes)


def settings_fields(cls: type[CommonSettings]) -> set[str]:
    assert not cls.model_config.get("env_prefix"), "env var names are the bare field names"
    assert not cls.model_config.get("case_sensitive"), "env var names match fields case-insensitively"
    return {name.lower() for name in cls.model_fields}


def image_service(image: str) -> str | None:
    """``registry.example.com/wardrobe/inference-gpu:1.0`` -> ``inference``; None if not ours."""
    repo = image.split("@", 1)[0]
    if "wardrobe/" not in repo:
        return None
    name = repo.rsplit("/", 1)[-1].split(":", 1)[0].removesuffix("-gpu")
    return name if name in SERVICES else None


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: Any) -> str:
    """Compose's ``${VAR:-default}`` with VAR unset."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))


# --- checks shared by compose, k8s and the Dockerfile -------------------------------------------
def check_env(service: str, env: dict[str, str | None], where: str) -> None:
    """Names are settings fields of ``service``; values (where known) validate."""
    cls = SETTINGS[service]
    fields = settings_fields(cls)
    unknown = sorted(k for k in env if k.lower() not in fields and k not in RUNTIME_ENV)
    assert not unknown, f"{where}: {unknown} are not fields of {cls.__name__} (typo? pydantic ignores them)"
    values = {k.lower(): v for k, v in env.items() if k not in RUNTIME_ENV and v not in (None, "")}
    if "redis_url" in {n for n, f in cls.model_fields.items() if f.is_required()}:
        values.setdefault("redis_url", "redis://unused.invalid:6379/0")
    cls(**values)  # raises ValidationError on e.g. BATCH_MAX_SIZE: "abc"


def check_command(argv: list[str], service: str, where: str) -> None:
    assert argv, f"{where}: no command"
    prog = Path(argv[0]).name
    if prog == "uvicorn":
        assert service == "gateway", f"{where}: uvicorn outside the gateway"
        assert "--factory" in argv, f"{where}: create_app is a factory: pass --factory"
        protocol = argv[argv.index("--http") + 1] if "--http" in argv else None  # module:Class too
        (target,) = [a for a in argv[1:] if re.fullmatch(r"[\w.]+:\w+", a) and a != protocol]
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), f"{where}: {target}"
        port = int(argv[argv.index("--port") + 1])
        assert port == GATEWAY_PORT, f"{where}: uvicorn listens on {port}"
        assert argv[argv.index("--host") + 1] == "0.0.0.0", f"{where}: must listen beyond loopback"
        if "--loop" in argv or "--http" in argv:  # the image names them (the launcher leaves them to auto)
            assert argv[argv.index("--loop") + 1] == "uvloop", f"{where}: --loop"
            assert argv[argv.index("--http") + 1] == "services.gateway.http:BoundedHttpTools", f"{where}: --http"
    elif prog == "celery":
        check_celery(argv, service, where)
    elif prog.startswith("python") and argv[1:2] == ["-c"]:
        pytest.fail(f"{where}: a `python -c` one-liner; use a `wardrobe` command (services/cli.py)")
    elif prog == "wardrobe":
        check_wardrobe_cli(argv[1:], service, where)
    elif prog == "sleep":  # preStop pauses
        assert len(argv) == 2 and argv[1].isdigit(), f"{where}: {argv}"
    else:
        pytest.fail(f"{where}: unknown entry point {argv}")


def check_celery(argv: list[str], service: str, where: str) -> None:
    from services.launcher import WORKER_MODULES
    from shared.celery_app import QUEUES, TASK_ROUTES

    module = argv[argv.index("-A") + 1]
    assert module == WORKER_MODULES[service], f"{where}: -A {module}, launcher uses {WORKER_MODULES[service]}"
    spec = importlib.util.find_spec(module)  # not imported: it reads REDIS_URL and loads onnxruntime
    assert spec is not None and spec.origin, f"{where}: no module {module}"
    tree = ast.parse(Path(spec.origin).read_text())
    assigned = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert "app" in assigned, f"{where}: {module} defines no Celery `app`"
    assert argv[argv.index("-A") + 2] == "worker", f"{where}: not a worker: {argv}"
    queues = argv[argv.index("-Q") + 1].split(",")
    assert set(queues) <= set(QUEUES), f"{where}: queues {queues} not in shared.celery_app.QUEUES {QUEUES}"
    assert queues == [service], f"{where}: the {service} worker must consume only its own queue"
    assert TASK_ROUTES[f"{service}.*"] == {"queue": service}, f"{where}: {service}.* not routed to {service}"
    node = argv[argv.index("-n") + 1]
    assert node == f"{service}@%h", f"{where}: node {node!r}; the liveness ping expects {service}@%h"


def check_wardrobe_cli(args: list[str], service: str, where: str) -> None:
    """``wardrobe ARGS`` parses with the real CLI; ``ping`` checks the container's own service (a
    worker its own queue's node, the gateway its own port and a real route); ``migrate`` runs only
    where the migrations run."""
    from services.cli import build_parser

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["wardrobe"] == "services.cli:main"
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as exc:  # --help exits 0; a bad option exits 2
        assert exc.code == 0, f"{where}: `wardrobe {' '.join(args)}` does not parse"
        return
    if parsed.command == "ping":
        assert parsed.target == service, f"{where}: a {service} container pings {parsed.target}"
        if service == "gateway":
            url = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/?", parsed.url)
            assert url and int(url.group(1)) == GATEWAY_PORT, f"{where}: pings {parsed.url}"
            assert is_gateway_route("/readyz" if parsed.ready else "/healthz"), where
        else:
            assert parsed.node is None, f"{where}: the default node <queue>@<hostname> is the one `-n` names"
    if parsed.command == "migrate":
        assert service in ("migrate", "gateway"), f"{where}: migrations run from the gateway image"


def wardrobe_ping(argv: list[str] | None) -> tuple[str, bool] | None:
    """(target, --ready) of a ``wardrobe ping`` command, else None."""
    if not argv or Path(argv[0]).name != "wardrobe" or argv[1:2] != ["ping"]:
        return None
    from services.cli import build_parser

    parsed = build_parser().parse_args(argv[1:])
    return parsed.target, parsed.ready


# --- Dockerfile -----------------------------------------------------------------------------------
ORT_BUILDS = ("cpu", "gpu")  # the extras holding the two ONNX Runtime builds; an image gets at most one


def image_extras() -> dict[str, set[str]]:
    """Each image the Dockerfile can build -> the extras its ``pip install '.[...]'`` installs.
    A ``${ORT_BUILD}`` in the install line is expanded to every ONNX Runtime build (the default
    names the image after its target, the other ``<target>-<build>``)."""
    df = dockerfile()
    images: dict[str, set[str]] = {}
    for service in SERVICES:
        build = f"build-{service}"
        assert build in df.stages[service].copies_from, f"{service} takes its venv from {build}"
        installs = [r for r in df.stages[build].runs if "pip install" in r]
        assert len(installs) == 1, f"{build}: one pip install"
        m = re.search(r"""["']\.\[([^\]]*)\]["']""", installs[0])
        assert m, f"{build} must pip install '.[<extras>]': {installs[0]}"
        extras = m.group(1).split(",")
        if "${ORT_BUILD}" in extras:
            default = df.stages[build].args.get("ORT_BUILD")
            assert default in ORT_BUILDS, f"{build}: ORT_BUILD defaults to {default!r}"
            for ort in ORT_BUILDS:
                name = service if ort == default else f"{service}-{ort}"
                images[name] = {e if e != "${ORT_BUILD}" else ort for e in extras}
        else:
            images[service] = set(extras)
    return images


def test_dockerfile_has_one_target_per_service_on_python_311_slim() -> None:
    df = dockerfile()
    assert df.args["PYTHON_IMAGE"] == "python:3.11-slim"
    images = image_extras()
    for service in SERVICES:
        assert service in df.stages, f"no `{service}` target"
        assert df.chain(service)[-1].base == "${PYTHON_IMAGE}"
    for image, extras in images.items():
        service = image.split("-")[0]
        assert service in extras, f"{image} must install the {service} extra"
        assert not extras & (set(SERVICES) - {service}), f"{image} installs another service's extra: {extras}"
        runs_a_model = service in ("inference", "trainer")
        assert len(extras & set(ORT_BUILDS)) == (1 if runs_a_model else 0), f"{image}: ONNX Runtime builds {extras}"
    assert images["inference"] == {"inference", "cpu"}, "the default inference image is the small CPU one"
    assert images["inference-gpu"] == {"inference", "gpu"}


def test_images_run_as_an_unprivileged_user() -> None:
    df = dockerfile()
    for service in SERVICES:
        user = df.resolved(service).user
        assert user and user.split(":")[0] not in ("root", "0"), f"{service} runs as {user!r}"


def _requirements(extra: str | None) -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + (list(project["optional-dependencies"][extra]) if extra else [])
    names = set()
    for req in reqs:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
        if name == "wardrobe":  # wardrobe[a,b]
            for sub in re.search(r"\[(.*)\]", req).group(1).split(","):
                names |= _requirements(sub.strip())
        else:
            names.add(name)
    return names


ORT_DISTRIBUTIONS = {"onnxruntime", "onnxruntime-gpu"}  # both install the `onnxruntime` module


def test_extras_keep_torch_out_of_serving_images() -> None:
    for service in ("gateway", "hedger", "inference", "sweeper"):
        assert not {"torch", "torchvision"} & _requirements(service), f"{service} would get torch"
    assert "torch" in _requirements("trainer")
    assert _requirements("cpu") & ORT_DISTRIBUTIONS == {"onnxruntime"}
    assert _requirements("gpu") & ORT_DISTRIBUTIONS == {"onnxruntime-gpu"}
    for service in SERVICES:  # the build is chosen next to the service's extra, never inside it
        assert not _requirements(service) & ORT_DISTRIBUTIONS, f"{service}'s extra pins an ONNX Runtime build"


def test_no_environment_gets_both_onnxruntime_builds() -> None:
    """Each image, and `all` (make up / make test / CI), `all-gpu`: at most one build."""
    environments = {image: extras for image, extras in image_extras().items()}
    environments |= {"all": {"all"}, "all-gpu": {"all-gpu"}}
    for name, extras in environments.items():
        found = set().union(*(_requirements(e) for e in extras)) & ORT_DISTRIBUTIONS
        expected = 1 if name.split("-")[0] in ("inference", "trainer", "all") else 0
        assert len(found) == expected, f"{name} installs {found or 'no ONNX Runtime'}"


def test_dockerfile_commands_are_real_entry_points() -> None:
    df = dockerfile()
    for service in SERVICES:
        check_command(df.argv(service), service, f"Dockerfile target {service}")


def test_gateway_serves_on_uvloop_and_httptools() -> None:
    """The image names them; the gateway extra installs them; here (the launcher's `auto`) uvicorn
    picks them: less CPU per request than asyncio + h11 (bench/rehedge.py)."""
    argv = dockerfile().argv("gateway")
    assert "--loop" in argv and "--http" in argv, "the gateway image leaves the event loop / HTTP parser to auto"
    assert {"uvloop", "httptools"} <= _requirements("gateway")
    import uvloop
    from uvicorn.config import Config
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    loop = Config("services.gateway.main:create_app", factory=True, loop="auto").get_loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    assert AutoHTTPProtocol is HttpToolsProtocol


def test_dockerfile_health_checks() -> None:
    df = dockerfile()
    gateway = df.resolved("gateway")
    assert GATEWAY_PORT in gateway.expose
    check_command(gateway.healthcheck, "gateway", "Dockerfile gateway HEALTHCHECK")
    assert wardrobe_ping(gateway.healthcheck) == ("gateway", False), "the image's own check is liveness"
    for worker in WORKERS:
        hc = df.resolved(worker).healthcheck
        assert hc, f"{worker}: no HEALTHCHECK"
        check_command(hc, worker, f"Dockerfile {worker} HEALTHCHECK")


def test_dockerfile_env_names_are_settings() -> None:
    df = dockerfile()
    for service in SERVICES:
        check_env(service, df.resolved(service).env, f"Dockerfile target {service} ENV")
    env = df.resolved("gateway").env
    assert env["PHOTO_DIR"].startswith(env["DATA_DIR"] + "/")


def test_dockerignore_keeps_local_state_out() -> None:
    lines = {ln.strip().rstrip("/") for ln in (REPO / ".dockerignore").read_text().splitlines()}
    for entry in (".venv", "var", "runs", ".git", ".pytest_cache", ".hypothesis", "**/__pycache__"):
        assert entry in lines, f".dockerignore misses {entry}"
    for needed in ("models", "shared", "services", "pyproject.toml"):
        assert needed not in lines, f".dockerignore excludes {needed}, which the image needs"


# --- docker-compose.yml -----------------------------------------------------------------------------
def compose_services() -> dict[str, dict]:
    return compose()["services"]


def compose_wardrobe_services() -> dict[str, tuple[str, dict]]:
    """compose service -> (Wardrobe service whose settings it reads, definition)."""
    out = {}
    for name, svc in compose_services().items():
        target = (svc.get("build") or {}).get("target")
        if target:
            out[name] = (name if name in SETTINGS else target, svc)
    return out


def test_compose_has_the_stack() -> None:
    services = compose_services()
    for name in ("redis", "postgres", "migrate", "gateway", "inference", "hedger", "sweeper", "trainer-worker",
                 "trainer"):
        assert name in services, f"compose has no {name}"
    for name in ("redis", "postgres"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} needs a healthcheck"
    assert services["trainer"].get("profiles") == services["trainer-worker"].get("profiles") == ["training"]
    assert any(str(p).endswith(f":{GATEWAY_PORT}") for p in services["gateway"]["ports"])


def test_compose_builds_known_targets() -> None:
    df = dockerfile()
    for name, (_, svc) in compose_wardrobe_services().items():
        build = svc["build"]
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert build["target"] in df.stages, f"{name}: no target {build['target']}"
        assert image_service(interpolate(svc["image"])) == build["target"], f"{name}: image {svc['image']}"


def test_compose_depends_on() -> None:
    services = compose_services()
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = cond["condition"]
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test") or image_service(
                    interpolate(services[dep].get("image", ""))), f"{name} waits for {dep} to be healthy; it has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is one-shot"
    gateway = services["gateway"]["depends_on"]
    assert gateway["migrate"]["condition"] == "service_completed_successfully"
    assert gateway["redis"]["condition"] == gateway["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_volumes() -> None:
    declared = set(compose().get("volumes") or {})
    photo_dir = dockerfile().resolved("gateway").env["PHOTO_DIR"]
    for name, svc in compose_services().items():
        for mount in svc.get("volumes", []):
            source, target, *mode = mount.split(":")
            if not source.startswith((".", "/", "$")):
                assert source in declared, f"{name}: volume {source} is not declared"
            if source == "photos":
                assert target == photo_dir, f"{name}: photos mounted at {target}, PHOTO_DIR is {photo_dir}"
    mounts = {name: svc.get("volumes", []) for name, svc in compose_services().items()}
    assert f"photos:{photo_dir}" in mounts["gateway"]
    assert f"photos:{photo_dir}:ro" in mounts["inference"]
    assert not any(m.endswith(":/app/models") for ms in mounts.values() for m in ms), "models come from the image"
    # The model store: every process given MODEL_STORE mounts the `models` volume there; only the
    # ones that publish versions (migrate: the bundled one; the trainer worker: new ones) write.
    writers = {"migrate", "trainer-worker"}
    for name, svc in compose_services().items():
        store = (svc.get("environment") or {}).get("MODEL_STORE")
        if store is None:
            continue
        (mount,) = [m for m in mounts[name] if m.split(":")[0] == "models"] or [None]
        assert mount is not None, f"{name}: MODEL_STORE={store} but no `models` volume"
        assert mount.split(":")[1] == store, f"{name}: models mounted at {mount}, MODEL_STORE is {store}"
        assert mount.endswith(":ro") == (name not in writers), f"{name}: {mount}"
    assert {"migrate", "gateway", "inference", "trainer-worker"} <= {
        n for n, s in compose_services().items() if "MODEL_STORE" in (s.get("environment") or {})}


def test_compose_env_names_are_settings() -> None:
    for name, (service, svc) in compose_wardrobe_services().items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use the mapping form of environment"
        check_env(service, {k: interpolate(v) for k, v in env.items()}, f"compose {name}")


def test_compose_commands_are_real_entry_points() -> None:
    df = dockerfile()
    for name, (service, svc) in compose_wardrobe_services().items():
        target = svc["build"]["target"]
        stage = df.resolved(target)
        entrypoint = svc.get("entrypoint", stage.entrypoint) or []
        command = svc.get("command", stage.cmd if "entrypoint" not in svc else None) or []
        check_command(list(entrypoint) + list(command), service, f"compose {name}")
        hc = svc.get("healthcheck")
        if hc and not hc.get("disable"):
            test = hc["test"]
            assert test[0] == "CMD", f"compose {name}: exec-form healthcheck"
            check_command(test[1:], service, f"compose {name} healthcheck")
            assert wardrobe_ping(test[1:]), f"compose {name}: health check is `wardrobe ping`"
            if service == "gateway":
                assert wardrobe_ping(test[1:]) == ("gateway", True), "compose: healthy = ready (--wait)"
    assert compose_services()["migrate"]["healthcheck"]["disable"] is True  # the gateway image's check


def test_compose_build_args_are_dockerfile_args() -> None:
    """Build arguments exist in the stage that installs the service (a typo would be ignored by
    Docker), and ORT_BUILD names an ONNX Runtime build."""
    df = dockerfile()
    for name, svc in compose_services().items():
        build = svc.get("build") or {}
        for key, value in (build.get("args") or {}).items():
            stage = df.stages[f"build-{build['target']}"]
            assert key in stage.args, f"compose {name}: build arg {key} is no ARG of {stage.name}"
            if key == "ORT_BUILD":
                assert interpolate(value) in ORT_BUILDS, f"compose {name}: ORT_BUILD={value}"


def test_every_worker_the_launcher_starts_is_deployed() -> None:
    """`wardrobe up` starts these workers; each has an image, a settings class here and a compose
    service, and each but the trainer a Kubernetes Deployment (docs/deploy.md says why not)."""
    from services.launcher import WORKER_MODULES

    df = dockerfile()
    running = {}
    for name, svc in compose_services().items():
        target = (svc.get("build") or {}).get("target")
        if target:
            stage = df.resolved(target)
            argv = (svc.get("entrypoint", stage.entrypoint) or []) + (
                svc.get("command", stage.cmd if "entrypoint" not in svc else None) or [])
            if argv and Path(argv[0]).name == "celery":
                running[argv[argv.index("-A") + 1]] = name
    deployments = {o["metadata"]["name"] for o in static_objects(K8S / "base") if o["kind"] == "Deployment"}
    for service, module in WORKER_MODULES.items():
        assert service in df.stages and service in SETTINGS, f"no image / settings mapping for the {service} worker"
        assert module in running, f"docker-compose.yml runs no {service} worker ({module})"
        assert f"wardrobe-{service}" in deployments, f"Kubernetes runs no {service} worker"


# --- Kubernetes -------------------------------------------------------------------------------------
def test_kustomizations_reference_existing_files() -> None:
    dirs = kustomization_dirs()
    assert {K8S / "base", K8S / "overlays" / "dev", K8S / "overlays" / "prod"} <= set(dirs)
    for directory in dirs:
        kust = kustomization(directory)
        entries = list(kust.get("resources", [])) + list(kust.get("components", []))
        entries += [p["path"] for p in kust.get("patches", []) if "path" in p]
        for entry in entries:
            path = directory / entry
            assert path.is_file() or (path / "kustomization.yaml").is_file(), f"{directory}: {entry} not found"
    assert "secret.example.yaml" not in kustomization(K8S / "base")["resources"], "a template, never applied"


def test_base_has_the_required_objects() -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in static_objects(K8S / "base")}
    for expected in [("Namespace", "wardrobe"), ("ConfigMap", "wardrobe-common"), ("Job", "wardrobe-migrate"),
                     ("Service", "wardrobe-gateway"), ("PersistentVolumeClaim", "wardrobe-photos"),
                     ("HorizontalPodAutoscaler", "wardrobe-inference")]:
        assert expected in kinds, f"base lacks {expected}"
    for service in ("gateway", "inference", "hedger", "sweeper", "trainer"):
        assert ("Deployment", f"wardrobe-{service}") in kinds
    assert ("PersistentVolumeClaim", "wardrobe-models") in kinds


def _patch_targets(directory: Path) -> list[tuple[str, str]]:
    out = []
    for patch in kustomization(directory).get("patches", []):
        if "path" in patch:
            out += [(d["kind"], d["metadata"]["name"]) for d in _load_all(directory / patch["path"])]
        elif "target" in patch:
            out.append((patch["target"]["kind"], patch["target"]["name"]))
    return out


def test_patches_target_existing_objects() -> None:
    base = static_objects(K8S / "base")
    for directory in kustomization_dirs():
        if directory.name == "base":
            continue
        known = base + (static_objects(directory) if kustomization(directory).get("kind") != "Component" else [])
        names = {(o["kind"], o["metadata"]["name"]) for o in known}
        for kind, name in _patch_targets(directory):
            assert any(k == kind and re.fullmatch(name, n) for k, n in names), f"{directory}: patch targets {kind}/{name}"
    for path in (K8S / "overlays" / "dev").glob("delete-hpa-*.yaml"):
        assert [d.get("$patch") for d in _load_all(path)] == ["delete"], f"{path}: one deletion per file"


def pod_specs(objects: list[dict]) -> list[tuple[dict, dict]]:
    """(workload, pod spec) of every Deployment / StatefulSet / Job."""
    return [(o, o["spec"]["template"]["spec"]) for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]


def wardrobe_containers(objects: list[dict]) -> list[tuple[dict, dict, dict, str]]:
    """(workload, pod spec, container, service) for containers running a Wardrobe image."""
    out = []
    for workload, spec in pod_specs(objects):
        for container in spec["containers"]:
            service = image_service(container["image"])
            if service:
                out.append((workload, spec, container, container["name"] if container["name"] in SETTINGS else service))
    return out


def container_env(container: dict, objects: list[dict], where: str) -> dict[str, str | None]:
    config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: {**o.get("data", {}), **o.get("stringData", {})}
               for o in objects + list(secret_templates().values()) if o["kind"] == "Secret"}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in config_maps, f"{where}: no ConfigMap {name}"
            env.update(config_maps[name])
        else:
            name = source["secretRef"]["name"]
            assert name in secrets, f"{where}: no Secret {name}"
            env.update(dict.fromkeys(secrets[name]))  # values unknown (or base64)
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] in secrets and ref["key"] in secrets[ref["name"]], f"{where}: {ref}"
        env[var["name"]] = var.get("value")
    return env


def check_k8s(objects: list[dict], label: str) -> None:
    df = dockerfile()
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objects:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    uid = int(df.resolved("gateway").user.split(":")[0])
    containers = wardrobe_containers(objects)
    assert {s for *_, s in containers} >= {"gateway", "inference", "hedger", "sweeper", "migrate"}, label

    for workload, spec, container, service in containers:
        where = f"{label}: {workload['kind']}/{workload['metadata']['name']}/{container['name']}"
        # command: explicit, or the image's
        target = image_service(container["image"])
        if "command" in container:
            argv = container["command"] + container.get("args", [])
        else:
            argv = (df.resolved(target).entrypoint or []) + container.get("args", df.resolved(target).cmd or [])
        check_command(argv, service, where)
        check_env(service, container_env(container, objects, where), where)
        # resources, security
        resources = container.get("resources", {})
        assert resources.get("requests") and resources.get("limits"), f"{where}: requests and limits"
        sec = spec.get("securityContext", {})
        assert sec.get("runAsNonRoot") is True and sec.get("runAsUser") == uid, f"{where}: run as {uid}"
        # volumes
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{where}: no volume {mount['name']}"
            claim = volumes[mount["name"]].get("persistentVolumeClaim")
            if claim:
                assert claim["claimName"] in by_kind.get("PersistentVolumeClaim", {}), f"{where}: {claim}"
                env = container_env(container, objects, where)
                expected = {"wardrobe-photos": df.resolved(target).env["PHOTO_DIR"],
                            "wardrobe-models": env.get("MODEL_STORE"),
                            "wardrobe-dataset": env.get("DATASET_DIR")}[claim["claimName"]]
                assert mount["mountPath"] == expected, f"{where}: {claim['claimName']} path"
        # probes
        if service == "gateway":
            ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
            assert GATEWAY_PORT in ports.values()
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = container.get(kind, {}).get("httpGet")
                if probe:
                    assert is_gateway_route(probe["path"]), f"{where}: {kind} {probe['path']} is no route"
                    port = probe["port"]
                    assert ports.get(port, port) == GATEWAY_PORT, f"{where}: {kind} port {port}"
            annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
            if "prometheus.io/path" in annotations:
                assert is_gateway_route(annotations["prometheus.io/path"]), f"{where}: metrics path"
            hook = container.get("lifecycle", {}).get("preStop", {}).get("exec")
            if hook:
                check_command(hook["command"], service, f"{where} preStop")
        elif service == "trainer":  # a training run holds the solo pool: the metrics thread answers
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            probe = container["livenessProbe"]["httpGet"]
            assert probe["path"] == "/metrics" and ports.get(probe["port"], probe["port"]) == int(
                container_env(container, objects, where)["METRICS_PORT"]), f"{where}: liveness on the metrics port"
            env = container_env(container, objects, where)
            assert env.get("DATASET_DIR") and env.get("SPLIT_FILE", "").startswith(env["DATASET_DIR"]), (
                f"{where}: the trainer needs DATASET_DIR and its SPLIT_FILE")
        elif service in WORKERS:
            probe = container["livenessProbe"]["exec"]["command"]
            check_command(probe, service, f"{where} livenessProbe")
            assert wardrobe_ping(probe) == (service, False), f"{where}: liveness is `wardrobe ping {service}`"
            assert container["livenessProbe"]["timeoutSeconds"] >= 10, f"{where}: the ping needs time"
        # selectors
        if workload["kind"] == "Deployment":
            selector = workload["spec"]["selector"]["matchLabels"]
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), f"{where}: selector does not match the pod labels"

    gateway_pods = by_kind["Deployment"]["wardrobe-gateway"]["spec"]["template"]["metadata"]["labels"]
    service = by_kind["Service"]["wardrobe-gateway"]
    assert service["spec"]["selector"].items() <= gateway_pods.items(), f"{label}: Service selects no gateway"
    scaled: dict[str, str] = {}
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["name"] in by_kind.get(ref["kind"], {}), f"{label}: HPA scales unknown {ref}"
        assert "replicas" not in by_kind[ref["kind"]][ref["name"]]["spec"], f"{label}: HPA owns replicas"
        assert ref["name"] not in scaled, f"{label}: two autoscalers on {ref['name']}"
        scaled[ref["name"]] = "HPA"
    check_keda(by_kind, label, scaled)
    check_every_workload(objects, label)
    check_network_policies(objects, by_kind, label)
    for ingress in by_kind.get("Ingress", {}).values():
        assert ingress["spec"].get("tls"), f"{label}: Ingress {ingress['metadata']['name']} without TLS"
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = by_kind["Service"].get(backend["name"])
                assert svc, f"{label}: Ingress to unknown Service {backend['name']}"
                assert backend["port"].get("name") in {p["name"] for p in svc["spec"]["ports"]}, f"{label}: port"
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        match = pdb["spec"]["selector"]["matchLabels"]
        assert any(match.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in by_kind["Deployment"].values()), f"{label}: PDB {pdb['metadata']['name']} selects nothing"


SCHEMAS = Path(__file__).parent / "schemas"
KEDA_SCHEMAS = {"ScaledObject": "keda-scaledobject.json", "TriggerAuthentication": "keda-triggerauthentication.json"}


@cache
def _validator(kind: str):  # noqa: ANN202 - a jsonschema_rs validator
    import jsonschema_rs

    return jsonschema_rs.validator_for(json.loads((SCHEMAS / KEDA_SCHEMAS[kind]).read_text()))


def check_keda(by_kind: dict[str, dict[str, dict]], label: str, scaled: dict[str, str]) -> None:
    """KEDA objects against their CRD's schema (tests/deploy/schemas/, written from KEDA v2's CRDs; strict),
    their targets and credentials resolved, and each Redis list the queue Celery fills."""
    for kind in KEDA_SCHEMAS:
        for name, obj in by_kind.get(kind, {}).items():
            errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in _validator(kind).iter_errors(obj)]
            assert not errors, f"{label}: {kind}/{name}: {errors}"
    prefix = by_kind.get("ConfigMap", {}).get("wardrobe-common", {}).get("data", {}).get("REDIS_NAMESPACE")
    for name, so in by_kind.get("ScaledObject", {}).items():
        ref = so["spec"]["scaleTargetRef"]
        target = by_kind.get(ref.get("kind", "Deployment"), {}).get(ref["name"])
        assert target, f"{label}: ScaledObject {name} scales unknown {ref}"
        assert "replicas" not in target["spec"], f"{label}: ScaledObject {name} owns replicas"
        assert ref["name"] not in scaled, f"{label}: two autoscalers on {ref['name']}"
        scaled[ref["name"]] = "ScaledObject"
        for trigger in so["spec"]["triggers"]:
            auth = trigger.get("authenticationRef", {}).get("name")
            assert auth is None or auth in by_kind.get("TriggerAuthentication", {}), f"{label}: {name}: {auth}"
            if trigger["type"] == "redis":
                queue = ref["name"].removeprefix("wardrobe-")
                assert queue in QUEUES and trigger["metadata"]["listName"] == f"{prefix}:{queue}", (
                    f"{label}: {name} watches {trigger['metadata']['listName']}, Celery fills {prefix}:{queue}")


def check_every_workload(objects: list[dict], label: str) -> None:
    """Every container of every workload (the in-cluster databases too): probes (Deployments and
    StatefulSets; a Job runs to its end), requests and limits, not root."""
    for workload, spec in pod_specs(objects):
        pod_sec = spec.get("securityContext", {})
        for container in spec["containers"]:
            where = f"{label}: {workload['kind']}/{workload['metadata']['name']}/{container['name']}"
            sec = {**pod_sec, **container.get("securityContext", {})}
            assert sec.get("runAsNonRoot") is True and sec.get("runAsUser", 0) != 0, f"{where}: runs as root"
            resources = container.get("resources", {})
            assert resources.get("requests") and resources.get("limits"), f"{where}: requests and limits"
            assert {"cpu", "memory"} <= set(resources["limits"]), f"{where}: cpu and memory limits"
            if workload["kind"] != "Job":
                assert container.get("livenessProbe") or container.get("startupProbe"), f"{where}: no probe"


def check_network_policies(objects: list[dict], by_kind: dict[str, dict[str, dict]], label: str) -> None:
    """Ingress to the namespace is denied but for: the gateway's API port (from anywhere), the
    metrics port (from the monitoring namespace), and in-cluster Redis/PostgreSQL from Wardrobe's pods."""
    policies = list(by_kind.get("NetworkPolicy", {}).values())
    assert any(p["spec"]["podSelector"] == {} and p["spec"].get("ingress") is None and "Ingress" in
               p["spec"]["policyTypes"] for p in policies), f"{label}: no default-deny ingress policy"
    pods = {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w, _ in pod_specs(objects)}

    def selected(policy: dict) -> set[str]:
        match = policy["spec"]["podSelector"].get("matchLabels", {})
        return {name for name, labels in pods.items() if match.items() <= labels.items()}

    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            if not rule.get("from"):  # from anywhere: only the gateway's API port
                assert selected(policy) == {"wardrobe-gateway"}, f"{label}: {policy['metadata']['name']} opens " \
                    f"{sorted(selected(policy))} to everyone"
                assert [p["port"] for p in rule["ports"]] == ["http"], f"{label}: the gateway opens only http"
    if label.startswith("rendered"):  # the label comes from base/kustomization.yaml (includeTemplates)
        wardrobe_pods = {n for n, labels in pods.items() if labels.get("app.kubernetes.io/part-of") == "wardrobe"}
        assert {n for n in pods if n.startswith("wardrobe-")} <= wardrobe_pods, f"{label}: pods without part-of"
    for datastore in ("redis", "postgres"):
        if datastore in pods:
            (policy,) = [p for p in policies if datastore in selected(p) and p["spec"].get("ingress")]
            sources = [f for r in policy["spec"]["ingress"] for f in r["from"]]
            assert sources == [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "wardrobe"}}}], (
                f"{label}: {datastore} must admit Wardrobe's pods only")


def test_base_workloads() -> None:
    check_k8s(static_objects(K8S / "base"), "base")


def test_overlay_objects_are_consistent() -> None:
    """Overlay resources (in-cluster Redis/PostgreSQL, PDBs) and their references, unrendered."""
    dev = static_objects(K8S / "overlays" / "dev")
    kinds = {(o["kind"], o["metadata"]["name"]) for o in dev}
    assert {("StatefulSet", "postgres"), ("Deployment", "redis"), ("Service", "postgres"), ("Service", "redis")} <= kinds
    generated = {g["name"]: dict(lit.split("=", 1) for lit in g.get("literals", []))
                 for g in kustomization(K8S / "overlays" / "dev").get("secretGenerator", [])}
    for name, template in secret_templates().items():  # dev generates every templated Secret, key for key
        assert set(generated[name]) == set(template["stringData"]), name
    hosts = {re.search(r"@?([\w.-]+):\d+", url).group(1) for url in generated["wardrobe-secrets"].values()}
    services = {o["metadata"]["name"] for o in dev if o["kind"] == "Service"}
    assert hosts <= services, f"dev URLs point at {hosts}, services are {services}"
    prod = static_objects(K8S / "overlays" / "prod")
    assert {o["metadata"]["name"] for o in prod if o["kind"] == "PodDisruptionBudget"} >= {
        "wardrobe-gateway", "wardrobe-inference"}
    assert "secretGenerator" not in kustomization(K8S / "overlays" / "prod"), "prod secrets come from outside"
    gpu = _load_all(K8S / "overlays" / "prod" / "gpu" / "inference-gpu.yaml")
    (deployment,) = [d for d in gpu if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert image_service(container["image"]) == "inference"
    assert deployment["spec"]["template"]["spec"]["nodeSelector"]


# --- rendered overlays (only with kubectl or kustomize on PATH) -----------------------------------
def _renderer() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(directory: Path) -> list[dict]:
    cmd = _renderer()
    if cmd is None:
        pytest.skip("neither kustomize nor kubectl on PATH")
    try:
        out = subprocess.run(cmd + [str(directory)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{cmd[0]} unusable: {exc}")
    assert out.returncode == 0, f"{' '.join(cmd)} {directory}:\n{out.stderr[-3000:]}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_rendered_dev_overlay() -> None:
    objects = render(K8S / "overlays" / "dev")
    check_k8s(objects, "rendered dev")
    kinds = {o["kind"] for o in objects}
    assert "HorizontalPodAutoscaler" not in kinds and "PodDisruptionBudget" not in kinds
    assert all(o["metadata"].get("namespace") == "wardrobe" for o in objects if o["kind"] != "Namespace")
    secrets = [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"]
    referenced = {s["secretRef"]["name"] for *_, c, _ in wardrobe_containers(objects) for s in c.get("envFrom", [])
                  if "secretRef" in s}
    assert referenced and referenced <= set(secrets), "generated Secret names (hash suffix) are wired through"
    pvcs = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PersistentVolumeClaim"}
    assert set(pvcs) == {"wardrobe-photos", "wardrobe-models", "wardrobe-dataset"}
    assert all(p["spec"]["accessModes"] == ["ReadWriteOnce"] for p in pvcs.values())


@pytest.mark.parametrize("with_gpu", [False, True], ids=["prod", "prod+gpu"])
def test_rendered_prod_overlay(with_gpu: bool, tmp_path: Path) -> None:
    directory = K8S / "overlays" / "prod"
    if with_gpu:  # the overlay with its optional component switched on, in a copy
        shutil.copytree(K8S, tmp_path / "k8s")
        directory = tmp_path / "k8s" / "overlays" / "prod"
        kust = kustomization(K8S / "overlays" / "prod")
        kust["components"] = [*kust.get("components", []), "gpu"]
        (directory / "kustomization.yaml").write_text(yaml.safe_dump(kust))
    objects = render(directory)
    check_k8s(objects, f"rendered {directory.name}{'+gpu' if with_gpu else ''}")
    assert not [o for o in objects if o["kind"] == "Secret"], "prod must not ship a Secret"
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    hpas = {o["metadata"]["name"]: o for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    assert hpas["wardrobe-gateway"]["spec"]["minReplicas"] > 1
    scaled_objects = {o["metadata"]["name"] for o in objects if o["kind"] == "ScaledObject"}
    assert scaled_objects == {"wardrobe-inference", "wardrobe-hedger"} and set(hpas) == {"wardrobe-gateway"}, (
        "prod: KEDA scales inference and the hedger on their queues, an HPA the gateway on CPU")
    assert [o["kind"] for o in objects if o["kind"] == "Ingress"] == ["Ingress"]
    assert set(deployments) == {"wardrobe-gateway", "wardrobe-inference", "wardrobe-hedger", "wardrobe-sweeper",
                                "wardrobe-trainer"}, "no in-cluster DBs"
    sweeper = deployments["wardrobe-sweeper"]["spec"]
    assert sweeper["replicas"] == 1 and sweeper["strategy"]["type"] == "Recreate", "one beat per deployment"
    trainer = deployments["wardrobe-trainer"]["spec"]
    assert trainer["replicas"] == 1 and trainer["strategy"]["type"] == "Recreate", "one trainer (and its beat)"
    mounts = {c["name"]: {m["name"]: m for m in c["volumeMounts"]}
              for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]}
    for name in ("trainer", "inference", "gateway"):  # a new version reaches inference without a new image
        assert mounts[name]["models"]["mountPath"] == "/var/lib/wardrobe/models"
    assert not mounts["trainer"]["models"].get("readOnly") and mounts["inference"]["models"]["readOnly"]
    (inference,) = deployments["wardrobe-inference"]["spec"]["template"]["spec"]["containers"]
    assert ("nvidia.com/gpu" in inference["resources"]["limits"]) is with_gpu
    assert ("inference-gpu" in inference["image"]) is with_gpu
    (trainer,) = deployments["wardrobe-trainer"]["spec"]["template"]["spec"]["containers"]
    assert ("nvidia.com/gpu" in trainer["resources"]["limits"]) is with_gpu, "the gpu component trains on a GPU"
    assert mounts["trainer"]["dataset"]["readOnly"]


def test_rendered_prod_without_keda_falls_back_to_cpu_hpas(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    directory = tmp_path / "k8s" / "overlays" / "prod"
    kust = kustomization(K8S / "overlays" / "prod") | {"components": ["cpu-autoscaling"]}
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kust))
    objects = render(directory)
    check_k8s(objects, "rendered prod without KEDA")
    hpas = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    assert set(hpas) == {"wardrobe-gateway", "wardrobe-inference", "wardrobe-hedger"}
    assert (hpas["wardrobe-inference"]["minReplicas"], hpas["wardrobe-inference"]["maxReplicas"]) == (2, 10)
    assert not [o for o in objects if o["kind"].startswith(("Scaled", "TriggerAuth"))]


def overlay_variant(variant: str, tmp_path: Path) -> Path:
    """The directory to render for one overlay variant: dev, prod, or prod with its components changed (a copy)."""
    if variant == "dev":
        return K8S / "overlays" / "dev"
    if variant == "prod":
        return K8S / "overlays" / "prod"
    kust = kustomization(K8S / "overlays" / "prod")
    shutil.copytree(K8S, tmp_path / "k8s")
    directory = tmp_path / "k8s" / "overlays" / "prod"
    components = {"prod+gpu": [*kust.get("components", []), "gpu"], "prod-no-keda": ["cpu-autoscaling"]}[variant]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kust | {"components": components}))
    return directory


K8S_VERSION = "1.37.0"  # the Kubernetes release whose schemas kubernetes-validate (the dev extra) ships
# Custom resources kubernetes-validate has no schema for: KEDA's are checked against their CRD's schema
# by check_keda (tests/deploy/schemas/), so they are skipped here by kind, not by a SchemaNotFoundError.
NOT_CORE_KINDS = {"ScaledObject", "TriggerAuthentication"}


@pytest.mark.parametrize("variant", ["dev", "prod", "prod+gpu", "prod-no-keda"])
def test_rendered_overlays_validate_strictly_against_kubernetes(variant: str, tmp_path: Path) -> None:
    """Every rendered object against Kubernetes' own schemas, strict (unknown fields are errors), offline."""
    import kubernetes_validate

    objects = render(overlay_variant(variant, tmp_path))
    errors = []
    for obj in objects:
        if obj["kind"] in NOT_CORE_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} at {where or '.'}: {exc.message}")
    assert not errors, f"rendered {variant}:\n" + "\n".join(errors)
    assert {o["kind"] for o in objects} - NOT_CORE_KINDS >= {"Deployment", "Service", "ConfigMap"}


def test_strict_kubernetes_validation_catches_a_wrong_field() -> None:
    """The strict check above can fail: an unknown container field and a wrongly typed one."""
    import kubernetes_validate

    (deployment,) = [d for d in _load_all(K8S / "base" / "gateway.yaml") if d["kind"] == "Deployment"]
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    unknown_field = json.loads(json.dumps(deployment))
    unknown_field["spec"]["template"]["spec"]["containers"][0]["imagePullPolicey"] = "Always"  # a typo
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "two"
    for bad in (unknown_field, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_the_keda_schema_catches_a_wrong_field() -> None:
    """The schema check above can fail: an unknown field, a missing listName, a non-string value."""
    (so,) = [d for d in _load_all(K8S / "overlays" / "prod" / "keda" / "scaledobjects.yaml")
             if d["kind"] == "ScaledObject" and d["metadata"]["name"] == "wardrobe-inference"]
    assert not list(_validator("ScaledObject").iter_errors(so))
    bad = json.loads(json.dumps(so))
    bad["spec"]["minReplicas"] = 1
    bad["spec"]["triggers"][0]["metadata"] = {"listLength": 32}
    messages = " ".join(e.message for e in _validator("ScaledObject").iter_errors(bad))
    assert "minReplicas" in messages and "listName" in messages and "32" in messages
