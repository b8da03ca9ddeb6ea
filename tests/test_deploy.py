"""The scale-out files validate against Dagster's own schemas, the GPU tags resolve to valid Kubernetes
container specs (dagster-k8s's helpers), the image runs as an unprivileged user and the Helm values bring no
password of their own; no cluster, no Docker needed."""

import importlib
import shutil
from pathlib import Path

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import get_user_defined_k8s_config
from dagster_k8s.models import k8s_model_from_dict
from dagster_postgres import DagsterPostgresStorage

ROOT = Path(__file__).resolve().parents[1]
INSTANCE_FILES = ["dagster.yaml", "deploy/dagster-k8s.yaml", "deploy/dagster-postgres.yaml"]
ENV = {
    "DAGSTER_PG_HOST": "db",
    "DAGSTER_PG_USER": "u",
    "DAGSTER_PG_PASSWORD": "p",
    "DAGSTER_PG_DB": "d",
    "DAGSTER_K8S_NAMESPACE": "ohlora",
    "DAGSTER_PG_URL": "postgresql://u:p@db:5432/d",
}


@pytest.fixture(autouse=True)
def env(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("name", INSTANCE_FILES)
def test_instance_files_validate_against_dagsters_schema(name, tmp_path):
    shutil.copy(ROOT / name, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))  # the instance schema (raises on an unknown key)
    raw = yaml.safe_load((ROOT / name).read_text())
    if "run_launcher" in raw:  # the launcher's own schema, which the instance schema leaves open
        result = process_config(K8sRunLauncher.config_type(), raw["run_launcher"]["config"])
        assert result.success, [e.message for e in result.errors]
    if "postgres" in raw.get("storage", {}):
        result = process_config(DagsterPostgresStorage.config_type(), raw["storage"]["postgres"])
        assert result.success, [e.message for e in result.errors]
    if "custom" in raw.get("storage", {}):  # ohlora's storage classes: importable, their config valid
        custom = raw["storage"]["custom"]
        storage = getattr(importlib.import_module(custom["module"]), custom["class"])
        result = process_config(storage.config_type(), custom["config"])
        assert result.success, [e.message for e in result.errors]
    assert config["concurrency"]["pools"]["default_limit"] == 1


def test_a_misspelt_launcher_setting_is_caught():
    raw = yaml.safe_load((ROOT / "deploy/dagster-k8s.yaml").read_text())["run_launcher"]["config"]
    result = process_config(K8sRunLauncher.config_type(), {**raw, "job_namespac": "x"})
    assert not result.success and "job_namespac" in result.errors[0].message


def _deployed_assets() -> list:
    """The assets of the code location the Helm values deploy."""
    values = yaml.safe_load((ROOT / "deploy/helm/values.yaml").read_text())
    module = values["dagster-user-deployments"]["deployments"][0]["dagsterApiGrpcArgs"][1]
    return list(importlib.import_module(module).defs.resolve_asset_graph().assets_defs)


def test_every_gpu_asset_asks_kubernetes_for_one_gpu():
    all_assets = _deployed_assets()
    gpu_assets = [a for a in all_assets if a.op.pool == "gpu"]
    assert len(gpu_assets) >= 10
    for asset in gpu_assets:
        config = get_user_defined_k8s_config(asset.op.tags)
        container = k8s_model_from_dict(kubernetes.client.V1Container, {"name": "step", **config.container_config})
        assert container.resources.limits == {"nvidia.com/gpu": "1"}, asset.key  # k8s quantities are strings
        pod = k8s_model_from_dict(
            kubernetes.client.V1PodSpec, {"containers": [{"name": "step"}], **config.pod_spec_config}
        )
        assert pod.tolerations[0].key == "nvidia.com/gpu"
    cpu_only = [a for a in all_assets if a.op.pool != "gpu"]
    assert all("dagster-k8s/config" not in a.op.tags for a in cpu_only)


def test_dockerfile_and_helm_values_point_at_what_exists():
    docker = (ROOT / "deploy/Dockerfile").read_text()
    for line in docker.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src
    values = yaml.safe_load((ROOT / "deploy/helm/values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    module = deployment["dagsterApiGrpcArgs"][1]
    assert deployment["dagsterApiGrpcArgs"][0] == "-m" and f'"-m", "{module}"]' in docker  # image and chart agree
    assert isinstance(importlib.import_module(module).defs, dg.Definitions)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"


def test_the_image_runs_as_an_unprivileged_user():
    """The Dockerfile's last USER is a numeric non-zero uid (Kubernetes' runAsNonRoot can only verify a
    numeric one), created in the image; the chart's pods insist on it."""
    lines = [line.split() for line in (ROOT / "deploy/Dockerfile").read_text().splitlines()]
    users = [words[1] for words in lines if words and words[0] == "USER"]
    assert users, "the image runs as root: no USER line"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert any(words[:2] == ["RUN", "useradd"] and "--uid" in words and uid in words for words in lines)
    values = yaml.safe_load((ROOT / "deploy/helm/values.yaml").read_text())
    assert values["dagster-user-deployments"]["deployments"][0]["podSecurityContext"]["runAsNonRoot"] is True
    run_pods = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    assert run_pods["securityContext"]["runAsNonRoot"] is True


def test_the_helm_postgres_takes_its_password_from_the_users_secret():
    """The chart's bundled Postgres is enabled only with a password from a secret the user creates: the chart
    generates none (its default password is a public "test"), the server and the Dagster pods read the same
    secret, and no password is written in the values."""
    values = yaml.safe_load((ROOT / "deploy/helm/values.yaml").read_text())
    secret = values["global"]["postgresqlSecretName"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["enabled"] is False or values["postgresql"]["existingSecret"] == secret
    assert "postgresqlPassword" not in values["postgresql"]
    assert f"kubectl create secret generic {secret}" in (ROOT / "deploy/helm/values.yaml").read_text()
