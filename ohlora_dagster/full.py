"""The full code location: the real checkpoints under storage/models and your hand labels (README 'Full mode')."""

from ohlora_dagster.definitions import location

defs = location("full")
