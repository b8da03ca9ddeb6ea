"""Stage 5 — StyleGAN fine-tuning: label-conditioned generators (the original's StyleGAN-FineTune v1..v4)
and the final images.

Each version is a record in `ohlora_core.finetune.variants`; v1 and v4 share one asset body (GAN),
v2 (CNN in the loop) and v3 (conditional VAE) have their own, all on the one training loop of
`ohlora_core.finetune.loop`. Code versions carry the score algorithm versions their labels and CNNs
come from, so a score bump marks the fine-tuned generators stale too.
"""
import dagster as dg
from pydantic import Field

from ohlora_core.scores import v1 as scores_v1
from ohlora_core.scores import v2 as scores_v2
from ohlora_dagster.assets.generation import raw_images
from ohlora_dagster.previews import markdown_image, markdown_table
from ohlora_dagster.resources import OhloraSettings
from ohlora_dagster.retry import retry_transient
from ohlora_dagster.tags import GPU_TAGS

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
    from ohlora_core.io import load_checkpoint
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


class CnnLoopConfig(dg.Config):
    """v2; unset values are the original's (smoke mode: a couple of small steps)."""

    step_groups: int | None = Field(default=None, gt=0, description="Step groups of 50 steps (early stopping after "
                                    "100 without improvement ends it sooner); unset = 1000 (full) / 1 (smoke).")
    max_steps_per_group: int | None = Field(default=None, gt=0, description="unset = 50 (full) / 2 (smoke).")
    batch_size: int | None = Field(default=None, gt=0, description="unset = 16; 2 in smoke mode.")
    freeze: bool = Field(default=False, description="Train only G's mapping network with the CNN frozen (the "
                         "original's README intent; its code trains everything, the default).")
    cnn_eval: bool = Field(default=False, description="Property CNN in eval mode (the original leaves dropout on).")
    keep_v1_dense0: bool = Field(default=False, description="Keep v1's learnt mapping.dense0 (the original "
                                 "re-initialises it).")


class CvaeConfig(dg.Config):
    """v3; unset values are the original's (smoke mode: a couple of small steps, 1 test z)."""

    epochs: int | None = Field(default=None, gt=0, description="unset = 20 (full; the original stopped by hand and "
                               "adopted epoch 5) / 1 (smoke).")
    max_steps_per_epoch: int | None = Field(default=None, gt=0, description="unset = all (full) / 2 (smoke).")
    batch_size: int | None = Field(default=None, gt=0, description="unset = 8; 2 in smoke mode.")
    test_z: int | None = Field(default=None, gt=0, description="z's in the per-epoch test; unset = 30 / 1 (smoke).")
    cnn_eval: bool = Field(default=False, description="Both CNNs in eval mode in the loss and the test (the original "
                           "leaves dropout on).")
    gender_input_01: bool = Field(default=False, description="Feed the gender CNN [0, 1] images as it was trained "
                                  "(the original feeds the generator's [-1, 1]).")
    keep_v1_dense0: bool = Field(default=False, description="Keep v1's learnt mapping.dense0 weights for z (the "
                                 "original re-initialises the whole layer).")


class FinalSamplesConfig(dg.Config):
    """The original's final inference (run_fine_tuned_generator.py) from the v3 generator."""

    eyes: float = Field(default=1.8)
    mouth: float = Field(default=1.6)
    pose: float = Field(default=-1.2)
    n: int | None = Field(default=None, gt=0, description="Images; unset = 20 (full) / 4 (smoke).")
    noise: float = Field(default=0.3, ge=0, description="Std of the noise added to z for images 1..n-1.")
    epoch: int | None = Field(default=None, ge=0, description="Use v3's checkpoint and passing z of this epoch; "
                              "unset = the last epoch with a passing z, else the final generator with a seeded z.")


def _v1_generator(settings: OhloraSettings) -> tuple[dict, str]:
    from ohlora_core.artifacts import StyleganFinetuneV1
    from ohlora_core.io import load_checkpoint
    from ohlora_core.stylegan.checkpoint import select_state_dict

    v1 = settings.current(StyleganFinetuneV1)
    return (select_state_dict(load_checkpoint(v1.generator), "generator", str(v1.generator)),
            f"stylegan_finetune_v1 {settings.data_version(StyleganFinetuneV1)}")


def _cnn_state(path) -> dict:
    from ohlora_core.io import load_checkpoint, state_dict_in

    return state_dict_in(load_checkpoint(path), str(path))


