"""Training images with image-level labels or masks, read exactly as :func:`kagglekit.infer.predict` reads them.

    train = ImageDataset("siim/train.csv", "jpeg/train/{id}.jpg", label="target", target="class", size=256,
                         normalize="imagenet", transform="light", cache_dir="/kaggle/working/cache")
    hpa = ImageDataset("hpa/train.csv", [f"train/{{id}}_{c}.png" for c in ("red", "green", "blue", "yellow")],
                       label="Target", target="multi_hot", classes=range(28), size=512)
    loader = DataLoader(train, batch_size=32, shuffle=True, num_workers=2)   # fork-safe: no shared RNG state
    checkpoint_metadata = train.preprocessing   # size, resize, normalize, channels, classes: the kernel's input

Per item: the id's file (or channel files) decoded and resized by :func:`kagglekit.io.load_image`, the decoding
``predict`` uses (a JPEG at 1/2, 1/4 or 1/8 scale by libjpeg where ``size`` allows); with ``cache_dir`` that
array is kept on disk (:func:`kagglekit.data.cache.cached_array`) and later epochs decode nothing. Then the
``transform`` (albumentations) seeded by ``(seed, epoch, index)``, so an item's augmentation is the same in
whichever DataLoader worker it runs; then the normalisation of :mod:`kagglekit.infer.batching` (the kernel's
``[preprocess] normalize``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from kagglekit._checks import number_in, one_of
from kagglekit._threads import one_thread
from kagglekit.errors import ImageReadError, InvalidArgumentError, KagglekitError
from kagglekit.io.images import RESIZE_MODES, image_size

__all__ = ["NORMALIZE_NAMES", "TARGETS", "ImageDataset"]

TARGETS = ("class", "multi_hot", "columns", "mask", None)
NORMALIZE_NAMES = ("scale", "imagenet", "none")


class ImageDataset:
    """One (image, target) per row of ``table``, a torch map-style Dataset.

    ``table``: a CSV path (read as strings: ids verbatim) or a polars DataFrame. ``images``: a path pattern with
    ``{id}`` (``"jpeg/train/{id}.jpg"``), or a list of them, one single-channel file each, stacked as channels in
    that order (HPA's red, green, blue, yellow); relative to ``root`` (default: the CSV's folder; for a DataFrame
    the current directory). ``id_column``: default the first column.

    ``target``: None (items are the image alone); ``"class"``: the ``label`` column's value as a class index;
    ``"multi_hot"``: the ``label`` column's ``separator``-separated labels ("haze primary", "0 25");
    ``"columns"``: one float column per class, ``classes`` naming them; ``"mask"``: a mask from the RLE column
    ``label`` (Kaggle's run-length encoding over the image's full size, ``rle_order`` "C" or "F") or from the
    per-id files of pattern ``masks``, nonzero = positive. ``classes``: the class names in output order; default
    the labels found, sorted (integers ``0..max``, each its own index, when every label is an integer: pass
    ``classes=range(28)`` so that a fold missing the last class keeps them all).

    ``size`` ((h, w) or int), ``resize``, ``reduced_decode``: as :func:`~kagglekit.io.load_image`. ``normalize``:
    "scale" (integers / their dtype's max), "imagenet", "none", or a (mean, std) pair per channel on the scaled
    image. ``transform``: a :mod:`kagglekit.augment` preset name, an albumentations transform (called as
    ``t(image=, mask=)``, returning an HWC numpy image: no ToTensorV2 or Normalize, the dataset normalises), or
    the path of a file ``A.save`` wrote; a uint16 image goes through it as float32 in [0, 1]. ``cache_dir``: a
    folder for the decoded, resized images (one ``.npy`` per id, named by the files' size and mtime, ``size``,
    ``resize`` and ``reduced_decode``); masks are not cached.

    ``weight``: None, or the loss weight of every row (a number: labels 1.0) or the name of a column of them
    (:func:`kagglekit.train.pseudo_labels`' ``weight``); items then carry it third, a () float32 tensor, for
    :func:`kagglekit.train.fit`'s weighted loss, and an empty cell of a ``"columns"`` target (a masked
    pseudo-label) is NaN: fit leaves it out of the loss.

    Item: ``x`` (C, h, w) float32, and the target: () int64 class index, (K,) float32 multi-hot or columns, or
    (1, h, w) float32 0/1 mask (the transform moves it with the image); then the weight, if any. Holds the ids
    (a str each), the targets ((N,) int64 or (N, K) float32; the RLE strings) and the weights ((N,) float32 or
    None), not the table (no polars state for forked workers) and no image; an item holds its decoded image
    and its copies.
    The table's columns, classes, labels and files (one stat each) are checked once, here: InvalidArgumentError
    names the column or the row (its position in the table, as the item's index); ImageReadError the id, the
    pattern and the path, and so does an error reading an item.
    """

    def __init__(self, table, images, *, root=None, id_column: str | None = None, target: str | None = None,
                 label: str | None = None, classes=None, separator: str = " ", masks: str | None = None,
                 rle_order: str = "C", size=None, resize: str | None = "resize", normalize="scale",
                 reduced_decode: bool = True, transform=None, seed: int = 0, cache_dir=None, weight=None):
        frame, folder = _read_table(table)
        self.root = Path(folder if root is None else root)
        self.single = isinstance(images, (str, os.PathLike))
        self.patterns = _patterns([images] if self.single else images, "images")
        self.size, self.resize = image_size(size), one_of("resize", resize, RESIZE_MODES)
        self.normalize, self.reduced_decode = _checked_normalize(normalize), bool(reduced_decode)
        self.ids = _column(frame, frame.columns[0] if id_column is None else id_column, "id_column")
        self.target = one_of("target", target, TARGETS)
        self.weights = _weights(frame, weight, target)
        self.classes, self.targets = _targets(frame, self.ids, target, label, classes, separator, weight is not None)
        self.mask_pattern = _mask_pattern(target, label, masks)
        self.rle_order = one_of("rle_order", rle_order, ("C", "F"))
        self.transform, self.seed, self.epoch = _transform(transform), int(seed), 0
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._check_files()
        self._affines: dict = {}
        self._channels: int | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentations of ``epoch`` (the same seed, epoch and index give the same item). Call it before
        each epoch's iteration starts: DataLoader workers copy the dataset then (unless ``persistent_workers``)."""
        self.epoch = int(epoch)

    @property
    def preprocessing(self) -> dict:
        """What the kernel must do to an image to give the model this dataset's input, in the kernel config's
        terms: ``{"size": [h, w] or None, "resize", "normalize": name or {"mean", "std"}, "reduced_decode",
        "channels", "classes": names or None}``. ``channels`` is read from the first image."""
        if self._channels is None:
            self._channels = int(self.image(0).shape[2])
        normalize = self.normalize if isinstance(self.normalize, str) else {"mean": list(self.normalize[0]),
                                                                             "std": list(self.normalize[1])}
        return {"size": None if self.size is None else list(self.size), "resize": self.resize or "none",
                "normalize": normalize, "reduced_decode": self.reduced_decode, "channels": self._channels,
                "classes": self.classes}

    def files(self, i: int) -> list[Path]:
        """The image files of item ``i``, one per pattern."""
        return [self._path(p, self.ids[i]) for p in self.patterns]

    def image(self, i: int) -> np.ndarray:
        """Item ``i``'s image decoded and resized, before augmentation: (h, w, C) uint8/uint16 (float32 for a
        float TIFF), a writable array (copied from the cache's memory map when cached)."""
        from kagglekit.data.cache import cached_array, file_stamp

        files = self.files(i)
        with self._naming(i, self.patterns):
            if self.cache_dir is None:
                return self._decode(files)
            identity = [repr(self.size), str(self.resize), str(self.reduced_decode), *map(file_stamp, files)]
            array = cached_array(self.cache_dir, self.ids[i], identity, lambda: self._decode(files))
            return np.array(array) if isinstance(array, np.memmap) else array

    def mask(self, i: int) -> np.ndarray:
        """Item ``i``'s mask at the image's size, before augmentation: (h, w) uint8, 0/1 (target "mask" only)."""
        import cv2

        from kagglekit.io import open_image, read_mask, resize_image
        from kagglekit.kaggle import rle_decode

        with self._naming(i, (self.mask_pattern or self.patterns[0],)):
            shape = open_image(self.files(i)[0]).shape[:2]  # the full size: a header read for PNG and JPEG
            if self.mask_pattern is None:
                mask = rle_decode(self.targets[i], shape, self.rle_order)
            else:
                mask = read_mask(self._path(self.mask_pattern, self.ids[i]), shape).view(np.uint8)
        return resize_image(mask[:, :, None], self.size, self.resize, cv2.INTER_NEAREST)[:, :, 0]

    def __getitem__(self, i: int):
        import torch

        if not 0 <= i < len(self):
            raise IndexError(i)
        image = self.image(i)
        mask = self.mask(i) if self.target == "mask" else None
        wide = image.dtype == np.uint16  # back from a transform as float32 in the uint16 range
        if self.transform is not None:
            image, mask = self._augment(i, image, mask)
        x = self._normalized(image, np.dtype(np.uint16) if wide else image.dtype)
        if self.target is None:
            return x
        if self.target == "mask":
            y = torch.from_numpy((mask != 0).astype(np.float32))[None]
        else:
            y = torch.as_tensor(np.array(self.targets[i]))
        return (x, y) if self.weights is None else (x, y, torch.tensor(self.weights[i]))

    def _augment(self, i: int, image: np.ndarray, mask):
        """``transform`` seeded by (seed, epoch, i); a uint16 image through it as float32 in [0, 1] and back in
        the uint16 range (albumentations' dtypes are uint8 and float32)."""
        from kagglekit.augment._albu import seed_transform

        wide = image.dtype == np.uint16
        if wide:
            image = image.astype(np.float32) / 65535
        seed_transform(self.transform, [self.seed, self.epoch, i])
        out = self.transform(image=image, **({} if mask is None else {"mask": mask}))
        image = out["image"] * np.float32(65535) if wide else out["image"]
        return image, out.get("mask")

    def _normalized(self, image: np.ndarray, dtype):
        """(C, h, w) float32 tensor of the (h, w, C) ``image`` whose values are in ``dtype``'s range, normalised
        by the :class:`~kagglekit.infer.batching.Affine` that ``predict`` applies to its batches."""
        import torch

        from kagglekit.infer.batching import Affine

        channels = image.shape[2]
        key = (dtype, channels)
        if key not in self._affines:
            self._affines[key] = Affine(self.normalize, dtype, torch.device("cpu"), channels)
        with one_thread():  # a per-item op: see kagglekit._threads
            x = self._affines[key](torch.from_numpy(np.ascontiguousarray(image)).float())
            return x.permute(2, 0, 1).contiguous()

    def _decode(self, files: list[Path]) -> np.ndarray:
        from kagglekit.io import load_image

        return load_image(files[0] if self.single else tuple(files), self.size, self.resize, self.reduced_decode)

    def _path(self, pattern: str, id_: str) -> Path:
        return self.root / pattern.replace("{id}", id_)

    def _naming(self, i: int, patterns):
        """A context that re-raises a read error of item ``i`` naming its id and ``patterns``."""
        return _naming(f"id {self.ids[i]!r} (row {i}, pattern {' + '.join(patterns)} under {self.root})")

    def _check_files(self) -> None:
        """One ImageReadError for every id whose image (or mask) file is missing, naming the first few."""
        patterns = [*self.patterns, *([self.mask_pattern] if self.mask_pattern else [])]
        missing = [(k, p) for k, id_ in enumerate(self.ids) for p in patterns if not self._path(p, id_).is_file()]
        if missing:
            k, pattern = missing[0]
            others = sorted({self.ids[j] for j, _ in missing[1:]} - {self.ids[k]})
            more = f"; {len(others)} more ids miss files too, e.g. {others[:3]}" if others else ""
            raise ImageReadError(f"id {self.ids[k]!r} (row {k}) has no file {self._path(pattern, self.ids[k])} "
                                 f"(pattern {pattern!r} under root {self.root}){more}; check the pattern and root=")


@contextlib.contextmanager
def _naming(where: str):
    """Re-raise a kagglekit error (or a missing file, as an ImageReadError) inside the block with ``where`` in front."""
    try:
        yield
    except FileNotFoundError as exc:
        raise ImageReadError(f"{where}: {exc}") from exc
    except KagglekitError as exc:
        raise type(exc)(f"{where}: {exc}") from exc


def read_targets(table, *, target: str, label: str | None = None, classes=None, separator: str = " ",
                 id_column: str | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """(ids, class names, targets) of a labels table read as :class:`ImageDataset` reads it: targets (N,)
    int64 class indices for ``target="class"``, (N, K) float32 for ``"multi_hot"`` and ``"columns"``."""
    frame, _ = _read_table(table)
    ids = _column(frame, frame.columns[0] if id_column is None else id_column, "id_column")
    names, targets = _targets(frame, ids, one_of("target", target, ("class", "multi_hot", "columns")), label, classes,
                              separator)
    return ids, names, targets


def _read_table(table):
    """(the table as a polars DataFrame, the folder patterns are relative to by default)."""
    import polars as pl

    if isinstance(table, pl.DataFrame):
        frame, folder = table, Path(".")
    elif isinstance(table, (str, os.PathLike)):
        from kagglekit.kaggle import read_csv_strings

        if not Path(table).is_file():
            raise InvalidArgumentError(f"table {table} does not exist; pass the labels CSV's path or a polars DataFrame")
        frame, folder = read_csv_strings(table, "table"), Path(table).parent
    else:
        raise InvalidArgumentError(f"table must be a CSV path or a polars DataFrame, got {type(table).__name__} "
                                   "(pl.from_pandas(df) converts a pandas DataFrame)")
    if frame.height == 0:
        raise InvalidArgumentError("the table has no rows; give one row per image")
    return frame, folder


def _patterns(patterns, what: str) -> tuple[str, ...]:
    patterns = tuple(str(p) for p in patterns)
    if not patterns or any("{id}" not in p for p in patterns):
        raise InvalidArgumentError(f"{what} must be a path pattern with {{id}} (e.g. 'train/{{id}}.jpg') or a list "
                                   f"of them, one per channel file; got {list(patterns)}")
    return patterns


def _column(frame, name, what: str) -> list[str]:
    """Column ``name`` of ``frame`` as strings (missing values as ''), or an error listing the columns."""
    import polars as pl

    if not isinstance(name, str) or name not in frame.columns:
        raise InvalidArgumentError(f"{what} {name!r} is not a column of the table; its columns: {frame.columns}")
    return frame.get_column(name).cast(pl.Utf8).fill_null("").to_list()


def _weights(frame, weight, target):
    """(N,) float32 loss weights: ``weight`` for every row or the column it names; None for None."""
    import polars as pl

    if weight is None:
        return None
    if target is None:
        raise InvalidArgumentError("weight= goes with a target (items without targets have no loss to weigh)")
    if isinstance(weight, str):
        if weight not in frame.columns:
            raise InvalidArgumentError(f"weight {weight!r} is not a column of the table; its columns: {frame.columns}")
        values = frame.get_column(weight).cast(pl.Float32, strict=False).to_numpy().astype(np.float32)
    else:
        values = np.full(frame.height, number_in("weight", weight, 0), np.float32)
    bad = np.flatnonzero(~(values >= 0) | ~np.isfinite(values))
    if len(bad):
        raise InvalidArgumentError(f"row {bad[0]} has weight {values[bad[0]]}; each row's loss weight must be a "
                                   f"number >= 0 ({len(bad)} rows are not)")
    return values


def _targets(frame, ids, target, label, classes, separator, empty_cells: bool = False):
    """(class names or None, targets: (N,) int64 / (N, K) float32 / RLE strings / None); ``empty_cells``: a
    "columns" target's empty cells are NaN instead of an error."""
    if target == "columns":
        if label is not None or classes is None:
            raise InvalidArgumentError("target='columns' takes classes=[the columns, one per class], not label")
        return _float_columns(frame, [str(c) for c in classes], empty_cells)
    if classes is not None and target in (None, "mask"):
        raise InvalidArgumentError(f"classes go with target 'class', 'multi_hot' or 'columns', not {target!r}")
    if target is None and label is not None:
        raise InvalidArgumentError(f"label={label!r} needs a target: 'class', 'multi_hot' or 'mask' (an RLE column)")
    if label is None and target in ("class", "multi_hot"):
        raise InvalidArgumentError(f"target={target!r} needs label=, the column of labels")
    if label is None:
        return None, None
    values = _column(frame, label, "label")
    if target == "mask":
        return None, values
    if not separator:
        raise InvalidArgumentError("separator must be a non-empty string (the labels' separator, ' ' by default)")
    rows = [v.split(separator) if target == "multi_hot" else [v] for v in values]
    rows = [[t for t in row if t] for row in rows]
    names = _class_names(rows, classes)
    index = {name: k for k, name in enumerate(names)}
    for r, row in enumerate(rows):
        unknown = [t for t in row if t not in index]
        if unknown or (target == "class" and not row):
            what = f"label {unknown[0]!r}" if unknown else "no label"
            raise InvalidArgumentError(f"row {r} (id {ids[r]!r}) has {what} in column {label!r}, not one of the "
                                       f"{len(names)} classes {names[:30]}; pass classes= with every label, or fix the row")
    if target == "class":
        return names, np.array([index[row[0]] for row in rows], np.int64)
    hot = np.zeros((len(rows), len(names)), np.float32)
    for r, row in enumerate(rows):
        hot[r, [index[t] for t in row]] = 1
    return names, hot


def _class_names(rows, classes) -> list[str]:
    """``classes`` as strings (checked distinct), or the labels of ``rows``: integers 0..max, else sorted."""
    if classes is not None:
        names = [str(c) for c in classes]
        if not names or len(set(names)) != len(names) or not all(names):
            raise InvalidArgumentError(f"classes must be distinct non-empty names, got {names[:30]}")
        return names
    found = {t for row in rows for t in row}
    if found and all(t.isascii() and t.isdigit() for t in found):
        return [str(k) for k in range(max(map(int, found)) + 1)]
    return sorted(found)


def _float_columns(frame, names: list[str], empty_cells: bool = False):
    import polars as pl

    absent = [n for n in names if n not in frame.columns]
    if absent or not names:
        raise InvalidArgumentError(f"classes {absent or names} are not columns of the table; its columns: {frame.columns}")
    cells = frame.select(names)
    if empty_cells:  # a CSV read as strings holds an empty cell as ""
        cells = cells.with_columns(pl.col(pl.Utf8).replace("", None))
    try:
        values = cells.cast(pl.Float32).to_numpy()
    except pl.exceptions.PolarsError as exc:
        raise InvalidArgumentError(f"the class columns {names} must hold numbers: {exc}") from None
    if np.isnan(values).any() and not empty_cells:
        r, c = np.argwhere(np.isnan(values))[0]
        raise InvalidArgumentError(f"row {r} has no value in class column {names[c]!r}; fill it (0 or 1), or pass "
                                   "weight= if it is a masked pseudo-label (left out of the loss)")
    return names, np.ascontiguousarray(values, np.float32)


def _mask_pattern(target, label, masks) -> str | None:
    if target != "mask":
        if masks is not None:
            raise InvalidArgumentError("masks= (a mask file pattern) goes with target='mask'")
        return None
    if (label is None) == (masks is None):
        raise InvalidArgumentError("target='mask' needs label= (an RLE column) or masks= (a file pattern with {id}), one of them")
    return None if masks is None else _patterns([masks], "masks")[0]


def _checked_normalize(normalize):
    """``normalize`` as a name of :data:`NORMALIZE_NAMES` or a (mean, std) pair of float tuples."""
    if normalize is None:
        return "none"
    if isinstance(normalize, str):
        return one_of("normalize", normalize, NORMALIZE_NAMES)
    try:
        mean, std = (tuple(float(v) for v in np.atleast_1d(part)) for part in normalize)
    except (TypeError, ValueError):
        mean = std = ()
    if not mean or not std or min(std) <= 0:
        raise InvalidArgumentError(f"normalize must be one of {list(NORMALIZE_NAMES)} or a (mean, std) pair of numbers "
                                   f"(per channel, std > 0), got {normalize!r}; it goes into the checkpoint, so no callable")
    return mean, std


def _transform(transform):
    """``transform`` as a callable: a preset built, a saved albumentations file loaded, a transform as it is."""
    if transform is None or (callable(transform) and not isinstance(transform, (str, os.PathLike))):
        return transform
    if not isinstance(transform, (str, os.PathLike)):
        raise InvalidArgumentError(f"transform must be a preset name, an albumentations transform or a saved one's path, "
                                   f"got {type(transform).__name__}")
    from kagglekit.augment import PRESETS, preset

    if transform in PRESETS:
        return preset(transform)
    path = Path(transform)
    if not path.is_file():
        raise InvalidArgumentError(f"transform {str(transform)!r} is neither a preset {list(PRESETS)} nor a file "
                                   "(albumentations' A.save writes one)")
    import albumentations as A

    return A.load(path, data_format="yaml" if path.suffix in (".yaml", ".yml") else "json")
