"""ImageDataset: items equal a plain OpenCV decode, resize and normalisation; channel files stack in order; targets
equal the label strings parsed plainly; RLE masks equal the decoded RLE resized nearest; a seed repeats in forked
workers; the cache decodes each image once; mistakes are named once, at construction."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import polars as pl
import pytest
import torch

from kagglekit.data import ImageDataset
from kagglekit.errors import ImageReadError, InvalidArgumentError, ShapeError
from kagglekit.infer.batching import IMAGENET
from kagglekit.kaggle import rle_encode

# A 1200 x 800 JPEG read at 256 is decoded by libjpeg at 1/2 scale (600 x 400), then area-resized; against a full
# decode + INTER_AREA the pixels differ by at most 5-6 grey levels (mean 0.76) over 5 textured images (measured
# with this test's image maker). Tolerance: max 8, mean 1.0.
REDUCED_MAX, REDUCED_MEAN = 8, 1.0


def textured(shape, seed: int, dtype=np.uint8) -> np.ndarray:
    """A photo-like (h, w, 3) image: smooth colour fields plus grain."""
    rng = np.random.default_rng(seed)
    h, w = shape
    top = np.iinfo(dtype).max
    base = cv2.resize(rng.random((h // 50 + 2, w // 50 + 2, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip((base + rng.normal(0, 0.03, (h, w, 1))) * top, 0, top).astype(dtype)


def plain(path, size=None) -> np.ndarray:
    """The usual decode: cv2.imread, BGR to RGB, cv2.resize to (h, w) (INTER_AREA shrinking, INTER_LINEAR
    enlarging); (h, w, C) float64."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    image = image[:, :, None] if image.ndim == 2 else image[:, :, ::-1]
    if size is not None:
        shrinking = size[0] < image.shape[0] and size[1] < image.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        image = cv2.resize(image, size[::-1], interpolation=interpolation).reshape(*size, -1)
    return image.astype(np.float64)


def chw(image) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def write(folder, images: dict, suffix=".png") -> None:
    for name, image in images.items():
        cv2.imwrite(str(folder / f"{name}{suffix}"), image[:, :, ::-1] if image.ndim == 3 else image)


def table(folder, name="train.csv", **columns):
    pl.DataFrame(columns).write_csv(folder / name)
    return folder / name


def test_png_items_equal_a_plain_decode_resize_and_normalisation(tmp_path):
    write(tmp_path, {"a": textured((90, 120), 0), "b": textured((30, 40), 1)})  # shrunk, enlarged
    csv = table(tmp_path, image_id=["a", "b"], label=["HGSC", "CC"])
    none = ImageDataset(csv, "{id}.png", size=(48, 64), normalize="none")
    imagenet = ImageDataset(csv, "{id}.png", size=(48, 64), normalize="imagenet")
    mean, std = (np.array(v) for v in IMAGENET)
    for i, id_ in enumerate(["a", "b"]):
        expected = plain(tmp_path / f"{id_}.png", (48, 64))
        assert torch.equal(none[i], chw(expected.astype(np.float32)))  # the pixels themselves: exact
        normalised = chw((expected / 255 - mean) / std).float()
        assert torch.allclose(imagenet[i], normalised, rtol=0, atol=1e-6)  # float32 rounding only
        assert imagenet[i].dtype == torch.float32 and imagenet[i].shape == (3, 48, 64)


