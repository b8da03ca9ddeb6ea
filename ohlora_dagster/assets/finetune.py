"""Stage 5 — StyleGAN fine-tuning: label-conditioned generators (the original's StyleGAN-FineTune v1, v4).

Each version is `ohlora_core.finetune.variants.V1 / V4`; one asset body runs any of them. Code versions
carry the score algorithm versions of their labels (v1: v1 scores; v4: v1 through its starting
point, v2 through the property CNN), so a score bump marks the fine-tuned generators stale too.
"""
import dagster as dg
from pydantic import Field

from ohlora_core.scores import v1 as scores_v1
from ohlora_core.scores import v2 as scores_v2
from ohlora_dagster.assets.generation import RESOLUTION, raw_images
from ohlora_dagster.previews import markdown_image, markdown_table
from ohlora_dagster.resources import OhloraSettings

FINETUNE_VERSION = "1"
# smoke mode: a couple of steps at a small batch on the CPU (the full-size G/D take ~10 s per image there)
SMOKE_DEFAULTS = {"epochs": 1, "max_steps_per_epoch": 2, "batch_size": 2, "samples_per_label": 1}
FULL_EPOCHS = {"v1": 40, "v4": 80}  # what the original trained before stopping by hand (its logs)


class GanFinetuneConfig(dg.Config):
    """Unset values are the original's choices (smoke mode: a couple of small steps)."""

    epochs: int | None = Field(default=None, gt=0, description="Epochs; unset = 40 (v1) / 80 (v4), as the "
                               "original ran them; 1 in smoke mode.")
    max_steps_per_epoch: int | None = Field(default=None, gt=0, description="Cap on batches per epoch; unset = "
                                            "all (full) / 2 (smoke).")
    batch_size: int | None = Field(default=None, gt=0, description="unset = 16 (v1) / 8 (v4); 2 in smoke mode.")
    g_lr: float | None = Field(default=None, gt=0, description="Generator AdamW lr; unset = 1e-4.")
    d_lr: float | None = Field(default=None, gt=0, description="Discriminator AdamW lr; unset = 1e-4.")
    style_mixing_prob: float | None = Field(default=None, ge=0, le=1, description="unset = 0.9 (the original "
                                            "still mixes in v4, although its README says otherwise).")
    mbstd_group: int | None = Field(default=None, gt=0, description="Minibatch-std group; unset = 16.")
    matching_aware: bool = Field(default=False, description="Also show D reals with shuffled labels as fakes, "
                                 "so it can punish label/image mismatch (the original cannot; README).")
    snapshot_every: int = Field(default=100, gt=0, description="Steps between resumable snapshots (and every epoch).")
    samples_per_label: int | None = Field(default=None, gt=0, description="z per label row in the per-epoch "
                                          "sample grid; unset = 10 (full) / 1 (smoke).")


def _start_weights(settings: OhloraSettings, version: str):
    """(G state_dict, D state_dict, id) a version starts from: the pretrained genforce model for v1,
    the current v1 files for v4."""
    from ohlora_core.artifacts import StyleganFinetuneV1
    from ohlora_core.io import load_checkpoint, sha256_file
    from ohlora_core.stylegan import smoke_discriminator, smoke_generator
    from ohlora_core.stylegan.checkpoint import select_state_dict

    if version == "v4":
        v1 = settings.current(StyleganFinetuneV1)
        return (select_state_dict(load_checkpoint(v1.generator), "generator", str(v1.generator)),
                select_state_dict(load_checkpoint(v1.discriminator), "discriminator", str(v1.discriminator)),
                f"stylegan_finetune_v1 {settings.data_version(StyleganFinetuneV1)}")

    def smoke(seed):
        return smoke_generator(seed).state_dict(), smoke_discriminator(seed).state_dict()

    def load(path):
        ckpt = load_checkpoint(path)
        return select_state_dict(ckpt, "generator", str(path)), select_state_dict(ckpt, "discriminator", str(path))

    (g, d), weights = settings.load_model(smoke, load, settings.stylegan_checkpoint,
                                          "StyleGAN checkpoint (genforce celeba_partial-256x256)")
    return g, d, weights


