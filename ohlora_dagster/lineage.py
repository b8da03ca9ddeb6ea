"""What an asset's recipe learns from the asset graph: its code version and its upstream data versions."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ohlora_dagster import versions


def stamp_code_versions(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """Give every asset the code version `versions.code_version` makes from it and its ancestors."""
    parents = {key: set(a.asset_deps[key]) for a in assets for key in a.keys}

    def ancestors(key: dg.AssetKey) -> set[dg.AssetKey]:
        seen, todo = set(), list(parents.get(key, ()))
        while todo:
            k = todo.pop()
            if k not in seen:
                seen.add(k)
                todo.extend(parents.get(k, ()))
        return seen

    def stamp(spec: dg.AssetSpec) -> dg.AssetSpec:
        names = [k.path[-1] for k in ancestors(spec.key)]
        return spec.replace_attributes(code_version=versions.code_version(spec.key.path[-1], names))

    return list(dg.map_asset_specs(stamp, list(assets)))


def code_version(context: dg.AssetExecutionContext, key: dg.AssetKey) -> str:
    return context.assets_def.code_versions_by_key[key]


def upstream_versions(context: dg.AssetExecutionContext, key: dg.AssetKey, layout) -> dict[str, str | None]:
    """{upstream asset: the data version of its current outputs, None if it has none} for every asset this one
    reads (inputs and dependencies): a changed input changes the recipe, so nothing stale is ever reused."""
    from ohlora_core.store import MissingArtifact, current_digest

    out = {}
    for dep in sorted(context.assets_def.asset_deps[key], key=lambda k: k.path):
        try:
            out[dep.path[-1]] = current_digest(layout.artifact_dir(dep.path[-1]))
        except MissingArtifact:
            out[dep.path[-1]] = None
    return out