def test_a_reduced_jpeg_decode_stays_within_the_stated_tolerance_of_a_full_decode(tmp_path, monkeypatch):
    import kagglekit.io.decoded as decoded

    cv2.imwrite(str(tmp_path / "x.jpg"), textured((800, 1200), 2)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    csv = table(tmp_path, image_name=["x"], target=["1"])
    reductions, decode = [], decoded.decode_image
    monkeypatch.setattr(decoded, "decode_image", lambda path, reduce=1: reductions.append(reduce) or decode(path, reduce))
    expected = chw(plain(tmp_path / "x.jpg", (256, 256)))
    reduced = ImageDataset(csv, "{id}.jpg", size=256, normalize="none", target="class", label="target")
    (x, y), full = reduced[0], ImageDataset(csv, "{id}.jpg", size=256, normalize="none", reduced_decode=False)[0]
    assert reductions == [2, 1]  # the first at half scale
    difference = (x.double() - expected).abs()
    assert 0 < difference.max() <= REDUCED_MAX and difference.mean() <= REDUCED_MEAN
    assert torch.equal(full, expected.float())
    assert y.dtype == torch.int64 and int(y) == 1


def test_channel_files_stack_in_order_with_multi_hot_targets(tmp_path):
    colours = ("red", "green", "blue", "yellow")
    ids = ["00008af0-bad0-11e8-b2b8-ac1f6b6435d0", "000a6c98-bb9b-11e8-b2b4-ac1f6b6435d0"]
    (tmp_path / "train").mkdir()
    for k, id_ in enumerate(ids):
        write(tmp_path / "train", {f"{id_}_{c}": textured((64, 64), 10 * k + j)[:, :, 0] for j, c in enumerate(colours)})
    targets = ["0 25", "27"]
    csv = table(tmp_path, Id=ids, Target=targets)
    dataset = ImageDataset(csv, [f"train/{{id}}_{c}.png" for c in colours], target="multi_hot", label="Target",
                           classes=range(28), size=32, normalize="scale")
    for i, id_ in enumerate(ids):
        x, y = dataset[i]
        planes = [plain(tmp_path / "train" / f"{id_}_{c}.png", (32, 32)) for c in colours]
        assert torch.allclose(x, chw(np.concatenate(planes, axis=2) / 255).float(), rtol=0, atol=1e-6)
        assert y.tolist() == [float(str(c) in targets[i].split()) for c in range(28)]
    assert dataset.preprocessing["channels"] == 4 and dataset.preprocessing["classes"] == [str(c) for c in range(28)]


def test_a_16_bit_png_is_scaled_by_its_range_and_goes_through_a_transform_as_itself(tmp_path):
    import albumentations as A

    write(tmp_path, {"deep": textured((60, 90), 3, np.uint16)})
    csv = table(tmp_path, id=["deep"])
    expected = chw(plain(tmp_path / "deep.png", (30, 45)) / 65535).float()
    assert ImageDataset(csv, "{id}.png", size=(30, 45))[0].dtype == torch.float32
    assert torch.allclose(ImageDataset(csv, "{id}.png", size=(30, 45))[0], expected, rtol=0, atol=1e-6)
    flipped = ImageDataset(csv, "{id}.png", size=(30, 45), transform=A.HorizontalFlip(p=1.0))[0]
    assert torch.allclose(flipped, expected.flip(-1), rtol=0, atol=1e-6)


def test_planet_tags_become_multi_hot_rows_over_the_sorted_tags_and_an_unknown_one_is_named(tmp_path):
    tags = ["haze primary", "clear primary water", "cloudy", "partly_cloudy primary road"]
    write(tmp_path, {f"train_{k}": textured((16, 16), k) for k in range(len(tags))}, ".jpg")
    csv = table(tmp_path, "train_v2.csv", image_name=[f"train_{k}" for k in range(len(tags))], tags=tags)
    dataset = ImageDataset(csv, "{id}.jpg", target="multi_hot", label="tags")
    names = sorted({t for row in tags for t in row.split()})
    assert dataset.classes == names
    for i, row in enumerate(tags):
        assert dataset[i][1].tolist() == [float(n in row.split()) for n in names]
    with pytest.raises(InvalidArgumentError, match=r"row 1 \(id 'train_1'\) has label 'water'.*'tags'"):
        ImageDataset(csv, "{id}.jpg", target="multi_hot", label="tags", classes=[n for n in names if n != "water"])


def test_class_indices_from_names_integers_and_one_column_per_class(tmp_path):
    write(tmp_path, {str(k): textured((16, 16), k) for k in range(4)})
    labels = ["LGSC", "CC", "HGSC", "CC"]
    frame = pl.DataFrame({"image_id": [0, 1, 2, 3], "label": labels, "target": [0, 1, 1, 0],
                          "MEL": [0.0, 1.0, 0.0, 0.0], "NV": [1.0, 0.0, 0.5, 0.0]})
    names = ImageDataset(frame, "{id}.png", root=tmp_path, target="class", label="label")
    assert names.classes == sorted(set(labels))
    assert [int(names[i][1]) for i in range(4)] == [sorted(set(labels)).index(v) for v in labels]
    integers = ImageDataset(frame, "{id}.png", root=tmp_path, target="class", label="target")
    assert integers.classes == ["0", "1"] and [int(integers[i][1]) for i in range(4)] == [0, 1, 1, 0]
    columns = ImageDataset(frame, "{id}.png", root=tmp_path, target="columns", classes=["MEL", "NV"])
    assert torch.equal(torch.stack([columns[i][1] for i in range(4)]),
                       torch.tensor(frame.select("MEL", "NV").to_numpy(), dtype=torch.float32))


def blob(shape, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = cv2.resize(rng.random((6, 8)).astype(np.float32), shape[::-1], interpolation=cv2.INTER_CUBIC)
    return (field > 0.6).astype(np.uint8)


def test_masks_from_rle_and_from_files_equal_the_decoded_mask_resized_nearest(tmp_path):
    import albumentations as A

    shape, size = (90, 140), (40, 56)
    masks = [blob(shape, k) for k in range(3)]
    write(tmp_path, {f"{k}": textured(shape, k) for k in range(3)})
    write(tmp_path, {f"{k}_mask": m * 255 for k, m in enumerate(masks)})
    csv = table(tmp_path, id=["0", "1", "2"], rle=[rle_encode(m, "F") for m in masks])
    from_rle = ImageDataset(csv, "{id}.png", target="mask", label="rle", rle_order="F", size=size)
    from_files = ImageDataset(csv, "{id}.png", target="mask", masks="{id}_mask.png", size=size)
    flipped = ImageDataset(csv, "{id}.png", target="mask", label="rle", rle_order="F", size=size,
                           transform=A.HorizontalFlip(p=1.0))
    for k, mask in enumerate(masks):
        expected = torch.from_numpy(cv2.resize(mask, size[::-1], interpolation=cv2.INTER_NEAREST).astype(np.float32))[None]
        assert 0 < expected.sum() < expected.numel()
        assert torch.equal(from_rle[k][1], expected) and torch.equal(from_files[k][1], expected)
        assert torch.equal(flipped[k][1], expected.flip(-1)) and torch.equal(flipped[k][0], from_rle[k][0].flip(-1))


def augmented(tmp_path, transform="light", **kwargs) -> ImageDataset:
    write(tmp_path, {"a": textured((40, 40), 0), "b": textured((40, 40), 1)})
    csv = table(tmp_path, id=["a", "a", "b", "a"] * 4, y=["0", "1", "1", "0"] * 4)
    return ImageDataset(csv, "{id}.png", target="class", label="y", size=32, transform=transform, **kwargs)


def test_a_seed_gives_the_same_augmentation_and_indices_epochs_and_seeds_differ(tmp_path):
    dataset, again, other = augmented(tmp_path, seed=3), augmented(tmp_path, seed=3), augmented(tmp_path, seed=4)
    first = [dataset[i][0] for i in range(len(dataset))]
    assert all(torch.equal(x, again[i][0]) for i, x in enumerate(first))
    assert not torch.equal(first[0], first[1])  # the same image, another index
    assert not all(torch.equal(x, other[i][0]) for i, x in enumerate(first))
    dataset.set_epoch(1)
    assert not all(torch.equal(x, dataset[i][0]) for i, x in enumerate(first))


def test_forked_dataloader_workers_give_the_items_of_one_process(tmp_path):
    dataset = augmented(tmp_path, seed=1, normalize="imagenet")
    context = torch.multiprocessing.get_context("fork")
    forked = list(torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context=context))
    alone = list(torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=0))
    for (x2, y2), (x0, y0) in zip(forked, alone):
        assert torch.equal(x2, x0) and torch.equal(y2, y0) and y0.dtype == torch.int64