def _trained_or_resume(context, stage, version: str) -> bool:
    if stage.verified():
        context.log.info(f"{version}: this recipe was trained before ({stage.path}); not retraining")
        return True
    return False


def run_v2(context: dg.AssetExecutionContext, config: CnnLoopConfig, settings: OhloraSettings,
           code_version: str) -> dg.MaterializeResult:
    import dataclasses

    import pandas as pd
    from PIL import Image

    from ohlora_core.artifacts import PropertyScoreCnn, StyleganFinetuneV2
    from ohlora_core.finetune.cnn_loop import train_v2
    from ohlora_core.finetune.variants import V2

    smoke, device = settings.is_smoke, settings.resolved_device
    variant = V2.with_overrides(freeze=config.freeze, cnn_eval=config.cnn_eval, keep_v1_dense0=config.keep_v1_dense0,
                                batch_size=config.batch_size or (SMOKE_DEFAULTS["batch_size"] if smoke else V2.batch_size))
    groups = config.step_groups or (1 if smoke else 1000)
    max_steps = config.max_steps_per_group or (SMOKE_DEFAULTS["max_steps_per_epoch"] if smoke else None)
    g_state, start = _v1_generator(settings)
    recipe = {"variant": dataclasses.asdict(variant), "groups": groups, "max_steps": max_steps, "start": start,
              "cnn": settings.data_version(PropertyScoreCnn), "seed": settings.seed, "device": device,
              "version": code_version}
    stage, files = settings.stage(StyleganFinetuneV2, recipe)
    if _trained_or_resume(context, stage, "v2"):
        log = pd.read_csv(files.train_log, index_col=0)
        best = None
    else:
        context.log.info(f"fine-tune v2: {groups} step group(s) of {max_steps or variant.step_group_size} steps, "
                         f"batch {variant.batch_size}, {'mapping only' if variant.freeze else 'G and CNN train'}, on {device}")
        task, _, log = train_v2(variant, g_state, _cnn_state(settings.current(PropertyScoreCnn).checkpoint), files,
                                epochs=groups, seed=settings.seed, device=device, max_steps=max_steps,
                                samples_per_label=SMOKE_DEFAULTS["samples_per_label"] if smoke else 10,
                                log=context.log.info)
        best = (task.best.epoch, task.best.loss)
    outputs = [files.generator, files.train_log, files.loss_plot, *sorted(files.samples(0).parent.glob("*.png"))]
    digest = stage.promote(str(p.relative_to(files.dir)) for p in outputs)
    current = settings.current(StyleganFinetuneV2)
    group_loss = log.groupby("epoch")["loss"].mean()
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "step_groups": int(group_loss.size),
            "steps": len(log),
            "best_group": best[0] if best else int(group_loss.idxmin()),
            "best_group_loss": float(best[1]) if best else float(group_loss.min()),
            "first_group_loss": float(group_loss.iloc[0]),
            "learns": "the group-mean loss fell from {:.4f} to {:.4f}".format(group_loss.iloc[0], group_loss.min())
            if group_loss.min() < group_loss.iloc[0] else "no: the loss never went below its first group's "
            "(the original reports that v2 does not learn)",
            "loss_plot": markdown_image(Image.open(current.loss_plot), "v2 loss"),
            "path": dg.MetadataValue.path(str(current.dir)),
            "start_weights": start,
            **settings.mode_metadata(),
        },
    )


