"""TTA views beyond D4: crops against ttach and plain loops, scales against OpenCV / PIL / ttach, seeded random
views against albumentations applied by hand, the stain view against the normaliser applied by hand, refusals
for dense outputs, and classify's [tta] views against a plain loop over closed-form logits."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
import ttach
from PIL import Image
from torch import nn

from kagglekit.augment import MacenkoNormalizer, ReinhardNormalizer, preset
from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.infer import predict, sliding_window
from kagglekit.models import create, save_checkpoint
from kagglekit.pipeline import PipelineConfigError, classify, load_config
from kagglekit.tta import TTA, ViewCycle, five_crop, scales, ten_crop, views

from competitions import read_csv, write_png
from test_stain import OTHER, RUIFROK, beer_lambert_tile


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def classifier(seed=0):
    """A small CNN with global pooling: (N, 3, H, W) -> (N, 4) for any H, W, sensitive to where pixels are."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten()).eval()


def uint8_images(n=3, shape=(14, 19, 3), seed=0):
    return list(np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8))


def as_batch(images):
    """The HWC uint8 images as predict's normalize="scale" batch: NCHW float32 in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def five_crops_plainly(x, h, w):
    """The five windows written out: the corners, then the centre at (H // 2 - h // 2, W // 2 - w // 2)."""
    H, W = x.shape[-2:]
    corners = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), (H // 2 - h // 2, W // 2 - w // 2)]
    return [x[..., t : t + h, l : l + w] for t, l in corners]


@pytest.mark.parametrize("size", [(10, 13), 8])  # 8: odd margins, so the mirrored centre crop is another window
def test_five_and_ten_crops_equal_ttach_and_a_plain_loop(size):
    model, images = classifier(), uint8_images()
    x, (h, w) = as_batch(images), (size, size) if isinstance(size, int) else size
    with torch.no_grad():
        plain5 = [model(c) for c in five_crops_plainly(x, h, w)]
        plain10 = plain5 + [model(c) for c in five_crops_plainly(x.flip(-1), h, w)]
        for ours, ttach_views, plain in [(five_crop(size), ttach.aliases.five_crop_transform(h, w), plain5),
                                         (ten_crop(size), ttach.aliases.ten_crop_transform(h, w), plain10)]:
            expected = torch.stack(plain).mean(0)
            reference = ttach.ClassificationTTAWrapper(model, ttach_views, merge_mode="mean")(x)
            torch.testing.assert_close(reference, expected, atol=1e-6, rtol=1e-5)
            for batched in (True, False):
                got = TTA(model, ours, task="classification", batched=batched)(x)
                torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
            table = {"five_crop" if len(ours) == 5 else "ten_crop": list(size) if isinstance(size, tuple) else size}
            got = predict(model, images, tta=table, batch_size=2, channels_last=False, progress=False)
            np.testing.assert_allclose(got, expected.numpy(), atol=1e-6, rtol=1e-5)


def test_scales_equal_ttach_opencv_and_pil():
    model, x = classifier(), as_batch(uint8_images(shape=(12, 16, 3)))
    with torch.no_grad():
        reference = ttach.ClassificationTTAWrapper(model, ttach.aliases.multiscale_transform([0.5, 2]))(x)
        torch.testing.assert_close(TTA(model, ["identity", *scales([0.5, 2], "nearest")], task="classification")(x),
                                   reference, atol=1e-6, rtol=1e-5)
    up, down = views({"scale": [2, 0.5]})  # bilinear: OpenCV's INTER_LINEAR up, PIL's antialiased bilinear down
    plane = x[0, 0].numpy()
    np.testing.assert_allclose(up.apply(x)[0, 0].numpy(), cv2_resize(plane, (32, 24)), atol=1e-6)
    pil = np.asarray(Image.fromarray(plane, mode="F").resize((8, 6), Image.BILINEAR))
    np.testing.assert_allclose(down.apply(x)[0, 0].numpy(), pil, atol=1e-6)


def cv2_resize(plane, size):
    import cv2

    return cv2.resize(plane, size, interpolation=cv2.INTER_LINEAR)


def seed_of(seed, k):
    """The seed of random view k (kagglekit.tta.augmented's docstring), written out."""
    return int(np.random.default_rng([seed, k]).integers(2**31))


def by_hand(transform, images, seed, n):
    """View k of every image: the albumentations transform seeded for (seed, k) before each image."""
    out = []
    for k in range(n):
        batch = []
        for image in images:
            transform.set_random_seed(seed_of(seed, k))
            batch.append(transform(image=image)["image"])
        out.append(batch)
    return out


def test_random_views_equal_albumentations_by_hand_and_depend_on_the_seed_only():
    model, images = classifier(), uint8_images(n=5)
    table = {"random": "light", "n": 4, "seed": 3}
    args = dict(activation="sigmoid", channels_last=False, progress=False)
    got = predict(model, images, tta=table, batch_size=2, **args)
    with torch.no_grad():
        expected = np.mean([sigmoid(model(as_batch(b)).numpy()) for b in by_hand(preset("light"), images, 3, 4)], 0)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_array_equal(predict(model, images, tta=table, batch_size=2, **args), got)  # the same seed
    np.testing.assert_allclose(predict(model, images, tta=table, batch_size=5, **args), got, atol=1e-6)
    other = predict(model, images, tta={**table, "seed": 4}, batch_size=2, **args)
    assert np.abs(other - got).max() > 1e-3


def test_random_crops_are_one_window_per_view_for_every_image_and_merge_by_max():
    base = np.arange(14 * 19, dtype=np.uint8).reshape(14, 19, 1).repeat(3, axis=2)  # each pixel says where it is
    images = [base, base + 1, base + 2]
    crops = views({"random_crop": [8, 10], "n": 4, "seed": 0})
    windows = set()
    for view in crops:
        first = view.apply_image(images[0])
        assert first.shape == (8, 10, 3)
        for j in (1, 2):
            np.testing.assert_array_equal(view.apply_image(images[j]), first + j)
        windows.add(int(first[0, 0, 0]))
    assert len(windows) > 1  # the views are different windows
    model = classifier()
    got = predict(model, images, tta={"random_crop": [8, 10], "n": 4, "seed": 0}, merge="max", activation="sigmoid",
                  channels_last=False, progress=False)
    with torch.no_grad():
        drawn = by_hand(A.Compose([A.RandomCrop(height=8, width=10)]), images, 0, 4)
        expected = np.max([sigmoid(model(as_batch(b)).numpy()) for b in drawn], 0)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_python_transform_gives_the_same_views_as_by_hand():
    make = lambda: A.Compose([A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=1.0)])  # noqa: E731
    images = uint8_images(n=2)
    ours = views({"random": make(), "n": 3, "seed": 7})
    for k, batch in enumerate(by_hand(make(), images, 7, 3)):
        for image, expected in zip(images, batch):
            np.testing.assert_array_equal(ours[k].apply_image(image), expected)


