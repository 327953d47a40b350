"""2.5D volume segmenter: output shape and 1/32 scale over backbones, a brute-force group loop, ZPool."""

import numpy as np
import pytest
import timm
import torch

from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.models import VolumeSegmenter, ZPool, ZPoolSegmenter


@pytest.mark.parametrize("backbone", ["resnet10t", "efficientnet_b0", "mobilenetv3_small_050"])
def test_output_is_one_32nd_for_several_backbones(backbone):
    torch.manual_seed(0)
    model = VolumeSegmenter(backbone, group_size=3, num_classes=2).eval()
    reference = timm.create_model(backbone, pretrained=False, features_only=True, in_chans=3)
    assert model.output_stride == reference.feature_info.reduction()[-1] == 32
    with torch.no_grad():
        assert model(torch.randn(1, 6, 64, 96)).shape == (1, 2, 2, 3)
        assert model(torch.randn(2, 9, 96, 32)).shape == (2, 2, 3, 1)
    upsampled = VolumeSegmenter(backbone, group_size=3, num_classes=2, upsample=True).eval()
    with torch.no_grad():
        assert upsampled(torch.randn(1, 6, 64, 96)).shape == (1, 2, 64, 96)


def test_feature_index_sets_the_stride():
    model = VolumeSegmenter("resnet10t", group_size=2, feature_index=-2).eval()
    assert model.output_stride == 16
    with torch.no_grad():
        assert model(torch.randn(1, 4, 64, 64)).shape == (1, 1, 4, 4)


@pytest.mark.parametrize("cls", [VolumeSegmenter, ZPoolSegmenter])
def test_feature_index_must_name_an_existing_level(cls):
    strides = timm.create_model("resnet10t", pretrained=False, features_only=True).feature_info.reduction()
    n = len(strides)
    for index in (-n, n - 1):  # the first and the last level, counted either way
        assert cls("resnet10t", feature_index=index).output_stride == strides[index]
    for index in (n, -n - 1, 7):  # used to wrap around to another level
        with pytest.raises(InvalidArgumentError, match=f"feature_index {index} is out of range.*-{n}..{n - 1}"):
            cls("resnet10t", feature_index=index)


@pytest.mark.parametrize("group_size,group_stride,z", [(3, 3, 9), (3, 1, 5), (2, 2, 2)])
def test_forward_equals_plain_loop_over_groups(group_size, group_stride, z):
    torch.manual_seed(0)
    model = VolumeSegmenter("resnet10t", group_size=group_size, group_stride=group_stride, num_blocks=2,
                            neck_channels=8).eval()
    x = torch.randn(2, z, 64, 64)
    with torch.no_grad():
        starts = range(0, z - group_size + 1, group_stride)
        per_group = [model.neck(model.backbone(x[:, s:s + group_size])[-1]) for s in starts]
        volume = model.blocks(torch.stack(per_group, dim=2))  # (B, C, G, h, w)
        expected = model.head(torch.cat([volume.mean(dim=2), volume.max(dim=2).values], dim=1))
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_per_input_normalisation_makes_output_invariant_to_intensity_scale():
    torch.manual_seed(0)
    model = VolumeSegmenter("resnet10t", group_size=2, normalize="per_input").eval()
    x = torch.rand(2, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x * 250.0 + 17.0), model(x), atol=1e-4, rtol=1e-4)


def test_zpool_against_numpy():
    v = torch.randn(2, 3, 5, 4, 6)
    a = v.numpy()
    np.testing.assert_allclose(ZPool("mean_max")(v).numpy(), np.concatenate([a.mean(2), a.max(2)], axis=1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ZPool("mean")(v).numpy(), a.mean(2), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ZPool("max")(v).numpy(), a.max(2))
    with pytest.raises(ShapeError):
        ZPool()(torch.zeros(2, 3, 4, 5))
    with pytest.raises(KagglekitError):
        ZPool("median")


@pytest.mark.parametrize("backbone", ["resnet10t", "mobilenetv3_small_050"])
def test_zpool_segmenter_shape_and_scale(backbone):
    torch.manual_seed(0)
    model = ZPoolSegmenter(backbone, num_classes=3, stem_channels=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 7, 64, 96)).shape == (1, 3, 2, 3)
        assert ZPoolSegmenter(backbone, upsample=True).eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


@pytest.mark.parametrize("shape,message", [
    ((1, 8, 64, 64), "groups of 3"),
    ((1, 2, 64, 64), "groups of 3"),
    ((1, 6, 60, 64), "multiples of the output stride 32"),
    ((6, 64, 64), "B, Z, H, W"),
])
def test_bad_volumes_are_rejected(shape, message):
    model = VolumeSegmenter("resnet10t", group_size=3)
    with pytest.raises(ShapeError, match=message):
        model(torch.zeros(shape))