def run_finetune(version: str, context: dg.AssetExecutionContext, config: GanFinetuneConfig,
                 settings: OhloraSettings, code_version: str) -> dg.MaterializeResult:
    import dataclasses

    import pandas as pd

    from ohlora_core import artifacts
    from ohlora_core.cnn.data import decode_images
    from ohlora_core.finetune.gan import train_gan
    from ohlora_core.finetune.variants import VARIANTS
    from ohlora_core.io import CheckpointError
    from ohlora_dagster.assets.filtering import raw_image_paths

    smoke = settings.is_smoke
    pick = {k: getattr(config, k) for k in ("batch_size", "g_lr", "d_lr", "style_mixing_prob", "matching_aware")}
    pick["mbstd_group"] = config.mbstd_group
    if smoke and config.batch_size is None:
        pick["batch_size"] = SMOKE_DEFAULTS["batch_size"]
    variant = VARIANTS[version].with_overrides(**{k: v for k, v in pick.items() if v is not None})
    epochs = config.epochs or (SMOKE_DEFAULTS["epochs"] if smoke else FULL_EPOCHS[version])
    max_steps = config.max_steps_per_epoch or (SMOKE_DEFAULTS["max_steps_per_epoch"] if smoke else None)
    samples = config.samples_per_label or (SMOKE_DEFAULTS["samples_per_label"] if smoke else 10)

    source = {cls.NAME: cls for cls in (artifacts.PropertyScoresV1, artifacts.PropertyScoresV2Cnn)}[variant.score_asset]
    table = pd.read_csv(settings.current(source).table, index_col=0 if source is artifacts.PropertyScoresV1 else None)
    columns = [f"{p}_score" for p in variant.labels]
    usable = table.dropna(subset=columns)
    g_state, d_state, weights = _start_weights(settings, version)
    device = settings.resolved_device
    recipe = {"variant": dataclasses.asdict(variant), "epochs": epochs, "max_steps": max_steps, "samples": samples,
              "labels": settings.data_version(source), "images": settings.data_version(artifacts.RawImages),
              "start": weights, "seed": settings.seed, "device": device, "version": code_version}
    files_cls = artifacts.GAN_FINETUNES[version]
    stage, files = settings.stage(files_cls, recipe)
    if stage.verified():
        context.log.info(f"{version}: this recipe was trained before ({stage.path}); not retraining")
        log = pd.read_csv(files.train_log, index_col=0)
        resumed = None
    else:
        images = decode_images(raw_image_paths(settings, usable["img_no"]))
        context.log.info(f"fine-tune {version}: {len(usable)} images ({len(table) - len(usable)} with NaN labels left "
                         f"out), labels {', '.join(variant.labels)}, batch {variant.batch_size}, {epochs} epoch(s)"
                         + (f" of at most {max_steps} step(s)" if max_steps else "") + f", on {device}")
        try:
            run = train_gan(variant, g_state, d_state, images, usable[columns].to_numpy(), files, epochs=epochs,
                            seed=settings.seed, device=device, max_steps=max_steps, snapshot_every=config.snapshot_every,
                            samples_per_label=samples, log=context.log.info)
        except CheckpointError as exc:
            raise CheckpointError(f"fine-tune {version} cannot start from {weights}: {exc}") from exc
        log, resumed = run.log, run.fit.resumed_from
    outputs = [files.generator, files.discriminator, files.train_log, files.real_fake, files.loss_plot,
               *sorted(files.samples(0).parent.glob("epoch_*.png"))]
    digest = stage.promote(str(p.relative_to(files.dir)) for p in outputs)
    current = settings.current(files_cls)
    last = log.tail(1).iloc[0]
    from PIL import Image

    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "images": len(usable),
            "left_out_nan_labels": len(table) - len(usable),
            "labels": ", ".join(variant.labels),
            "epochs": epochs,
            "steps": len(log),
            "resumed_from": f"epoch {resumed[0]}, step {resumed[1]}" if resumed else "no (fresh run)",
            "final_d_loss": float(last["d_loss"]),
            "final_g_loss": float(last["g_loss"]),
            "final_real_fake_auroc": float(last["real_fake_auroc"]),
            "mean_g_updates_per_step": float(log["g_train_count"].mean()),
            "seconds_per_step": float(log["step_seconds"].mean()),
            "last_steps": markdown_table(log.tail(5)),
            "loss_plot": markdown_image(Image.open(current.loss_plot), "losses"),
            "real_fake": markdown_image(Image.open(current.real_fake), "reals (top) and fakes for their labels"),
            "settings_used": dg.MetadataValue.json({k: v for k, v in dataclasses.asdict(variant).items()
                                                    if k != "sample_labels"}),
            "path": dg.MetadataValue.path(str(current.dir)),
            "start_weights": weights,
            **settings.mode_metadata(),
        },
    )


def build_finetune_assets(v1_version: str | None = None, v2_version: str | None = None) -> list[dg.AssetsDefinition]:
    """`stylegan_finetune_v1` and `_v4`; code versions carry the score algorithm versions (at call time)."""
    v1_version = v1_version or scores_v1.ALGORITHM_VERSION
    v2_version = v2_version or scores_v2.ALGORITHM_VERSION
    versions = {"v1": f"{FINETUNE_VERSION}+scores-v1-{v1_version}",
                "v4": f"{FINETUNE_VERSION}+scores-v1-{v1_version}+scores-v2-{v2_version}"}
    deps = {"v1": ["property_scores_v1", raw_images], "v4": ["stylegan_finetune_v1", "property_scores_v2_cnn", raw_images]}
    labels = {"v1": "the 7 v1 property scores", "v4": "eyes, mouth and pose from the property-score CNN"}

    def build(version: str) -> dg.AssetsDefinition:
        @dg.asset(
            name=f"stylegan_finetune_{version}",
            group_name="finetune",
            deps=deps[version],
            code_version=versions[version],
            kinds={"pytorch"},
            pool="gpu",
            description=f"StyleGAN-FineTune-{version}: a {RESOLUTION}x{RESOLUTION} generator conditioned on "
                        f"{labels[version]} (GAN fine-tuning of the mapping network) and its discriminator.",
        )
        def _asset(context: dg.AssetExecutionContext, config: GanFinetuneConfig,
                   settings: OhloraSettings) -> dg.MaterializeResult:
            return run_finetune(version, context, config, settings, versions[version])

        return _asset

    return [build("v1"), build("v4")]
