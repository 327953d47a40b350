"""The wheel dataset: every wheel a Kaggle kernel needs beyond its image, for the image's Python.

``build_wheels`` builds kagglekit's own wheel (``pip wheel --no-deps``) and downloads, binary-only
and for the target interpreter and platform, the requirements listed as missing from the image in
``kaggle_image.toml``; requirements published only as a pure-Python source distribution (the image
file's ``from_source``, e.g. pyvips) are built into ``py3-none-any`` wheels here (``pip wheel --no-deps``,
with this environment's build tools), and refused if the build is not pure Python (a wheel built for this
machine need not load on the target); it writes ``dataset-metadata.json`` beside them. ``check_wheels`` proves
offline that the folder installs for the target: pip resolves every wheel in it with ``--no-index``
and the target's tags, and every dependency they declare (markers evaluated for the target) is
either a wheel in the folder, at a version in range, or a distribution the image already has.

Why ``--no-deps`` plus an explicit list rather than letting pip resolve: ``pip download`` cannot
know what the image already has, so resolving with dependencies would fetch torch, timm and the
rest (gigabytes) for a dataset that must only add what is missing. The list is the closure, and
``check_wheels`` catches a dependency that nobody listed.

Everything runs pip in a subprocess (the interpreter running kagglekit); options ``find_links``,
``index_url`` and ``no_index`` are passed through, and ``isolated`` adds ``pip --isolated`` so that
pip's environment variables (PIP_INDEX_URL, PIP_FIND_LINKS, ...) are ignored.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from kagglekit._toml import tomllib
from kagglekit.errors import ConfigError, InvalidArgumentError
from kagglekit.delivery.kernel import (
    DATASET_METADATA,
    PLACEHOLDER_OWNER,
    existing_or_new_dataset_metadata,
    write_json_atomic,
)

IMAGE_FILE = Path(__file__).parent.parent / "kaggle" / "kaggle_image.toml"  # what the Kaggle image has: runtime data, kept in kagglekit/kaggle
WHEELS_DATASET_ID = f"{PLACEHOLDER_OWNER}/kagglekit-wheels"
_LEGACY_MANYLINUX = {5: "manylinux1", 12: "manylinux2010", 17: "manylinux2014"}


class WheelError(ConfigError):
    """The wheel folder cannot be built, or does not install offline for the target."""


class NoWheelError(WheelError):
    """A requirement has no wheel for the target interpreter and platform."""


def normalize_name(name: str) -> str:
    """PEP 503 normalised distribution name ('Segmentation_Models.PyTorch' -> 'segmentation-models-pytorch')."""
    return str(canonicalize_name(name))


def manylinux_platforms(glibc: str, arch: str) -> tuple[str, ...]:
    """Every manylinux platform tag a machine with this glibc and arch accepts, newest first.

    pip matches an explicit ``--platform`` literally, so the older tags (and the legacy aliases
    manylinux1 / manylinux2010 / manylinux2014) must be listed one by one.
    """
    match = re.fullmatch(r"2\.(\d+)", str(glibc))
    if not match or int(match.group(1)) < 5:
        raise InvalidArgumentError(f"glibc must look like '2.35' (at least 2.5), got {glibc!r}")
    tags = []
    for minor in range(int(match.group(1)), 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in _LEGACY_MANYLINUX:
            tags.append(f"{_LEGACY_MANYLINUX[minor]}_{arch}")
    return tuple(tags)


@dataclass(frozen=True)
class Target:
    """The interpreter and platform the wheels are for (pip's --python-version/--abi/--platform)."""

    python_version: str
    platforms: tuple[str, ...]
    implementation: str = "cp"
    abi: str | None = None  # default: cp + version without the dot, e.g. cp312
    machine: str = "x86_64"

    def __post_init__(self):
        if not re.fullmatch(r"3\.\d+", self.python_version):
            raise InvalidArgumentError(f"python_version must look like '3.12', got {self.python_version!r}")
        if not self.platforms:
            raise InvalidArgumentError("a target needs at least one platform tag, e.g. manylinux_2_17_x86_64")
        if self.abi is None:
            object.__setattr__(self, "abi", "cp" + self.python_version.replace(".", ""))

    @classmethod
    def local(cls) -> Target:
        """The interpreter running this code (for an offline install test on this machine)."""
        libc, version = platform.libc_ver()
        if libc != "glibc":
            raise ConfigError("Target.local() needs a glibc Linux; pass --python-version and --platform instead")
        machine = platform.machine()
        return cls(f"{sys.version_info.major}.{sys.version_info.minor}",
                   manylinux_platforms(".".join(version.split(".")[:2]), machine), machine=machine)

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python_version,
                "--implementation", self.implementation, "--abi", self.abi]
        for tag in self.platforms:
            args += ["--platform", tag]
        return args

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values of the target, for evaluating ``Requires-Dist`` markers."""
        return {
            "python_version": self.python_version,
            "python_full_version": self.python_version + ".0",
            "implementation_name": "cpython" if self.implementation == "cp" else self.implementation,
            "platform_python_implementation": "CPython" if self.implementation == "cp" else self.implementation,
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "platform_machine": self.machine,
            "extra": "",
        }

    def describe(self) -> str:
        return f"Python {self.python_version} ({self.implementation}, abi {self.abi}) on {self.platforms[0]} and older"


@dataclass(frozen=True)
class KaggleImage:
    """What the Kaggle image offers: its target, the requirements it lacks, the distributions it has."""

    target: Target
    missing: tuple[str, ...] = ()
    preinstalled: frozenset[str] = field(default_factory=frozenset)  # normalised names
    extras: dict = field(default_factory=dict)  # name -> requirements added on request (e.g. "ray")
    from_source: tuple[str, ...] = ()  # pure-Python requirements published only as sdists: built into wheels

    def with_extras(self, requirements, extras) -> list[str]:
        """``requirements`` plus those of each named extra; an unknown extra is refused, naming the known ones."""
        out = list(requirements)
        for name in extras:
            if name not in self.extras:
                raise InvalidArgumentError(f"unknown wheel extra {name!r}; known: {sorted(self.extras)} "
                                           "(see kagglekit/kaggle/kaggle_image.toml)")
            out += [r for r in self.extras[name] if r not in out]
        return out


def kaggle_image(path=IMAGE_FILE) -> KaggleImage:
    """Read ``kaggle_image.toml`` (the copy shipped in the package by default)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        t, w = data["target"], data["wheels"]
        target = Target(t["python_version"], manylinux_platforms(t["glibc"], t["arch"]),
                        machine=t["arch"], **{k: t[k] for k in ("implementation", "abi") if k in t})
        return KaggleImage(target, tuple(w["missing"]), frozenset(normalize_name(n) for n in w["preinstalled"]),
                           {k: tuple(v) for k, v in w.get("extras", {}).items()}, tuple(w.get("from_source", ())))
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the Kaggle image description {path}: {exc!r}; restore the file") from exc


