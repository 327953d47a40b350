"""Kaggle metadata files: ``kernel-metadata.json`` and ``dataset-metadata.json``.

The checks follow the rules the ``kaggle`` command line applies before ``kernels push`` and
``datasets create`` (id ``owner/slug``, kernel slug and title of at least 5 characters, dataset slug
and title of 6 to 50 characters, exactly one licence, ``code_file`` present, ``kernel_type`` and
``language`` from a fixed set, sources as ``owner/slug``), plus one that the CLI does not have and
that matters for a competition: ``enable_internet`` must be written and false. The CLI turns the
internet ON when the key is missing, and a code competition refuses such a kernel at submission time.

Metadata that still has the placeholder owner ``your-kaggle-username`` passes the checks (the
files in the repository carry it); ``kagglekit bundle --owner NAME`` replaces it and ``kagglekit
push`` refuses it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kagglekit._atomic import atomic_open
from kagglekit.errors import ConfigError

PLACEHOLDER_OWNER = "your-kaggle-username"
KERNEL_METADATA = "kernel-metadata.json"
DATASET_METADATA = "dataset-metadata.json"

KERNEL_TYPES = ("script", "notebook")
LANGUAGES = ("python", "r", "rmarkdown")
PINNING_TYPES = ("original", "latest")
_BOOLEAN_KEYS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")


class KernelMetadataError(ConfigError):
    """kernel-metadata.json or dataset-metadata.json would be refused by Kaggle or would enable the internet."""


def write_json_atomic(path, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` through a temporary file and ``os.replace``.

    A crash or an unserialisable value leaves the previous file untouched.
    """
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    return Path(path)


def read_json_object(path, what: str) -> dict:
    """Read a JSON object from ``path``; raise :class:`KernelMetadataError` naming ``what`` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise KernelMetadataError(f"{what} not found at {path}; create it or pass its path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KernelMetadataError(f"{path} is not valid JSON ({exc}); fix the file") from exc
    if not isinstance(data, dict):
        raise KernelMetadataError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def split_ref(ref, what: str, problems: list[str]) -> tuple[str, str] | None:
    """Split ``owner/slug``; append a problem and return None when ``ref`` is not of that form."""
    parts = ref.split("/") if isinstance(ref, str) else []
    if len(parts) != 2 or not all(parts):
        problems.append(f"{what} must be 'owner/slug', got {ref!r}")
        return None
    return parts[0], parts[1]


def parse_bool(value, key: str, problems: list[str]):
    """Kaggle accepts JSON booleans and the strings 'true' / 'false'; anything else is a problem."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(f"{key} must be true or false, got {value!r}")
    return None


def _source_list(meta: dict, key: str, problems: list[str]) -> list:
    value = meta.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{key} must be a list of non-empty strings, got {value!r}")
        return []
    return value


def raise_problems(path, problems: list[str]) -> None:
    """Raise :class:`KernelMetadataError` listing ``problems`` for the file ``path``, if there are any."""
    if problems:
        lines = "\n  - ".join(problems)
        raise KernelMetadataError(f"{path} would be refused or is unsafe for an offline kernel:\n  - {lines}")


def check_kernel_metadata(path=KERNEL_METADATA) -> dict:
    """Validate ``kernel-metadata.json`` and return its content; raise listing every problem found.

    ``code_file`` is resolved relative to the metadata file's folder (as ``kaggle kernels push -p``
    does); a notebook must also be a JSON document with ``cells``.
    """
    path = Path(path)
    meta = read_json_object(path, KERNEL_METADATA)
    raise_problems(path, kernel_metadata_problems(meta, path.parent))
    return meta


