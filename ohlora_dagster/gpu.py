"""GPU steps: the `gpu` pool (one slot per GPU, dagster.yaml), their Kubernetes placement, and retries of
transient device failures — all applied by one decorator, `gpu_asset`.

On Kubernetes (dagster-k8s's `k8s_job_executor`, or the run pod of `K8sRunLauncher`) every asset in pool `gpu`
asks for one GPU (the sharded image stages: one per shard, $OHLORA_SHARDS) and tolerates GPU nodes' taint. A
transient failure (a GPU that faulted, a shared volume that blinked) becomes a Dagster retry; everything else
fails the step at once with its own message (a retry of a bad setting only wastes time).
"""

from __future__ import annotations

import errno
import functools

import dagster as dg

GPU_POOL = "gpu"


def k8s_config(gpus: int = 1) -> dict:
    """The pod of a step that uses `gpus` GPUs: that many, and 4 CPU cores and 24 GiB per GPU (JPEG encoding and
    decoding keep up with a GPU on ~4 cores)."""
    return {
        "container_config": {
            "resources": {
                "limits": {"nvidia.com/gpu": gpus},
                "requests": {"nvidia.com/gpu": gpus, "cpu": str(4 * gpus), "memory": f"{24 * gpus}Gi"},
            }
        },
        "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    }


GPU_K8S_CONFIG = k8s_config(1)
GPU_TAGS = {"dagster-k8s/config": GPU_K8S_CONFIG}

TRANSIENT_ERRNOS = {errno.EIO, errno.ESTALE, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET}
TRANSIENT_CUDA = (
    "CUDA error: unspecified launch failure",
    "CUDA error: an illegal memory access",
    "NCCL error",
    "CUBLAS_STATUS_EXECUTION_FAILED",
    "cuDNN error: CUDNN_STATUS_EXECUTION_FAILED",
)
MAX_RETRIES, SECONDS_TO_WAIT = 2, 30


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in TRANSIENT_CUDA)


def retry_transient(body):
    """Wrap an asset body: a transient error becomes `dg.RetryRequested` (the step reruns, resuming from what the
    failed attempt finished); other errors pass through."""

    @functools.wraps(body)
    def wrapper(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        except Exception as exc:
            if is_transient(exc):
                raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=SECONDS_TO_WAIT) from exc
            raise

    return wrapper


def gpu_asset(sharded: bool = False, **asset_kwargs):
    """`@dg.asset` for a step that uses the device: pool `gpu`, the GPU pod tags, transient-failure retries.
    `sharded`: the step runs one worker per GPU (settings.shards), so its pod asks for $OHLORA_SHARDS GPUs, read
    when the code location loads (set it where the location runs, e.g. the user deployment's env). It still takes
    one `gpu` slot: it holds the machine's GPUs for the whole step (docs/sharding.md)."""
    from ohlora_core.shards import env_shards

    tags = {"dagster-k8s/config": k8s_config(env_shards())} if sharded else GPU_TAGS

    def decorate(body):
        return dg.asset(pool=GPU_POOL, op_tags=tags, **asset_kwargs)(retry_transient(body))

    return decorate
