"""``fit``: a thin training loop on timm's optimiser and scheduler factories, torch AMP and timm's EMA.

    result = fit(model, train, val, loss=nn.BCEWithLogitsLoss(), epochs=10, batch_size=32, lr=3e-4,
                 warmup=100, amp="auto", ema=0.999, keep="best", metric=roc_auc, state_dir="fold0/")
    result.model, result.history                     # the kept weights, one row per optimiser step

A step is one optimiser update over ``accumulate`` batches. The batches of an epoch come from a
permutation drawn from (seed, epoch), so a fixed number of steps and a seed give the same weights twice,
and a run stopped at any save resumes to the weights of an uninterrupted one (``state_dir``). Under
``torchrun`` every rank takes its share of each global batch (:mod:`.distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kagglekit.errors import InvalidArgumentError
from kagglekit.train import distributed
from kagglekit.train.optim import freeze_parameters, make_optimizer, make_scheduler, set_lr
from kagglekit.train.state import load_state, save_state, settings_hash
from kagglekit.train.weighting import per_unit_loss, weighted_loss

__all__ = ["FitResult", "FitSettings", "evaluate", "fit"]

logger = logging.getLogger("kagglekit.train")
MIXERS = (None, "mixup", "cutmix")


@dataclass(frozen=True, kw_only=True)
class FitSettings:
    """Every option of :func:`fit` (see there); ``shaping()`` are those that change the weights."""

    loss: Callable
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 32
    shuffle: bool = True
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    layer_decay: float | None = None
    scheduler: str | None = "cosine"
    warmup: int = 0
    min_lr: float = 0.0
    schedule_args: dict | None = None
    amp: object = False
    channels_last: bool = False
    accumulate: int = 1
    clip: float | None = None
    ema: float | None = None
    freeze: object = None
    unfreeze_after: int | None = None
    mix: str | None = None
    mix_alpha: float = 1.0
    mix_prob: float = 1.0
    metric: Callable | None = None
    eval_every: int | None = None
    keep: str = "last"
    seed: int = 0
    device: object = "auto"
    num_workers: int = 0
    state_dir: Path | None = None
    save_every: int | None = None
    progress: bool = True

    def check(self, train, val) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise InvalidArgumentError(f"give steps or epochs, one of them (got steps={self.steps}, epochs={self.epochs})")
        for name in ("steps", "epochs", "batch_size", "accumulate", "eval_every", "save_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        if self.mix not in MIXERS:
            raise InvalidArgumentError(f"mix must be one of {list(MIXERS)}, got {self.mix!r}")
        if self.keep == "ema" and self.ema is None:
            raise InvalidArgumentError("keep = 'ema' keeps the EMA weights; give ema= a decay (e.g. 0.999)")
        if self.top_k and val is None:
            raise InvalidArgumentError(f"keep = {self.keep!r} chooses weights by their validation score; pass val=")
        if len(train) < self.batch_size * self.accumulate:
            raise InvalidArgumentError(f"the training set has {len(train)} items, fewer than one step's "
                                       f"batch_size x accumulate = {self.batch_size * self.accumulate}")

    @property
    def top_k(self) -> int:
        """How many of the best evaluated weights are averaged (0: ``keep`` is "last" or "ema")."""
        if self.keep in ("last", "ema"):
            return 0
        if self.keep == "best":
            return 1
        if self.keep.startswith("top") and self.keep[3:].isdigit() and int(self.keep[3:]) >= 1:
            return int(self.keep[3:])
        raise InvalidArgumentError(f"keep must be 'last', 'ema', 'best' or 'top<k>' (e.g. 'top3'), got {self.keep!r}")

    def shaping(self) -> dict:
        """The settings that change the weights (for the resume state's hash)."""
        quiet = {"device", "num_workers", "state_dir", "save_every", "progress"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in quiet}


@dataclass
class FitResult:
    """``model``: the kept weights (``keep``), in eval mode on the training device; ``history``: a polars
    frame, one row per optimiser step (step, epoch, lr, loss; val_loss and score where it was evaluated);
    ``best_step`` / ``best_score``: the best evaluation (None without ``val``)."""

    model: nn.Module
    history: object
    best_step: int | None = None
    best_score: float | None = None


@dataclass
class _Run:
    """The training objects of one fit and where it stands."""

    model: nn.Module
    wrapped: nn.Module
    optimizer: object
    scheduler: object
    scaler: object
    ema: object
    ranks: distributed.Ranks
    device: torch.device
    total: int
    per_epoch: int
    step: int = 0
    per_unit: object = None  # the loss with reduction="none", built for the first weighted batch
    history: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)  # [{"score", "step", "state"}], best first
    mix_generator: torch.Generator = field(default_factory=torch.Generator)

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are evaluated and kept by score: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model


