"""The jobs ``kagglekit run`` knows, with the options its command line offers for each."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["JOBS", "JobSpec", "number_or_per_kind"]


def number_or_per_kind(text: str):
    """``"0.5"`` -> 0.5; ``"tma=0.5,wsi=1"`` -> ``{"tma": 0.5, "wsi": 1.0}`` (a value per slide kind)."""
    from kagglekit.errors import InvalidArgumentError

    try:
        if "=" not in text:
            return float(text)
        pairs = (part.split("=", 1) for part in text.split(","))
        return {k.strip(): float(v) for k, v in pairs}
    except ValueError:
        raise InvalidArgumentError(f"expected a number or kind=value pairs such as tma=0.5,wsi=1.0, got {text!r}") from None


def swap(text: str):
    return {"true": True, "false": False, "tma": "tma"}.get(text.lower(), text)


# flag -> (keyword, type, help)
OPTIONS = {
    "backbone": ("backbone", str, "a create() name (with --weights) or a checkpoint path"),
    "weights": ("weights", str, "local weights file of the --backbone create() name"),
    "model": ("model", str, "a segmentation checkpoint path"),
    "tile": ("tile", int, "tile side the model sees, in pixels"),
    "stride": ("stride", int, "step between tiles (default: the tile)"),
    "scale": ("scale", number_or_per_kind, "resize factor, a number or per kind: tma=0.5,wsi=1.0"),
    "threshold": ("threshold", number_or_per_kind, "tissue brightness cut 0..255, a number or per kind"),
    "top-k": ("top_k", int, "keep at most this many tiles per slide, the most filled"),
    "min-tissue": ("min_tissue", float, "least tissue fraction of a kept tile"),
    "kind": ("kind", str, "auto, tma or wsi"),
    "swap-background": ("swap_background", swap, "true, false or tma: background pixels set to black"),
    "downsample": ("downsample", int, "output pixels per side averaged into one"),
    "cut": ("threshold", float, "write a mask: 255 where the probability is at least this"),
    "channel": ("channel", int, "output channel of the model"),
    "out-scale": ("out_scale", int, "the model's output stride"),
    "batch-size": ("batch_size", int, "tiles per forward pass"),
    "device": ("device", str, "cpu, cuda, cuda:1 (default: CUDA when there is a GPU)"),
    "amp": ("amp", swap, "autocast: true / auto / fp16 / bf16"),
}


@dataclass(frozen=True)
class JobSpec:
    """A job for the command line: where its class is, its flags (``OPTIONS`` keys) and the required ones."""

    module: str
    cls: str
    flags: tuple[str, ...]
    required: tuple[str, ...] = ()
    help: str = ""
    example: str = ""

    def job_class(self):
        import importlib

        return getattr(importlib.import_module(self.module), self.cls)


JOBS = {
    "bags": JobSpec("kagglekit.jobs.bags", "BagJob",
                    ("backbone", "weights", "tile", "scale", "threshold", "top-k", "min-tissue", "kind",
                     "swap-background", "batch-size", "device", "amp"), ("backbone",),
                    "tile features of each slide's tissue tiles, one bag file per slide",
                    "kagglekit run bags --slides 'train_images/*.png' --out bags/ --backbone timm/resnet18 "
                    "--weights resnet18.safetensors --tile 224 --scale tma=0.5,wsi=1 --top-k 256 --workers 2"),
    "predictions": JobSpec("kagglekit.jobs.predictions", "PredictionJob",
                           ("model", "tile", "stride", "out-scale", "downsample", "cut", "channel", "batch-size",
                            "device", "amp"), ("model",),
                           "a segmentation model's probability map (or mask) per slide, as a PNG",
                           "kagglekit run predictions --slides 'train/*.tif' --out maps/ --model unet.safetensors "
                           "--tile 512 --stride 384 --downsample 8"),
    "tiles": JobSpec("kagglekit.jobs.tiles", "TileExportJob",
                     ("tile", "scale", "threshold", "top-k", "min-tissue", "kind", "swap-background"), (),
                     "each slide's top-K tissue tiles as PNG files, and one index table",
                     "kagglekit run tiles --slides 'train_images/*.png' --out tiles/ --tile 256 --top-k 64"),
}
