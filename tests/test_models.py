"""kagglekit.models: factory families, heads, offline weights, key remapping, pretrained files."""

import numpy as np
import pytest
import torch
from torch import nn

from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError, WeightsNotFoundError
from kagglekit.models import (
    CheckpointError,
    ConcatPoolHead,
    UnsafeCheckpointError,
    WeightsMismatchError,
    create,
    list_models,
    load_weights,
    read_state_dict,
    remap_state_dict,
)

# name, kwargs, input shape, expected output shape
FAMILIES = [
    ("timm/resnet10t", dict(num_classes=3, in_channels=1), (2, 1, 64, 64), (2, 3)),
    ("timm/mobilenetv3_small_050", dict(num_classes=4, drop_path_rate=0.1), (2, 3, 64, 64), (2, 4)),
    ("timm/efficientnet_b0", dict(num_classes=2, head="concat_pool", drop_rate=0.2), (2, 3, 64, 64), (2, 2)),
    ("smp/unet/resnet18", dict(num_classes=2, in_channels=4), (1, 4, 64, 64), (1, 2, 64, 64)),
    ("smp/fpn/resnet18", dict(num_classes=1), (1, 3, 64, 96), (1, 1, 64, 96)),
    ("smp/unet/tu-resnet10t", dict(num_classes=3, drop_path_rate=0.1), (1, 3, 64, 64), (1, 3, 64, 64)),
    ("kagglekit/volume_segmenter", dict(backbone="resnet10t", group_size=3), (1, 9, 64, 96), (1, 1, 2, 3)),
    ("kagglekit/zpool_segmenter", dict(backbone="resnet10t", num_classes=2), (1, 5, 64, 64), (1, 2, 2, 2)),
    ("kagglekit/chowder", dict(in_dim=16, r=2, num_classes=3), (2, 7, 16), (2, 3)),
    ("kagglekit/gated_attention", dict(in_dim=16, hidden=8, num_classes=3), (2, 7, 16), (2, 3)),
]