def fit(model: nn.Module, train, val=None, *, loss, **options) -> FitResult:
    """Train ``model`` on ``train`` and return the kept weights and the history.

    train, val: map-style datasets of ``(input, target)`` or ``(input, target, weight)`` (tensors or
        arrays; e.g. :class:`kagglekit.data.ImageDataset`, ``TileDataset``); a dataset with
        ``set_epoch(epoch)`` is told each epoch. A ``weight`` (a float per item: its source's loss weight,
        e.g. labels 1.0 and pseudo-labels 0.3) makes the loss the mean over the loss's units of weight x
        its ``reduction="none"`` value, NaN target elements left out (:mod:`.weighting`; a mask pasted by
        CutMix weighs each pixel as the item it came from); ``val``'s weights are ignored.
    loss: ``loss(outputs, targets) -> scalar``, or a :func:`kagglekit.losses.create_loss` name or
        ``{name: weight}`` sum; computed in float32.
    steps | epochs: how long, one of them; a step is one optimiser update of ``accumulate`` batches of
        ``batch_size`` (the global batch: under torchrun each of N ranks takes ``batch_size / N``).
    optimizer, lr, weight_decay, momentum, layer_decay: timm's ``create_optimizer_v2`` ("adamw", "sgd"
        (plain with momentum 0), "lamb", ...; ``layer_decay`` for timm models).
    scheduler, warmup, min_lr, schedule_args: timm's ``create_scheduler_v2`` per step ("cosine", "step",
        "poly", ...; None: constant), ``warmup`` steps of linear warm-up.
    amp: False, True / "auto" (fp16 on CUDA with a gradient scaler, bf16 on a CPU that has it), "fp16",
        "bf16"; channels_last: the model and 4-D inputs in channels-last memory.
    clip: the gradients' largest norm; ema: timm ModelEmaV3's decay (e.g. 0.999), updated after every
        step from the weights after the first (as timm's train.py does).
    freeze, unfreeze_after: ``"body"`` or parameter-name prefixes kept frozen (bit for bit), until step
        ``unfreeze_after`` if given (Planet's "head first").
    mix, mix_alpha, mix_prob: "mixup" or "cutmix" (:mod:`kagglekit.augment.mix`) on a share of the batches;
        the loss is mixed with the same weight (a mask target is pasted with CutMix).
    metric, eval_every: ``metric(targets, outputs) -> float`` (numpy arrays, outputs as the model returns
        them; higher is better) on ``val`` every ``eval_every`` steps (default: each epoch) and at the end.
    keep: "last", "ema", "best" (by metric, else the lowest validation loss) or "top<k>" (the k best
        evaluations' weights averaged).
    seed: the batch order, the mixer and torch's random state (dropout); device: "auto", "cpu", "cuda"...;
    num_workers: DataLoader worker processes.
    state_dir, save_every: the resumable state (``last.pt``) is saved there every ``save_every`` steps
        (default: at each evaluation) and at the end; a run with the same settings resumes from it.
    progress: a tqdm bar over the steps.

    Holds the model, its optimiser state, the EMA copy, ``k`` snapshots for "best"/"top<k>" (on the CPU)
    and, while evaluating, every validation output.
    """
    from kagglekit.infer.batching import resolve_device

    s = FitSettings(loss=_as_loss(loss), **options)
    s.check(train, val)
    ranks, device = distributed.start(resolve_device(s.device))
    run = _start(model, train, s, ranks, device)
    _train(run, train, val, s)
    if s.state_dir is not None and ranks.main:
        save_state(Path(s.state_dir), _state(run, s))
    return _result(run, s)


