"""``kagglekit.train.fit`` against plain loops written here, timm's scheduler called plainly, the EMA's
closed form, two torchrun processes, and an interrupted run resumed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kagglekit.errors import InvalidArgumentError
from kagglekit.train import fit

N, D = 48, 6


def data(seed: int = 0) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, :1] + 0.3 * x[:, 1:2] > 0).float())


def mlp(seed: int = 1, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 1))


def weights(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


PLAIN = {"optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0, "scheduler": None, "shuffle": False, "progress": False}


def plain_sgd(model, dataset, batch_size: int, steps: int, lr: float, after_step=None) -> dict:
    """SGD written plainly: batches in order (the last incomplete one dropped), w -= lr * grad of the mean BCE."""
    x, y = dataset.tensors
    per_epoch = N // batch_size
    for step in range(steps):
        k = step % per_epoch
        model.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(model(x[k * batch_size : (k + 1) * batch_size]),
                                                       y[k * batch_size : (k + 1) * batch_size]).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        if after_step is not None:
            after_step(model)
    return weights(model)


def test_sgd_equals_a_plain_loop_weight_for_weight():
    expected = plain_sgd(mlp(), data(), batch_size=8, steps=9, lr=0.1)  # 6 batches an epoch: crosses an epoch
    got = fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=9, batch_size=8, lr=0.1, **PLAIN).model
    assert_same_weights(weights(got), expected)


def test_accumulating_k_batches_of_b_equals_one_batch_of_k_times_b():
    one = fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=5, batch_size=12, lr=0.1, **PLAIN).model
    accumulated = fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=5, batch_size=4, accumulate=3, lr=0.1, **PLAIN).model
    assert_same_weights(weights(accumulated), weights(one))


def test_frozen_weights_stay_bit_identical_until_unfrozen():
    before = weights(mlp())
    frozen = weights(fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), epochs=2, batch_size=8, freeze=["0"],
                         progress=False).model)
    assert torch.equal(frozen["0.weight"], before["0.weight"]) and torch.equal(frozen["0.bias"], before["0.bias"])
    assert not torch.equal(frozen["3.weight"], before["3.weight"])
    later = weights(fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=8, batch_size=8, freeze=["0"], unfreeze_after=4,
                        progress=False).model)
    assert not torch.equal(later["0.weight"], before["0.weight"])
    with pytest.raises(InvalidArgumentError, match=r"freeze: \['encoder'\] name no parameter .* top-level modules are"):
        fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=1, batch_size=8, freeze=["encoder"], progress=False)


def test_the_learning_rate_of_each_step_is_timms_scheduler_called_plainly():
    from timm.scheduler import create_scheduler_v2

    history = fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=20, batch_size=8, lr=0.05, scheduler="cosine",
                  warmup=3, min_lr=1e-4, progress=False).history
    optimizer = torch.optim.SGD(mlp().parameters(), lr=0.05)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=20, warmup_epochs=3, min_lr=1e-4)
    expected = []
    for step in range(20):
        scheduler.step(step)
        expected.append(optimizer.param_groups[0]["lr"])
    np.testing.assert_allclose(history["lr"].to_numpy(), expected, rtol=1e-12)
    assert expected[0] < expected[3] and expected[-1] < expected[3]  # warm-up, then decay


@pytest.mark.parametrize("scheduler", [None, "cosine"])
def test_layer_decay_scales_each_blocks_step_by_the_decay_to_its_depth_from_the_head(scheduler):
    import timm

    def resnet():
        torch.manual_seed(0)
        return timm.create_model("resnet10t", num_classes=2)

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 2, (8,), generator=g)
    plain = resnet()
    nn.functional.cross_entropy(plain(x), y).backward()
    depth = {"conv1": 5, "bn1": 5, "layer1": 4, "layer2": 3, "layer3": 2, "layer4": 1, "fc": 0}  # blocks below the head
    expected = {n: p.detach() - 0.1 * 0.5 ** depth[n.split(".")[0]] * p.grad for n, p in plain.named_parameters()}
    trained = fit(resnet(), torch.utils.data.TensorDataset(x, y), loss=nn.CrossEntropyLoss(), steps=1, batch_size=8,
                  lr=0.1, layer_decay=0.5, keep="last", **{**PLAIN, "scheduler": scheduler}).model
    assert_same_weights(dict(trained.named_parameters()), expected)


def test_the_ema_is_its_closed_form_over_the_weights_of_each_step():
    """timm's convention: the EMA starts at the weights after the first step, then ema = d * ema + (1 - d) * w."""
    decay, trail = 0.8, []
    plain_sgd(mlp(), data(), batch_size=8, steps=7, lr=0.1, after_step=lambda m: trail.append(weights(m)))
    ema = trail[0]
    for w in trail[1:]:
        ema = {k: decay * ema[k] + (1 - decay) * w[k] for k in ema}
    got = fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=7, batch_size=8, lr=0.1, ema=decay, keep="ema", **PLAIN).model
    assert_same_weights(weights(got), ema)


