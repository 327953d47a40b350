"""Checkpoints: self-describing safetensors, rebuild in a fresh process, no pickle execution, averaging, EMA."""

import builtins
import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from kagglekit.errors import InvalidArgumentError, KagglekitError, WeightsNotFoundError
from kagglekit.models import (
    CheckpointError,
    UnsafeCheckpointError,
    average_checkpoints,
    average_state_dicts,
    checkpoint_info,
    create,
    create_ema,
    load_checkpoint,
    load_weights,
    read_state_dict,
    save_checkpoint,
)

MODELS = [
    ("timm/resnet10t", dict(num_classes=3, head="concat_pool"), (2, 3, 64, 64)),
    ("smp/unet/resnet18", dict(num_classes=2, in_channels=1), (1, 1, 64, 64)),
    ("kagglekit/volume_segmenter", dict(backbone="resnet10t", group_size=2, num_blocks=1), (1, 4, 64, 64)),
]


def randomise_buffers(model):
    """Give BatchNorm non-default running statistics so that a lost buffer would change outputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("name,kwargs,shape", MODELS, ids=[m[0] for m in MODELS])
def test_roundtrip_rebuilds_identical_model(tmp_path, name, kwargs, shape):
    torch.manual_seed(0)
    model = randomise_buffers(create(name, **kwargs)).eval()
    path = save_checkpoint(model, tmp_path / "ckpt.safetensors", metadata={"fold": 2, "score": 0.91})
    loaded = load_checkpoint(path).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert checkpoint_info(path) == {"format": 1, "name": name, "kwargs": kwargs, "metadata": {"fold": 2, "score": 0.91},
                                     "classes": None}
    assert loaded.kagglekit_metadata == {"fold": 2, "score": 0.91}


@pytest.mark.slow
def test_fresh_process_rebuilds_without_training_code(tmp_path):
    torch.manual_seed(0)
    model = randomise_buffers(create("kagglekit/volume_segmenter", backbone="resnet10t", group_size=3,
                                     normalize="per_input", upsample=True)).eval()
    x = torch.randn(1, 6, 64, 64)
    with torch.no_grad():
        expected = model(x).numpy()
    save_checkpoint(model, tmp_path / "model.safetensors")
    np.save(tmp_path / "x.npy", x.numpy())
    script = textwrap.dedent(f"""
        import sys, numpy as np, torch
        from kagglekit.models import load_checkpoint
        model = load_checkpoint({str(tmp_path / 'model.safetensors')!r}).eval()
        stray = [m for m in sys.modules if m.startswith(("tests", "test_", "conftest", "_pytest"))]
        assert not stray, stray
        with torch.no_grad():
            np.save({str(tmp_path / 'out.npy')!r}, model(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))).numpy())
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("wrap", [nn.DataParallel, torch.compile, lambda m: create_ema(m, decay=0.5)],
                         ids=["data_parallel", "compile", "ema"])
def test_wrapped_models_save_the_bare_model(tmp_path, wrap):
    model = create("timm/resnet10t", num_classes=2).eval()
    path = save_checkpoint(wrap(model), tmp_path / "w.safetensors")
    assert checkpoint_info(path)["name"] == "timm/resnet10t"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(path).eval()(x), model(x))


def write_malicious_pickle(path, marker):
    class Payload:
        def __reduce__(self):
            return (builtins.open, (str(marker), "w"))  # unpickling would create the marker file

    torch.save({"state_dict": {"weight": Payload()}}, path)


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pth"
    write_malicious_pickle(path, marker)
    for load in (lambda: read_state_dict(path), lambda: load_weights(nn.Linear(2, 2), path),
                 lambda: create("timm/resnet10t", weights=path)):
        with pytest.raises(UnsafeCheckpointError, match="refused to load .*arbitrary code") as info:
            load()
        assert isinstance(info.value, KagglekitError)
        assert re.search(r"Detail: .*(builtins|io)\.open", str(info.value)), "the message names the refused global"
        assert not marker.exists()
    with pytest.raises(CheckpointError, match="not a kagglekit checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    # control: the payload is live, so the assertions above could fail
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_checkpoint_errors(tmp_path):
    with pytest.raises(InvalidArgumentError, match="not built by kagglekit.models.create"):
        save_checkpoint(nn.Linear(2, 2), tmp_path / "x.safetensors")
    model = create("timm/resnet10t", num_classes=2)
    with pytest.raises(InvalidArgumentError, match="JSON"):
        save_checkpoint(model, tmp_path / "x.safetensors", metadata={"when": object()})
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(WeightsNotFoundError, match="missing.safetensors"):
        load_checkpoint(tmp_path / "missing.safetensors")
    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="no kagglekit build config"):
        load_checkpoint(tmp_path / "plain.safetensors")