def _as_loss(loss) -> Callable:
    """``loss`` as a callable: a :func:`kagglekit.losses.create_loss` name or ``{name: weight}`` built."""
    if isinstance(loss, (str, dict)):
        from kagglekit.losses import create_loss

        return create_loss(loss)
    return loss


def _start(model: nn.Module, train, s: FitSettings, ranks, device) -> _Run:
    """The run's objects, fresh (torch seeded) or as the state in ``state_dir`` left them."""
    torch.manual_seed(s.seed)
    model = model.to(device)
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    per_epoch = len(distributed.epoch_batches(len(train), s.batch_size, ranks, s.seed, 0, False)) // s.accumulate
    total = s.steps or s.epochs * per_epoch
    optimizer = make_optimizer(model, s.optimizer, s.lr, s.weight_decay, s.momentum, s.layer_decay)
    freeze_parameters(model, s.freeze)  # after the optimiser, which holds them for when they are unfrozen
    scheduler = make_scheduler(optimizer, s.scheduler, total, s.warmup, s.min_lr, s.schedule_args)
    ema = None
    if s.ema is not None:
        from kagglekit.models import create_ema

        ema = create_ema(model, s.ema)
    run = _Run(model, distributed.wrap(model, ranks, device), optimizer, scheduler, _scaler(s.amp, device), ema,
               ranks, device, total, per_epoch)
    run.mix_generator.manual_seed(s.seed + 1)
    saved = load_state(Path(s.state_dir), settings_hash(s.shaping())) if s.state_dir is not None else None
    if saved is not None:
        _restore(run, saved)
    set_lr(scheduler, run.step)
    _unfreeze_if_due(run, s)
    return run


def _scaler(amp, device: torch.device):
    """A gradient scaler for float16 autocast on CUDA (the only case that needs one), else None."""
    fp16 = amp == "fp16" or (amp in (True, "auto") and device.type == "cuda")
    if not fp16 or device.type != "cuda":
        return None
    return torch.amp.GradScaler("cuda") if hasattr(torch.amp, "GradScaler") else torch.cuda.amp.GradScaler()


