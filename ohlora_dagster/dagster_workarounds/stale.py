"""Which assets are stale, and why: Dagster's own stale-status resolver (what the UI's "Unsynced" badges
show), which 1.13 offers only as an internal. Used by `python -m ohlora_dagster.stale`.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

# The Dagster code this relies on, as of pins.CHECKED_AGAINST: {dotted name: (source digest, what to re-check)}
PINNED = {
    "dagster._utils.test.data_versions.get_stale_status_resolver": (
        "8083cc7ab78d5401",
        "re-implemented in _resolver for a resolved asset graph: same construction?",
    ),
    "dagster._core.definitions.data_version.CachingStaleStatusResolver.get_stale_causes": (
        "45fc96e0b7cd8417",
        "causes still carry .category and .reason?",
    ),
}


def _resolver(instance: dg.DagsterInstance, graph):
    """Dagster has no public call for an asset's stale status outside GraphQL.
    Ours builds the resolver get_stale_status_resolver builds, for an asset graph already resolved.
    Story: docs/dagster_workarounds.md#stale-assets-from-the-command-line"""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._time import get_current_datetime

    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    return CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)


def stale_assets(instance: dg.DagsterInstance, assets) -> dict[str, list[str]]:
    """{asset key: [reasons]} for every STALE asset, in graph order.

    `assets`: a Definitions, a resolved asset graph, or a sequence of AssetsDefinition.
    """
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
    from dagster._core.definitions.data_version import StaleStatus

    if isinstance(assets, dg.Definitions):
        graph = assets.resolve_asset_graph()
    elif isinstance(assets, Sequence):
        graph = AssetGraph.from_assets(assets)
    else:
        graph = assets
    resolver = _resolver(instance, graph)
    out = {}
    for key in graph.toposorted_asset_keys:
        if graph.get(key).is_materializable and resolver.get_status(key) == StaleStatus.STALE:
            out[key.to_user_string()] = [f"{c.category.value}: {c.reason}" for c in resolver.get_stale_causes(key)]
    return out