def run_v3(context: dg.AssetExecutionContext, config: CvaeConfig, settings: OhloraSettings,
           code_version: str) -> dg.MaterializeResult:
    import dataclasses

    import pandas as pd
    from PIL import Image

    from ohlora_core import artifacts
    from ohlora_core.cnn.data import decode_images
    from ohlora_core.finetune.cvae import train_v3
    from ohlora_core.finetune.variants import V3
    from ohlora_dagster.assets.filtering import raw_image_paths

    smoke, device = settings.is_smoke, settings.resolved_device
    variant = V3.with_overrides(
        cnn_eval=config.cnn_eval, gender_input_01=config.gender_input_01, keep_v1_dense0=config.keep_v1_dense0,
        batch_size=config.batch_size or (SMOKE_DEFAULTS["batch_size"] if smoke else V3.batch_size),
        test_z=config.test_z or (1 if smoke else V3.test_z))
    epochs = config.epochs or (SMOKE_DEFAULTS["epochs"] if smoke else 20)
    max_steps = config.max_steps_per_epoch or (SMOKE_DEFAULTS["max_steps_per_epoch"] if smoke else None)
    table = pd.read_csv(settings.current(artifacts.PropertyScoresV2Cnn).table)
    columns = [f"{p}_score" for p in variant.labels]
    usable = table.dropna(subset=columns)
    g_state, start = _v1_generator(settings)
    recipe = {"variant": dataclasses.asdict(variant), "epochs": epochs, "max_steps": max_steps, "start": start,
              "labels": settings.data_version(artifacts.PropertyScoresV2Cnn),
              "images": settings.data_version(artifacts.RawImages),
              "cnn": settings.data_version(artifacts.PropertyScoreCnn),
              "gender": settings.data_version(artifacts.GenderQualityModels),
              "seed": settings.seed, "device": device, "version": code_version}
    stage, files = settings.stage(artifacts.StyleganFinetuneV3, recipe)
    if not _trained_or_resume(context, stage, "v3"):
        images = decode_images(raw_image_paths(settings, usable["img_no"]))
        context.log.info(f"fine-tune v3: {len(usable)} images, batch {variant.batch_size}, {epochs} epoch(s)"
                         + (f" of at most {max_steps} step(s)" if max_steps else "")
                         + f", {variant.test_z} test z per epoch, on {device}")
        models = settings.current(artifacts.GenderQualityModels)
        train_v3(variant, g_state, _cnn_state(settings.current(artifacts.PropertyScoreCnn).checkpoint),
                 _cnn_state(models.model("gender", 0)), images, usable[columns].to_numpy(), files, epochs=epochs,
                 seed=settings.seed, device=device, max_steps=max_steps, log=context.log.info)
    tests = pd.read_csv(files.test_results)
    outputs = [files.generator, files.encoder, files.train_log, files.test_results, files.loss_plot,
               *files.dir.glob("stylegan_gen_fine_tuned_v3_ckpt_*.pth"), *files.dir.glob("test_z_vector_*.csv"),
               *files.samples(0).parent.glob("*.png")]
    digest = stage.promote(sorted(str(p.relative_to(files.dir)) for p in outputs))
    current = settings.current(artifacts.StyleganFinetuneV3)
    per_epoch = tests.groupby("epoch").agg(passed_z=("passed", lambda s: int((s == "O").sum())), of=("passed", "size"),
                                           best_eyes_corr=("eyes_corr", "max"), best_mouth_corr=("mouth_corr", "max"),
                                           best_pose_corr=("pose_corr", "max")).reset_index()
    log = pd.read_csv(files.train_log, index_col=0)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "images": len(usable),
            "epochs": epochs,
            "steps": len(log),
            "final_total_loss": float(log["total_loss"].iloc[-1]),
            "pass_table": markdown_table(per_epoch),
            "epochs_with_a_passing_z": ", ".join(map(str, per_epoch.loc[per_epoch["passed_z"] > 0, "epoch"])) or "none",
            "loss_plot": markdown_image(Image.open(current.loss_plot), "v3 losses"),
            "path": dg.MetadataValue.path(str(current.dir)),
            "start_weights": start,
            **settings.mode_metadata(),
        },
    )


def final_samples(context: dg.AssetExecutionContext, config: FinalSamplesConfig,
                  settings: OhloraSettings) -> dg.MaterializeResult:
    import numpy as np
    from PIL import Image

    from ohlora_core.artifacts import FinalSamples, StyleganFinetuneV3
    from ohlora_core.finetune.generate import default_z, generate, load_z_csv
    from ohlora_core.pictures import image_grid
    from ohlora_core.stylegan import load_generator

    v3 = settings.current(StyleganFinetuneV3)
    passing = sorted(int(p.stem.rsplit("_", 1)[1]) for p in v3.dir.glob("test_z_vector_*.csv"))
    epoch = config.epoch if config.epoch is not None else (passing[-1] if passing else None)
    if epoch is not None and epoch not in passing:
        raise ValueError(f"v3 kept no checkpoint for epoch {epoch} (no test z passed then); epochs with one: "
                         f"{passing or 'none'}")
    checkpoint = v3.checkpoint(epoch, "gen") if epoch is not None else v3.generator
    z0 = load_z_csv(v3.test_z_vector(epoch)) if epoch is not None else default_z(settings.seed)
    n = config.n or (4 if settings.is_smoke else 20)
    values = {"eyes": config.eyes, "mouth": config.mouth, "pose": config.pose}
    stage, files = settings.stage(FinalSamples, {"v3": settings.data_version(StyleganFinetuneV3), "epoch": epoch,
                                                 "values": values, "n": n, "noise": config.noise,
                                                 "seed": settings.seed, "device": settings.resolved_device})
    G = load_generator(checkpoint, device=settings.resolved_device)
    paths = generate(G, "v3", z0, values, files.dir, n=n, noise=config.noise, seed=settings.seed,
                     device=settings.resolved_device, source=str(checkpoint))
    grid = image_grid([np.asarray(Image.open(p)) for p in paths], cols=min(n, 10), thumb=96)
    digest = stage.promote(p.name for p in paths)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "images": n,
            "generator": str(checkpoint.name),
            "z": f"test_z_vector_{epoch:04d}.csv (passed v3's test)" if epoch is not None
            else "seeded N(0, I) (no test z passed in v3's run)",
            "labels": ", ".join(f"{k} {v:g}" for k, v in values.items()) + ", others 0",
            "preview": markdown_image(grid, "final samples"),
            "path": dg.MetadataValue.path(str(settings.current(FinalSamples).dir)),
            **settings.mode_metadata(),
        },
    )