def kernel_metadata_problems(meta: dict, folder: Path) -> list[str]:
    """Every reason Kaggle would refuse the kernel metadata ``meta`` (or it would enable the internet);
    ``code_file`` is looked up under ``folder``."""
    problems: list[str] = []

    ref = meta.get("id")
    if ref is None and meta.get("id_no") is None:
        problems.append("id is missing: write 'owner/kernel-slug'")
    elif ref is not None:
        parts = split_ref(ref, "id", problems)
        if parts and len(parts[1]) < 5:
            problems.append(f"kernel slug {parts[1]!r} is shorter than 5 characters")

    title = meta.get("title")
    if title is not None and (not isinstance(title, str) or len(title) < 5):
        problems.append(f"title must be a string of at least 5 characters, got {title!r}")

    kernel_type = meta.get("kernel_type")
    if kernel_type not in KERNEL_TYPES:
        problems.append(f"kernel_type must be one of {list(KERNEL_TYPES)}, got {kernel_type!r}")
    language = meta.get("language")
    if language not in LANGUAGES:
        problems.append(f"language must be one of {list(LANGUAGES)}, got {language!r}")

    code_file = meta.get("code_file")
    if not isinstance(code_file, str) or not code_file:
        problems.append("code_file is missing: name the notebook or script, relative to this file")
    else:
        code_path = Path(folder) / code_file
        if not code_path.is_file():
            problems.append(f"code_file {code_file!r} not found at {code_path}")
        elif kernel_type == "notebook" and not _is_notebook(code_path):
            problems.append(f"code_file {code_path} is not a notebook (JSON with 'cells')")

    flags = {key: parse_bool(meta[key], key, problems) for key in _BOOLEAN_KEYS if key in meta}
    if "enable_internet" not in meta:
        problems.append(
            "enable_internet is missing, and the kaggle CLI then turns the internet ON; "
            'write "enable_internet": false'
        )
    elif flags.get("enable_internet") is True:
        problems.append(
            "enable_internet is true: code competitions refuse kernels with internet; "
            'write "enable_internet": false and install from the wheel dataset'
        )

    for source in _source_list(meta, "dataset_sources", problems):
        split_ref(source, "dataset source", problems)
    for source in _source_list(meta, "kernel_sources", problems):
        parts = split_ref(source, "kernel source", problems)
        if parts and len(parts[1]) < 5:
            problems.append(f"kernel source slug {parts[1]!r} is shorter than 5 characters")
    _source_list(meta, "competition_sources", problems)
    _source_list(meta, "model_sources", problems)

    pinning = meta.get("docker_image_pinning_type")
    if pinning is not None and pinning not in PINNING_TYPES:
        problems.append(f"docker_image_pinning_type must be one of {list(PINNING_TYPES)}, got {pinning!r}")
    return problems


def _is_notebook(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("cells"), list)


def dataset_metadata(dataset_id: str, title: str, *, license_name: str = "other", description: str = "") -> dict:
    """A ``dataset-metadata.json`` document for ``kaggle datasets create -p``."""
    meta = {"id": dataset_id, "title": title, "licenses": [{"name": license_name}]}
    if description:
        meta["description"] = description
    return meta


def existing_or_new_dataset_metadata(folder: Path, default_id: str, title: str) -> dict:
    """``folder/dataset-metadata.json`` if it exists (the user's id and licence are kept), else a new one."""
    path = Path(folder) / DATASET_METADATA
    return read_json_object(path, DATASET_METADATA) if path.is_file() else dataset_metadata(default_id, title)


def check_dataset_metadata(folder) -> dict:
    """Validate ``folder/dataset-metadata.json`` as ``kaggle datasets create`` does; return its content."""
    path = Path(folder) / DATASET_METADATA
    meta = read_json_object(path, DATASET_METADATA)
    raise_problems(path, dataset_metadata_problems(meta))
    return meta


def dataset_metadata_problems(meta: dict) -> list[str]:
    """Every reason ``kaggle datasets create`` would refuse the dataset metadata ``meta``."""
    problems: list[str] = []
    parts = split_ref(meta.get("id"), "id", problems)
    if parts and not 6 <= len(parts[1]) <= 50:
        problems.append(f"dataset slug {parts[1]!r} must have 6 to 50 characters")
    title = meta.get("title")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        problems.append(f"title must be a string of 6 to 50 characters, got {title!r}")
    licenses = meta.get("licenses")
    if not (isinstance(licenses, list) and len(licenses) == 1 and isinstance(licenses[0], dict)
            and licenses[0].get("name")):
        problems.append(f'licenses must list exactly one licence like [{{"name": "other"}}], got {licenses!r}')
    return problems


def replace_owner(ref: str, owner: str | None) -> str:
    """``ref`` with the placeholder owner replaced by ``owner`` (unchanged when ``owner`` is None)."""
    head, sep, tail = ref.partition("/")
    if owner and sep and head == PLACEHOLDER_OWNER:
        return f"{owner}/{tail}"
    return ref


def check_owner(owner: str) -> str:
    """Return ``owner`` if it can be a Kaggle user name (letters, digits, '-', '_')."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", owner or ""):
        raise KernelMetadataError(f"owner {owner!r} is not a Kaggle user name; pass the name shown in your profile URL")
    return owner
