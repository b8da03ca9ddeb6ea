"""Transient failures (a GPU that faulted, a shared volume that blinked) get a Dagster retry; everything
else fails the step at once, with its own message (a retry of a bad setting only wastes time)."""
import errno
import functools

import dagster as dg

TRANSIENT_ERRNOS = {errno.EIO, errno.ESTALE, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET}
TRANSIENT_CUDA = ("CUDA error: unspecified launch failure", "CUDA error: an illegal memory access",
                  "NCCL error", "CUBLAS_STATUS_EXECUTION_FAILED", "cuDNN error: CUDNN_STATUS_EXECUTION_FAILED")
MAX_RETRIES, SECONDS_TO_WAIT = 2, 30


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in TRANSIENT_CUDA)


def retry_transient(body):
    """Wrap an asset body: a transient error becomes `dg.RetryRequested` (the step reruns, resuming
    from what the failed attempt finished); other errors pass through."""

    @functools.wraps(body)
    def wrapper(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        except Exception as exc:
            if is_transient(exc):
                raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=SECONDS_TO_WAIT) from exc
            raise

    return wrapper
