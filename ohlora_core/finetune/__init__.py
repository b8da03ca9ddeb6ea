"""StyleGAN fine-tuning (the original's StyleGAN-FineTune v1..v4), one entry point for all four:

    from ohlora_core.finetune import TrainInputs, train
    from ohlora_core.finetune.variants import V1
    result = train(V1, TrainInputs(generator=g, discriminator=d, images=images, labels=labels), files,
                   epochs=40, seed=0)

* `variants`: each version as a small declarative record (labels, widths, trainable groups, batch, its
  task class, its inputs, its sample labels...).
* `training`: `train`, `TrainInputs`, `TrainResult`.
* `loop`: the one resumable, seeded training loop (`run_task`) every version's task runs in.
* `gan` (v1, v4), `cnn_loop` (v2), `cvae` (v3): the tasks; `loss`: the GAN loss in phases;
  `restructure`: conditional G/D from a checkpoint the original's way; `protocol`: the original's
  controllability test; `samples`: per-epoch sample grids.
"""

_LAZY = ("train", "TrainInputs", "TrainResult")


def __getattr__(name: str):
    # Loaded on first use: `variants` (and so this package) must import without torch, because the
    # asset layer reads the variant records while loading its definitions.
    if name in _LAZY:
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
