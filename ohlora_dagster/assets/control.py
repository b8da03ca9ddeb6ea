"""Stage 6 — property control without retraining (w-space directions) and one controllability report
for every method (fine-tuned v1..v4, directions), side by side."""
import dagster as dg
from pydantic import Field

from ohlora_dagster.assets.generation import latent_codes, load_stylegan
from ohlora_dagster.previews import markdown_image, markdown_table
from ohlora_dagster.resources import OhloraSettings
from ohlora_dagster.retry import retry_transient
from ohlora_dagster.tags import GPU_TAGS

CONTROL_VERSION = "1"
SMOKE_NOTE = "smoke mode: random weights and stand-in scores — the figures are meaningless, the code paths are real"
SMOKE_STRIDE = 5  # smoke: every 5th of the 50 combinations (CPU minutes); full mode runs all 50


@dg.asset(
    group_name="control",
    deps=[latent_codes],
    code_version=CONTROL_VERSION,
    kinds={"pytorch", "numpy"},
    description="w = mapping(z) of every image under the pretrained generator (float32 [N, 512]).",
)
def latent_w(context: dg.AssetExecutionContext, settings: OhloraSettings) -> dg.MaterializeResult:
    import numpy as np
    import torch

    from ohlora_core.artifacts import LatentCodes, LatentW
    from ohlora_core.io import atomic_save_npy

    G, weights = load_stylegan(settings)
    z = np.load(settings.current(LatentCodes).latents)
    stage, files = settings.stage(LatentW, {"weights": weights, "latents": settings.data_version(LatentCodes),
                                            "version": CONTROL_VERSION})
    G = G.to(settings.resolved_device).eval()
    with torch.no_grad():
        w = np.concatenate([G.mapping(torch.from_numpy(z[i:i + 1024]).to(settings.resolved_device))["w"].cpu().numpy()
                            for i in range(0, len(z), 1024)]).astype(np.float32)
    atomic_save_npy(files.w, w)
    digest = stage.promote([files.w.name])
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={"count": len(w), "w_std": float(w.std()), "weights_source": weights,
                  "path": dg.MetadataValue.path(str(settings.current(LatentW).w)), **settings.mode_metadata()},
    )


class DirectionsConfig(dg.Config):
    method: str = Field(default="svm", pattern="^(svm|ridge)$", description="svm (InterFaceGAN: linear SVM on the "
                        "top / bottom quantile) or ridge (regression of the score on w).")
    scores: str = Field(default="v2", pattern="^(v2|v2_cnn)$", description="Fit on the v2 scores or on the property "
                        "CNN's predictions of them.")
    quantile: float = Field(default=0.25, gt=0, lt=0.5, description="svm: share of images at each end used as classes.")


class ReportConfig(dg.Config):
    z: int | None = Field(default=None, gt=0, description="z's per method (the original's test: 30); unset = 30 / 1 (smoke).")
    conditional: bool = Field(default=True, description="Directions: move each property along its normal with the "
                              "other properties' normals projected out (InterFaceGAN's conditional manipulation).")