class Interrupting(torch.utils.data.Dataset):
    """``data()``, raising at the ``stop_at``-th item read (a kernel that stops half way)."""

    def __init__(self, stop_at: int | None):
        self.inner, self.reads, self.stop_at = data(), 0, stop_at

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads == self.stop_at:
            raise KeyboardInterrupt("stopped")
        return self.inner[i]


def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """Dropout, MixUp, AdamW, a cosine schedule, EMA and top-2 averaging all carry state across the stop."""
    options = {"loss": nn.BCEWithLogitsLoss(), "steps": 14, "batch_size": 8, "lr": 0.01, "warmup": 2, "ema": 0.9,
               "mix": "mixup", "mix_alpha": 0.4, "keep": "top2", "eval_every": 3, "save_every": 2, "progress": False}
    whole = fit(mlp(dropout=0.2), Interrupting(None), data(1), seed=5, **options)
    with pytest.raises(KeyboardInterrupt):
        fit(mlp(dropout=0.2), Interrupting(8 * 9 + 3), data(1), seed=5, state_dir=tmp_path, **options)  # in step 10
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 8
    resumed = fit(mlp(dropout=0.2), Interrupting(None), data(1), seed=5, state_dir=tmp_path, **options)
    assert_same_weights(weights(resumed.model), weights(whole.model), atol=0)
    assert resumed.history.equals(whole.history) and resumed.best_step == whole.best_step


def test_a_state_of_other_settings_is_not_resumed(tmp_path, caplog):
    fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=4, batch_size=8, lr=0.1, state_dir=tmp_path, progress=False)
    again = fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=4, batch_size=8, lr=0.2, state_dir=tmp_path, progress=False)
    assert again.history["step"].to_list() == [1, 2, 3, 4] and "saved with other settings" in caplog.text


DDP_SCRIPT = """
import sys, torch
from torch import nn
sys.path.insert(0, {tests!r})
from test_fit import data, mlp
from kagglekit.train import fit
model = fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=7, batch_size=8, lr=0.01, seed=3, progress=False).model
if torch.distributed.get_rank() == 0:
    torch.save(model.state_dict(), {out!r})
torch.distributed.destroy_process_group()
"""


def test_two_torchrun_processes_equal_one_with_the_same_global_batch(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "ddp.pt"))))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), steps=7, batch_size=8, lr=0.01, seed=3, progress=False).model
    assert_same_weights(torch.load(tmp_path / "ddp.pt", weights_only=True), weights(one), atol=1e-6)


@pytest.mark.parametrize("options, words", [
    ({"steps": 2, "epochs": 2}, "give steps or epochs, one of them"),
    ({"steps": 2, "keep": "best"}, "keep = 'best' chooses weights by their validation score; pass val="),
    ({"steps": 2, "batch_size": 64}, "fewer than one step's batch_size x accumulate = 64"),
    ({"steps": 2, "keep": "ema"}, "give ema= a decay"),
    ({"steps": 2, "optimizer": "adamw", "layer_decay": 0.7}, "layer_decay needs a timm model"),
])
def test_mistakes_say_what_to_do(options, words):
    with pytest.raises(InvalidArgumentError) as exc:
        fit(mlp(), data(), loss=nn.BCEWithLogitsLoss(), progress=False, **options)
    assert words in str(exc.value)
