"""Stage 6 — property control without retraining (w-space directions) and one controllability report for
every method (fine-tuned v1..v4, directions), side by side."""

from __future__ import annotations

from collections.abc import Mapping

from ohlora_core.artifacts import (
    ControllabilityReport,
    LatentDirections,
    LatentW,
    PropertyScoreCnn,
    PropertyScoresV2,
    PropertyScoresV2Cnn,
)
from ohlora_core.pipeline import SMOKE_NOTE, Run, StageResult
from ohlora_core.store import RecipeDir

VERSIONS = ("v1", "v2", "v3", "v4")


def latent_directions(
    run: Run,
    latent_w: LatentW,
    scores: PropertyScoresV2 | PropertyScoresV2Cnn,
    out: RecipeDir,
    *,
    method: str,
    quantile: float,
) -> StageResult:
    """A unit direction per property in w space (InterFaceGAN), calibrated so that a requested value is the
    property's normalised score; held-out accuracy / correlation per property."""
    import time

    import numpy as np
    import pandas as pd

    from ohlora_core.directions import fit_directions, save_directions
    from ohlora_core.io import atomic_write_csv
    from ohlora_core.scores.common import SCORE_COLUMNS, SCORE_NAMES

    table = pd.read_csv(scores.table, index_col=0 if isinstance(scores, PropertyScoresV2) else None)
    w = np.load(latent_w.w)[table["img_no"].to_numpy()]
    t0 = time.perf_counter()
    d = fit_directions(
        w, table[list(SCORE_COLUMNS)].to_numpy(), SCORE_NAMES, method=method, quantile=quantile, seed=run.seed
    )
    seconds = time.perf_counter() - t0
    files = LatentDirections(out.open())
    save_directions(files.directions, d)
    metrics = pd.DataFrame(d.metrics)
    atomic_write_csv(files.metrics, metrics.round(4))
    run.log(f"{method} directions for {len(SCORE_NAMES)} properties from {len(w)} images in {seconds:.1f} s")
    if d.rank() < len(SCORE_NAMES):
        run.log(
            f"warning: the {len(SCORE_NAMES)} directions span only {d.rank()} dimensions ({len(w)} images): "
            "properties cannot all be moved independently; conditional moves are least-squares compromises"
        )
    return StageResult(
        [files.directions.name, files.metrics.name],
        path=files.directions.name,
        tables={"metrics": metrics},
        figures={
            "images": len(w),
            "normals_rank": d.rank(),
            "method": method,
            "fit_seconds": round(seconds, 2),
            **({"note": SMOKE_NOTE} if run.smoke else {}),
        },
    )


def controllability_report(
    run: Run,
    property_score_cnn: PropertyScoreCnn,
    finetuned: Mapping[str, object | None],
    directions: LatentDirections | None,
    pretrained,
    out: RecipeDir,
    *,
    z: int,
    stride: int,
    conditional: bool,
) -> StageResult:
    """The original v3 test (z's x 50 eyes/mouth/pose combinations, property CNN in eval mode) for every method
    present: `finetuned` {version: its files or None}, `directions` (with `pretrained`, a callable giving the
    pretrained generator) or None. Correlation, MAE, pass share, leakage and time per image per method."""
    import pandas as pd

    from ohlora_core import controllability as ctl
    from ohlora_core.io import atomic_write_csv

    cnn = _property_cnn(property_score_cnn)
    methods, skipped = _methods(run, finetuned, directions, pretrained, conditional)
    zs = ctl.report_latents(z, run.seed)
    reports = [
        ctl.evaluate(name, method, cnn, zs, run.device, stride=stride, log=run.log) for name, method in methods.items()
    ]
    files = ControllabilityReport(out.open())
    table = pd.DataFrame([r.summary() for r in reports])
    leakage = pd.DataFrame(
        [{"method": r.name, "requested": p, **row} for r in reports for p, row in r.leakage().items()]
    )
    atomic_write_csv(files.table, table.round(4))
    atomic_write_csv(files.leakage, leakage.round(4))
    pictures = {
        f"scatter_{r.name}": (_scatter(r, files, run.caption), f"{r.name}: requested vs measured") for r in reports
    }
    return StageResult(
        [files.table.name, files.leakage.name, *(files.scatter(r.name).name for r in reports)],
        path=files.table.name,
        tables={"report": table, "leakage": leakage},
        pictures=pictures,
        figures={
            "methods": ", ".join(methods) or "none",
            "skipped": "; ".join(skipped) or "none",
            "z_per_method": len(zs),
            "combinations_per_z": len(range(0, 50, stride)),
            **({"note": SMOKE_NOTE} if run.smoke else {}),
        },
    )


def _property_cnn(files: PropertyScoreCnn):
    from ohlora_core.cnn.models import PropertyScoreCNN
    from ohlora_core.io import load_checkpoint, load_state_dict_strict

    cnn = PropertyScoreCNN()
    load_state_dict_strict(cnn, load_checkpoint(files.checkpoint), str(files.checkpoint))
    return cnn


def _methods(run: Run, finetuned, directions, pretrained, conditional: bool) -> tuple[dict, list[str]]:
    from ohlora_core import controllability as ctl
    from ohlora_core.directions import load_directions
    from ohlora_core.finetune.generate import VERSION_LABELS
    from ohlora_core.stylegan import load_generator

    methods, skipped = {}, []
    for version in VERSIONS:
        files = finetuned.get(version)
        if files is None:
            skipped.append(f"{version}: stylegan_finetune_{version} not materialized")
            continue
        methods[version] = ctl.finetuned_method(
            load_generator(files.generator, device=run.device), VERSION_LABELS[version]
        )
    if directions is None:
        skipped.append("directions: latent_directions not materialized")
    else:
        methods["directions"] = ctl.directions_method(
            pretrained().to(run.device), load_directions(directions.directions), conditional
        )
    return methods, skipped


def _scatter(report, files: ControllabilityReport, caption: str | None):
    from ohlora_core.finetune import protocol
    from ohlora_core.pictures import save_png, scatter_panels

    panels = {
        f"{report.name} {p}": (report.intended[:, :, k].ravel(), report.measured[:, :, protocol.INDEX[p]].ravel())
        for k, p in enumerate(protocol.PROPERTIES)
    }
    picture = scatter_panels(panels, caption=caption)
    save_png(picture, files.scatter(report.name))
    return picture
