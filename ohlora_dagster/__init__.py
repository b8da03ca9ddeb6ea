"""ohlora_dagster: Dagster definitions; every asset body is a thin call into ohlora_core."""
