"""Layer shapes / state_dict keys equal the original modules; crops and output shapes."""

import json
from pathlib import Path

import torch

from ohlora_core.cnn.models import PROPERTY_HEADS, GenderCNN, PropertyScoreCNN, QualityCNN, conv_output_shape

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "cnn" / "original_param_shapes.json").read_text())


def _shapes(model):
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def test_param_keys_and_shapes_equal_original():
    assert _shapes(GenderCNN()) == FIXTURE["gender"]
    assert _shapes(QualityCNN()) == FIXTURE["quality"]
    assert _shapes(PropertyScoreCNN()) == FIXTURE["property"]


def test_flatten_sizes():
    assert GenderCNN().fc1[0].in_features == 9216 == 256 * 6 * 6
    assert QualityCNN().fc1[0].in_features == 12288 == 256 * 4 * 12
    m = PropertyScoreCNN()
    got = {name: getattr(m, name).fc1[0].in_features for name, *_ in PROPERTY_HEADS}
    assert got == {
        "eyes_score_cnn": 7168,
        "hair_color_score_cnn": 4608,
        "hair_length_score_cnn": 6144,
        "mouth_score_cnn": 3072,
        "pose_score_cnn": 10752,
        "background_score_cnn": 6144,
    }
    assert m.background_score_cnn.fc_final.out_features == 2


def test_property_crop_regions():
    regions = {name: (r.start, r.stop, c.start, c.stop) for name, r, c, _, _ in PROPERTY_HEADS}
    assert regions == {
        "eyes_score_cnn": (96, 144, 64, 192),
        "hair_color_score_cnn": (0, 256, 0, 256),
        "hair_length_score_cnn": (128, 256, 0, 256),
        "mouth_score_cnn": (160, 208, 96, 160),
        "pose_score_cnn": (112, 160, 88, 168),
        "background_score_cnn": (0, 128, 0, 256),
    }
    assert conv_output_shape(PROPERTY_HEADS[4][3], 48, 80) == (128, 6, 14)


def test_property_heads_see_only_their_crop():
    torch.manual_seed(0)
    m = PropertyScoreCNN().eval()
    x = torch.zeros(1, 3, 256, 256)
    base = m(x)
    assert base.shape == (1, 7) and list(base.shape) == [1, FIXTURE["property_output_shape"][1]]
    x2 = x.clone()
    x2[:, :, 170:200, 100:150] = 1.0  # inside the mouth crop, the bottom half (hair length) and the whole image
    changed = (m(x2) - base).abs()[0] > 0
    #          eyes  hcolor hlength mouth pose  bmean  bstd
    assert changed.tolist() == [False, True, True, True, False, False, False]


def test_quality_sees_only_top_band():
    torch.manual_seed(0)
    m = QualityCNN().eval()
    x = torch.rand(2, 3, 256, 256)
    y = x.clone()
    y[:, :, 64:, :] = 0
    y[:, :, :, :64] = 0
    y[:, :, :, 192:] = 0
    out = m(x)
    assert out.shape == (2, 1) and torch.equal(out, m(y))
    assert GenderCNN().eval()(x).shape == (2, 1)


def test_same_init_and_forward_as_original():
    """Under the same seed the original classes and ours initialise identical weights (same module
    order) and compute the same outputs (crop, flatten order, head order)."""
    expected = json.loads((Path(__file__).parent / "fixtures" / "cnn" / "original_seeded_outputs.json").read_text())
    for key, cls in (("gender", GenderCNN), ("quality", QualityCNN), ("property", PropertyScoreCNN)):
        torch.manual_seed(0)
        m = cls().eval()
        torch.manual_seed(1)
        x = torch.rand(2, 3, 256, 256)
        with torch.no_grad():
            got = m(x).double()
        assert torch.allclose(got, torch.tensor(expected[key], dtype=torch.float64), rtol=0, atol=1e-6), key
