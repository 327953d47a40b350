"""Channels-last 2.5D backbones (timm's Swin V2 gives NHWC features) and 3D encoders (torchvision's video
ResNets) for volumes: each against the timm / torchvision model run by hand, checkpoints and `segment`."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.models import (
    ENCODERS_3D,
    Encoder3dSegmenter,
    VolumeSegmenter,
    ZPoolSegmenter,
    create,
    load_checkpoint,
    save_checkpoint,
)

SWIN = "swinv2_tiny_window8_256"
TINY_SWIN = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}  # swinv2_tiny's layout, smaller


def reference_swin(model: nn.Module, in_chans: int, **kwargs) -> nn.Module:
    """timm's features_only Swin V2 built here, holding ``model.backbone``'s weights."""
    swin = timm.create_model(SWIN, pretrained=False, features_only=True, in_chans=in_chans, **TINY_SWIN, **kwargs)
    swin.load_state_dict(model.backbone.state_dict())
    return swin.eval()


def test_swin_v2_volume_segmenter_equals_timms_nhwc_features_permuted_by_hand():
    torch.manual_seed(0)
    model = VolumeSegmenter(SWIN, group_size=2, num_classes=2, neck_channels=8, img_size=64, **TINY_SWIN).eval()
    swin = reference_swin(model, 2, img_size=64)
    assert model.output_stride == swin.feature_info.reduction()[-1] == 32 and model.input_size == (64, 64)
    x = torch.randn(2, 6, 64, 64)
    with torch.no_grad():
        raw = [swin(x[:, s:s + 2])[-1] for s in (0, 2, 4)]
        assert raw[0].shape == (2, 2, 2, swin.feature_info.channels()[-1])  # timm's NHWC: what broke the neck
        per_group = [model.neck(f.permute(0, 3, 1, 2)) for f in raw]
        volume = model.blocks(torch.stack(per_group, dim=2))
        expected = model.head(torch.cat([volume.mean(dim=2), volume.max(dim=2).values], dim=1))
        out = model(x)
    assert out.shape == (2, 2, 64 // 32, 64 // 32)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_swin_v2_zpool_segmenter_equals_timms_features_permuted_by_hand():
    torch.manual_seed(0)
    model = ZPoolSegmenter(SWIN, stem_channels=2, num_blocks=0, zpool="mean", strict_img_size=False, **TINY_SWIN).eval()
    swin = reference_swin(model, 2, strict_img_size=False)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        pooled = model.stem(x.unsqueeze(1)).mean(dim=2)
        expected = model.head(swin(pooled)[-1].permute(0, 3, 1, 2))
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    assert expected.shape == (1, 1, 3, 2)


def test_a_fixed_size_swin_refuses_another_tile_with_the_fix_and_strict_img_size_false_takes_any():
    model = VolumeSegmenter(SWIN, group_size=1, img_size=64, **TINY_SWIN).eval()
    with pytest.raises(ShapeError, match="takes 64x64 tiles only, got 96x96; build it with img_size=<your tile side>"):
        model(torch.zeros(1, 1, 96, 96))
    free = VolumeSegmenter(SWIN, group_size=1, strict_img_size=False, upsample=True, **TINY_SWIN).eval()
    assert free.input_size is None
    with torch.no_grad():
        assert free(torch.zeros(1, 1, 96, 160)).shape == (1, 1, 96, 160)


def reference_video(model: Encoder3dSegmenter, name: str) -> nn.Module:
    """torchvision's video ResNet ``name`` built here (first conv on one channel), holding the encoder's weights."""
    from torchvision.models import video

    net = getattr(video, name)(weights=None)
    conv = net.stem[0]
    net.stem[0] = nn.Conv3d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
    stages = ("stem", "layer1", "layer2", "layer3", "layer4")
    missing, unexpected = net.load_state_dict({f"{stages[int(k.split('.')[0])]}.{k.partition('.')[2]}": v
                                               for k, v in model.encoder.state_dict().items()}, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected  # every encoder weight found its place
    return net.eval()


@pytest.mark.parametrize("name", ENCODERS_3D)
def test_a_3d_encoder_segmenter_equals_torchvisions_stages_run_by_hand(name):
    torch.manual_seed(0)
    model = Encoder3dSegmenter(name, num_classes=2).eval()
    net = reference_video(model, name)
    x = torch.randn(2, 5, 32, 64)
    with torch.no_grad():
        f = net.layer4(net.layer3(net.layer2(net.layer1(net.stem(x.unsqueeze(1))))))  # (B, 512, Z', H/16, W/16)
        a = f.numpy()
        pooled = torch.from_numpy(np.concatenate([a.mean(axis=2), a.max(axis=2)], axis=1))
        expected = model.head(pooled)
        out = model(x)
    assert model.output_stride == 32 // f.shape[3] == 16 and out.shape == (2, 2, 2, 4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_each_encoder_level_has_torchvisions_channels_and_stride():
    from torchvision.models import video

    net = video.mc3_18(weights=None).eval()
    net.stem[0] = nn.Conv3d(1, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False)
    y = torch.zeros(1, 1, 3, 32, 32)
    with torch.no_grad():
        for index, stage in enumerate((net.stem, net.layer1, net.layer2, net.layer3)):
            y = stage(y)
            model = Encoder3dSegmenter("mc3_18", feature_index=index, zpool="max").eval()
            assert model.output_stride == 32 // y.shape[-1] and model.head.in_channels == y.shape[1], index
            assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, *y.shape[-2:])
            assert len(model.encoder) == index + 1  # deeper stages are not built


def test_bad_encoders_and_volumes_are_refused():
    with pytest.raises(InvalidArgumentError, match="encoder"):
        Encoder3dSegmenter("resnet18")
    with pytest.raises(InvalidArgumentError, match="feature_index 5 is out of range.*-5..4"):
        Encoder3dSegmenter("r3d_18", feature_index=5)
    model = Encoder3dSegmenter("r3d_18", feature_index=1)
    with pytest.raises(ShapeError, match="multiples of the output stride 2"):
        model(torch.zeros(1, 4, 33, 32))
    with pytest.raises(ShapeError, match="B, Z, H, W"):
        model(torch.zeros(1, 1, 4, 32, 32))


@pytest.mark.parametrize("name,kwargs", [
    ("volume_segmenter", {"backbone": SWIN, "group_size": 2, "neck_channels": 8, "img_size": 64, **TINY_SWIN}),
    ("encoder3d_segmenter", {"encoder": "r2plus1d_18", "feature_index": 2, "num_classes": 2}),
])
def test_a_checkpoint_round_trip_gives_identical_outputs(tmp_path, name, kwargs):
    torch.manual_seed(0)
    model = create(f"kagglekit/{name}", **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():  # away from the initialisation, so that a rebuilt model would differ
            p.add_(torch.randn_like(p) * 0.01)
    save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("name,kwargs", [
    ("volume_segmenter", {"backbone": SWIN, "group_size": 2, "neck_channels": 8, "img_size": 64, **TINY_SWIN}),
    ("encoder3d_segmenter", {"encoder": "mc3_18", "feature_index": 2}),
])
def test_segment_runs_the_model_on_a_volume_at_its_output_stride(tmp_path, name, kwargs):
    from competitions import config
    from test_segment_volumes import VOLUME_INPUTS, decoded, fragment

    from kagglekit.pipeline import segment

    volume = np.random.default_rng(0).integers(0, 256, (10, 64, 128), dtype=np.uint8)  # its own seed: the same in any test order
    fragment(tmp_path, volume, None)
    torch.manual_seed(0)
    model = create(f"kagglekit/{name}", **kwargs).eval()
    save_checkpoint(model, tmp_path / "m.safetensors")
    no_mask = {k: v for k, v in VOLUME_INPUTS.items() if k != "mask"}
    cfg = config([(tmp_path / "m.safetensors", 1.0)], inputs={**no_mask, "z": "middle:4"}, preprocess={"normalize": "volume"},
                 tiling={"tile": 64, "stride": 64, "margin": 0}, threshold={"kind": "fixed", "value": 0.5})
    report = segment(cfg, tmp_path, tmp_path / "out")
    s = model.output_stride
    assert report.out_scale == s and report.predicted == ["frag"] and not report.fallback
    chosen = volume[3:7].astype(np.float64)  # the middle 4 of 10 slices, standardised as numpy does it
    assert report.normalization["frag"] == pytest.approx((chosen.mean(), chosen.std()), rel=1e-9)
    x = torch.from_numpy((chosen - chosen.mean()) / chosen.std()).float()[None]
    with torch.no_grad():  # the two 64 x 64 tiles side by side, each run alone
        logits = torch.cat([model(x[..., :64]), model(x[..., 64:])], dim=-1)[0, 0].numpy()
    sure = np.kron(np.abs(logits) > 1e-4, np.ones((s, s), bool))  # pixels whose logit is not on the threshold
    expected = np.kron(logits >= 0, np.ones((s, s), bool))
    mask = decoded(tmp_path / "out", (64, 128))
    assert mask.shape == (64, 128) and sure.mean() > 0.95 and np.array_equal(mask[sure], expected[sure])
