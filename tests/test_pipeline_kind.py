"""A pipeline kind defined in this file alone (the mean grey level of each image, one number per row) gets, from
the execute template and the CLI, what segment and classify get: the fallback file first, a fallback row per
failed image, the budget, --check, workers = 2 with a merged report, and a script without a main guard."""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from kagglekit.cli import main
from kagglekit.kaggle import Budget
from kagglekit.pipeline import PipelineKind, Plan, register, run
from kagglekit.pipeline.kind import unregister
from kagglekit.pipeline.degrade import Degrader
from kagglekit.pipeline.loop import RunReport, row_store
from kagglekit.pipeline.schema import String, option, section
from kagglekit.pipeline.sections import WORKERS, BudgetConfig, OutputBase, prediction_column

from competitions import FakeClock
from helpers import assert_same_report


@dataclass(frozen=True, kw_only=True)
class MeanOutput(OutputBase):
    value_column: str | None = prediction_column("value")

    def fill(self, reference) -> dict:
        return {}  # the fallback rows are the sample's own values


@dataclass(frozen=True, kw_only=True)
class MeanInputs:
    glob: str = option("test/*.png", check=String(), help="the images")
    id_from: str = option("stem", check=String(), help="the id: the file's stem")


@dataclass(frozen=True, kw_only=True)
class MeanConfig:
    EXTRA_KEYS, RENAMED = ("kind",), ()
    inputs: MeanInputs = section(MeanInputs, help="the inputs")
    output: MeanOutput = section(MeanOutput, help="the submission")
    budget: BudgetConfig = section(BudgetConfig, help="the time budget")
    workers: int | str = option(1, check=WORKERS, help="worker processes")
    device: str = option("cpu", check=String(), help="the device")
    notes: tuple = ()
    kind: str = field(default="mean", init=False)


@dataclass
class MeanReport(RunReport):
    means: dict[str, float] = field(default_factory=dict)


class Mean(PipelineKind):
    name, help = "mean", "the mean grey level of each image"
    report_type = MeanReport
    config_type = MeanConfig

    def plan(self, run, pending, report, state):
        column = run.config.output.columns(run.reference)[1]
        store = row_store(run.guard, [column])

        def predict(ids, path):
            from kagglekit.io.decoded import decode_image

            FakeClock.now += 1.0
            report.means[ids[0]] = float(decode_image(path).mean())
            store(ids, {column: [repr(report.means[ids[0]])]})
            return {}, "mean"

        return Plan(predict, Degrader(1, 1), [([i], p) for i, p in pending], [1.0] * len(pending))


IDS = [f"img{k}" for k in range(6)]


@pytest.fixture(autouse=True)
def mean_kind():
    """The kind is registered for these tests only (the CLI of other tests lists the built-in kinds)."""
    register(Mean())
    yield
    unregister("mean")


@pytest.fixture
def folder(tmp_path) -> Path:
    """Six grey PNGs (img3 truncated), a sample with 'id,value' of -1, and a mean.toml."""
    rng = np.random.default_rng(0)
    (tmp_path / "test").mkdir()
    for i in IDS:
        cv2.imwrite(str(tmp_path / "test" / f"{i}.png"), rng.integers(0, 256, (20, 30), dtype=np.uint8))
    (tmp_path / "test" / "img3.png").write_bytes((tmp_path / "test" / "img3.png").read_bytes()[:60])
    (tmp_path / "sample_submission.csv").write_text("id,value\n" + "".join(f"{i},-1\n" for i in IDS))
    (tmp_path / "mean.toml").write_text('kind = "mean"\n[inputs]\nglob = "test/*.png"\n')
    return tmp_path


def rows(path) -> dict[str, str]:
    with open(path, newline="") as f:
        return {r["id"]: r["value"] for r in csv.DictReader(f)}


def expected(folder) -> dict[str, str]:
    means = {i: repr(float(cv2.imread(str(folder / "test" / f"{i}.png"), cv2.IMREAD_UNCHANGED).mean())) for i in IDS if i != "img3"}
    return {**means, "img3": "-1"}


def test_a_kind_from_this_file_runs_through_the_cli(folder, capsys):
    assert main(["mean", "--config", str(folder / "mean.toml"), "--input", str(folder), "--output", str(folder / "o")]) == 0
    assert rows(folder / "o" / "submission.csv") == expected(folder)  # the truncated image kept its fallback row
    assert "img3: ImageReadError" in capsys.readouterr().out


def test_a_config_mistake_leaves_the_fallback_file(folder, capsys):
    (folder / "bad.toml").write_text('kind = "mean"\n[inputs]\nglobb = "test/*.png"\n')
    assert main(["mean", "--config", str(folder / "bad.toml"), "--input", str(folder), "--output", str(folder / "o")]) == 1
    assert "did you mean 'glob'" in capsys.readouterr().err
    assert rows(folder / "o" / "submission.csv") == {i: "-1" for i in IDS}