def test_truncated_or_corrupt_checkpoint_gives_checkpoint_error(tmp_path):
    from kagglekit.tta import Ensemble

    good = save_checkpoint(create("timm/resnet10t", num_classes=2), tmp_path / "good.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-1])  # a copy or upload that stopped one byte short
    for load in (lambda: checkpoint_info(cut), lambda: load_checkpoint(cut), lambda: Ensemble([cut]),
                 lambda: average_checkpoints([good, cut]), lambda: read_state_dict(cut)):
        with pytest.raises(CheckpointError, match="truncated"):
            load()
    assert checkpoint_info(good)["name"] == "timm/resnet10t"  # control: the intact file reads
    for text in ("{not json", "[1, 2]"):
        save_file({"w": torch.zeros(2)}, tmp_path / "meta.safetensors", metadata={"kagglekit": text})
        with pytest.raises(CheckpointError, match="corrupt kagglekit build config"):
            checkpoint_info(tmp_path / "meta.safetensors")


def test_average_checkpoints_matches_numpy_mean(tmp_path):
    paths, states = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        m = randomise_buffers(create("timm/resnet10t", num_classes=2))
        states.append({k: v.clone() for k, v in m.state_dict().items()})
        paths.append(save_checkpoint(m, tmp_path / f"s{seed}.safetensors"))
    averaged = average_checkpoints(paths, weights=[1, 2, 1]).state_dict()
    for k, v in averaged.items():
        if v.is_floating_point():
            expected = np.average([s[k].double().numpy() for s in states], axis=0, weights=[1, 2, 1])
            np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(v, states[0][k])
    other = save_checkpoint(create("timm/resnet10t", num_classes=3), tmp_path / "other.safetensors")
    with pytest.raises(InvalidArgumentError, match="share one architecture"):
        average_checkpoints([paths[0], other])
    with pytest.raises(KagglekitError):
        average_state_dicts([states[0], {"x": torch.zeros(1)}])


def test_ema_update_is_closed_form(tmp_path):
    torch.manual_seed(0)
    model = create("timm/resnet10t", num_classes=2)
    ema = create_ema(model, decay=0.75)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    ema.update(model)
    for k, v in ema.module.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.75 * before[k] + 0.25 * model.state_dict()[k])
    path = save_checkpoint(ema, tmp_path / "ema.safetensors", metadata={"ema_decay": 0.75})
    assert json.loads(json.dumps(checkpoint_info(path)))["metadata"] == {"ema_decay": 0.75}
    with pytest.raises(InvalidArgumentError, match="decay"):
        create_ema(model, decay=1.5)


def bn_dropout_model():
    """A timm model whose outputs differ between train and eval mode (BatchNorm statistics, dropout)."""
    torch.manual_seed(1)
    return randomise_buffers(create("timm/resnet10t", num_classes=3, drop_rate=0.5))


def test_load_checkpoint_returns_the_model_in_eval_mode(tmp_path):
    model = bn_dropout_model().eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)  # no .eval(): the old default (train mode) was off by up to 0.5 here
    assert not any(m.training for m in loaded.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert all(m.training for m in load_checkpoint(path, train=True).modules())


def test_a_checkpoint_with_overwritten_tensor_bytes_is_refused_naming_the_file(tmp_path):
    path = save_checkpoint(bn_dropout_model(), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zeros over some weights: still a readable file
    path.write_bytes(bytes(data))
    assert checkpoint_info(path)["name"] == "timm/resnet10t"  # the header is intact
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: the tensor data do not match the checksum")):
        load_checkpoint(path)
    from kagglekit.models import verify_checkpoint

    with pytest.raises(CheckpointError):
        verify_checkpoint(path)


def test_the_checksum_is_the_sha256_of_the_data_and_old_files_still_load(tmp_path):
    """Oracle: hashlib over the bytes after the header, read plainly; a file saved without a checksum
    (before checksums existed: only the build config in its header) loads and verifies as 'nothing to check'."""
    import hashlib
    import struct

    from safetensors import safe_open

    from kagglekit.models import verify_checkpoint

    model = bn_dropout_model().eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["kagglekit_sha256"] == hashlib.sha256(raw[8 + length :]).hexdigest()
    assert verify_checkpoint(path) is True
    old = tmp_path / "old.safetensors"
    with safe_open(str(path), framework="pt") as f:
        header = {"kagglekit": f.metadata()["kagglekit"]}
        save_file({k: f.get_tensor(k) for k in f.keys()}, str(old), metadata=header)
    assert verify_checkpoint(old) is False
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(old)(x), model(x))



def test_class_names_travel_with_the_checkpoint(tmp_path):
    model = create("timm/resnet10t", num_classes=3)
    path = save_checkpoint(model, tmp_path / "m.safetensors", classes=["cat", "dog", "bird"])
    assert checkpoint_info(path)["classes"] == ["cat", "dog", "bird"]
    assert load_checkpoint(path).kagglekit_classes == ["cat", "dog", "bird"]
    for bad, words in ((["cat", "dog"], "2 class names for a model with num_classes=3"),
                       (["cat", "cat", "dog"], "repeated: ['cat']"), ("cat", "list of non-empty strings"),
                       (["cat", "", "dog"], "list of non-empty strings")):
        with pytest.raises(InvalidArgumentError, match=re.escape(words)):
            save_checkpoint(model, tmp_path / "bad.safetensors", classes=bad)
    assert not (tmp_path / "bad.safetensors").exists()
