"""ohlora_dagster: Dagster definitions; every asset body is a thin call into ohlora_core.

Importing it changes nothing in Dagster: the workarounds in ohlora_dagster/dagster_workarounds/ are
installed by the instance storage that dagster.yaml names.
"""
