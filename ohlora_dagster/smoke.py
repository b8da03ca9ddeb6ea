"""The smoke code location: deterministic random weights and stand-in labels, the embedded default."""

from ohlora_dagster.definitions import location

defs = location("smoke")
