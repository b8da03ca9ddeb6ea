"""FaceXFormer: official state-dict layout, parity with the official code, loading errors, smoke weights."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from ohlora_core.io import CheckpointError, load_state_dict_strict
from ohlora_core.segmentation.facexformer import FaceXFormer, load_facexformer, smoke_facexformer

FIX = Path(__file__).parent / "fixtures" / "facexformer"


@pytest.fixture(scope="module")
def parity():
    return np.load(FIX / "parity.npz")


@pytest.fixture(scope="module")
def rng_check():
    return {}


@pytest.fixture(scope="module")
def model(parity, rng_check):
    torch.manual_seed(99)
    before = torch.random.get_rng_state()
    built = smoke_facexformer(int(parity["seed"]))
    rng_check["untouched"] = torch.equal(torch.random.get_rng_state(), before)
    return built


@pytest.fixture(scope="module")
def logits(model, parity):
    with torch.no_grad():
        return model.parse(normalise(parity["images"]))


def normalise(images: np.ndarray) -> torch.Tensor:
    norm = torchvision.transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    return torch.stack([norm(torchvision.transforms.functional.to_tensor(im)) for im in images])


def test_state_dict_layout_equals_the_official(model):
    official = [line.split("\t") for line in (FIX / "official_keys.tsv").read_text().splitlines()]
    ours = [[k, ",".join(map(str, v.shape)), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]
    assert len(official) == 505
    assert ours == official  # names, shapes, dtypes, order


def test_parsing_logits_match_the_official_model(model, parity, logits):
    """Weights: smoke_facexformer(seed), built whatever the global RNG state (seeded 99 here);
    expected values: the official FaceXFormer with those weights (fixtures/README.md)."""
    assert logits.shape == (2, 11, 224, 224)
    # the official logits span about [-0.31, 0.33]; we agree to ~2e-7 on x86 CPU
    np.testing.assert_allclose(logits[:, :, 3::7, 3::7].numpy(), parity["logits_strided"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(logits.double().sum(dim=(2, 3)).numpy(), parity["channel_sum"], rtol=0, atol=1e-2)
    np.testing.assert_allclose(logits.double().pow(2).sum(dim=(2, 3)).numpy(), parity["channel_sumsq"], rtol=1e-5)
    labels = logits.softmax(dim=1).argmax(dim=1).numpy()
    top2 = logits.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]).numpy() >= 1e-5  # random weights leave a few near-ties
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(labels[clear], parity["labels"][clear])
    assert (labels != parity["labels"]).mean() < 1e-3
    assert len(np.unique(parity["labels"])) == 11  # the fixture exercises every class


def test_parse_labels_is_softmax_argmax_and_batch_independent(model, parity, logits):
    labels = model.parse_labels(normalise(parity["images"][1:]))  # batch of 1 vs the batch of 2 above
    assert labels.dtype == torch.int64 and labels.shape == (1, 224, 224)
    top2 = logits[1:].topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) >= 1e-5
    assert torch.equal(labels[clear], logits[1:].argmax(dim=1)[clear])


def test_parse_rejects_wrong_shapes(model):
    with pytest.raises(ValueError, match=r"expects \(B, 3, 224, 224\), got \(1, 3, 256, 256\)"):
        model.parse(torch.zeros(1, 3, 256, 256))


def test_smoke_weights_leave_the_global_rng_alone(model, rng_check):
    assert rng_check["untouched"] is True
    assert not model.training
    # vectors got seeded noise: no LayerNorm keeps its default ones/zeros
    assert not torch.equal(model.face_decoder.transformer.norm_final_attn.weight, torch.ones(256))


def test_load_facexformer_round_trip(model, tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict_backbone": model.state_dict(), "epoch": 12}, path)
    loaded = load_facexformer(path, "cpu")
    assert isinstance(loaded, FaceXFormer) and not loaded.training
    theirs = loaded.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in model.state_dict().items())


def test_strict_load_names_file_and_keys(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save(
        {"state_dict_backbone": {"linear_fuse.weight": torch.zeros(256, 1024, 1, 1), "foo.bar": torch.zeros(1)}}, path
    )
    with pytest.raises(CheckpointError) as err:
        load_facexformer(path)
    msg = str(err.value)
    assert str(path) in msg and "state_dict_backbone" in msg
    assert "missing keys (504)" in msg and "backbone.0.0.0.weight" in msg
    assert "unexpected keys (1): foo.bar" in msg

    bad = tmp_path / "notfx.pt"
    torch.save({"generator": {"w": torch.zeros(1)}}, bad)
    with pytest.raises(CheckpointError, match="expected a FaceXFormer checkpoint with key 'state_dict_backbone'"):
        load_facexformer(bad)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_facexformer(tmp_path / "absent.pt")
    for name, obj, found in (
        ("tensor.pt", torch.zeros(3, 2), r"a Tensor of shape \(3, 2\)"),
        ("list.pt", [torch.zeros(1)], "a list"),
    ):
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError, match=rf"{name}: expected a FaceXFormer checkpoint .* found {found}"):
            load_facexformer(tmp_path / name)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        load_facexformer(tmp_path / "empty.pt")


def test_shape_mismatch_is_reported(model):
    sd = dict(model.state_dict())
    sd["face_decoder.mask_tokens.weight"] = torch.zeros(19, 256)  # e.g. a 19-class parser
    with pytest.raises(
        CheckpointError, match=r"face_decoder.mask_tokens.weight: checkpoint \(19, 256\) vs model \(11, 256\)"
    ):
        load_state_dict_strict(model, sd, "x.pt")
