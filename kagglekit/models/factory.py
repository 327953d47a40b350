"""``create(name, ...)``: one factory over timm, segmentation-models-pytorch and kagglekit models."""

from __future__ import annotations

import os
from contextlib import contextmanager

from torch import nn

from kagglekit._checks import one_of, positive_int
from kagglekit.errors import InvalidArgumentError
from kagglekit.models.heads import BackboneWithHead, ConcatPoolHead
from kagglekit.models.registry import canonical_name, get_builder
from kagglekit.models.weights import load_weights

HEADS = ("default", "concat_pool")


@contextmanager
def timm_name(name: str):
    """Guard a timm build (or an smp ``tu-`` encoder) of ``name``: refuse Hugging Face Hub names, for which
    timm downloads a config even without weights, and turn timm's unknown-model RuntimeError into an
    InvalidArgumentError."""
    source, sep, _ = name.partition(":")
    if sep and source.lower() in ("hf-hub", "hf_hub"):
        raise InvalidArgumentError(
            f"timm name {name!r} makes timm download from the Hugging Face Hub, and kagglekit never downloads: "
            "use the plain timm architecture name (e.g. 'resnet18') and pass weights=<local file>, pretrained=True"
        )
    try:
        yield
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise
        raise InvalidArgumentError(f"timm has no model {name!r}; list them with timm.list_models('*pattern*')") from e


def _timm(name: str, in_channels: int = 3, num_classes: int | None = None, head: str = "default",
          drop_rate: float = 0.0, drop_path_rate: float | None = None, **kwargs) -> nn.Module:
    import timm

    one_of("head", head, HEADS)
    in_channels = positive_int("in_channels", in_channels)
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    with timm_name(name):
        if head == "default":
            if num_classes is not None:
                kwargs["num_classes"] = num_classes
            return timm.create_model(name, pretrained=False, in_chans=in_channels, drop_rate=drop_rate, **kwargs)
        if num_classes is None:
            raise InvalidArgumentError("head='concat_pool' needs num_classes")
        backbone = timm.create_model(name, pretrained=False, in_chans=in_channels, num_classes=0,
                                     global_pool="", **kwargs)
    return BackboneWithHead(backbone, ConcatPoolHead(backbone.num_features, num_classes, dropout=drop_rate))


def _smp(spec: str, in_channels: int = 3, num_classes: int = 1, drop_path_rate: float | None = None,
         **kwargs) -> nn.Module:
    import segmentation_models_pytorch as smp

    arch, _, encoder = spec.partition("/")
    if not encoder:
        raise InvalidArgumentError(f"smp names look like 'smp/<arch>/<encoder>', e.g. 'smp/unet/resnet18'; got 'smp/{spec}'")
    if drop_path_rate is not None:
        if not encoder.startswith("tu-"):
            raise InvalidArgumentError(
                f"drop_path_rate works only with timm encoders in smp ('tu-<timm name>'), not {encoder!r}"
            )
        kwargs["drop_path_rate"] = drop_path_rate
    in_channels = positive_int("in_channels", in_channels)
    if not encoder.startswith("tu-"):
        _check_smp_keywords(smp, arch, kwargs)
    with timm_name(encoder.removeprefix("tu-")):  # a tu- encoder is the timm model named after the prefix
        try:
            return smp.create_model(arch, encoder_name=encoder, encoder_weights=None, in_channels=in_channels,
                                    classes=num_classes, **kwargs)
        except KeyError as e:
            raise InvalidArgumentError(f"segmentation-models-pytorch cannot build {spec!r}: {e.args[0]}") from e


def _check_smp_keywords(smp, arch: str, kwargs: dict) -> None:
    """Refuse keywords that smp's architecture class does not name: it takes ``**kwargs`` for its encoder,
    and smp's own encoders ignore what they do not know, so a misspelt keyword would be silently dropped."""
    import difflib
    import inspect

    model_class = smp.MODEL_ARCHITECTURES_MAPPING.get(arch.lower())
    if model_class is None:
        return  # smp names the known architectures itself
    known = [n for n, p in inspect.signature(model_class).parameters.items() if p.kind is not p.VAR_KEYWORD]
    for key in kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise InvalidArgumentError(
                f"smp's {model_class.__name__} has no keyword {key!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                f"it takes {sorted(set(known) - {'encoder_name', 'encoder_weights', 'classes'})} besides kagglekit's "
                "in_channels and num_classes")


_FAMILIES = {"timm": _timm, "smp": _smp, "kagglekit": lambda name, **kw: get_builder(name)(**kw)}

# Keywords users bring from the library underneath: their spelling -> kagglekit's (accepted), or
# -> what to do instead (refused). Without this, smp's ``classes`` reached smp.create_model twice.
_ALIASES = {"timm": {"in_chans": "in_channels", "classes": "num_classes"},
            "smp": {"classes": "num_classes", "in_chans": "in_channels"}}
