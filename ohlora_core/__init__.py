"""ohlora_core: models, training loops and score algorithms of the Oh-LoRA pipeline.

Pure torch/numpy/pandas code. Nothing here imports Dagster; the Dagster layer
(`ohlora_dagster`) is a thin wrapper that calls into these modules.
"""