def build_finetune_assets(v1_version: str | None = None, v2_version: str | None = None) -> list[dg.AssetsDefinition]:
    """The fine-tuning stage; code versions carry the score algorithm versions (read at call time)."""
    from ohlora_dagster.assets.filtering import CNN_VERSION
    from ohlora_dagster.assets.scores import PROPERTY_CNN_VERSION

    v1_version = v1_version or scores_v1.ALGORITHM_VERSION
    v2_version = v2_version or scores_v2.ALGORITHM_VERSION
    base = f"{FINETUNE_VERSION}+scores-v1-{v1_version}"
    through_cnn = f"{base}+scores-v2-{v2_version}+cnn-{PROPERTY_CNN_VERSION}"
    versions = {"v1": base, "v4": f"{base}+scores-v2-{v2_version}", "v2": through_cnn,
                "v3": f"{through_cnn}+gender-{CNN_VERSION}"}
    deps = {"v1": ["property_scores_v1", raw_images], "v4": ["stylegan_finetune_v1", "property_scores_v2_cnn", raw_images],
            "v2": ["stylegan_finetune_v1", "property_score_cnn"],
            "v3": ["stylegan_finetune_v1", "property_score_cnn", "gender_quality_models", "property_scores_v2_cnn",
                   raw_images]}
    what = {"v1": "GAN fine-tuning of the mapping network on the 7 v1 property scores, and its discriminator",
            "v4": "v1 re-trained (GAN) on eyes, mouth and pose from the property-score CNN",
            "v2": "v1's generator trained through the property-score CNN on random labels (the original's failed "
                  "attempt, kept to show what it does)",
            "v3": "conditional VAE: an encoder + v1's generator as decoder, trained so the property CNN sees the "
                  "requested eyes/mouth/pose (the version the original adopted)"}
    bodies = {"v1": (GanFinetuneConfig, lambda c, cfg, s: run_finetune("v1", c, cfg, s, versions["v1"])),
              "v4": (GanFinetuneConfig, lambda c, cfg, s: run_finetune("v4", c, cfg, s, versions["v4"])),
              "v2": (CnnLoopConfig, lambda c, cfg, s: run_v2(c, cfg, s, versions["v2"])),
              "v3": (CvaeConfig, lambda c, cfg, s: run_v3(c, cfg, s, versions["v3"]))}

    def build(version: str) -> dg.AssetsDefinition:
        config_cls, body = bodies[version]

        @dg.asset(name=f"stylegan_finetune_{version}", group_name="finetune", deps=deps[version],
                  code_version=versions[version], kinds={"pytorch"}, pool="gpu", op_tags=GPU_TAGS,
                  description=f"StyleGAN-FineTune-{version}: {what[version]}.")
        @retry_transient
        def _asset(context: dg.AssetExecutionContext, config: config_cls, settings: OhloraSettings) -> dg.MaterializeResult:
            return body(context, config, settings)

        return _asset

    @dg.asset(name="finetuned_samples", group_name="finetune", deps=["stylegan_finetune_v3"],
              code_version=versions["v3"], kinds={"pytorch"}, pool="gpu", op_tags=GPU_TAGS,
              description="The original's final images: 20 images around v3's passing z (0.3 noise), eyes 1.8, "
                          "mouth 1.6, pose -1.2 (other versions and values: `ohlora generate`).")
    @retry_transient
    def finetuned_samples(context: dg.AssetExecutionContext, config: FinalSamplesConfig,
                          settings: OhloraSettings) -> dg.MaterializeResult:
        return final_samples(context, config, settings)

    return [build("v1"), build("v4"), build("v2"), build("v3"), finetuned_samples]
