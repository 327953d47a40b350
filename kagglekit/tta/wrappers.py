"""Test-time augmentation on NCHW tensors: the ``TTA`` wrapper module and the per-window ``ViewCycle``."""

from __future__ import annotations

import torch
from torch import nn

from kagglekit._checks import one_of
from kagglekit.errors import ShapeError
from kagglekit.tta.merge import Merger
from kagglekit.tta.spec import checked_views

TASKS = ("segmentation", "classification")


def _check_nchw(x: torch.Tensor, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"{who} expects an NCHW float tensor, got {shape}; add the batch/channel axes first")


def _check_dense(y: torch.Tensor, who: str) -> torch.Tensor:
    """Return ``y`` if it is a dense (N, ..., h, w) output, else raise: flipping (N, K) logits swaps classes."""
    if y.ndim <= 2:
        raise ShapeError(f"{who}: the model returned {tuple(y.shape)}, not a dense (N, ..., h, w) output, so the views "
                         "cannot be inverted on it; for a classifier pass task='classification' to TTA (ViewCycle "
                         "is for segmentation only)")
    return y


def _channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _forward_grouped(model, inputs: list[torch.Tensor], channels_last: bool) -> list[torch.Tensor]:
    """Run ``model`` once per distinct input shape on the concatenated inputs; outputs in input order.

    ``channels_last``: hand the model channels-last memory, as the caller's batch had (flips and
    rotations return contiguous NCHW, on which CPU convolutions run several times slower).
    """
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(inputs):
        groups.setdefault(tuple(x.shape[1:]), []).append(i)
    outs: list = [None] * len(inputs)
    for idx in groups.values():
        x = torch.cat([inputs[i] for i in idx]) if len(idx) > 1 else inputs[idx[0]]
        y = model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
        for i, part in zip(idx, y.split([inputs[i].shape[0] for i in idx])):
            outs[i] = part
    return outs


class TTA(nn.Module):
    """Wrap ``model`` so that ``forward(x)`` returns the merge of its outputs over ``views``.

    ``x`` is an NCHW float tensor. ``task="segmentation"``: dense outputs (N, ..., h, w) are mapped back
    with each view's inverse ((N, K) outputs raise ShapeError), so only D4 views are taken;
    ``"classification"``: outputs (N, K) are merged as they are, and crops and scales are taken too
    (random and stain views apply to HWC images: :func:`kagglekit.infer.predict`). ``batched=True`` runs
    all views at once (N * len(views) images in memory; one forward per distinct view shape: H != W with
    views that swap H and W, crops, scales); ``batched=False`` runs one view at a time and keeps only a
    running merge. ``merge`` and ``outputs`` are as in :class:`kagglekit.tta.merge.Merger`.
    Which is faster depends on the model: on a 2-core CPU one batched forward was as fast as eight
    passes or faster for timm classifiers and an smp Unet, and about half as fast for a
    shallow full-resolution CNN whose activations outgrow the cache (bench/RESULTS.md, bench_tta.py).
    """

    def __init__(self, model: nn.Module, views="d4", merge: str = "mean", task: str = "segmentation",
                 batched: bool = True, outputs: str = "logits"):
        super().__init__()
        self.model = model
        self.task = one_of("task", task, TASKS)
        self.views = checked_views(views, f"TTA(task={self.task!r})", dense=self.task == "segmentation")
        self.batched = bool(batched)
        Merger(merge, outputs)  # validate now rather than at the first forward
        self.merge, self.outputs = merge, outputs

    def _invert(self, view, y: torch.Tensor) -> torch.Tensor:
        return view.invert(_check_dense(y, "TTA")) if self.task == "segmentation" else view.invert_label(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_nchw(x, "TTA")
        merger = Merger(self.merge, self.outputs)
        if self.batched:
            outs = _forward_grouped(self.model, [v.apply(x) for v in self.views], _channels_last(x))
            for view, y in zip(self.views, outs):
                merger.add(self._invert(view, y))
        else:
            layout = torch.channels_last if _channels_last(x) else torch.contiguous_format
            for view in self.views:
                merger.add(self._invert(view, self.model(view.apply(x).contiguous(memory_format=layout))))
        return merger.result()


class ViewCycle:
    """Per-window TTA at no extra cost, for ``kagglekit.infer.sliding_window(..., tta=ViewCycle())``.

    ``ViewCycle(views)(model, batch, first_index)`` gives tile ``i`` of the NCHW ``batch`` the view
    ``(first_index + i) % len(views)``, runs all tiles through ``model`` in one forward (two when tiles
    are not square and some views swap H and W), and returns the dense outputs (N, C_out, h, w) mapped
    back to each tile's original orientation, in the batch's order. Neighbouring overlapping windows
    thus see different views and the stitcher averages them. Holds the transformed batch and one output.
    Takes D4 views only: the others have no inverse.
    """

    def __init__(self, views="d4"):
        self.views = checked_views(views, "ViewCycle (sliding_window)", dense=True)

    def __call__(self, model, batch: torch.Tensor, first_index: int = 0) -> torch.Tensor:
        _check_nchw(batch, "ViewCycle")
        n, nv = batch.shape[0], len(self.views)
        view_of = [(first_index + i) % nv for i in range(n)]
        members = {v: [i for i in range(n) if view_of[i] == v] for v in sorted(set(view_of))}
        index = {v: torch.tensor(idx, device=batch.device) for v, idx in members.items()}
        inputs = [self.views[v].apply(batch.index_select(0, index[v])) for v in members]
        outs = _forward_grouped(model, inputs, _channels_last(batch))
        result = None
        for v, y in zip(members, outs):
            y = self.views[v].invert(_check_dense(y, "ViewCycle"))
            if result is None:
                result = y.new_empty((n, *y.shape[1:]))
            result.index_copy_(0, index[v], y)
        return result

    def __repr__(self) -> str:
        return f"ViewCycle({[v.name for v in self.views]})"