@pytest.mark.parametrize("method, normalizer", [("macenko", MacenkoNormalizer), ("reinhard", ReinhardNormalizer)])
def test_a_stain_view_is_the_normaliser_fitted_on_the_reference_applied_to_each_image(method, normalizer):
    reference = beer_lambert_tile(OTHER, seed=1, side=24)[0]
    tiles = [beer_lambert_tile(RUIFROK, seed=s, side=24, e_scale=0.8)[0] for s in (2, 3, 4)]
    model = classifier()
    got = predict(model, tiles, tta=["identity", {"stain": method, "reference": reference}], batch_size=2,
                  channels_last=False, progress=False)
    fitted = normalizer().fit(reference)
    normalised = [fitted.transform(t) for t in tiles]
    assert not fitted.last_skipped and not np.array_equal(normalised[0], tiles[0])
    with torch.no_grad():
        expected = (model(as_batch(tiles)) + model(as_batch(normalised))).numpy() / 2
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_stain_reference_in_a_config_is_relative_to_its_folder(tmp_path):
    reference = beer_lambert_tile(OTHER, seed=1, side=24)[0]
    write_png(tmp_path / "ref.png", reference)
    expected = MacenkoNormalizer().fit(reference).stains_
    stain = '{stain = "macenko", reference = "ref.png"}'
    for views_toml in (f'["identity", {stain}]', stain):
        (tmp_path / "c.toml").write_text(f'kind = "classify"\n[[models]]\npath = "m.safetensors"\n'
                                         f'[tta]\nviews = {views_toml}\n')
        view = load_config(tmp_path / "c.toml").tta.views[-1]
        assert view.name == "stain_macenko"
        np.testing.assert_array_equal(view.normalizer.stains_, expected)


DENSE_REFUSED = [(["identity", {"five_crop": 8}], "crop_tl@8"), ({"scale": 0.5}, "scale@0.5"),
                 ({"random_crop": 8, "n": 2}, "random_crop@8#0@seed0")]


@pytest.mark.parametrize("spec, name", DENSE_REFUSED)
def test_dense_outputs_refuse_views_without_an_inverse(spec, name):
    model = nn.Conv2d(3, 1, 3, padding=1)
    image = np.zeros((32, 32, 3), np.uint8)
    for call in (lambda: sliding_window(model, image, tile=16, tta=spec, progress=False), lambda: ViewCycle(spec),
                 lambda: TTA(model, spec, task="segmentation")):
        with pytest.raises(InvalidArgumentError) as info:
            call()
        message = str(info.value)
        assert f"TTA view {name!r} has no inverse" in message and message.count("no inverse") == 1
    with pytest.raises(PipelineConfigError) as info:
        listed = spec if isinstance(spec, list) else [spec]
        load_config({"models": [{"path": "a.safetensors"}], "tta": {"views": ["hflip", *listed]}})
    message = str(info.value)
    assert message.startswith(f"tta.views: TTA view {name!r} has no inverse, so segment cannot map")
    assert message.count("tta.views") == 1 and message.count("no inverse") == 1


