"""Run-time placement of the GPU steps: on Kubernetes (dagster-k8s's `k8s_job_executor`, or the run pod of
`K8sRunLauncher`), every asset in pool `gpu` asks for one GPU and tolerates GPU nodes' taint."""

GPU_K8S_CONFIG = {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": 1},
                                       "requests": {"nvidia.com/gpu": 1, "cpu": "4", "memory": "24Gi"}}},
    "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}
GPU_TAGS = {"dagster-k8s/config": GPU_K8S_CONFIG}
