"""The scale-out files validate against Dagster's own schemas, and the GPU tags resolve to valid
Kubernetes container specs (dagster-k8s's helpers); no cluster, no Docker needed."""
import shutil
from pathlib import Path

import kubernetes
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import get_user_defined_k8s_config
from dagster_k8s.models import k8s_model_from_dict
from dagster_postgres import DagsterPostgresStorage

from ohlora_dagster.definitions import all_assets

ROOT = Path(__file__).resolve().parents[1]
INSTANCE_FILES = ["dagster.yaml", "deploy/dagster-k8s.yaml", "deploy/dagster-postgres.yaml"]
ENV = {"DAGSTER_PG_HOST": "db", "DAGSTER_PG_USER": "u", "DAGSTER_PG_PASSWORD": "p", "DAGSTER_PG_DB": "d",
       "DAGSTER_K8S_NAMESPACE": "ohlora", "DAGSTER_PG_URL": "postgresql://u:p@db:5432/d"}


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
    assert config["concurrency"]["pools"]["default_limit"] == 1


def test_a_misspelt_launcher_setting_is_caught():
    raw = yaml.safe_load((ROOT / "deploy/dagster-k8s.yaml").read_text())["run_launcher"]["config"]
    result = process_config(K8sRunLauncher.config_type(), {**raw, "job_namespac": "x"})
    assert not result.success and "job_namespac" in result.errors[0].message


def test_every_gpu_asset_asks_kubernetes_for_one_gpu():
    gpu_assets = [a for a in all_assets if a.op.pool == "gpu"]
    assert len(gpu_assets) >= 10
    for asset in gpu_assets:
        config = get_user_defined_k8s_config(asset.op.tags)
        container = k8s_model_from_dict(kubernetes.client.V1Container, {"name": "step", **config.container_config})
        assert container.resources.limits == {"nvidia.com/gpu": "1"}, asset.key  # k8s quantities are strings
        pod = k8s_model_from_dict(kubernetes.client.V1PodSpec, {"containers": [{"name": "step"}], **config.pod_spec_config})
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
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "ohlora_dagster.definitions"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"