def _train(run: _Run, train, val, s: FitSettings) -> None:
    """Steps until ``run.total``, epoch by epoch, evaluating and saving on their schedule."""
    from tqdm.auto import tqdm

    eval_every = s.eval_every or run.per_epoch
    save_every = s.save_every or eval_every
    with tqdm(total=run.total, initial=run.step, desc="fit", unit="step", disable=not (s.progress and run.ranks.main)) as bar:
        while run.step < run.total:
            epoch, done = divmod(run.step, run.per_epoch)
            for group in _epoch_groups(train, s, run, epoch, done):
                row = _update(run, group, s)
                row["epoch"] = epoch
                if val is not None and (run.step % eval_every == 0 or run.step == run.total):
                    row.update(_evaluate_and_keep(run, val, s))
                run.history.append(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{row['lr']:.3g}")
                if s.state_dir is not None and run.ranks.main and run.step % save_every == 0 and run.step < run.total:
                    save_state(Path(s.state_dir), _state(run, s))
                if run.step >= run.total:
                    break


def _epoch_groups(train, s: FitSettings, run: _Run, epoch: int, done: int):
    """The batches of ``epoch`` from optimiser step ``done`` on, ``accumulate`` at a time, each on the device."""
    batches = distributed.epoch_batches(len(train), s.batch_size, run.ranks, s.seed, epoch, s.shuffle)
    batches = batches[done * s.accumulate : run.per_epoch * s.accumulate]
    if hasattr(train, "set_epoch"):
        train.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(train, batch_sampler=batches, num_workers=s.num_workers,
                                         generator=torch.Generator().manual_seed(s.seed * 7919 + epoch),
                                         pin_memory=run.device.type == "cuda")
    group = []
    for inputs, targets, *weights in loader:
        group.append((_on(inputs, run.device, s.channels_last), _on(targets, run.device, False),
                      _on(weights[0], run.device, False) if weights else None))
        if len(group) == s.accumulate:
            yield group
            group = []


def _on(value, device: torch.device, channels_last: bool) -> torch.Tensor:
    value = torch.as_tensor(value).to(device, non_blocking=True)
    return value.contiguous(memory_format=torch.channels_last) if channels_last and value.ndim == 4 else value


def _update(run: _Run, group: list, s: FitSettings) -> dict:
    """One optimiser step over ``group`` (``accumulate`` batches): the history row of the step."""
    from kagglekit.infer.batching import autocast

    lr = max(g["lr"] for g in run.optimizer.param_groups)
    losses = []
    for k, (inputs, targets, weights) in enumerate(group):
        inputs, criterion = _mixed(inputs, targets, weights, _criterion(run, s, weights), s, run.mix_generator)
        last = k == len(group) - 1
        with nullcontext() if last or run.ranks.world == 1 else run.wrapped.no_sync():
            with autocast(s.amp, run.device):
                outputs = run.wrapped(inputs)
            value = criterion(outputs.float())
            scaled = value / len(group)
            if k == 0:  # the last step's gradients go here, not right after it: freed then, glibc hands the
                run.optimizer.zero_grad(set_to_none=True)  # memory back and the next step faults it in (bench a)
            (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()
        losses.append(float(value.detach()))
    _optimizer_step(run, s)
    run.step += 1
    set_lr(run.scheduler, run.step)
    _unfreeze_if_due(run, s)
    return {"step": run.step, "lr": lr, "loss": distributed.mean_over_ranks(float(np.mean(losses)), run.ranks, run.device)}


def _optimizer_step(run: _Run, s: FitSettings) -> None:
    """Clip, step (through the scaler under fp16), update the EMA; the gradients are cleared in the next step."""
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
    if s.clip is not None:
        torch.nn.utils.clip_grad_norm_([p for p in run.model.parameters() if p.grad is not None], s.clip)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    if run.ema is not None:  # timm's count of updates, 1-based: the first update copies the weights
        run.ema.update(run.model, step=run.step + 1)


def _unfreeze_if_due(run: _Run, s: FitSettings) -> None:
    if s.unfreeze_after is not None and run.step >= s.unfreeze_after:
        for p in run.model.parameters():
            p.requires_grad_(True)


def _criterion(run: _Run, s: FitSettings, weights):
    """``loss(outputs, targets, weights)`` of a batch: the plain loss, or with weights the weighted one."""
    if weights is None:
        return lambda outputs, targets, _: s.loss(outputs, targets)
    if run.per_unit is None:
        run.per_unit = per_unit_loss(s.loss)
    return lambda outputs, targets, w: weighted_loss(run.per_unit, outputs, targets, w)


def _mixed(inputs: torch.Tensor, targets: torch.Tensor, weights, loss, s: FitSettings, generator: torch.Generator):
    """(inputs, criterion(outputs)): MixUp or CutMix on this batch when drawn, the loss (with each target's
    weight) mixed to match (a dense target, a mask of the inputs' size, is pasted by CutMix); the plain loss
    otherwise."""
    if s.mix is None or float(torch.rand((), generator=generator)) >= s.mix_prob:
        return inputs, lambda outputs: loss(outputs, targets, weights)
    from kagglekit.augment.mix import cutmix, mixup

    placeholder = torch.zeros(len(inputs), 1, device=inputs.device)  # the mixers' targets; the loss mixes instead
    dense = targets.ndim >= 3 and targets.shape[-2:] == inputs.shape[-2:]
    if s.mix == "cutmix" and dense:
        mixed = cutmix(inputs, placeholder, s.mix_alpha, masks=targets, generator=generator)
        return mixed.inputs, lambda outputs: loss(outputs, mixed.masks, _pasted(weights, targets.shape, mixed))
    mixed = (mixup if s.mix == "mixup" else cutmix)(inputs, placeholder, s.mix_alpha, generator=generator)
    partner, partner_weights = targets[mixed.index], None if weights is None else weights[mixed.index]
    return mixed.inputs, lambda outputs: (mixed.lam * loss(outputs, targets, weights)
                                          + (1 - mixed.lam) * loss(outputs, partner, partner_weights))


def _pasted(weights, shape, mixed):
    """Per-element weights of CutMix'd masks of ``shape``: each pixel weighs as the item it came from (None: None)."""
    if weights is None:
        return None
    per_pixel = weights.reshape(-1, *[1] * (len(shape) - 1)).expand(shape).clone()
    y0, y1, x0, x1 = mixed.box
    per_pixel[..., y0:y1, x0:x1] = per_pixel[..., y0:y1, x0:x1][mixed.index]
    return per_pixel


def evaluate(module: nn.Module, data, loss, *, batch_size: int = 32, amp=False, device=None, num_workers: int = 0):
    """(mean loss, targets, outputs) of ``module`` over ``data`` in order: the outputs as float32 numpy
    arrays (N, ...) as the model returns them; ``loss`` as :func:`fit` takes it. Holds every output and target."""
    from kagglekit.infer.batching import autocast, resolve_device

    loss = _as_loss(loss)
    device = resolve_device(device) if device is not None else next(module.parameters()).device
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training, total, outputs, targets = module.training, 0.0, [], []
    module.eval()
    with torch.inference_mode():
        for x, y, *_ in loader:
            x, y = torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)
            with autocast(amp, device):
                out = module(x).float()
            total += float(loss(out, y)) * len(x)
            outputs.append(out.cpu().numpy())
            targets.append(y.cpu().numpy())
    module.train(was_training)
    return total / len(data), np.concatenate(targets), np.concatenate(outputs)


def _evaluate_and_keep(run: _Run, val, s: FitSettings) -> dict:
    """Evaluate the weights in training on ``val``; keep a copy among the best ``top_k``. The row's values."""
    val_loss, targets, outputs = evaluate(run.evaluated, val, s.loss, batch_size=s.batch_size, amp=s.amp,
                                          device=run.device, num_workers=s.num_workers)
    score = float(s.metric(targets, outputs)) if s.metric is not None else None
    if s.top_k:
        rank = score if score is not None else -val_loss
        state = {k: v.detach().cpu().clone() for k, v in run.evaluated.state_dict().items()}
        run.snapshots.append({"score": rank, "step": run.step, "state": state})
        run.snapshots.sort(key=lambda snap: -snap["score"])
        del run.snapshots[s.top_k :]
    return {"val_loss": val_loss, "score": score}


def _state(run: _Run, s: FitSettings) -> dict:
    """What :func:`_restore` needs to continue exactly where this run is."""
    return {"settings_hash": settings_hash(s.shaping()), "step": run.step, "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict() if run.scheduler is not None else {},
            "scaler": run.scaler.state_dict() if run.scaler is not None else {},
            "ema": run.ema.module.state_dict() if run.ema is not None else {},
            "snapshots": run.snapshots, "history": run.history, "rng": torch.get_rng_state(),
            "mix_rng": run.mix_generator.get_state()}


def _restore(run: _Run, saved: dict) -> None:
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(saved["scheduler"])
    if run.scaler is not None and saved["scaler"]:
        run.scaler.load_state_dict(saved["scaler"])
    if run.ema is not None:
        run.ema.module.load_state_dict(saved["ema"])
    run.step, run.snapshots, run.history = saved["step"], saved["snapshots"], saved["history"]
    torch.set_rng_state(saved["rng"])
    run.mix_generator.set_state(saved["mix_rng"])


def _result(run: _Run, s: FitSettings) -> FitResult:
    """The kept weights in the model, and the history as a polars frame."""
    import polars as pl

    from kagglekit.models import average_state_dicts

    if s.keep == "ema":
        run.model.load_state_dict(run.ema.module.state_dict())
    elif s.top_k:
        states = [snap["state"] for snap in run.snapshots]
        run.model.load_state_dict(states[0] if len(states) == 1 else average_state_dicts(states))
    rows = [{"val_loss": None, "score": None, **row} for row in run.history]
    history = pl.DataFrame(rows, schema={"step": pl.Int64, "epoch": pl.Int64, "lr": pl.Float64, "loss": pl.Float64,
                                         "val_loss": pl.Float64, "score": pl.Float64})
    evaluated = [r for r in rows if r["val_loss"] is not None]
    best = max(evaluated, key=lambda r: r["score"] if r["score"] is not None else -r["val_loss"], default=None)
    return FitResult(run.model.eval(), history, best and best["step"], best and best["score"])