def test_d4_names_still_run_through_sliding_window():
    """A view list instead of a hook is ViewCycle(views): the same stitched output as the hook itself."""
    model = nn.Conv2d(3, 2, 3, padding=1).eval()
    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    args = dict(tile=16, stride=12, batch_size=3, progress=False)
    np.testing.assert_array_equal(sliding_window(model, image, tta="d4", **args),
                                  sliding_window(model, image, tta=ViewCycle("d4"), **args))


@pytest.mark.parametrize("table, words", [
    ({"five_crop": 16, "n": 2}, "TTA view table five_crop: unknown setting(s) ['n']; it takes no other setting"),
    ({"random": "light"}, 'TTA view table random needs n, e.g. {random = "light", n = 8, seed = 0}'),
    ({"stain": "macenko"}, "TTA view table stain needs reference"),
    ({"stain": "vahadane", "reference": "r.png"},
     "unknown stain method 'vahadane'; choose one of ['macenko', 'reinhard']"),
    ({"stain": "macenko", "reference": "missing.png"}, "missing.png"),
    ({"five_crop": 8, "ten_crop": 8}, "a TTA view table names one kind of view"),
    ({"scale": 0}, "scale factor"),
    ({"random": "strong", "n": 2}, "'strong'"),
])
def test_view_table_mistakes_name_the_key_once(table, words):
    with pytest.raises(PipelineConfigError) as info:
        load_config({"kind": "classify", "models": [{"path": "a.safetensors"}], "tta": {"views": [table]}})
    message = str(info.value)
    assert message.startswith("tta.views: ") and words in message and message.count("tta.views") == 1


def test_a_crop_bigger_than_the_configured_input_is_refused_when_the_config_is_read():
    base = {"kind": "classify", "models": [{"path": "a.safetensors"}], "preprocess": {"size": [64, 48]}}
    with pytest.raises(PipelineConfigError) as info:
        load_config({**base, "tta": {"views": ["identity", {"five_crop": [56, 56]}]}})
    assert str(info.value) == ("tta.views: crop_tl@56 crops more than the images' preprocess.size [64, 48]; crop at most "
                               "that size, or raise preprocess.size")
    assert len(load_config({**base, "tta": {"views": [{"ten_crop": [64, 48]}]}}).tta.views) == 10  # the whole image fits


def test_tensor_modules_refuse_random_views_and_predict_refuses_a_crop_bigger_than_the_image():
    with pytest.raises(InvalidArgumentError, match="transforms the HWC images before batching"):
        TTA(classifier(), {"random": "d4", "n": 2}, task="classification")
    with pytest.raises(ShapeError, match=r"crop_tl@20 needs images of at least 20x20, got 14x19"):
        predict(classifier(), uint8_images(), tta={"five_crop": 20}, progress=False)


def test_the_kernel_config_writer_writes_view_tables_that_read_back():
    """kagglekit train copies [kernel.tta] into the kernel config: a list of names and tables, as inline tables."""
    from kagglekit._toml import tomllib
    from kagglekit.train.toml_writer import dumps

    data = {"kind": "classify", "tta": {"views": ["identity", {"five_crop": [224, 192]}, {"random": "light", "n": 8}],
                                        "merge": "mean"}}
    text = dumps(data)
    assert tomllib.loads(text) == data
    read = load_config({**tomllib.loads(text), "models": [{"path": "m.safetensors"}]})
    assert [v.name for v in read.tta.views[:3]] == ["identity", "crop_tl@224x192", "crop_tr@224x192"]


CLASSES = ["red", "green", "blue"]


def test_classify_with_crops_in_tta_views_writes_what_a_plain_loop_computes(tmp_path):
    """ColourLogits: logit_k = gain * (mean of channel k / 255 - 0.5); on random pixels each crop has its own mean."""
    rng = np.random.default_rng(0)
    images = {i: rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for i in "abcd"}
    (tmp_path / "test").mkdir()
    for i, image in images.items():
        write_png(tmp_path / "test" / f"{i}.png", image)
    (tmp_path / "sample_submission.csv").write_text("id,red,green,blue\n" + "".join(f"{i},0,0,0\n" for i in images))
    save_checkpoint(create("kagglekit/test_pipeline_colour", gain=8.0), tmp_path / "m.safetensors", classes=CLASSES)
    (tmp_path / "classify.toml").write_text(
        'kind = "classify"\nnum_workers = 0\n[[models]]\npath = "m.safetensors"\n[preprocess]\nsize = [20, 30]\n'
        '[tta]\nviews = ["identity", "hflip", {five_crop = [12, 16]}]\n[decision]\nkind = "probability"\n'
        '[output]\nformat = "columns"\n')
    classify(tmp_path / "classify.toml", tmp_path, tmp_path / "out")
    rows = {r["id"]: [float(r[c]) for c in CLASSES] for r in read_csv(tmp_path / "out" / "submission.csv")}
    for i, image in images.items():
        chw = image.transpose(2, 0, 1).astype(np.float64) / 255
        windows = [chw, chw[..., ::-1]] + five_crops_plainly(chw, 12, 16)
        expected = np.mean([sigmoid(8.0 * (w.mean(axis=(1, 2)) - 0.5)) for w in windows], 0)
        np.testing.assert_allclose(rows[i], expected, atol=1e-5)
