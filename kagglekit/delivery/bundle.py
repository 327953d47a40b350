"""``dist/kaggle/``: the three folders Kaggle needs, each ready for the ``kaggle`` command line.

    dist/kaggle/wheels/   *.whl + dataset-metadata.json   -> kaggle datasets create -p
    dist/kaggle/models/   checkpoints, configs + dataset-metadata.json -> kaggle datasets create -p
    dist/kaggle/kernel/   kernel-metadata.json + its code_file (e.g. notebooks/inference.ipynb)
                                                          -> kaggle kernels push -p

``bundle`` writes them (the placeholder owner replaced by the user's name) and checks that the
kernel lists both datasets among its ``dataset_sources``; ``push`` runs the upload commands when the
``kaggle`` CLI is on PATH and otherwise returns them for the user to run. Model files are opaque:
each is hard-linked into the bundle when the file system allows it (no copy of multi-GB checkpoints;
a checkpoint rewritten in place after bundling changes in the bundle too, so bundle again after
training) and copied otherwise. Sub-folders of the model folder are kept; ``push`` passes
``--dir-mode zip`` so that ``kaggle datasets`` uploads them instead of skipping them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kagglekit.errors import ConfigError, KagglekitError
from kagglekit.delivery.kernel import (
    DATASET_METADATA,
    KERNEL_METADATA,
    PLACEHOLDER_OWNER,
    check_kernel_metadata,
    check_owner,
    dataset_metadata_problems,
    existing_or_new_dataset_metadata,
    raise_problems,
    read_json_object,
    replace_owner,
    write_json_atomic,
)
from kagglekit.delivery.wheels import WHEELS_DATASET_ID

MODELS_DATASET_ID = f"{PLACEHOLDER_OWNER}/kagglekit-models"
_MARKER = ".kagglekit-bundle"


class PushError(KagglekitError, RuntimeError):
    """A ``kaggle`` upload command failed, or the bundle is not ready to be uploaded."""


@dataclass(frozen=True)
class Bundle:
    """Paths of a written bundle."""

    root: Path
    wheels: Path
    models: Path
    kernel: Path


def _prepare_root(root: Path) -> None:
    """Empty ``root`` for a new bundle, refusing to delete a folder that kagglekit did not write."""
    if root.exists():
        if any(root.iterdir()) and not (root / _MARKER).is_file():
            raise ConfigError(f"{root} exists and is not a kagglekit bundle; choose another --out or empty it")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / _MARKER).write_text("written by `kagglekit bundle`; deleted and rewritten by the next bundle\n")


def _place(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed: copy instead
            pass
    shutil.copy2(src, dst)


def _dataset_meta(source: Path, default_id: str, title: str, owner: str | None) -> dict:
    meta = existing_or_new_dataset_metadata(source, default_id, title)
    meta["id"] = replace_owner(meta.get("id", ""), owner)
    return meta


def bundle(out="dist/kaggle", *, models, kernel_metadata=KERNEL_METADATA, wheels="wheels",
           owner: str | None = None, link: bool = True) -> Bundle:
    """Write the wheel dataset, the model dataset and the kernel folder under ``out``; return their paths.

    ``models`` is a folder of checkpoint and config files (a ``dataset-metadata.json`` in it is
    reused, otherwise one with id ``<owner>/kagglekit-models`` is written); ``wheels`` is the folder
    made by ``kagglekit wheels build``. ``owner`` (default: the kernel id's owner unless it is the
    placeholder) replaces the placeholder owner in every id.
    ``out`` is deleted and rewritten (only if an earlier bundle made it). Raises ConfigError when
    a folder is empty, when metadata would be refused by Kaggle, or when the kernel does not list
    both datasets in ``dataset_sources``.
    """
    kernel_path, wheels, models, root = Path(kernel_metadata), Path(wheels), Path(models), Path(out)
    kernel_meta = check_kernel_metadata(kernel_path)
    kernel_owner = str(kernel_meta.get("id", "")).partition("/")[0]
    if owner is None and kernel_owner != PLACEHOLDER_OWNER:
        owner = kernel_owner or None
    if owner is not None:
        check_owner(owner)
    wheel_files = sorted(wheels.glob("*.whl"))
    if not any(w.name.startswith("kagglekit-") for w in wheel_files):
        raise ConfigError(f"{wheels} has no kagglekit wheel; run `kagglekit wheels build` first")
    if not models.is_dir():
        raise ConfigError(f"model folder {models} not found; pass the folder of your checkpoints with --models")
    model_files = sorted(p for p in models.rglob("*") if p.is_file() and p.name != DATASET_METADATA)
    if not model_files:
        raise ConfigError(f"model folder {models} has no files; save checkpoints there first")

    wheels_meta = _dataset_meta(wheels, WHEELS_DATASET_ID, "kagglekit wheels", owner)
    models_meta = _dataset_meta(models, MODELS_DATASET_ID, "kagglekit models", owner)
    if "id" in kernel_meta:
        kernel_meta["id"] = replace_owner(kernel_meta["id"], owner)
    kernel_meta["dataset_sources"] = [replace_owner(s, owner) for s in kernel_meta.get("dataset_sources", [])]
    missing = [m["id"] for m in (wheels_meta, models_meta) if m["id"] not in kernel_meta["dataset_sources"]]
    if missing:
        raise ConfigError(f"{kernel_path} does not list {missing} in dataset_sources, so the kernel would not "
                          f"see them; add them (it lists {kernel_meta['dataset_sources']})")

    result = Bundle(root, root / "wheels", root / "models", root / "kernel")
    # everything is checked before the previous bundle is deleted: the dataset documents as they will be
    # written (the kernel's was checked on reading, and a checked owner keeps its ids valid)
    raise_problems(result.wheels / DATASET_METADATA, dataset_metadata_problems(wheels_meta))
    raise_problems(result.models / DATASET_METADATA, dataset_metadata_problems(models_meta))
    code_dst = _inside(result.kernel, kernel_meta["code_file"])

    _prepare_root(root)
    for w in wheel_files:
        _place(w, result.wheels / w.name, link)
    write_json_atomic(result.wheels / DATASET_METADATA, wheels_meta)
    for f in model_files:
        _place(f, result.models / f.relative_to(models), link)
    write_json_atomic(result.models / DATASET_METADATA, models_meta)
    _place(kernel_path.parent / kernel_meta["code_file"], code_dst, link=False)
    write_json_atomic(result.kernel / KERNEL_METADATA, kernel_meta)
    return result


def _inside(folder: Path, relative: str) -> Path:
    dst = (folder / relative).resolve()
    if not dst.is_relative_to(folder.resolve()):
        raise ConfigError(f"code_file {relative!r} points outside the kernel folder; keep it under the metadata's folder")
    return dst


def push_commands(root="dist/kaggle", *, create: bool = False, message: str = "kagglekit bundle") -> list[list[str]]:
    """The ``kaggle`` commands that upload a bundle: both datasets, then the kernel.

    ``create`` uses ``datasets create`` (first upload) instead of ``datasets version``. Raises
    :class:`PushError` when the bundle is missing or still carries the placeholder owner.
    """
    root = Path(root)
    if not (root / _MARKER).is_file():
        raise PushError(f"{root} is not a bundle; run `kagglekit bundle` first")
    ids = [read_json_object(root / name / DATASET_METADATA, DATASET_METADATA).get("id", "")
           for name in ("wheels", "models")]
    ids.append(str(read_json_object(root / "kernel" / KERNEL_METADATA, KERNEL_METADATA).get("id", "")))
    if any(i.startswith(PLACEHOLDER_OWNER + "/") for i in ids):
        raise PushError(f"the bundle still has the placeholder owner {PLACEHOLDER_OWNER!r} in {ids}; "
                        "run `kagglekit bundle --owner <your Kaggle user name>`")
    commands = []
    for name in ("wheels", "models"):
        folder = str(root / name)
        if create:
            commands.append(["kaggle", "datasets", "create", "-p", folder, "--dir-mode", "zip"])
        else:
            commands.append(["kaggle", "datasets", "version", "-p", folder, "-m", message, "--dir-mode", "zip"])
    commands.append(["kaggle", "kernels", "push", "-p", str(root / "kernel")])
    return commands


def push(root="dist/kaggle", *, create: bool = False, message: str = "kagglekit bundle",
         dry_run: bool = False, echo=print) -> bool:
    """Upload a bundle with the ``kaggle`` CLI if it is on PATH; otherwise (or with ``dry_run``) print the commands.

    Returns True when the commands ran. Each command is echoed before it runs; the first that fails
    raises :class:`PushError` with its exit code (later ones are not run).
    """
    commands = push_commands(root, create=create, message=message)
    executable = shutil.which("kaggle")
    if dry_run or executable is None:
        if not dry_run:
            echo("# the kaggle CLI is not on PATH (pip install kaggle); run these commands yourself:")
        for cmd in commands:
            echo(shlex.join(cmd))
        return False
    for cmd in commands:
        echo("+ " + shlex.join(cmd))
        code = subprocess.run([executable, *cmd[1:]]).returncode
        if code:
            raise PushError(f"`{shlex.join(cmd)}` failed with exit code {code}; fix the cause and push again")
    return True
