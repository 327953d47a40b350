"""The Ray engine on one local cluster for the test session (2 CPUs, no dashboard): the same files as the
local engine, a killed worker, a slide that always fails, resume, no network, nothing left running."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import pytest
import ray
import torch

from kagglekit.errors import InvalidArgumentError
from kagglekit.jobs import BagJob, PredictionJob, run_slides
from kagglekit.models import create, save_checkpoint
from helpers import tissue_slide
from jobs_for_tests import Copy, attempts

from raytools import MARK, TESTS, left_running


def byte_slides(folder: Path, n: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        (folder / f"s{k}.png").write_bytes(bytes([k]) * (k + 1))
    return folder


def test_ray_writes_the_same_files_as_local_for_the_bag_and_prediction_jobs(ray_cluster, tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    for k in range(3):
        cv2.imwrite(str(folder / f"s{k}.png"), tissue_slide(300, 360, seed=k)[:, :, ::-1])
    torch.manual_seed(0)
    backbone = save_checkpoint(create("timm/resnet18", num_classes=0), tmp_path / "backbone.safetensors")
    conv = torch.nn.Conv2d(3, 1, 3, padding=1)
    jobs = {"bags": BagJob(backbone, tile=64, min_tissue=0.2, batch_size=8),
            "predictions": PredictionJob(conv, name="conv", tile=64, stride=48, downsample=2)}
    for name, job in jobs.items():
        local = run_slides(job, folder, tmp_path / name / "local", engine="local", progress=False)
        on_ray = run_slides(job, folder, tmp_path / name / "ray", engine="ray", workers=2, progress=False)
        assert local.done == on_ray.done == ["s0", "s1", "s2"] and on_ray.engine == "ray" and on_ray.workers == 2
        assert len({row["worker"] for row in on_ray.rows}) == 2  # both actors took slides
        for row in local.rows:
            ours, theirs = Path(row["output"]), tmp_path / name / "ray" / Path(row["output"]).name
            assert ours.read_bytes() == theirs.read_bytes(), f"{name}: {ours.name} differs"


def test_a_killed_worker_and_a_failing_slide_do_not_stop_the_others(ray_cluster, tmp_path):
    slides, out, log = byte_slides(tmp_path / "slides"), tmp_path / "out", tmp_path / "log"
    report = run_slides(Copy(log, die_once=["s1"], fail=["s3"]), slides, out, engine="ray", workers=2, retries=2,
                        progress=False)
    assert report.done == ["s0", "s1", "s2", "s4"] and list(report.failed) == ["s3"]
    assert "s3 is always bad" in report.failed["s3"]
    rows = {r["slide"]: r for r in report.rows}
    assert rows["s1"]["attempts"] == 2 and rows["s3"]["attempts"] == 3
    assert attempts(log).count("s1") == 2 and attempts(log).count("s3") == 3
    for k in (0, 1, 2, 4):
        assert (out / f"s{k}.bin").read_bytes() == bytes([k]) * (k + 1)


def test_ray_resumes_a_killed_run_and_redoes_all_for_a_changed_setting(ray_cluster, tmp_path):
    slides, out, log = byte_slides(tmp_path / "slides"), tmp_path / "out", tmp_path / "log"
    code = ("import sys; sys.path[:0] = sys.argv[1:3]; from jobs_for_tests import Copy; from kagglekit.jobs import run_slides; "
            "run_slides(Copy(sys.argv[3], kill_at='s3'), sys.argv[4], sys.argv[5], engine='local', progress=False)")
    killed = subprocess.run([sys.executable, "-c", code, TESTS, str(Path.cwd()), str(log), str(slides), str(out)])
    assert killed.returncode == -9 and attempts(log) == ["s0", "s1", "s2", "s3"]
    report = run_slides(Copy(log), slides, out, engine="auto", workers=2, progress=False)
    assert report.engine == "ray" and report.skipped == ["s0", "s1", "s2"] and report.done == ["s3", "s4"]
    assert sorted(attempts(log)[4:]) == ["s3", "s4"]
    changed = run_slides(Copy(log, k=3), slides, out, engine="ray", workers=2, progress=False)
    assert changed.done == ["s0", "s1", "s2", "s3", "s4"] and (out / "s4.bin").read_bytes() == bytes([4]) * 15
    with pytest.raises(InvalidArgumentError, match="3 worker"):
        run_slides(Copy(log), slides, tmp_path / "more", engine="ray", workers=3, progress=False)


def test_a_private_cluster_runs_with_no_network_and_leaves_nothing_running(tmp_path):
    slides, out, log = byte_slides(tmp_path / "slides", 4), tmp_path / "out", tmp_path / "log"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{TESTS!r}, {str(Path.cwd())!r}]
        from jobs_for_tests import Copy
        from kagglekit.jobs import run_slides
        report = run_slides(Copy({str(log)!r}, die_once=["s2"]), {str(slides)!r}, {str(out)!r}, engine="ray", workers=2,
                            progress=False)
        print(report.summary())
    """))
    value = f"offline-{os.getpid()}"
    env = {**os.environ, MARK: value, "RAY_ADDRESS": "ray://203.0.113.1:10001"}  # a stranger's cluster: never joined
    done = subprocess.run(["unshare", "-rn", "sh", "-c", f"ip link set lo up && exec {sys.executable} {script}"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 done, 0 skipped, 0 empty, 0 failed; ray engine, 2 worker(s)" in done.stdout
    assert sorted(p.name for p in out.glob("*.bin")) == ["s0.bin", "s1.bin", "s2.bin", "s3.bin"]
    assert left_running(value) == []