def test_the_cache_gives_the_same_items_and_decodes_nothing_the_second_time(tmp_path, monkeypatch):
    import kagglekit.io.decoded as decoded

    write(tmp_path, {f"{k}": textured((50, 70), k) for k in range(3)}, ".jpg")
    csv = table(tmp_path, id=["0", "1", "2"])
    plain_items = [x for x in ImageDataset(csv, "{id}.jpg", size=24, transform="d4", seed=5)]
    cached = ImageDataset(csv, "{id}.jpg", size=24, transform="d4", seed=5, cache_dir=tmp_path / "cache")
    calls, decode = [], decoded.decode_image
    monkeypatch.setattr(decoded, "decode_image", lambda *a, **k: calls.append(a) or decode(*a, **k))
    assert all(torch.equal(cached[i], x) for i, x in enumerate(plain_items)) and len(calls) == 3
    assert all(torch.equal(cached[i], x) for i, x in enumerate(plain_items)) and len(calls) == 3  # none more
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3 and not list((tmp_path / "cache").glob("*.tmp"))
    write(tmp_path, {"1": textured((50, 70), 9)}, ".jpg")  # a changed file is decoded again
    changed = ImageDataset(csv, "{id}.jpg", size=24, transform="d4", seed=5)[1]
    assert torch.equal(cached[1], changed) and not torch.equal(changed, plain_items[1]) and len(calls) == 5