def test_check_and_an_unknown_kind(folder, capsys):
    (folder / "test" / "img5.png").unlink()
    assert main(["mean", "--config", str(folder / "mean.toml"), "--input", str(folder), "--check"]) == 1
    out = capsys.readouterr().out
    assert "inputs: 5 of 6 ids have an input" in out and "without an input: ['img5']" in out
    (folder / "odd.toml").write_text('kind = "meen"\n')
    assert main(["mean", "--config", str(folder / "odd.toml"), "--input", str(folder), "--check"]) == 1
    assert "kind: must be one of ['segment', 'classify', 'slides', 'mean'" in capsys.readouterr().err


def test_the_budget_applies(folder):
    FakeClock.now = 0.0
    report = run(folder / "mean.toml", folder, folder / "o", budget=Budget(2.5, reserve=0, clock=FakeClock()))
    assert report.predicted == ["img0", "img1", "img2"]
    assert {i: report.fallback[i] for i in ("img4", "img5")} == {"img4": "time budget exhausted", "img5": "time budget exhausted"}


@pytest.mark.slow
def test_two_workers_write_and_report_what_one_process_does(folder):
    one = run(folder / "mean.toml", folder, folder / "one")
    (folder / "two.toml").write_text('kind = "mean"\nworkers = 2\n')
    two = run(folder / "two.toml", folder, folder / "two")
    assert rows(folder / "two" / "submission.csv") == rows(folder / "one" / "submission.csv") == expected(folder)
    assert_same_report(one, two)


def run_script(folder, lines: str):
    """Run a script without a main guard that imports this module, registers a kind and runs two.toml (workers = 2)."""
    (folder / "two.toml").write_text('kind = "mean"\nworkers = 2\n')
    script = folder / "script.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nimport test_pipeline_kind\n"
                      "from kagglekit.pipeline import register, run\n" + lines.format(
                          run=f"run({str(folder / 'two.toml')!r}, {str(folder)!r}, {str(folder / 'o')!r})"))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)


def test_a_script_without_a_main_guard_runs_its_workers(folder):
    done = run_script(folder, "register(test_pipeline_kind.Mean())\nreport = {run}\n"
                              "print('predicted', len(report.predicted), 'fallback', sorted(set(report.fallback.values())))\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "predicted 5 fallback ['ImageReadError" in done.stdout
    assert rows(folder / "o" / "submission.csv") == expected(folder)


def test_a_kind_defined_in_the_script_itself_is_refused_before_any_worker_starts(folder):
    done = run_script(folder, "class Mean(test_pipeline_kind.Mean):\n    pass\nregister(Mean())\n{run}\n")
    assert done.returncode == 1 and "PipelineConfigError: workers: the pipeline kind 'mean' is defined in the script" in done.stderr
    assert rows(folder / "o" / "submission.csv") == {i: "-1" for i in IDS}  # the fallback, written first


def test_the_config_as_a_positional_argument(folder, capsys):
    toml = str(folder / "mean.toml")
    assert main(["mean", toml, "--input", str(folder), "--output", str(folder / "o")]) == 0
    assert rows(folder / "o" / "submission.csv") == expected(folder)
    assert main(["mean", toml, "--config", toml, "--input", str(folder)]) == 1
    assert main(["mean", "--input", str(folder)]) == 1
    assert capsys.readouterr().err.count("give the pipeline TOML once: `kagglekit mean CONFIG` or `--config CONFIG`") == 2


def test_a_sample_with_repeated_ids_is_named(folder, capsys):
    (folder / "sample_submission.csv").write_text("id,value\nimg0,-1\nimg1,-1\nimg0,-1\n")
    assert main(["mean", str(folder / "mean.toml"), "--input", str(folder), "--output", str(folder / "o")]) == 1
    assert (f"kagglekit: error: {folder / 'sample_submission.csv'}: the sample submission has duplicated ids in 'id': "
            "'img0'; a submission holds each id once") in capsys.readouterr().err
    assert not (folder / "o" / "submission.csv").exists()  # no valid file can be made from it


def test_a_run_that_falls_back_for_one_reason_says_so_last(folder, capsys):
    for i in IDS[1:]:
        (folder / "test" / f"{i}.png").write_bytes(b"not a png")
    assert main(["mean", str(folder / "mean.toml"), "--input", str(folder), "--output", str(folder / "o")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "  fallback reason (5 rows): ImageReadError" in lines
    assert lines[-1] == "MOST ROWS FELL BACK: 5 of 6 rows keep the fallback because of: ImageReadError (see the rows above)"