def _pip(args: list[str], isolated: bool) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", *(["--isolated"] if isolated else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def _source_args(find_links, index_url, no_index) -> list[str]:
    args = []
    for link in find_links:
        args += ["--find-links", str(link)]
    if index_url:
        args += ["--index-url", index_url]
    if no_index:
        args.append("--no-index")
    return args


def _tail(text: str, lines: int = 8) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip() and not line.startswith(" ")]
    return "\n".join(kept[-lines:])


def _wheel_name(filename: str) -> str:
    return normalize_name(filename.split("-", 1)[0])


def _build_failure(proc: subprocess.CompletedProcess, project) -> WheelError:
    """A failed build of ``project``'s wheel, with the fix when this environment lacks a build tool.

    The build runs without isolation, with the setuptools (and wheel) installed here: setuptools older
    than 70.1 needs the separate ``wheel`` package, and Python 3.12 venvs have no setuptools at all.
    """
    text = proc.stdout + "\n" + proc.stderr
    backend = re.search(r"(?:No module named|Cannot import build backend) '(\w+)", text)
    if "invalid command 'bdist_wheel'" in text:
        fix = "this environment's setuptools is older than 70.1 and needs the wheel package: pip install wheel"
    elif backend:
        fix = f"this environment lacks the build backend {backend.group(1)}: pip install {backend.group(1)}"
    else:
        return WheelError(f"building the wheel of {project} failed:\n{_tail(text)}")
    return WheelError(f"building the wheel of {project} failed: {fix} (the build uses this environment's build "
                      f"tools, so that it never needs an index):\n{_tail(text)}")


