"""The docker/ deployment, checked without Docker: compose.yaml as `docker compose config` would see it, the
Dockerfiles line by line, the DC's entrypoint against the project's own provisioning, and the emulator launcher in
process. See docker/README.md ("What the test checks") for the list, and for what only a real Docker run can show."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import ipaddress
import json
import re
import shlex
import stat
import subprocess
import textwrap
import tomllib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from airflow.sdk import Connection
from cryptography import x509

from aadsync_devkit.graph_emulator.app import create_app
from aadsync_devkit.graph_emulator.state import EmulatorState
from aadsync_devkit.world import samba as devenv_samba
from aadsync_devkit.world.graph import DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_TENANT_ID
from aadsync_devkit.world.seed import MAIL_DOMAIN
from airflow_provider_aadsync.hooks.active_directory_settings import ADConnectionSettings
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")  # starlette notice
    from starlette.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"

# ------------------------------------------------------------------------------------------ compose interpolation

# `$$` (a literal dollar), `${NAME}`, `${NAME<op><text>}` with op one of :- - :? ? :+ +, and `$NAME`.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(ValueError):
    """What compose reports for `${VAR:?message}` when VAR is unset or empty."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Substitute like compose: `:-`/`:?` treat empty as unset, `-`/`?` only unset; unset plain variables are ''."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        present = value is not None and (value != "" or op in ("-", "?", "+"))
        if op in (":-", "-"):
            return value if present else interpolate(arg, env)
        if op in (":?", "?"):
            if not present:
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op in (":+", "+"):
            return interpolate(arg, env) if present else ""
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def references(node: Any) -> Iterator[tuple[str, str | None, str]]:
    """Every (variable, operator, argument) compose interpolates in *node*'s strings ($$-escaped ones excluded)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)
    elif isinstance(node, str):
        for match in _INTERPOLATION.finditer(node):
            if not match["escaped"]:
                yield match["braced"] or match["bare"], match["op"], match["arg"] or ""


def test_interpolate_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("$$HOME ${SET} $SET ${UNSET}", env) == "$HOME x x "
    assert interpolate("${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${SET:-d}", env) == "d  d x"
    assert interpolate("${EMPTY?ok}", env) == ""
    assert interpolate("${SET:+alt}${UNSET:+alt}", env) == "alt"
    with pytest.raises(MissingVariable, match="EMPTY: needed"):
        interpolate("${EMPTY:?needed}", env)


# --------------------------------------------------------------------------------------------------- fixtures


def read_env_example() -> dict[str, str]:
    values = {}
    for line in (DOCKER / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


ENV_EXAMPLE = read_env_example()
REQUIRED = {name for name, value in ENV_EXAMPLE.items() if value == ""}
#: What an operator would fill in: every required value, made up; the optional ones keep their defaults.
FILLED_ENV = {name: f"Test-{name.lower().replace('_', '-')}-9" for name in REQUIRED}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """compose.yaml with anchors merged and variables interpolated from a filled-in environment file."""
    return interpolate_tree(raw, FILLED_ENV)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → source (a named volume, or a path for bind mounts) of the short-syntax volume entries."""
    mounts = {}
    for entry in service.get("volumes") or []:
        assert isinstance(entry, str), f"long volume syntax is not checked here: {entry}"
        source, target, *_ = entry.split(":")
        mounts[target] = source
    return mounts


def named_volume_at(service: dict[str, Any], path: str) -> str:
    """The named volume whose mount point holds *path* in *service*."""
    for target, source in volume_mounts(service).items():
        if path.startswith(target.rstrip("/") + "/") and not source.startswith((".", "/")):
            return source
    raise AssertionError(f"{path} lies in no named volume of the service")


def airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in services.items() if name.startswith("airflow-")}


def healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test[1] if test[0] == "CMD-SHELL" else shlex.join(test[1:])


# ------------------------------------------------------------------------------------------------- variables