def build_control_assets(v2_version: str | None = None) -> list[dg.AssetsDefinition]:
    """`latent_directions` and `controllability_report`; their code version carries the v2 score
    algorithm version (they are fitted on / judged by what the v2 scores define)."""
    from ohlora_core.scores import v2 as scores_v2

    version = f"{CONTROL_VERSION}+scores-v2-{v2_version or scores_v2.ALGORITHM_VERSION}"

    @dg.asset(
        group_name="control",
        deps=[latent_w, "filtered_images", "property_scores_v2", "property_scores_v2_cnn"],
        code_version=version,
        kinds={"scikitlearn", "numpy"},
        description="A unit direction per property in w space (InterFaceGAN), calibrated so that a requested value is "
                    "the property's normalised score; held-out accuracy / correlation per property.",
    )
    def latent_directions(context: dg.AssetExecutionContext, config: DirectionsConfig,
                          settings: OhloraSettings) -> dg.MaterializeResult:
        import time

        import numpy as np
        import pandas as pd

        from ohlora_core.artifacts import LatentDirections, LatentW, PropertyScoresV2, PropertyScoresV2Cnn
        from ohlora_core.directions import fit_directions, save_directions
        from ohlora_core.io import atomic_write_csv
        from ohlora_core.scores.common import SCORE_COLUMNS, SCORE_NAMES

        source = PropertyScoresV2 if config.scores == "v2" else PropertyScoresV2Cnn
        table = pd.read_csv(settings.current(source).table, index_col=0 if source is PropertyScoresV2 else None)
        w = np.load(settings.current(LatentW).w)[table["img_no"].to_numpy()]
        stage, files = settings.stage(LatentDirections, {"config": config.model_dump(), "seed": settings.seed,
                                                         "w": settings.data_version(LatentW),
                                                         "scores": settings.data_version(source), "version": version})
        t0 = time.perf_counter()
        d = fit_directions(w, table[list(SCORE_COLUMNS)].to_numpy(), SCORE_NAMES, method=config.method,
                           quantile=config.quantile, seed=settings.seed)
        seconds = time.perf_counter() - t0
        save_directions(files.directions, d)
        metrics = pd.DataFrame(d.metrics)
        atomic_write_csv(files.metrics, metrics.round(4))
        digest = stage.promote([files.directions.name, files.metrics.name])
        context.log.info(f"{config.method} directions for {len(SCORE_NAMES)} properties from {len(w)} images in {seconds:.1f} s")
        if d.rank() < len(SCORE_NAMES):
            context.log.warning(f"the {len(SCORE_NAMES)} directions span only {d.rank()} dimensions ({len(w)} images): "
                                "properties cannot all be moved independently; conditional moves are least-squares compromises")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={"images": len(w), "normals_rank": d.rank(), "method": config.method, "scores": config.scores, "fit_seconds": round(seconds, 2),
                      "metrics": markdown_table(metrics), **({"note": SMOKE_NOTE} if settings.is_smoke else {}),
                      "path": dg.MetadataValue.path(str(settings.current(LatentDirections).directions)),
                      **settings.mode_metadata()},
        )


    @dg.asset(
        group_name="control",
        deps=[latent_directions, "property_score_cnn", "stylegan_finetune_v1", "stylegan_finetune_v2",
              "stylegan_finetune_v3", "stylegan_finetune_v4"],
        code_version=version,
        kinds={"pytorch"},
        pool="gpu",
        op_tags=GPU_TAGS,
        description="The original v3 test (30 z x 50 eyes/mouth/pose combinations, property CNN in eval mode) for every "
                    "method present — fine-tuned v1..v4 and w directions — side by side: correlation, MAE, pass share, "
                    "leakage, time per image.",
    )
    @retry_transient
    def controllability_report(context: dg.AssetExecutionContext, config: ReportConfig,
                               settings: OhloraSettings) -> dg.MaterializeResult:
        import pandas as pd

        from ohlora_core import artifacts, controllability as ctl
        from ohlora_core.cnn.models import PropertyScoreCNN
        from ohlora_core.directions import load_directions
        from ohlora_core.finetune.generate import VERSION_LABELS
        from ohlora_core.finetune import protocol
        from ohlora_core.io import atomic_write_csv, load_checkpoint, load_state_dict_strict
        from ohlora_core.pictures import save_png, scatter_panels
        from ohlora_core.store import MissingArtifact
        from ohlora_core.stylegan import load_generator

        device = settings.resolved_device
        cnn_file = settings.current(artifacts.PropertyScoreCnn).checkpoint
        cnn = PropertyScoreCNN()
        load_state_dict_strict(cnn, load_checkpoint(cnn_file), str(cnn_file))
        zs = ctl.report_latents(config.z or (1 if settings.is_smoke else 30), settings.seed)
        methods, skipped, versions = {}, [], {}
        for version in ("v1", "v2", "v3", "v4"):
            try:
                files = settings.current(artifacts.FINETUNES[version])
            except MissingArtifact:
                skipped.append(f"{version}: stylegan_finetune_{version} not materialized")
                continue
            methods[version] = ctl.finetuned_method(load_generator(files.generator, device=device), VERSION_LABELS[version])
            versions[version] = settings.data_version(artifacts.FINETUNES[version])
        try:
            d = load_directions(settings.current(artifacts.LatentDirections).directions)
            G, _ = load_stylegan(settings)
            methods["directions"] = ctl.directions_method(G.to(device), d, config.conditional)
            versions["directions"] = settings.data_version(artifacts.LatentDirections)
        except MissingArtifact:
            skipped.append("directions: latent_directions not materialized")
        stage, files = settings.stage(artifacts.ControllabilityReport, {
            "methods": versions, "cnn": settings.data_version(artifacts.PropertyScoreCnn), "z": len(zs),
            "conditional": config.conditional, "seed": settings.seed, "device": device, "version": version})
        reports = []
        for name, method in methods.items():
            context.log.info(f"controllability: {name}, {len(zs)} z x 50 combinations")
            reports.append(ctl.evaluate(name, method, cnn, zs, device, stride=SMOKE_STRIDE if settings.is_smoke else 1))
        table = pd.DataFrame([r.summary() for r in reports])
        leakage = pd.DataFrame([{"method": r.name, "requested": p, **row} for r in reports for p, row in r.leakage().items()])
        atomic_write_csv(files.table, table.round(4))
        atomic_write_csv(files.leakage, leakage.round(4))
        pictures = {}
        for r in reports:
            panels = {f"{r.name} {p}": (r.intended[:, :, k].ravel(), r.measured[:, :, protocol.INDEX[p]].ravel())
                      for k, p in enumerate(protocol.PROPERTIES)}
            picture = scatter_panels(panels)
            save_png(picture, files.scatter(r.name))
            pictures[f"scatter_{r.name}"] = markdown_image(picture, f"{r.name}: intended (x) vs measured (y)")
        digest = stage.promote([files.table.name, files.leakage.name, *(files.scatter(r.name).name for r in reports)])
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={
                "methods": ", ".join(methods) or "none",
                "skipped": "; ".join(skipped) or "none",
                "z_per_method": len(zs),
                "combinations_per_z": 50 // SMOKE_STRIDE if settings.is_smoke else 50,
                "report": markdown_table(table) if len(table) else dg.MetadataValue.md("no method available"),
                "leakage": markdown_table(leakage) if len(leakage) else dg.MetadataValue.md("-"),
                **pictures,
                **({"note": SMOKE_NOTE} if settings.is_smoke else {}),
                "path": dg.MetadataValue.path(str(settings.current(artifacts.ControllabilityReport).table)),
                **settings.mode_metadata(),
            },
        )

    return [latent_directions, controllability_report]
