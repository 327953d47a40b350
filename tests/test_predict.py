"""kagglekit.infer.predict against a plain loop written here: each model on each image, each D4 view by hand,
the activation, the mean."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from kagglekit.errors import ImageReadError, InvalidArgumentError, ShapeError
from kagglekit.infer import iter_predictions, predict
from kagglekit.io import load_image
from kagglekit.models import create

RNG = np.random.default_rng(11)
SIZE = (40, 48)


def d4_by_hand(x):
    """The eight images of the dihedral group: four rotations of x and of its transpose."""
    out = []
    for base in (x, x.transpose(2, 3)):
        out += [torch.rot90(base, k, (2, 3)) for k in range(4)]
    return out


def plain_loop(models, images, activation):
    rows = []
    for image in images:
        x = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        views = d4_by_hand(x)
        # the views of one shape (H x W, or W x H when turned) as one batch: in eval mode each row is on its own
        batches = [torch.cat([v for v in views if v.shape == shape]) for shape in {v.shape: None for v in views}]
        with torch.no_grad():
            outs = [activation(m(b)) for m in models for b in batches]
        assert sum(len(o) for o in outs) == len(models) * 8
        rows.append(torch.cat(outs).mean(0).numpy())
    return np.stack(rows)


def plain_resize(image):
    return cv2.resize(image, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA).reshape(*SIZE, image.shape[2])


def models_for(channels, n=2, classes=3):
    torch.manual_seed(channels)
    return [create("timm/resnet10t", in_channels=channels, num_classes=classes).eval() for _ in range(n)]


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_predict_equals_the_plain_loop(tmp_path, channels, num_workers):
    shapes = [(53, 61), (77, 50), (64, 64), (45, 99), (90, 71)]  # odd sizes, larger than SIZE on both axes
    images = [RNG.integers(0, 256, (*s, channels), dtype=np.uint8) for s in shapes]
    paths = []
    for k, image in enumerate(images):  # PNG files (gray, BGR or BGRA on disk) and arrays, mixed
        path = tmp_path / f"{k}.png"
        on_disk = image[:, :, 0] if channels == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA)
        assert cv2.imwrite(str(path), on_disk)
        paths.append(path if k % 2 == 0 else image)
    models = models_for(channels)
    got = predict(models, paths, size=SIZE, activation="sigmoid", tta="d4", batch_size=2, num_workers=num_workers,
                  progress=False)  # batches of 2, 2, 1
    expected = plain_loop(models, [plain_resize(i) for i in images], torch.sigmoid)
    assert got.shape == (5, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_per_id_channel_files_are_stacked_in_order(tmp_path):
    colours = ("red", "green", "blue", "yellow")
    ids = ["a", "b", "c"]
    planes = {i: [RNG.integers(0, 256, (50, 60), dtype=np.uint8) for _ in colours] for i in ids}
    for i in ids:
        for c, plane in zip(colours, planes[i]):
            assert cv2.imwrite(str(tmp_path / f"{i}_{c}.png"), plane)
    inputs = [tuple(tmp_path / f"{i}_{c}.png" for c in colours) for i in ids]
    assert np.array_equal(load_image(inputs[1]), np.dstack(planes["b"]))
    models = models_for(4, n=1, classes=2)
    got = predict(models, inputs, size=SIZE, activation="softmax", tta="d4", batch_size=2, progress=False)
    expected = plain_loop(models, [plain_resize(np.dstack(planes[i])) for i in ids], lambda y: torch.softmax(y, 1))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    (tmp_path / "c_yellow.png").unlink()
    with pytest.raises(ImageReadError, match="c_yellow.png"):
        predict(models, inputs, size=SIZE, progress=False)


def test_weights_views_and_merge_follow_the_merger():
    images = [RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    models = models_for(3, n=2)
    got = predict(models, images, weights=[3.0, 1.0], tta=["identity", "hflip"], activation="sigmoid", progress=False)
    x = torch.from_numpy(np.stack(images).astype(np.float32) / 255).permute(0, 3, 1, 2)
    with torch.no_grad():
        per_model = [torch.sigmoid(m(x)) / 2 + torch.sigmoid(m(x.flip(3))) / 2 for m in models]
    np.testing.assert_allclose(got, (0.75 * per_model[0] + 0.25 * per_model[1]).numpy(), atol=1e-5)
    raw = predict(models[0], images, progress=False)  # no activation, no TTA: the logits
    with torch.no_grad():
        np.testing.assert_allclose(raw, models[0](x).numpy(), atol=1e-5)


def test_resize_modes_have_closed_forms():
    wide = RNG.integers(0, 256, (20, 40, 3), dtype=np.uint8)
    padded = load_image(wide, size=40, resize="pad")
    expected = np.zeros((40, 40, 3), np.uint8)
    expected[10:30] = wide  # scale 1 (the width fits), centred vertically
    assert np.array_equal(padded, expected)
    long = RNG.integers(0, 256, (40, 80, 3), dtype=np.uint8)
    assert np.array_equal(load_image(long, size=40, resize="center_crop"), long[:, 20:60])
    assert np.array_equal(load_image(long, resize=None), long)


def test_a_jpeg_is_decoded_at_reduced_scale_when_the_target_allows(tmp_path):
    image = RNG.integers(0, 256, (400, 320, 3), dtype=np.uint8)
    path = tmp_path / "big.jpg"
    assert cv2.imwrite(str(path), image)
    reduced = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_4), cv2.COLOR_BGR2RGB)  # 48 / 320 -> 1/4
    assert reduced.shape == (100, 80, 3)
    expected = cv2.resize(reduced, (48, 48), interpolation=cv2.INTER_AREA)
    assert np.array_equal(load_image(path, size=48), expected)
    full = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (48, 48), interpolation=cv2.INTER_AREA)
    assert np.array_equal(load_image(path, size=48, reduced_decode=False), full)
    assert np.abs(expected.astype(int) - full).max() < 40  # close, not equal: the bench reports the model outputs


def test_unreadable_inputs_raise_or_are_skipped_and_outputs_keep_input_order(tmp_path):
    good = [RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(4)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    inputs = [good[0], bad, good[1], good[2], good[3]]
    models = models_for(3, n=1)
    with pytest.raises(ImageReadError, match="bad.png"):
        predict(models, inputs, progress=False)
    seen, errors = {}, {}
    for indices, outputs, failed in iter_predictions(models, inputs, batch_size=2, on_error="skip"):
        seen.update(zip(indices.tolist(), outputs))
        errors.update(failed)
    assert sorted(seen) == [0, 2, 3, 4] and list(errors) == [1] and isinstance(errors[1], ImageReadError)
    np.testing.assert_allclose(np.stack([seen[k] for k in (0, 2, 3, 4)]), predict(models, good, progress=False), atol=1e-6)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(resize="stretch"), InvalidArgumentError, "unknown resize"),
    (dict(activation="relu"), InvalidArgumentError, "unknown activation"),
    (dict(amp="yes"), InvalidArgumentError, "amp must be one of"),
    (dict(weights=[1.0, 2.0]), InvalidArgumentError, "model weights must be 1"),
    (dict(normalize="model"), InvalidArgumentError, "normalize='model' needs a timm model"),
])
def test_bad_arguments_are_refused(kwargs, error, words):
    images = [RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8)]
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    with pytest.raises(error, match=words):
        predict(model, images, progress=False, **kwargs)


def test_images_of_different_sizes_need_a_size_and_dense_models_are_refused():
    images = [RNG.integers(0, 256, s, dtype=np.uint8) for s in ((40, 48, 3), (41, 48, 3))]
    with pytest.raises(ShapeError, match="pass size="):
        predict(models_for(3, n=1), images, progress=False)
    with pytest.raises(ShapeError, match="use sliding_window for dense outputs"):
        predict(torch.nn.Conv2d(3, 1, 1), images, size=32, progress=False)


def test_normalize_model_reads_the_timm_config_and_bf16_stays_close():
    images = [RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(2)]
    model = models_for(3, n=1)[0]
    cfg = model.pretrained_cfg
    assert np.array_equal(predict(model, images, normalize="model", progress=False),
                          predict(model, images, normalize=(cfg["mean"], cfg["std"]), progress=False))
    fp32 = predict(model, images, activation="sigmoid", progress=False)
    bf16 = predict(model, images, activation="sigmoid", amp="bf16", progress=False)
    assert np.abs(bf16 - fp32).max() < 0.05