class TestComposeVariables:
    def test_every_variable_is_in_env_example_and_the_readme(self, raw: dict[str, Any]) -> None:
        used = {name for name, _, _ in references(raw)}
        assert used == set(ENV_EXAMPLE)
        readme = (DOCKER / "README.md").read_text()
        assert [name for name in sorted(used) if f"`{name}`" not in readme] == []

    def test_required_variables_are_the_secrets_and_have_no_default(self, raw: dict[str, Any]) -> None:
        operators: dict[str, set[str | None]] = {}
        for name, op, _ in references(raw):
            operators.setdefault(name, set()).add(op)
        required = {name for name, ops in operators.items() if ops == {":?"}}
        assert required == REQUIRED
        assert all(re.search("PASSWORD|SECRET|KEY", name) for name in required)
        # Every non-secret has a default, so an environment file with only the secrets works.
        assert {name for name, ops in operators.items() if ops == {":-"}} == set(ENV_EXAMPLE) - REQUIRED

    def test_a_variable_has_one_default_everywhere_equal_to_env_example(self, raw: dict[str, Any]) -> None:
        defaults: dict[str, set[str]] = {}
        for name, op, arg in references(raw):
            if op == ":-":
                defaults.setdefault(name, set()).add(arg)
        assert {name: values for name, values in defaults.items() if len(values) > 1} == {}
        assert {name: values.pop() for name, values in defaults.items()} == {
            name: value for name, value in ENV_EXAMPLE.items() if name not in REQUIRED
        }

    def test_the_dev_tenant_is_the_default(self) -> None:
        assert ENV_EXAMPLE["AADSYNC_ENTRA_TENANT_ID"] == DEV_TENANT_ID
        assert ENV_EXAMPLE["AADSYNC_ENTRA_CLIENT_ID"] == DEV_CLIENT_ID

    @pytest.mark.parametrize("missing", sorted(REQUIRED))
    def test_compose_refuses_an_environment_without_a_secret(self, raw: dict[str, Any], missing: str) -> None:
        with pytest.raises(MissingVariable, match=missing):
            interpolate_tree(raw, {name: value for name, value in FILLED_ENV.items() if name != missing})


# ------------------------------------------------------------------------------------------------- structure

_TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets"}
_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


class TestComposeStructure:
    def test_only_known_top_level_keys(self, compose: dict[str, Any]) -> None:
        assert {key for key in compose if not key.startswith("x-")} <= _TOP_LEVEL
        assert compose["name"] == "aadsync"

    def test_every_service_has_an_image_or_a_build_that_exists(self, services: dict[str, dict[str, Any]]) -> None:
        for name, service in services.items():
            assert service.get("image") or service.get("build"), name
            build = service.get("build")
            if build:
                context = (DOCKER / (build if isinstance(build, str) else build["context"])).resolve()
                dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
                assert (context / dockerfile).is_file(), f"{name}: {context / dockerfile}"

    def test_depends_on_targets_exist_with_the_state_their_condition_needs(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        for name, service in services.items():
            for target, spec in (service.get("depends_on") or {}).items():
                assert target in services, f"{name} depends on unknown {target}"
                assert spec["condition"] in _CONDITIONS, (name, target)
                if spec["condition"] == "service_healthy":
                    assert services[target].get("healthcheck", {}).get("test"), f"{name} waits for {target}'s health"
                if spec["condition"] == "service_completed_successfully":
                    assert "restart" not in services[target], f"{target} is a one-shot service"

    def test_every_long_running_service_has_a_healthcheck(self, services: dict[str, dict[str, Any]]) -> None:
        one_shot = {"airflow-init"}
        for name, service in services.items():
            if name not in one_shot:
                check = service.get("healthcheck") or {}
                assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), name
                assert "restart" in service, name

    def test_start_order_follows_what_each_service_needs(self, services: dict[str, dict[str, Any]]) -> None:
        for name, service in airflow_services(services).items():
            needs = service.get("depends_on") or {}
            assert {"postgres", "redis"} <= set(needs), name
            if name != "airflow-init":
                assert needs["airflow-init"]["condition"] == "service_completed_successfully", name
        worker_needs = services["airflow-worker"]["depends_on"]
        for upstream in ("samba", "graph-emulator", "airflow-apiserver"):
            assert worker_needs[upstream]["condition"] == "service_healthy"

    def test_volumes_are_declared_and_bind_mounts_exist(self, compose: dict[str, Any]) -> None:
        declared = set(compose.get("volumes") or {})
        used = set()
        for name, service in compose["services"].items():
            for target, source in volume_mounts(service).items():
                if source.startswith((".", "/")):
                    assert (DOCKER / source).exists(), f"{name}: {source}"
                else:
                    assert source in declared, f"{name}: undeclared volume {source}"
                    used.add(source)
                assert target.startswith("/"), f"{name}: {target}"
        assert used == declared, "declared but unused volumes"

    def test_networks_referenced_are_declared(self, compose: dict[str, Any]) -> None:
        declared = set(compose.get("networks") or {}) | {"default"}
        for name, service in compose["services"].items():
            networks = service.get("networks") or []
            assert set(networks) <= declared, name

    def test_only_the_api_server_publishes_a_port_on_loopback(self, services: dict[str, dict[str, Any]]) -> None:
        published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
        assert set(published) == {"airflow-apiserver"}
        for entry in published["airflow-apiserver"]:
            host_ip, host_port, container_port = str(entry).split(":")
            assert host_ip == "127.0.0.1"
            assert 1 <= int(host_port) <= 65535
            assert container_port == "8080"


