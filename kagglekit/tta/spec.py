"""TTA view specifications: D4 names and subsets, view objects, and one table per kind of the other views.

    views("d4")
    views(["identity", "hflip", {"five_crop": 224}, {"random": "light", "n": 8, "seed": 0}])

A table (a dict; an inline table in a pipeline's TOML) names one kind of view and its settings, and stands for
the several views it makes, in order:

    {five_crop = 224} or {five_crop = [h, w]}   the four corners and the centre (crops.five_crop)
    {ten_crop = 224}                            those five, then the five mirrored (crops.ten_crop)
    {scale = [0.75, 1.25]}                      one resized batch per factor (crops.scales)
    {random = "light", n = 8, seed = 0}         n draws of a kagglekit.augment preset (size = 512: a random
                                                crop first) or, in Python, of an albumentations transform
    {random_crop = 512, n = 4, seed = 0}        n random windows (augmented.random_crops)
    {stain = "macenko", reference = "r.png"}    Macenko or Reinhard normalisation to a reference (stain.stain_view)

D4 views have exact inverses; the others have none and are for image-level outputs only (:func:`checked_views`).
"""

from __future__ import annotations

from kagglekit.errors import InvalidArgumentError
from kagglekit.tta.augmented import random_crops, random_views
from kagglekit.tta.crops import LabelView, five_crop, scales, ten_crop
from kagglekit.tta.dihedral import BY_NAME, SUBSETS, View
from kagglekit.tta.stain import stain_view

# kind -> (the function that makes its views from the kind's value, the other settings it takes, those required)
TABLES = {
    "five_crop": (five_crop, (), ()),
    "ten_crop": (ten_crop, (), ()),
    "scale": (scales, (), ()),
    "random": (random_views, ("n", "seed", "size"), ("n",)),
    "random_crop": (random_crops, ("n", "seed"), ("n",)),
    "stain": (stain_view, ("reference",), ("reference",)),
}
EXAMPLES = {"random": '{random = "light", n = 8, seed = 0}', "random_crop": "{random_crop = 512, n = 4, seed = 0}",
            "stain": '{stain = "macenko", reference = "reference.png"}'}


def _from_table(table: dict) -> tuple:
    kinds = [k for k in table if k in TABLES]
    if len(kinds) != 1:
        raise InvalidArgumentError(f"a TTA view table names one kind of view, one of {sorted(TABLES)} (e.g. "
                                   f"{{five_crop = 224}}), got {table!r}")
    kind = kinds[0]
    build, settings, required = TABLES[kind]
    unknown = sorted(set(table) - {kind, *settings}, key=str)
    if unknown:
        raise InvalidArgumentError(f"TTA view table {kind}: unknown setting(s) {unknown}; it takes "
                                   f"{list(settings) or 'no other setting'}")
    missing = [k for k in required if k not in table]
    if missing:
        raise InvalidArgumentError(f"TTA view table {kind} needs {missing[0]}, e.g. {EXAMPLES[kind]}")
    return build(table[kind], **{k: table[k] for k in settings if k in table})


def _one(item) -> tuple:
    if isinstance(item, (View, LabelView)):
        return (item,)
    if isinstance(item, dict):
        return _from_table(item)
    if isinstance(item, str) and item in BY_NAME:
        return (BY_NAME[item],)
    raise InvalidArgumentError(f"unknown TTA view {item!r}; use a subset name {sorted(SUBSETS)}, view names "
                               f"{sorted(BY_NAME)} or a table of one of {sorted(TABLES)}, e.g. {{five_crop = 224}}")


def views(spec="d4") -> tuple:
    """Resolve ``spec`` into a tuple of views: a D4 subset name (``identity``, ``hflip``, ``flips``, ``d2``,
    ``rot90``, ``d4``), or one item or a list of items, each a D4 view name, a view object or a table."""
    if isinstance(spec, str) and spec in SUBSETS:
        return tuple(BY_NAME[n] for n in SUBSETS[spec])
    items = [spec] if isinstance(spec, (str, dict, View, LabelView)) else list(spec)
    out = tuple(v for item in items for v in _one(item))
    if not out:
        raise InvalidArgumentError("TTA needs at least one view; pass e.g. views='d4' or ['identity', 'hflip']")
    return out


def checked_views(spec, who: str, dense: bool) -> tuple:
    """:func:`views` for a module that transforms NCHW tensors: random views (which transform the HWC images
    before batching) are refused, and with ``dense`` so is every view without an inverse."""
    out = views(spec)
    for view in out:
        if dense and not view.invertible:
            raise InvalidArgumentError(
                f"TTA view {view.name!r} has no inverse, so {who} cannot map its dense output back onto the image's "
                f"pixels; dense outputs take D4 views only ({', '.join(map(repr, SUBSETS))} or names such as "
                "'hflip'); crops, scales, random and stain views are for image-level outputs (predict, classify)")
        if not hasattr(view, "apply"):
            raise InvalidArgumentError(f"TTA view {view.name!r} transforms the HWC images before batching, so {who} "
                                       "(on NCHW tensors) cannot apply it; pass it to kagglekit.infer.predict(tta=...)")
    return out