def _failure(proc: subprocess.CompletedProcess, target: Target, what: str) -> WheelError:
    """Turn a failed pip run into an error that names the requirement and says why and what to do."""
    text = proc.stdout + "\n" + proc.stderr
    found = re.search(r"No matching distribution found for (\S+)", text)
    if not found:
        return WheelError(f"{what} failed (pip exit code {proc.returncode}):\n{_tail(text)}")
    requirement = found.group(1)
    name = normalize_name(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
    versions = re.search(rf"requirement {re.escape(requirement)} \(from versions: ([^)]*)\)", text)
    # pip < 24 names the requested project beside every skipped sdist, its own or another's: match the file too
    sdist = any(normalize_name(asked) == name == normalize_name(file.rsplit("/", 1)[-1].rsplit("-", 1)[0])
                for asked, file in re.findall(r"No sources permitted for ([^:\s]+): (\S+)", text))
    other_tags = sorted({tags for tags, url in re.findall(
        r"none of the wheel's tags \(([^)]*)\) are compatible.*?: (\S+)", text)
        if _wheel_name(url.rsplit("/", 1)[-1]) == name})
    wanted = name if requirement == name else f"{name} ({requirement})"
    head = f"no wheel of {wanted} fits the target {target.describe()}"
    if versions and versions.group(1) != "none":
        why = (f"wheels exist for versions {versions.group(1)} but none in the requested range; "
               "widen the range or pin one of those versions")
    elif other_tags:
        why = (f"its wheels are for other interpreters or platforms ({', '.join(other_tags)}); pin a version "
               f"that ships a {target.abi} manylinux or pure-python (py3-none-any) wheel")
    elif sdist:
        why = ("only a source distribution (sdist) is published, and an offline kernel cannot build it; "
               f"pin a version that ships wheels, or build one yourself (pip wheel --no-deps {name}) "
               "and pass its folder with --find-links")
    else:
        why = "no distribution of that name was found; check the name and the --index-url / --find-links options"
    return NoWheelError(f"{head}: {why}.\npip said:\n{_tail(text, 3)}")


def build_wheels(dest="wheels", *, project=".", requirements=None, image: KaggleImage | None = None,
                 target: Target | None = None, find_links=(), index_url: str | None = None,
                 no_index: bool = False, isolated: bool = False, dataset_id: str | None = None,
                 extras=(), from_source=None) -> list[Path]:
    """Fill ``dest`` with kagglekit's wheel and the wheels the Kaggle image lacks; return the wheel paths.

    ``project`` is the source folder of the package to build (None skips it); ``requirements``
    defaults to the image's ``missing`` list, to which ``extras`` (names of the image file's
    ``[wheels.extras]``, e.g. ``("ray",)``) add theirs; ``target`` defaults to the image's. ``from_source``
    (default: the image's when ``requirements`` is None, else none) are requirements published only as pure-Python sdists: each is built here into a
    ``py3-none-any`` wheel (:class:`WheelError` if the build is not pure Python). Wheels are staged
    in a temporary folder beside ``dest`` and replace the ``*.whl`` of ``dest`` only when every one
    was obtained, so a failed build leaves the previous folder intact. ``dataset-metadata.json``
    keeps the id, title and licence it already had (default id ``your-kaggle-username/kagglekit-wheels``
    unless ``dataset_id`` is given) and lists the wheels in its description.
    Raises :class:`NoWheelError` naming the first requirement without a wheel for the target.
    """
    image = image or kaggle_image()
    target = target or image.target
    requirements_given = requirements
    requirements = image.with_extras(image.missing if requirements is None else requirements, extras)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wheels-staging-", dir=dest.parent))
    try:
        if project is not None:
            # --no-build-isolation: build with the setuptools already installed, so that building
            # kagglekit itself never reaches an index.
            proc = _pip(["wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(staging),
                         str(project)], isolated)
            if proc.returncode:
                raise _build_failure(proc, project)
        if requirements:
            proc = _pip(["download", "-vv", "--no-deps", *target.pip_args(),
                         *_source_args(find_links, index_url, no_index), "--dest", str(staging), *requirements],
                        isolated)
            if proc.returncode:
                raise _failure(proc, target, "downloading " + ", ".join(requirements))
        if from_source is None:  # the image's, unless the caller named the requirements
            from_source = image.from_source if requirements_given is None else ()
        for requirement in from_source:
            _build_pure(requirement, staging, find_links, index_url, no_index, isolated)
        built = sorted(staging.glob("*.whl"))
        for old in dest.glob("*.whl"):
            old.unlink()
        wheels = [Path(shutil.move(str(w), dest / w.name)) for w in built]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_wheels_metadata(dest, wheels, target, dataset_id)
    return wheels


def _build_pure(requirement: str, staging: Path, find_links, index_url, no_index, isolated) -> None:
    """Build the sdist of ``requirement`` into a wheel in ``staging``; refuse it unless it is pure Python."""
    out = Path(tempfile.mkdtemp(prefix="sdist-", dir=staging))
    try:
        proc = _pip(["wheel", "--no-deps", "--no-binary=:all:", "--no-build-isolation", "--wheel-dir", str(out),
                     *_source_args(find_links, index_url, no_index), requirement], isolated)
        if proc.returncode:
            raise _build_failure(proc, requirement)
        for wheel in out.glob("*.whl"):
            if not wheel.name.endswith("-none-any.whl"):
                raise WheelError(f"building {requirement} from its sdist gave {wheel.name}, a wheel for this machine, "
                                 "not pure Python: it may not load on the target; remove it from `from_source` in "
                                 "kaggle_image.toml and pin a version that publishes wheels for the target")
            shutil.move(str(wheel), staging / wheel.name)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _write_wheels_metadata(dest: Path, wheels: list[Path], target: Target, dataset_id: str | None) -> None:
    path = dest / DATASET_METADATA
    meta = existing_or_new_dataset_metadata(dest, WHEELS_DATASET_ID, "kagglekit wheels")
    if dataset_id:
        meta["id"] = dataset_id
    meta["description"] = (f"Wheels for an offline Kaggle kernel ({target.describe()}), built by "
                           "`kagglekit wheels build`; install with `pip install --no-index --find-links "
                           "<this folder> kagglekit`.\n\n" + "\n".join(f"- {w.name}" for w in wheels))
    write_json_atomic(path, meta)


def check_wheels(folder="wheels", *, requirements=None, image: KaggleImage | None = None,
                 target: Target | None = None, isolated: bool = False, extras=()) -> list[str]:
    """Prove offline that ``folder`` installs for the target; return the resolved ``name==version`` list.

    ``requirements`` (default: ``kagglekit`` and the image's ``missing`` and ``from_source`` lists; ``extras`` add theirs) must resolve from the
    folder; so must every wheel in it. Raises :class:`NoWheelError` when one does not fit the
    target's tags, :class:`WheelError` when a declared dependency is neither in the folder (at a
    version in range) nor preinstalled in the image.
    """
    image = image or kaggle_image()
    target = target or image.target
    folder = Path(folder)
    names = sorted({_wheel_name(w.name) for w in folder.glob("*.whl")})
    if not names:
        raise WheelError(f"no wheel in {folder}; run `kagglekit wheels build` first")
    requirements = image.with_extras(["kagglekit", *image.missing, *image.from_source] if requirements is None
                                     else requirements, extras)
    with tempfile.TemporaryDirectory(prefix="kagglekit-wheels-check-") as tmp:
        report_path = Path(tmp) / "report.json"
        proc = _pip(["install", "--dry-run", "-vv", "--no-deps", "--ignore-installed", "--report",
                     str(report_path), "--target", str(Path(tmp) / "site"), *target.pip_args(),
                     "--no-index", "--find-links", str(folder), *requirements, *names], isolated)
        if proc.returncode:
            raise _failure(proc, target, f"resolving {folder} offline")
        report = json.loads(report_path.read_text())
    found = {normalize_name(item["metadata"]["name"]): item["metadata"] for item in report["install"]}
    env = target.marker_environment()
    problems = []
    for meta in found.values():
        for line in meta.get("requires_dist", []):
            try:
                req = Requirement(line)
            except InvalidRequirement as exc:
                problems.append(f"{meta['name']} {meta['version']} declares an unreadable requirement {line!r} ({exc})")
                continue
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            dep = normalize_name(req.name)
            if dep in found:
                if not req.specifier.contains(found[dep]["version"], prereleases=True):
                    problems.append(f"{meta['name']} {meta['version']} requires {line!r} but {folder} has "
                                    f"{dep} {found[dep]['version']}: put a wheel in range there")
            elif dep not in image.preinstalled:
                problems.append(f"{meta['name']} {meta['version']} requires {line!r}, which is neither in {folder} "
                                "nor preinstalled in the Kaggle image: add it to `missing` in kaggle_image.toml "
                                "and rebuild (or to `preinstalled` if the image has it)")
    if problems:
        raise WheelError(f"{folder} does not install offline for {target.describe()}:\n  - " + "\n  - ".join(problems))
    return sorted(f"{m['name']}=={m['version']}" for m in found.values())