def test_writers_of_one_cache_entry_at_once_leave_one_whole_file(tmp_path):
    from kagglekit.data.cache import cached_array

    expected = np.arange(300 * 400 * 3, dtype=np.uint16).reshape(300, 400, 3)
    start, results = threading.Barrier(6), []

    def write_one():
        start.wait()
        results.append(np.array(cached_array(tmp_path, "id", ["stamp"], lambda: expected.copy())))

    threads = [threading.Thread(target=write_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(np.array_equal(r, expected) for r in results)
    (entry,) = tmp_path.iterdir()
    assert np.array_equal(np.load(entry), expected)


def test_a_saved_albumentations_file_augments_as_the_compose_it_was_saved_from(tmp_path):
    import albumentations as A

    compose = A.Compose([A.HorizontalFlip(), A.Affine(rotate=(-30, 30), p=0.7), A.RandomBrightnessContrast(p=0.7)])
    A.save(compose, tmp_path / "train.json")
    from_file, from_compose = augmented(tmp_path, tmp_path / "train.json"), augmented(tmp_path, compose)
    items = [from_compose[i][0] for i in range(len(from_compose))]
    assert all(torch.equal(from_file[i][0], x) for i, x in enumerate(items))
    assert not all(torch.equal(augmented(tmp_path, None)[i][0], x) for i, x in enumerate(items))


def test_preprocessing_says_what_the_kernel_must_do(tmp_path):
    write(tmp_path, {"a": textured((30, 40), 0)})
    csv = table(tmp_path, id=["a"], y=["cat"])
    dataset = ImageDataset(csv, "{id}.png", target="class", label="y", size=(20, 30), resize="pad",
                           normalize=([0.5, 0.4, 0.3], [0.2, 0.2, 0.2]))
    assert dataset.preprocessing == {"size": [20, 30], "resize": "pad", "channels": 3, "reduced_decode": True,
                                     "normalize": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}, "classes": ["cat"]}
    x = dataset[0][0]
    padded = np.zeros((20, 30, 3))  # 30 x 40 scaled by 2/3 to 20 x 27, centred
    padded[:, 1:28] = plain(tmp_path / "a.png", (20, 27))
    assert torch.allclose(x, chw((padded / 255 - [0.5, 0.4, 0.3]) / 0.2).float(), rtol=0, atol=1e-6)


def test_mistakes_are_named_once_at_construction_or_with_the_id(tmp_path):
    write(tmp_path, {"a": textured((20, 20), 0), "b": textured((20, 20), 1)})
    csv = table(tmp_path, image_name=["a", "b", "c", "d"], target=["0", "1", "0", "1"])
    with pytest.raises(ImageReadError, match=r"id 'c' \(row 2\) has no file .*c\.png \(pattern '\{id\}\.png'.*1 more ids .*'d'"):
        ImageDataset(csv, "{id}.png")
    csv = table(tmp_path, image_name=["a", "b"], target=["0", "1"])
    with pytest.raises(InvalidArgumentError, match=r"label 'diagnosis' is not a column.*\['image_name', 'target'\]"):
        ImageDataset(csv, "{id}.png", target="class", label="diagnosis")
    with pytest.raises(InvalidArgumentError, match=r"id_column 'Id' is not a column"):
        ImageDataset(csv, "{id}.png", id_column="Id")
    with pytest.raises(InvalidArgumentError, match=r"\{id\}"):
        ImageDataset(csv, "train/a.png")
    with pytest.raises(InvalidArgumentError, match="needs label="):
        ImageDataset(csv, "{id}.png", target="multi_hot")
    with pytest.raises(InvalidArgumentError, match="neither a preset"):
        ImageDataset(csv, "{id}.png", transform="heavier")
    with pytest.raises(InvalidArgumentError, match="no callable"):
        ImageDataset(csv, "{id}.png", normalize=lambda x: x)
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    dataset = ImageDataset(csv, "{id}.png")
    with pytest.raises(ImageReadError, match=r"id 'b' \(row 1, pattern \{id\}\.png"):
        dataset[1]
    write(tmp_path, {"a_mask": np.zeros((20, 20), np.uint8), "b_mask": np.zeros((10, 10), np.uint8), "b": textured((20, 20), 1)})
    with pytest.raises(ShapeError, match=r"id 'b' \(row 1, pattern \{id\}_mask\.png.*10x10 but its image is 20x20"):
        ImageDataset(csv, "{id}.png", target="mask", masks="{id}_mask.png")[1]
