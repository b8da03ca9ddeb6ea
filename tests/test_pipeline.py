"""The whole smoke graph (README's main command, conftest.smoke_graph): what every asset wrote and said,
the CLI against the pipeline's own images, and smoke and full never sharing a history."""

import shutil

import dagster as dg
import pandas as pd

from ohlora_core import artifacts as a
from tests.dagster_support import materialize, meta


def _meta(graph, name: str) -> dict:
    with graph.instance() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["smoke", name]))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_every_asset_wrote_its_files_and_metadata(smoke_graph):
    cur = smoke_graph.layout().current
    assert _meta(smoke_graph, "raw_images")["count"] == 40
    labels = _meta(smoke_graph, "hand_labels")
    assert labels["labelled"] == 30 and labels["stand_in_labels"] is True
    models = sorted(p.name for p in (cur(a.GenderQualityModels).dir / "models").iterdir())
    assert models == sorted(f"{p}_model_{k}.pt" for p in ("gender", "quality") for k in range(5))
    scores = pd.read_csv(cur(a.GenderQualityScores).table, index_col=0)
    assert list(scores.columns) == ["img_no", "img_path", "gender_score", "quality_score"]
    assert sorted(scores["img_no"]) == list(range(40))

    kept = pd.read_csv(cur(a.FilteredImages).table)
    assert kept["img_path"].str.startswith("artifacts/smoke/raw_images/current/images/").all()  # relative to the root
    assert len(kept) == _meta(smoke_graph, "filtered_images")["kept"] > 0
    assert ((kept["gender_score"] >= 0.7) & (kept["quality_score"] >= 0.9)).all()

    seg = _meta(smoke_graph, "segmentation_maps")
    # random-weight images rarely hold a face MTCNN accepts; the rest are parsed from the centre box
    assert seg["parsed"] == len(kept) and seg["no_face_count"] == 0 and 0 < seg["smoke_centre_crops"] <= len(kept)
    for version, cls in a.PROPERTY_SCORES.items():
        table = pd.read_csv(cur(cls).table, index_col=0)
        assert sorted(table["img_no"]) == sorted(kept["img_no"])
        assert _meta(smoke_graph, f"property_scores_{version}")["histograms"].startswith("![raw score histograms](")
    compare = pd.read_csv(cur(a.PropertyScoresV2VsCnn).table)
    assert {"eyes_v2", "eyes_v2_cnn", "eyes_diff"} <= set(compare.columns) and len(compare) == len(kept)


def test_the_fine_tuned_generators_and_the_report(smoke_graph):
    from ohlora_core.finetune.gan import LOG_COLUMNS
    from ohlora_core.stylegan import load_discriminator, load_generator

    cur = smoke_graph.layout().current
    for version, labels_n in (("v1", 7), ("v4", 3)):
        files, m = cur(a.GAN_FINETUNES[version]), _meta(smoke_graph, f"stylegan_finetune_{version}")
        assert m["steps"] == 2 and m["resumed_from"] == "no (fresh run)"  # smoke: 2 small steps
        assert m["loss_plot"].startswith("![v") and "| idx | d_loss |" in m["last_steps"]
        log = pd.read_csv(files.train_log, index_col=0)
        assert list(log.columns[: len(LOG_COLUMNS)]) == LOG_COLUMNS and len(log) == 2
        G = load_generator(files.generator)  # bare state_dicts, like the original's files
        D = load_discriminator(files.discriminator, minibatch_std_group_size=16)
        assert (G.label_size, G.label_embed_dim, D.label_size, D.label_mode) == (labels_n, 16, labels_n, "concat")
        assert not files.snapshot.exists() and (files.dir / "samples" / "epoch_0000.png").is_file()
    assert (
        _meta(smoke_graph, "stylegan_finetune_v2")["steps"] == 2
        and _meta(smoke_graph, "stylegan_finetune_v3")["steps"] == 2
    )
    assert load_generator(cur(a.StyleganFinetuneV2).generator).label_embed_dim == 16
    assert load_generator(cur(a.StyleganFinetuneV3).generator).label_embed_dim == 24  # dense0 536 -> w
    assert pd.read_csv(cur(a.StyleganFinetuneV3).test_results)["passed"].isin(["O", "X"]).all()
    assert sorted(p.name for p in cur(a.FinalSamples).dir.glob("*.jpg")) == [f"{i:06d}.jpg" for i in range(4)]

    report = _meta(smoke_graph, "controllability_report")
    assert report["methods"] == "v1, v2, v3, v4, directions" and report["skipped"] == "none"
    assert "meaningless" in report["note"] and report["report"].startswith("| method | z | pass_share |")
    assert report["combinations_per_z"] == 8  # smoke: every 7th of the 50
    table = pd.read_csv(cur(a.ControllabilityReport).table)
    assert table["method"].tolist() == ["v1", "v2", "v3", "v4", "directions"] and (table["seconds_per_image"] > 0).all()
    assert report["scatter_directions"].startswith("![directions: requested vs measured](data:image/png")


def test_ohlora_generate_gives_the_assets_first_images(smoke_graph, tmp_path):
    """The CLI with the same generator, z (from the seed: no z passed v3's smoke test), labels and n (so the
    same batches of 4: a batch's float rounding depends on its size)."""
    import subprocess
    import sys

    assert _meta(smoke_graph, "finetuned_samples")["z"].startswith("seeded")
    out = tmp_path / "cli"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ohlora_core.cli",
            "generate",
            "--version",
            "v3",
            "--storage",
            str(smoke_graph.root),
            "--mode",
            "smoke",
            "-n",
            "4",
            "--seed",
            "0",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.jpg")) == [f"{i:06d}.jpg" for i in range(4)]
    samples = smoke_graph.layout().current(a.FinalSamples)
    for i in range(4):
        assert (out / f"{i:06d}.jpg").read_bytes() == samples.image(i).read_bytes()


def test_the_report_skips_methods_that_are_not_there(smoke_graph, tmp_path):
    """A storage where v2 was never fine-tuned: the report runs on the rest and says why v2 is missing."""
    root = tmp_path / "storage"
    shutil.copytree(smoke_graph.root, root, symlinks=True)
    shutil.rmtree(root / "artifacts" / "smoke" / "stylegan_finetune_v2")
    with dg.instance_for_test() as instance:
        m = meta(materialize("smoke", ["controllability_report"], root, instance), "smoke", "controllability_report")
    assert m["methods"] == "v1, v3, v4, directions" and m["skipped"] == "v2: stylegan_finetune_v2 not materialized"
