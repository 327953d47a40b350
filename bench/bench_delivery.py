"""Delivery tooling: ``wheels build`` / ``wheels check`` and ``bundle`` against the manual way.

Rows, all in this process on the same inputs (no network: a local find-links folder):
- wheels build: kagglekit's builder (staging, one binary-only ``pip download -vv`` for the Kaggle
  target, metadata) vs the bare ``pip download --no-deps --only-binary`` command a Kaggler would type;
- wheels check: the offline resolution + closure check (no peer: nothing else does it);
- bundle: two 256 MB checkpoints and the wheels, hard-linked (default) and copied, vs
  ``shutil.copytree`` of the same model folder (the manual copy).
Peak RSS is the process's high-water mark during the row (pip runs in a child process and is not
counted). Run: ``.venv/bin/python bench/bench_delivery.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import markdown_table, measure, record  # noqa: E402
from test_wheels import make_project, make_wheel  # noqa: E402

from kagglekit.delivery.bundle import bundle  # noqa: E402
from kagglekit.delivery.wheels import KaggleImage, build_wheels, check_wheels, kaggle_image  # noqa: E402

N_WHEELS = 20
CHECKPOINT_MB = 256


def main() -> None:
    target = kaggle_image().target
    image = KaggleImage(target, (), frozenset())
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        tmp = Path(tmp)
        links = tmp / "links"
        names = [f"pkg{i:02d}" for i in range(N_WHEELS)]
        for i, name in enumerate(names):
            make_wheel(links, name, "1.0", [names[i + 1]] if i + 1 < N_WHEELS else [])
        project = make_project(tmp / "project", requires=[names[0]])

        def ours():
            return build_wheels(tmp / "ours", project=None, requirements=names, image=image, find_links=[links],
                                no_index=True, isolated=True)

        def manual():
            shutil.rmtree(tmp / "manual", ignore_errors=True)
            cmd = [sys.executable, "-m", "pip", "--isolated", "download", "--no-deps", *target.pip_args(),
                   "--no-index", "--find-links", str(links), "--dest", str(tmp / "manual"), *names]
            subprocess.run(cmd, check=True, capture_output=True)

        t_ours, m_ours, _ = measure(ours, repeat=3)
        t_manual, m_manual, _ = measure(manual, repeat=3)
        rows.append([f"wheels build, {N_WHEELS} wheels (kagglekit)", t_ours, t_ours / t_manual, m_ours])
        rows.append([f"wheels build, {N_WHEELS} wheels (bare pip download)", t_manual, 1.0, m_manual])
        t_own, m_own, _ = measure(lambda: build_wheels(tmp / "own", project=project, requirements=[], image=image,
                                                       isolated=True))
        rows.append(["wheels build, own wheel only (pip wheel --no-deps)", t_own, float("nan"), m_own])
        shutil.copy(next((tmp / "own").glob("kagglekit-*.whl")), tmp / "ours")
        t_check, m_check, found = measure(lambda: check_wheels(tmp / "ours", requirements=["kagglekit"], image=image,
                                                               isolated=True), repeat=3)
        assert len(found) == N_WHEELS + 1
        rows.append([f"wheels check, {N_WHEELS + 1} wheels", t_check, float("nan"), m_check])

        models = tmp / "models"
        models.mkdir()
        for fold in range(2):
            with open(models / f"fold{fold}.safetensors", "wb") as f:
                for _ in range(CHECKPOINT_MB):
                    f.write(os.urandom(1 << 20))
            (models / f"fold{fold}.json").write_text('{"arch": "unet"}')
        kernel = tmp / "kernel-metadata.json"
        (tmp / "inference.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4}))
        kernel.write_text(json.dumps({
            "id": "alice/kagglekit-inference", "title": "kagglekit inference", "code_file": "inference.ipynb",
            "language": "python", "kernel_type": "notebook", "enable_internet": False,
            "dataset_sources": ["alice/kagglekit-wheels", "alice/kagglekit-models"]}))
        (tmp / "ours" / "dataset-metadata.json").write_text(json.dumps(
            {"id": "alice/kagglekit-wheels", "title": "kagglekit wheels", "licenses": [{"name": "other"}]}))

        def run_bundle(link):
            return bundle(tmp / "dist", models=models, kernel_metadata=kernel, wheels=tmp / "ours", link=link)

        def copytree():
            shutil.rmtree(tmp / "copy", ignore_errors=True)
            shutil.copytree(models, tmp / "copy")

        t_link, m_link, _ = measure(run_bundle, True, repeat=3)
        t_copy, m_copy, _ = measure(run_bundle, False, repeat=3)
        t_tree, m_tree, _ = measure(copytree, repeat=3)
        label = f"2 x {CHECKPOINT_MB} MB checkpoints"
        rows.append([f"bundle, {label}, hard links (default)", t_link, t_link / t_tree, m_link])
        rows.append([f"bundle, {label}, --copy", t_copy, t_copy / t_tree, m_copy])
        rows.append([f"shutil.copytree of the model folder, {label}", t_tree, 1.0, m_tree])

    table = markdown_table(["row", "best time (s)", "time / peer", "peak RSS (MB)"], rows)
    notes = ("Peers: a bare `pip download` of the same wheels for the same target; `shutil.copytree` of the "
             "model folder. Single-run rows (`nan` ratio) have no peer. pip runs in a child process, so its "
             "memory is not in the RSS column; the bundle's RSS does not grow with checkpoint size.")
    record("delivery: wheels build/check and bundle", table + "\n\n" + notes)


if __name__ == "__main__":
    main()