@pytest.mark.parametrize("name,kwargs,in_shape,out_shape", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_family_builds_and_runs(name, kwargs, in_shape, out_shape):
    torch.manual_seed(0)
    model = create(name, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(in_shape))
    assert tuple(out.shape) == out_shape
    assert model.kagglekit_config == {"name": name, "kwargs": kwargs}


def test_registry_lists_own_models():
    assert {"kagglekit/volume_segmenter", "kagglekit/zpool_segmenter", "kagglekit/chowder",
            "kagglekit/gated_attention"} <= set(list_models())


def test_concat_pool_head_matches_closed_form():
    torch.manual_seed(0)
    head = ConcatPoolHead(5, 3).eval()
    with torch.no_grad():
        head.norm.running_mean.uniform_(-1, 1)
        head.norm.running_var.uniform_(0.5, 2)
        head.norm.weight.uniform_(0.5, 2)
        head.norm.bias.uniform_(-1, 1)
    x = torch.randn(4, 5, 6, 7).numpy()
    pooled = np.concatenate([x.mean(axis=(2, 3)), x.max(axis=(2, 3))], axis=1)
    bn = head.norm
    normed = (pooled - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + bn.eps) * bn.weight.detach().numpy() + bn.bias.detach().numpy()
    expected = normed @ head.fc.weight.detach().numpy().T + head.fc.bias.detach().numpy()
    with torch.no_grad():
        np.testing.assert_allclose(head(torch.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_concat_pool_head_says_what_to_do_with_a_training_batch_of_one():
    head = ConcatPoolHead(5, 3).train()
    with pytest.raises(ShapeError, match="drop_last=True"):
        head(torch.randn(1, 5, 6, 7))
    assert head(torch.randn(2, 5, 6, 7)).shape == (2, 3) and head.eval()(torch.randn(1, 5, 6, 7)).shape == (1, 3)


def test_concat_pool_model_is_backbone_plus_head():
    model = create("timm/resnet10t", num_classes=2, head="concat_pool").eval()
    assert isinstance(model.head, ConcatPoolHead)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.head(model.backbone.forward_features(x)))


@pytest.mark.parametrize("name,kwargs,message", [
    ("resnet18", {}, "must look like"),
    ("timm/not_a_model_xyz", {}, "timm has no model"),
    ("smp/unet", {}, "smp/<arch>/<encoder>"),
    ("smp/notanarch/resnet18", {}, "cannot build"),
    ("smp/unet/resnet18", dict(encoder_weights="imagenet"), "never downloads"),
    ("smp/unet/resnet18", dict(drop_path_rate=0.1), "tu-"),
    ("timm/resnet10t", dict(head="gem"), "unknown head"),
    ("kagglekit/nope", {}, "unknown model"),
    ("smp/unet/tu-not_a_model_xyz", {}, "timm has no model 'not_a_model_xyz'"),
    ("kagglekit/volume_segmenter", dict(backbone="not_a_model_xyz"), "timm has no model 'not_a_model_xyz'"),
    ("timm/resnet10t", dict(in_channels=0), "in_channels"),
    ("smp/unet/resnet18", dict(in_channels=0), "in_channels"),
    ("smp/unet/resnet18", dict(classes=2, num_classes=2), "classes= and num_classes= say the same thing"),
    ("timm/resnet10t", dict(in_chans=1, in_channels=1), "in_chans= and in_channels= say the same thing"),
    ("smp/unet/resnet18", dict(encoder_name="resnet34"), "the encoder is named in the name"),
    ("timm/resnet10t", dict(checkpoint_path="w.pth"), "pass weights=<local file>"),
    ("timm/resnet10t", dict(num_clases=3), "unexpected keyword argument 'num_clases'"),
    ("smp/unet/resnet18", dict(decoder_chanels=[8]), "no keyword .decoder_chanels. \\(did you mean .decoder_channels.\\?\\)"),
])
def test_bad_names_and_arguments(name, kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        create(name, **kwargs)


@pytest.mark.parametrize("name,kwargs", [
    ("timm/hf-hub:timm/resnet10t.c3_in1k", {}),
    ("timm/HF_HUB:timm/resnet10t.c3_in1k", dict(head="concat_pool", num_classes=2)),
    ("smp/unet/tu-hf-hub:timm/resnet10t.c3_in1k", {}),
    ("kagglekit/volume_segmenter", dict(backbone="hf-hub:timm/resnet10t.c3_in1k")),
    ("kagglekit/zpool_segmenter", dict(backbone="hf_hub:timm/resnet10t.c3_in1k")),
])
def test_hub_names_are_refused_before_any_download(monkeypatch, name, kwargs):
    import timm.models._hub

    downloads = []

    def spy(*args, **kw):  # timm fetches the Hub config.json through this even with pretrained=False
        downloads.append((args, kw))
        raise OSError("download attempted")

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", spy)
    with pytest.raises(InvalidArgumentError, match="never downloads.*plain timm architecture name"):
        create(name, **kwargs)
    assert downloads == []


def test_pretrained_without_local_file_and_missing_file(tmp_path):
    with pytest.raises(InvalidArgumentError, match="never downloads"):
        create("timm/resnet10t", pretrained=True)
    missing = tmp_path / "nowhere" / "resnet10t.safetensors"
    with pytest.raises(WeightsNotFoundError, match=str(missing)) as info:
        create("timm/resnet10t", weights=missing)
    assert "kaggle/input" in str(info.value)


@pytest.fixture
def source_model():
    torch.manual_seed(0)
    return create("timm/resnet10t", num_classes=3).eval()


def outputs_equal(a, b):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("wrap", [
    lambda sd: {f"module.{k}": v for k, v in sd.items()},
    lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
    lambda sd: {f"module._orig_mod.{k}": v for k, v in sd.items()},
    lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 7},
    lambda sd: {"n_averaged": torch.tensor(3), **{f"module.{k}": v for k, v in sd.items()}},
], ids=["module", "orig_mod", "module_orig_mod", "lightning_nested", "averaged_model"])
def test_wrapped_state_dicts_load(tmp_path, source_model, wrap):
    path = tmp_path / "weights.pth"
    torch.save(wrap(source_model.state_dict()), path)
    model = create("timm/resnet10t", num_classes=3, weights=path)
    assert outputs_equal(model, source_model)
    assert not model.kagglekit_load_report.missing and not model.kagglekit_load_report.unexpected


class LitModule(nn.Module):
    """A Lightning-style wrapper holding the network as ``.model``."""

    def __init__(self, model):
        super().__init__()
        self.model = model


@pytest.mark.parametrize("wrap", [
    lambda m: torch.compile(nn.DataParallel(m)),  # keys _orig_mod.module.*
    lambda m: torch.optim.swa_utils.AveragedModel(nn.DataParallel(m)),  # module.module.* and n_averaged
    lambda m: nn.DataParallel(LitModule(m)),  # module.model.*
], ids=["compile_data_parallel", "averaged_data_parallel", "data_parallel_lightning"])
def test_nested_wrapper_state_dicts_load(tmp_path, source_model, wrap):
    path = tmp_path / "weights.pth"
    torch.save(wrap(source_model).state_dict(), path)
    model = create("timm/resnet10t", num_classes=3, weights=path)
    assert outputs_equal(model, source_model)
    assert len(model.kagglekit_load_report.stripped_prefixes) == 2


def test_model_with_compiled_submodule_loads_its_own_state_dict(source_model):
    source_model.layer4 = torch.compile(source_model.layer4)
    model = create("timm/resnet10t", num_classes=3)
    model.layer4 = torch.compile(model.layer4)
    report = load_weights(model, source_model.state_dict())
    assert report.loaded == len(source_model.state_dict()) and not report.missing
    source_model.layer4, model.layer4 = source_model.layer4._orig_mod, model.layer4._orig_mod  # run uncompiled
    assert outputs_equal(model, source_model)


def test_timm_ema_state_dict_and_safetensors_load(tmp_path, source_model):
    from safetensors.torch import save_file
    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(source_model, decay=0.9)
    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, tmp_path / "ema.safetensors")
    model = create("timm/resnet10t", num_classes=3, weights=tmp_path / "ema.safetensors")
    assert outputs_equal(model, source_model)
    assert model.kagglekit_load_report.stripped_prefixes == ["module."]


def test_real_model_prefix_is_kept():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Linear(2, 2)

    target = Wrapper().state_dict()
    remapped, stripped = remap_state_dict({f"module.{k}": v for k, v in target.items()}, target)
    assert set(remapped) == {"model.weight", "model.bias"} and stripped == ["module."]


def test_strict_mismatch_and_non_strict_report(tmp_path, source_model):
    path = tmp_path / "w.pth"
    torch.save(source_model.state_dict(), path)
    with pytest.raises(WeightsMismatchError, match="fc.weight"):
        create("timm/resnet10t", num_classes=5, weights=path)
    model = create("timm/resnet10t", num_classes=5, weights=path, strict=False)
    report = model.kagglekit_load_report
    assert [m.split(":")[0] for m in report.mismatched] == ["fc.weight", "fc.bias"]
    assert torch.equal(model.conv1[0].weight, source_model.conv1[0].weight)
    with pytest.raises(WeightsMismatchError, match="no tensor name"):
        load_weights(nn.Linear(2, 2), path)


def test_timm_pretrained_file_adapts_head_and_input_conv(tmp_path):
    import timm

    torch.manual_seed(0)
    imagenet = timm.create_model("resnet10t", pretrained=False)  # stands in for a downloaded 1000-class file
    path = tmp_path / "resnet10t.pth"
    torch.save(imagenet.state_dict(), path)
    model = create("timm/resnet10t", num_classes=5, in_channels=1, weights=path, pretrained=True)
    report = model.kagglekit_load_report
    stem = imagenet.state_dict()["conv1.0.weight"]
    torch.testing.assert_close(model.state_dict()["conv1.0.weight"], stem.sum(dim=1, keepdim=True))  # timm's rule for 1 channel
    assert report.adapted and [m.split(":")[0] for m in report.mismatched] == ["fc.weight", "fc.bias"]
    assert torch.equal(model.layer4[0].conv1.weight, imagenet.layer4[0].conv1.weight)
    # the concat-pool model puts the file into its backbone
    wrapped = create("timm/resnet10t", num_classes=5, head="concat_pool", weights=path, pretrained=True)
    assert wrapped.kagglekit_load_report.target == "backbone"
    assert torch.equal(wrapped.backbone.layer4[0].conv1.weight, imagenet.layer4[0].conv1.weight)


def test_smp_encoder_file_loads_into_encoder(tmp_path):
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    encoder = smp.encoders.get_encoder("resnet18", in_channels=3, weights=None)
    state = {**encoder.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = create("smp/unet/resnet18", num_classes=2, weights=path, pretrained=True)
    assert model.kagglekit_load_report.target == "encoder"
    assert set(model.kagglekit_load_report.unexpected) == {"fc.weight", "fc.bias"}
    for k, v in encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    with pytest.raises(WeightsMismatchError):  # as a full-model checkpoint the decoder would be missing
        create("smp/unet/resnet18", num_classes=2, weights=path)


def test_smp_timm_universal_encoder_gets_a_timm_file(tmp_path):
    import timm

    torch.manual_seed(0)
    imagenet = timm.create_model("resnet10t", pretrained=False)  # stands in for a downloaded timm file
    torch.save(imagenet.state_dict(), tmp_path / "resnet10t.pth")
    model = create("smp/unet/tu-resnet10t", num_classes=2, weights=tmp_path / "resnet10t.pth", pretrained=True)
    report = model.kagglekit_load_report
    assert report.target == "encoder.model" and set(report.unexpected) == {"fc.weight", "fc.bias"}
    encoder = model.encoder.model.state_dict()
    assert report.loaded == len(encoder) > 0
    for k, v in encoder.items():
        assert torch.equal(v, imagenet.state_dict()[k]), k


def test_unreadable_files(tmp_path):
    bad = tmp_path / "broken.pth"
    for text in (b"not a checkpoint at all", b"hello world\n"):  # torch.load raises KeyError on the second
        bad.write_bytes(text)
        with pytest.raises(CheckpointError, match="could not read"):
            read_state_dict(bad)
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "opt.pth")
    with pytest.raises(KagglekitError, match="key="):
        read_state_dict(tmp_path / "opt.pth")
    assert issubclass(UnsafeCheckpointError, KagglekitError)


@pytest.mark.parametrize("name, theirs, ours", [
    ("smp/unet/tu-lcnet_050", dict(classes=1, encoder_depth=3, decoder_channels=[16, 8, 4]),
     dict(num_classes=1, encoder_depth=3, decoder_channels=[16, 8, 4])),
    ("smp/unet/resnet18", dict(classes=3, in_chans=2), dict(num_classes=3, in_channels=2)),
    ("timm/resnet10t", dict(in_chans=1, num_classes=2), dict(in_channels=1, num_classes=2)),
])
def test_the_libraries_own_keywords_build_the_same_model(name, theirs, ours):
    """smp's ``classes`` and timm's ``in_chans`` build what kagglekit's keywords build (same weights from the
    same seed, same outputs), and the stored config uses kagglekit's spelling."""
    torch.manual_seed(0)
    a = create(name, **theirs).eval()
    torch.manual_seed(0)
    b = create(name, **ours).eval()
    assert a.kagglekit_config == b.kagglekit_config == {"name": name, "kwargs": ours}
    x = torch.rand(1, ours.get("in_channels", 3), 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_input_channels_come_from_the_build_config():
    from kagglekit.models import input_channels

    assert input_channels(create("timm/resnet10t", in_channels=1).kagglekit_config) == 1
    assert input_channels(create("smp/unet/resnet18").kagglekit_config) == 3
    assert input_channels(create("kagglekit/volume_segmenter", backbone="resnet10t").kagglekit_config) is None

