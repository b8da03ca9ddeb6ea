"""ohlora_dagster: Dagster definitions; every asset body is a thin call into ohlora_core."""
from ohlora_dagster.pool_wait import install as _install_pool_wait

_install_pool_wait()