_REFUSED = {
    "timm": {"checkpoint_path": "pass weights=<local file> (kagglekit loads it without pickled code)",
             "model_name": "the timm model is named in the name: 'timm/<timm name>'"},
    "smp": {"encoder_name": "the encoder is named in the name: 'smp/<arch>/<encoder>'",
            "arch": "the architecture is named in the name: 'smp/<arch>/<encoder>'"},
}


def _own_keywords(family: str, name: str, kwargs: dict) -> dict:
    """``kwargs`` with the family's own spellings turned into kagglekit's; refused keywords raise."""
    for key, advice in _REFUSED.get(family, {}).items():
        if key in kwargs:
            raise InvalidArgumentError(f"create({name!r}): {key}= is not a kagglekit keyword here; {advice}")
    kwargs = dict(kwargs)
    for theirs, ours in _ALIASES.get(family, {}).items():
        if theirs in kwargs:
            if ours in kwargs:
                raise InvalidArgumentError(f"create({name!r}): {theirs}= and {ours}= say the same thing; pass {ours}= only")
            kwargs[ours] = kwargs.pop(theirs)
    return kwargs


def create(name: str, *, weights=None, pretrained: bool = False, strict: bool = True,
           weights_key: str | None = None, **kwargs) -> nn.Module:
    """Build a model by name, optionally loading local weights; never touches the network.

    Names: ``"timm/<timm name>"`` (classifier; kwargs ``in_channels``, ``num_classes``,
    ``head="default"|"concat_pool"``, ``drop_rate``, ``drop_path_rate`` and any timm argument),
    ``"smp/<arch>/<encoder>"`` (segmentation model; ``in_channels``, ``num_classes``, any smp argument,
    ``drop_path_rate`` for ``tu-`` encoders) and ``"kagglekit/<name>"`` (see ``list_models()``).
    The libraries' own spellings ``in_chans`` (timm) and ``classes`` (smp) are accepted and stored as
    ``in_channels`` / ``num_classes``; a keyword the library underneath refuses is an InvalidArgumentError.
    Models take NCHW float tensors. ``weights`` is a local file (.safetensors/.pth/.pt/.bin) loaded by
    :func:`load_weights` with ``strict``, ``pretrained`` (the file is a library pretrained file: heads
    of another size are re-initialised, the input conv adapted) and ``weights_key``. The name and
    kwargs are kept on ``model.kagglekit_config`` so that ``save_checkpoint`` can rebuild the model;
    the load report is ``model.kagglekit_load_report`` and the weights file ``model.kagglekit_weights``.
    """
    family, _, rest = str(name).partition("/")
    if family not in _FAMILIES or not rest:
        raise InvalidArgumentError(
            f"model name {name!r} must look like 'timm/<name>', 'smp/<arch>/<encoder>' or 'kagglekit/<name>'"
        )
    if kwargs.get("encoder_weights") is not None:
        raise InvalidArgumentError("kagglekit never downloads weights: pass weights=<local file>, pretrained=True")
    kwargs.pop("encoder_weights", None)
    if pretrained and weights is None:
        raise InvalidArgumentError(
            "pretrained=True needs weights=<local file>: kagglekit never downloads. Save the timm/smp "
            "pretrained state dict once (e.g. as a Kaggle dataset) and pass its path"
        )
    if family == "kagglekit":  # a retired name warns and is kept as the name it is now
        rest = canonical_name(rest, warn=True)
        name = f"kagglekit/{rest}"
    kwargs = _own_keywords(family, name, kwargs)
    try:
        model = _FAMILIES[family](rest, **kwargs)
    except TypeError as e:  # a keyword the library underneath does not take: its raw error names no fix
        raise InvalidArgumentError(
            f"create({name!r}) with {sorted(kwargs)}: {e}. kagglekit's own keywords are in_channels and num_classes "
            "(in_chans / classes are accepted too); other keywords go to the library underneath unchanged"
        ) from e
    model.kagglekit_config = {"name": name, "kwargs": kwargs}
    if weights is not None:
        model.kagglekit_weights = str(weights) if isinstance(weights, (str, os.PathLike)) else None
        model.kagglekit_load_report = load_weights(model, weights, strict=strict, pretrained=pretrained,
                                                   key=weights_key)
    return model


def input_channels(config: dict) -> int | None:
    """The input channels of a model from its build config (``model.kagglekit_config`` or a checkpoint's
    :func:`~kagglekit.models.checkpoint_info`): ``in_channels``, 3 by default for timm and smp models,
    None (unknown) for a registered kagglekit model that does not take ``in_channels``."""
    family = str(config["name"]).partition("/")[0]
    default = 3 if family in ("timm", "smp") else None
    return config["kwargs"].get("in_channels", default)