# --------------------------------------------------------------------------------------------------- airflow


class TestComposeAirflow:
    def test_airflow_services_share_one_image_and_the_emulator_has_its_own(
        self, compose: dict[str, Any], services: dict[str, dict[str, Any]]
    ) -> None:
        common = compose["x-airflow-common"]
        assert set(airflow_services(services)) == {
            "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer",
            "airflow-init",
        }  # fmt: skip
        for name, service in airflow_services(services).items():
            assert service["image"] == common["image"], name
            assert service["build"] == common["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}, name
        # The emulator lives in the dev kit, which the product image does not carry.
        emulator = services["graph-emulator"]
        assert emulator["image"] != common["image"]
        assert emulator["build"] == {"context": "..", "dockerfile": "docker/emulator/Dockerfile"}

    def test_one_jwt_secret_from_the_environment(self, raw: dict[str, Any], services: dict[str, Any]) -> None:
        raw_values = {
            environment_of(service).get("AIRFLOW__API_AUTH__JWT_SECRET")
            for service in airflow_services(raw["services"]).values()
        }
        assert raw_values == {"${AIRFLOW_JWT_SECRET:?set AIRFLOW_JWT_SECRET}"}
        resolved = {environment_of(s)["AIRFLOW__API_AUTH__JWT_SECRET"] for s in airflow_services(services).values()}
        assert resolved == {FILLED_ENV["AIRFLOW_JWT_SECRET"]}

    def test_celery_executor_with_redis_and_postgres(self, services: dict[str, dict[str, Any]]) -> None:
        for name, service in airflow_services(services).items():
            env = environment_of(service)
            assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
            assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
            metadata = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
            assert (metadata.scheme, metadata.hostname, metadata.path) == (
                "postgresql+psycopg2",
                "postgres",
                "/airflow",
            )
            assert metadata.password == FILLED_ENV["POSTGRES_PASSWORD"]
            assert urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"]).hostname == "postgres"
            assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        postgres = environment_of(services["postgres"])
        assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("airflow", "airflow")

    def test_commands_and_documented_health_checks(self, services: dict[str, dict[str, Any]]) -> None:
        expected = {
            "airflow-apiserver": ("api-server", "http://localhost:8080/api/v2/monitor/health"),
            "airflow-scheduler": ("scheduler", "http://localhost:8974/health"),
            "airflow-dag-processor": ("dag-processor", "airflow jobs check --job-type DagProcessorJob"),
            "airflow-triggerer": ("triggerer", "airflow jobs check --job-type TriggererJob"),
            "airflow-worker": ("celery worker", "celery --app airflow.providers.celery.executors.celery_executor.app"),
            "postgres": (None, "pg_isready -U airflow"),
            "redis": (None, "redis-cli ping"),
            "samba": (None, "ldapsearch -x -H ldaps://"),
            "graph-emulator": (None, "curl --fail"),
        }
        for name, (command, check) in expected.items():
            if command:
                assert services[name]["command"] == command, name
            assert check in healthcheck_command(services[name]), name
        assert environment_of(services["airflow-scheduler"])["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
        assert environment_of(services["airflow-worker"])["DUMB_INIT_SETSID"] == "0"

    def test_init_migrates_creates_the_admin_and_checks_the_provider(self, services: dict[str, Any]) -> None:
        init = services["airflow-init"]
        env = environment_of(init)
        assert env["_AIRFLOW_DB_MIGRATE"] == env["_AIRFLOW_WWW_USER_CREATE"] == "true"
        assert env["_AIRFLOW_WWW_USER_PASSWORD"] == FILLED_ENV["AIRFLOW_ADMIN_PASSWORD"]
        script = init["command"][-1]
        assert "exec /entrypoint" in script
        assert "airflow db check-migrations" in script and "airflow-provider-aadsync" in script
        # the Graph writer pool the README documents, named by the Variable the DAGs read when they are parsed
        assert 'airflow pools set aadsync_graph_writers 1 "' in script
        assert env["AIRFLOW_VAR_AADSYNC_GRAPH_WRITER_POOL"] == "aadsync_graph_writers"

    def test_the_store_is_the_database_the_init_sql_creates(self, services: dict[str, dict[str, Any]]) -> None:
        created = re.findall(r"CREATE DATABASE (\w+)", (DOCKER / "postgres" / "10-aadsync-store.sql").read_text())
        assert created == ["aadsync_store"]
        for service in airflow_services(services).values():
            env = environment_of(service)
            assert env["AIRFLOW_VAR_AADSYNC_STORE_CONN_ID"] == "aadsync_store"
            assert "AIRFLOW_VAR_AADSYNC_STORE_URL" not in env
            store = json.loads(env["AIRFLOW_CONN_AADSYNC_STORE"])
            assert (store["conn_type"], store["host"], store["schema"]) == ("postgres", "postgres", "aadsync_store")
            assert store["password"] == FILLED_ENV["POSTGRES_PASSWORD"]
        mounts = volume_mounts(services["postgres"])
        assert mounts["/docker-entrypoint-initdb.d/10-aadsync-store.sql"] == "./postgres/10-aadsync-store.sql"

    def test_airflow_variables_set_are_ones_the_dags_read(self, services: dict[str, dict[str, Any]]) -> None:
        set_here = {
            key.removeprefix("AIRFLOW_VAR_").lower()
            for key in environment_of(services["airflow-worker"])
            if key.startswith("AIRFLOW_VAR_")
        }
        package = REPO / "airflow_provider_aadsync"
        sources = [*(REPO / "dags").glob("*.py"), package / "dag_factory.py", package / "dag_settings.py"]
        dag_source = "\n".join(path.read_text() for path in sources)  # the DAG files, the factory and its settings
        if "var.value" not in dag_source and "Variable" not in dag_source:
            pytest.skip("the DAGs read no Airflow Variables yet")
        assert {name for name in set_here if f"'{name}'" not in dag_source and f'"{name}"' not in dag_source} == set()


# ---------------------------------------------------------------------------------------------------- secrets

_SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$")
_ONLY_INTERPOLATION = re.compile(r"^\$\{[A-Z_]+:\?[^}]*\}$")


class TestComposeSecrets:
    def test_secret_settings_are_interpolations(self, raw: dict[str, Any]) -> None:
        blocks = [raw["x-airflow-common"], *raw["services"].values()]
        for block in blocks:
            for key, value in environment_of(block).items():
                if _SECRET_NAME.search(key):
                    assert _ONLY_INTERPOLATION.match(value), f"{key} = {value!r}"

    def test_connection_passwords_are_interpolations(self, raw: dict[str, Any]) -> None:
        env = environment_of(raw["x-airflow-common"])
        for key in ("AIRFLOW_CONN_AADSYNC_AD", "AIRFLOW_CONN_AADSYNC_ENTRA"):
            password = re.search(r'"password": "([^"]*)"', env[key])
            assert password and _ONLY_INTERPOLATION.match(password[1]), key

    def test_urls_carry_no_literal_password(self, raw: dict[str, Any]) -> None:
        for block in [raw["x-airflow-common"], *raw["services"].values()]:
            for key, value in environment_of(block).items():
                for userinfo in re.findall(r"://([^@/\s]*)@", value):
                    _, _, password = userinfo.partition(":")
                    assert password == "" or _ONLY_INTERPOLATION.match(password), f"{key}: {value}"

    def test_the_dev_secrets_of_the_code_appear_in_no_docker_file(self) -> None:
        forbidden = [devenv_samba.DEV_ADMIN_PASSWORD.encode(), DEV_CLIENT_SECRET.encode()]
        for path in DOCKER.rglob("*"):
            if path.is_file() and path.name != ".env" and "__pycache__" not in path.parts:
                content = path.read_bytes()
                assert [secret for secret in forbidden if secret in content] == [], path

    def test_env_example_leaves_every_secret_empty(self) -> None:
        assert {name for name in ENV_EXAMPLE if _SECRET_NAME.search(name)} == REQUIRED
        assert (DOCKER / ".gitignore").read_text().split("\n").count(".env") == 1


# ------------------------------------------------------------------------------------------------ connections


def connection(services: dict[str, dict[str, Any]], conn_id: str) -> Connection:
    value = environment_of(services["airflow-worker"])[f"AIRFLOW_CONN_{conn_id.upper()}"]
    return Connection.from_json(value, conn_id=conn_id)


class TestComposeConnections:
    def test_ad_connection_points_at_the_samba_service_and_its_published_ca(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        conn = connection(services, "aadsync_ad")
        assert conn.conn_type == "aadsync_ad"
        settings = ADConnectionSettings.from_connection(conn)
        assert (settings.host, settings.effective_port, settings.tls) == ("samba", 636, "ldaps")
        assert settings.password.get_secret_value() == FILLED_ENV["SAMBA_ADMIN_PASSWORD"]
        assert environment_of(services["samba"])["SAMBA_ADMIN_PASSWORD"] == FILLED_ENV["SAMBA_ADMIN_PASSWORD"]
        dc = devenv_samba.SambaDC(Path("/unused"))
        assert (settings.base_dn, settings.bind_dn) == (dc.base_dn, dc.admin_dn)
        # The CA file is where the DC publishes it: SAMBA_CA_DIR (samba/Dockerfile) on the samba-ca volume.
        assert settings.ca_cert == "/opt/aadsync/samba-ca/ca.pem"
        volume = named_volume_at(services["airflow-worker"], settings.ca_cert)
        ca_dir = dockerfile_env(DOCKER / "samba" / "Dockerfile")["SAMBA_CA_DIR"]
        assert volume_mounts(services["samba"])[ca_dir] == volume
        assert f"LDAPTLS_CACERT={ca_dir}/ca.pem" in healthcheck_command(services["samba"])

    def test_entra_connection_points_at_the_emulator_service_and_its_published_ca(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        conn = connection(services, "aadsync_entra")
        assert conn.conn_type == "aadsync_entra"
        settings = EntraConnectionSettings.from_connection(conn)
        emulator = services["graph-emulator"]
        emulator_env = environment_of(emulator)
        assert settings.tenant_id == emulator_env["AADSYNC_ENTRA_TENANT_ID"] == DEV_TENANT_ID
        assert settings.client_id == emulator_env["AADSYNC_ENTRA_CLIENT_ID"] == DEV_CLIENT_ID
        assert settings.client_secret is not None
        assert settings.client_secret.get_secret_value() == emulator_env["AADSYNC_ENTRA_CLIENT_SECRET"]
        args = emulator_arguments(services)
        for url in (settings.endpoints.authority_host, settings.endpoints.graph_url):
            parts = urlsplit(url)
            assert parts.hostname == "graph-emulator" and parts.hostname in services
            assert parts.port == int(args["--port"][0])
            assert parts.hostname in args["--tls-name"]
        assert settings.ca_bundle is not None
        volume = named_volume_at(services["airflow-worker"], settings.ca_bundle)
        assert named_volume_at(emulator, args["--ca-out"][0]) == volume
        assert Path(settings.ca_bundle).name == Path(args["--ca-out"][0]).name
        # The emulator's private key stays on its own volume.
        assert named_volume_at(emulator, args["--tls-dir"][0] + "/server.key") != volume

    def test_emulator_verifies_the_seeded_mail_domain(self, services: dict[str, dict[str, Any]]) -> None:
        assert emulator_arguments(services)["--verified-domain"] == [MAIL_DOMAIN]

    def test_ca_volumes_are_read_only_for_airflow(self, services: dict[str, dict[str, Any]]) -> None:
        for name, service in airflow_services(services).items():
            ca_mounts = [entry for entry in service["volumes"] if entry.startswith(("samba-ca:", "emulator-ca:"))]
            assert len(ca_mounts) == 2 and all(entry.endswith(":ro") for entry in ca_mounts), name


def emulator_arguments(services: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    command = services["graph-emulator"]["command"]
    assert command[:2] == ["python", dockerfile_copy_target("docker/emulator/serve.py", EMULATOR_DOCKERFILE)]
    arguments: dict[str, list[str]] = {}
    for flag, value in zip(command[2::2], command[3::2], strict=True):
        arguments.setdefault(flag, []).append(value)
    return arguments


# ------------------------------------------------------------------------------------------------ dockerfiles


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def dockerfile_env(path: Path) -> dict[str, str]:
    env = {}
    for keyword, arguments in dockerfile_instructions(path):
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


#: The product's Airflow image and the Graph emulator's image (the product plus its dev kit).
AIRFLOW_DOCKERFILE = DOCKER / "Dockerfile"
EMULATOR_DOCKERFILE = DOCKER / "emulator" / "Dockerfile"


def dockerfile_copy_target(source: str, dockerfile: Path = AIRFLOW_DOCKERFILE) -> str:
    for keyword, arguments in dockerfile_instructions(dockerfile):
        if keyword == "COPY":
            parts = [part for part in arguments.split() if not part.startswith("--")]
            if source in parts[:-1]:
                return parts[-1]
    raise AssertionError(f"{dockerfile.relative_to(REPO)} copies no {source}")


def constraint_pin(package: str) -> str:
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in constraints.txt")


class TestAirflowDockerfile:
    """The product's image and the emulator's image, built the same way; only the emulator's carries the dev kit."""

    @pytest.fixture(params=[AIRFLOW_DOCKERFILE, EMULATOR_DOCKERFILE], ids=["airflow", "emulator"])
    def dockerfile(self, request: pytest.FixtureRequest) -> Path:
        return request.param

    @pytest.fixture
    def instructions(self, dockerfile: Path) -> list[tuple[str, str]]:
        return dockerfile_instructions(dockerfile)

    def test_from_the_official_image_of_the_pinned_airflow(self, instructions: list[tuple[str, str]]) -> None:
        froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
        assert froms == [f"apache/airflow:{constraint_pin('apache-airflow')}"]
        assert re.fullmatch(r"3\.3\.\d+", constraint_pin("apache-airflow"))

    def test_pip_installs_as_airflow_with_the_constraints(
        self, dockerfile: Path, instructions: list[tuple[str, str]]
    ) -> None:
        user, installs = "root", []
        for keyword, arguments in instructions:
            if keyword == "USER":
                user = arguments
            elif keyword == "RUN" and "pip install" in arguments:
                installs.append((user, arguments))
        assert len(installs) == 1
        user, command = installs[0]
        assert user == "airflow", "the official image installs packages as the airflow user"
        words = shlex.split(command)
        assert "--no-cache-dir" in words
        assert "-c" in words and words[words.index("-c") + 1] == "constraints.txt"
        assert "apache-airflow==${AIRFLOW_VERSION}" in words
        if dockerfile == AIRFLOW_DOCKERFILE:
            assert ".[postgres]" in words and not any("devkit" in word for word in words)
        else:
            assert "." in words and "./devkit" in words
        assert "pip check" in command
        assert [arguments for keyword, arguments in instructions if keyword == "USER"][-1] == "airflow"

    def test_copies_exist_and_pass_the_dockerignore(
        self, dockerfile: Path, instructions: list[tuple[str, str]]
    ) -> None:
        allowed = {
            line[1:].rstrip("/")
            for line in dockerfile.with_name("Dockerfile.dockerignore").read_text().splitlines()
            if line.startswith("!")
        }
        copied = set()
        for keyword, arguments in instructions:
            if keyword == "COPY":
                parts = [part for part in arguments.split() if not part.startswith("--")]
                assert "--chown=airflow:root" in arguments
                for source in parts[:-1]:
                    assert (REPO / source).exists(), source
                    assert source.rstrip("/") in allowed, f"{source} is excluded from the build context"
                    copied.add(source.rstrip("/"))
        assert {"constraints.txt", "pyproject.toml", "airflow_provider_aadsync"} <= copied
        if dockerfile == AIRFLOW_DOCKERFILE:  # the product image: the DAGs, and no dev kit in its build context
            assert "dags" in copied and "devkit" not in copied and "devkit" not in allowed
            assert dockerfile_copy_target("dags/") == "/opt/airflow/dags/"
        else:
            assert {"devkit", "docker/emulator/serve.py"} <= copied

    def test_volume_mount_points_exist_group_writable(
        self, dockerfile: Path, instructions: list[tuple[str, str]], services: dict[str, dict[str, Any]]
    ) -> None:
        created: set[str] = set()
        for keyword, arguments in instructions:
            if keyword == "RUN" and arguments.startswith("install -d"):
                words = shlex.split(arguments)
                assert words[words.index("-m") + 1] == "0775" and words[words.index("-g") + 1] == "root"
                created |= {word for word in words if word.startswith("/")}
        # A new named volume copies the ownership of its mount point in the image: it must exist there.
        emulator = dockerfile == EMULATOR_DOCKERFILE
        image_users = [services["graph-emulator"]] if emulator else list(airflow_services(services).values())
        for service in image_users:
            for target, source in volume_mounts(service).items():
                if source in ("aadsync-data", "emulator-state", "emulator-ca"):
                    assert target in created, target

    def test_labels_version_and_no_secrets(self, instructions: list[tuple[str, str]]) -> None:
        labels = dict(
            pair.split("=", 1)
            for keyword, arguments in instructions
            if keyword == "LABEL"
            for pair in shlex.split(arguments)
        )
        version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
        assert labels["org.opencontainers.image.version"] == version
        assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
        for keyword, arguments in instructions:
            if keyword in ("ENV", "ARG"):
                assert not _SECRET_NAME.search(arguments), arguments


class TestSambaImage:
    @pytest.fixture
    def instructions(self) -> list[tuple[str, str]]:
        return dockerfile_instructions(DOCKER / "samba" / "Dockerfile")

    def test_debian_with_the_packages_provisioning_and_the_health_check_need(
        self, instructions: list[tuple[str, str]]
    ) -> None:
        assert [arguments for keyword, arguments in instructions if keyword == "FROM"] == ["debian:bookworm-slim"]
        install = next(arguments for keyword, arguments in instructions if keyword == "RUN" and "apt-get" in arguments)
        for package in (
            "samba",
            "samba-dsdb-modules",
            "samba-vfs-modules",
            "samba-ad-provision",
            "ldap-utils",
            "openssl",
        ):
            assert f" {package} " in f" {install} ", package
        assert "--no-install-recommends" in install and "rm -rf /var/lib/apt/lists/*" in install

    def test_entrypoint_is_copied_and_run(self, instructions: list[tuple[str, str]]) -> None:
        copy = next(arguments for keyword, arguments in instructions if keyword == "COPY")
        source, target = copy.split()[-2:]
        assert (DOCKER / "samba" / source).is_file()
        assert [arguments for keyword, arguments in instructions if keyword == "ENTRYPOINT"] == [f'["{target}"]']

    def test_state_volume_matches_compose(
        self, instructions: list[tuple[str, str]], services: dict[str, dict[str, Any]]
    ) -> None:
        home = dockerfile_env(DOCKER / "samba" / "Dockerfile")["SAMBA_HOME"]
        assert volume_mounts(services["samba"])[home] == "samba-data"
        assert ("VOLUME", f'["{home}"]') in instructions
        assert services["samba"]["init"] is True


# ------------------------------------------------------------------------------------------ the DC's provisioning

ENTRYPOINT = DOCKER / "samba" / "entrypoint.sh"


def entrypoint_code() -> str:
    """The entrypoint without its comments (they name the same options)."""
    return "\n".join(line for line in ENTRYPOINT.read_text().splitlines() if not line.lstrip().startswith("#"))


#: Settings of the local DC that a container must not have: they bind it to 127.0.0.1 and log to a file.
_LOCAL_ONLY_SETTINGS = {"interfaces", "bind interfaces only", "log file", "max log size"}


def _option_names(function: Callable[..., Any]) -> set[str]:
    """The ``--option`` / ``--option=value`` strings a function's source passes, f-strings by their option name."""
    names = set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(function)))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("--"):
            names.add(node.value)
        elif isinstance(node, ast.JoinedStr):
            head = node.values[0]
            if isinstance(head, ast.Constant) and str(head.value).startswith("--"):
                names.add(str(head.value).rstrip("="))
    return names


class TestSambaEntrypoint:
    def test_bash_syntax(self) -> None:
        subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True)
        assert stat.S_IMODE(ENTRYPOINT.stat().st_mode) & 0o111, "the entrypoint must be executable"

    def test_provisions_with_the_options_of_devenv(self) -> None:
        script = entrypoint_code()
        options = _option_names(devenv_samba.SambaDC.provision)
        assert {"--server-role=dc", "--dns-backend=NONE", "--use-rfc2307", "--complexity=off"} <= options
        missing = {option for option in options if option not in script}
        assert missing == set()

    def test_realm_domain_and_host_defaults_of_devenv(self) -> None:
        script = entrypoint_code()
        assert f"SAMBA_REALM:-{devenv_samba.DEFAULT_REALM}" in script
        assert f"SAMBA_DOMAIN:-{devenv_samba.DEFAULT_DOMAIN}" in script
        assert f"SAMBA_HOST_NAME:-{devenv_samba.NETBIOS_NAME}" in script

    def test_smb_conf_has_the_settings_of_devenv_but_the_local_only_ones(self) -> None:
        source = inspect.getsource(devenv_samba.SambaDC.write_config)
        devenv_settings = set(re.findall(r"\\t([a-z][a-z0-9_: ]*?) = ", source))
        assert len(devenv_settings) > 15
        script_settings = set(re.findall(r"^\t([a-z][a-z0-9_: ]*?) = ", entrypoint_code(), re.MULTILINE))
        assert devenv_settings - script_settings == _LOCAL_ONLY_SETTINGS
        assert script_settings <= devenv_settings

    def test_certificate_names_the_service_and_the_dc(self) -> None:
        script = entrypoint_code()
        assert "SAMBA_TLS_NAMES:-samba,${HOST_NAME,,}.${REALM,,},localhost" in script
        assert "IP:127.0.0.1" in script  # the health check connects by IP


# --------------------------------------------------------------------------------------------- emulator launcher


@pytest.fixture(scope="module")
def serve() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aadsync_docker_emulator_serve", DOCKER / "emulator" / "serve.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestEmulatorLauncher:
    def test_certificate_names_the_hosts_and_chains_to_the_ca(self, serve: ModuleType, tmp_path: Path) -> None:
        files = serve.make_tls(tmp_path / "tls", ["graph-emulator", "localhost"])
        ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["graph-emulator", "localhost"]
        assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        assert stat.S_IMODE(files.server_key.stat().st_mode) == 0o600
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False

    def test_certificate_is_kept_unless_a_name_is_missing(self, serve: ModuleType, tmp_path: Path) -> None:
        first = serve.make_tls(tmp_path, ["graph-emulator"]).server_cert.read_bytes()
        assert serve.make_tls(tmp_path, ["graph-emulator"]).server_cert.read_bytes() == first
        assert serve.make_tls(tmp_path, ["graph-emulator", "other"]).server_cert.read_bytes() != first

    def test_tenant_is_created_updated_and_saved(self, serve: ModuleType, tmp_path: Path) -> None:
        state_file = tmp_path / "state.sqlite"
        state = EmulatorState(state_file=state_file)
        ids = {"tenant_id": DEV_TENANT_ID, "name": "contosodev", "client_id": DEV_CLIENT_ID}
        assert serve.ensure_tenant(state, **ids, client_secret="one-Secret", verified_domains=[MAIL_DOMAIN]) == (
            "created"
        )
        assert serve.ensure_tenant(state, **ids, client_secret="one-Secret", verified_domains=[MAIL_DOMAIN]) == (
            "unchanged"
        )
        assert serve.ensure_tenant(state, **ids, client_secret="two-Secret", verified_domains=["b.test"]) == (
            "domain b.test verified, secret updated"
        )
        reloaded = EmulatorState(state_file=state_file).find_tenant(DEV_TENANT_ID)
        assert reloaded is not None
        assert reloaded.app(DEV_CLIENT_ID).secret == "two-Secret"
        assert {MAIL_DOMAIN, "b.test"} <= set(reloaded.verified_domains)

    def test_the_tenant_serves_tokens_and_discovery_for_the_service_host(self, serve: ModuleType) -> None:
        state = EmulatorState()
        serve.ensure_tenant(
            state, tenant_id=DEV_TENANT_ID, name="contosodev", client_id=DEV_CLIENT_ID, client_secret="the-Secret"
        )
        with TestClient(create_app(state), base_url="https://graph-emulator:8443") as client:
            config = client.get(f"/{DEV_TENANT_ID}/v2.0/.well-known/openid-configuration").json()
            assert config["token_endpoint"] == f"https://graph-emulator:8443/{DEV_TENANT_ID}/oauth2/v2.0/token"
            form = {
                "client_id": DEV_CLIENT_ID,
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default",
            }
            good = client.post(config["token_endpoint"], data={**form, "client_secret": "the-Secret"})
            assert good.status_code == 200 and good.json()["token_type"] == "Bearer"
            bad = client.post(config["token_endpoint"], data={**form, "client_secret": "wrong"})
            assert bad.status_code == 401

    def test_refuses_to_start_without_the_secret(
        self, serve: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AADSYNC_ENTRA_TENANT_ID", DEV_TENANT_ID)
        monkeypatch.setenv("AADSYNC_ENTRA_CLIENT_ID", DEV_CLIENT_ID)
        monkeypatch.delenv("AADSYNC_ENTRA_CLIENT_SECRET", raising=False)
        with pytest.raises(SystemExit, match="AADSYNC_ENTRA_CLIENT_SECRET"):
            serve.main(["--state", str(tmp_path / "s.json"), "--tls-dir", str(tmp_path / "tls")])
        assert not (tmp_path / "tls").exists()


def test_compose_json_connections_are_valid_json(services: dict[str, dict[str, Any]]) -> None:
    for key in ("AIRFLOW_CONN_AADSYNC_AD", "AIRFLOW_CONN_AADSYNC_ENTRA"):
        assert json.loads(environment_of(services["airflow-worker"])[key])["conn_type"] == key[13:].lower()
