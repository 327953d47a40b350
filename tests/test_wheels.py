"""The wheel dataset builder and checker, against local find-links folders (never PyPI).

Oracles: pip itself (which wheels fit which tags), packaging's manylinux tag list, the PEP 508
marker rules worked out by hand in each case, and the installed distributions' own metadata.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
import zipfile
from pathlib import Path
from unittest import mock

import packaging.tags
import pytest
from packaging import _manylinux
from packaging.requirements import Requirement

import kagglekit
from kagglekit.errors import InvalidArgumentError
from kagglekit.delivery.kernel import check_dataset_metadata
from kagglekit.delivery.wheels import (
    KaggleImage,
    NoWheelError,
    Target,
    WheelError,
    build_wheels,
    check_wheels,
    kaggle_image,
    manylinux_platforms,
    normalize_name,
)

from builders import make_project, make_wheel

TARGET = Target("3.12", manylinux_platforms("2.35", "x86_64"))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"))


def image(missing=(), preinstalled=(), extras=None) -> KaggleImage:
    return KaggleImage(TARGET, tuple(missing), frozenset(normalize_name(n) for n in preinstalled), extras or {})


def build(dest, links, requirements, extras=None, **kwargs):
    kwargs.setdefault("project", None)
    return build_wheels(dest, requirements=requirements, image=image(extras=extras), find_links=[links], no_index=True,
                        isolated=True, **kwargs)


def test_manylinux_platforms_match_packaging_for_the_same_glibc():
    with mock.patch.object(_manylinux, "_get_glibc_version", return_value=(2, 35)):
        expected = list(_manylinux.platform_tags(["x86_64"]))
    assert list(manylinux_platforms("2.35", "x86_64")) == expected


def test_local_target_is_this_interpreter_and_its_manylinux_tags():
    local = Target.local()
    assert (local.python_version, local.abi) == (f"{sys.version_info[0]}.{sys.version_info[1]}",
                                                 f"cp{sys.version_info[0]}{sys.version_info[1]}")
    here = {tag.platform for tag in packaging.tags.sys_tags() if tag.platform.startswith("manylinux")}
    assert set(local.platforms) == here


def test_build_gets_kagglekit_and_every_wheel_that_fits_the_target(tmp_path, links, project):
    wheels = build(tmp_path / "wheels", links, ["tinywheel", "tinydep", "platwheel", "legacywheel"], project=project)
    names = sorted(w.name for w in wheels)
    assert names == sorted(p.name for p in (tmp_path / "wheels").glob("*.whl"))
    assert names == ["kagglekit-0.0.1-py3-none-any.whl", "legacywheel-1.0-cp312-cp312-manylinux2014_x86_64.whl",
                     "platwheel-2.0-cp312-cp312-manylinux_2_28_x86_64.whl", "tinydep-0.3-py3-none-any.whl",
                     "tinywheel-1.0-py3-none-any.whl"]
    meta = check_dataset_metadata(tmp_path / "wheels")
    assert meta["id"] == "your-kaggle-username/kagglekit-wheels"
    assert all(name in meta["description"] for name in names)
    assert not list(tmp_path.glob(".wheels-staging-*"))


def test_build_adds_an_extra_group_only_when_asked_and_names_an_unknown_one(tmp_path, links):
    groups = {"ray": ("tinydep",)}
    assert [w.name for w in build(tmp_path / "plain", links, ["tinywheel"], extras=groups)] == ["tinywheel-1.0-py3-none-any.whl"]
    with_extra = build_wheels(tmp_path / "extra", requirements=["tinywheel"], image=image(extras=groups), find_links=[links],
                              no_index=True, isolated=True, project=None, extras=["ray"])
    assert sorted(w.name for w in with_extra) == ["tinydep-0.3-py3-none-any.whl", "tinywheel-1.0-py3-none-any.whl"]
    with pytest.raises(InvalidArgumentError, match="unknown wheel extra 'spark'.*'ray'"):
        build_wheels(tmp_path / "bad", requirements=[], image=image(extras=groups), project=None, extras=["spark"])


def test_build_refuses_an_sdist_only_requirement_naming_it(tmp_path, links):
    dest = tmp_path / "wheels"
    build(dest, links, ["tinywheel"])
    with pytest.raises(NoWheelError) as err:
        build(dest, links, ["tinywheel", "tinysdist"])
    message = str(err.value)
    assert "no wheel of tinysdist" in message and "source distribution (sdist)" in message
    assert "--find-links" in message  # says what to do
    assert [p.name for p in dest.glob("*.whl")] == ["tinywheel-1.0-py3-none-any.whl"]  # previous folder intact
    assert not list(tmp_path.glob(".wheels-staging-*"))


def test_build_makes_a_pure_wheel_of_a_from_source_requirement_and_check_accepts_it(tmp_path, links):
    """As pyvips >= 3 (an sdist only): built here into a py3-none-any wheel that installs anywhere."""
    from builders import make_buildable_sdist

    make_buildable_sdist(links, "tinypure", "0.2")
    dest = tmp_path / "wheels"
    wheels = build(dest, links, ["tinywheel", "tinydep"], from_source=["tinypure>=0.1"])
    assert sorted(w.name for w in wheels) == ["tinydep-0.3-py3-none-any.whl", "tinypure-0.2-py3-none-any.whl",
                                              "tinywheel-1.0-py3-none-any.whl"]
    found = check_wheels(dest, requirements=["tinywheel", "tinypure"], image=image(), isolated=True)
    assert "tinypure==0.2" in found
    with pytest.raises(WheelError, match="building the wheel of tinysdist failed"):  # not a buildable project
        build(dest, links, ["tinywheel"], from_source=["tinysdist"])
    assert sorted(p.name for p in dest.glob("*.whl")) == sorted(w.name for w in wheels)  # previous folder intact
    assert not list(tmp_path.glob(".wheels-staging-*"))


@pytest.mark.parametrize("name, tags", [("toonew", "manylinux_2_39"), ("otherpython", "cp311")])
def test_build_refuses_wheels_for_another_platform_or_python(tmp_path, links, name, tags):
    # Kaggle's glibc is 2.35, so a manylinux_2_39 wheel cannot load there; a cp311 wheel is for another Python.
    with pytest.raises(NoWheelError, match=f"no wheel of {name} .*other interpreters or platforms.*{tags}"):
        build(tmp_path / "wheels", links, [name])


def test_build_refuses_a_version_range_without_wheels(tmp_path, links):
    with pytest.raises(NoWheelError, match=r"tinywheel \(tinywheel>=2\).*versions 1\.0"):
        build(tmp_path / "wheels", links, ["tinywheel>=2"])


def test_build_refuses_an_unknown_name(tmp_path, links):
    with pytest.raises(NoWheelError, match="no wheel of nosuchpackage .*no distribution of that name"):
        build(tmp_path / "wheels", links, ["nosuchpackage"])


def test_rebuild_drops_stale_wheels_and_keeps_the_dataset_id(tmp_path, links):
    dest = tmp_path / "wheels"
    make_wheel(dest, "stale", "0.1")
    (dest / "dataset-metadata.json").write_text(json.dumps(
        {"id": "someone/my-wheels", "title": "my wheels", "licenses": [{"name": "CC0-1.0"}]}))
    build(dest, links, ["tinydep"])
    assert [p.name for p in dest.glob("*.whl")] == ["tinydep-0.3-py3-none-any.whl"]
    meta = check_dataset_metadata(dest)
    assert (meta["id"], meta["licenses"]) == ("someone/my-wheels", [{"name": "CC0-1.0"}])


@pytest.fixture()
def folder(tmp_path, links):
    """A wheel folder with kagglekit (needs tinywheel>=1.0), tinywheel (needs tinydep>=0.2) and tinydep."""
    dest = tmp_path / "wheels"
    dest.mkdir()
    for wheel in ("tinywheel-1.0-py3-none-any.whl", "tinydep-0.3-py3-none-any.whl"):
        shutil.copy(links / wheel, dest)
    make_wheel(dest, "kagglekit", "0.0.1", ["tinywheel>=1.0", "torch>=2.1"])
    return dest


def test_check_passes_a_closed_folder_and_ignores_other_markers(folder):
    # oldonly (python < 3.12) and docsonly (an extra) are not needed on Python 3.12; torch is in the image.
    found = check_wheels(folder, requirements=["kagglekit"], image=image(preinstalled=["torch"]), isolated=True)
    assert found == ["kagglekit==0.0.1", "tinydep==0.3", "tinywheel==1.0"]


def test_check_refuses_a_dependency_that_is_neither_in_the_folder_nor_preinstalled(folder):
    with pytest.raises(WheelError, match=r"kagglekit 0\.0\.1 requires 'torch>=2\.1', which is neither"):
        check_wheels(folder, requirements=["kagglekit"], image=image(), isolated=True)
    (folder / "tinydep-0.3-py3-none-any.whl").unlink()
    with pytest.raises(WheelError, match=r"tinywheel 1\.0 requires 'tinydep>=0\.2'"):
        check_wheels(folder, requirements=["kagglekit"], image=image(preinstalled=["torch"]), isolated=True)


def test_check_refuses_a_folder_wheel_out_of_the_required_range(folder):
    (folder / "tinydep-0.3-py3-none-any.whl").unlink()
    make_wheel(folder, "tinydep", "0.1")
    with pytest.raises(WheelError, match=r"requires 'tinydep>=0\.2' but .* has tinydep 0\.1"):
        check_wheels(folder, requirements=["kagglekit"], image=image(preinstalled=["torch"]), isolated=True)


def test_check_refuses_a_wheel_that_does_not_fit_the_target(folder, links):
    shutil.copy(links / "otherpython-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", folder)
    with pytest.raises(NoWheelError, match="otherpython"):
        check_wheels(folder, requirements=["kagglekit"], image=image(preinstalled=["torch"]), isolated=True)


def test_check_refuses_a_missing_top_level_requirement_and_an_empty_folder(folder, tmp_path):
    with pytest.raises(NoWheelError, match="no wheel of segmentation-models-pytorch"):
        check_wheels(folder, requirements=["kagglekit", "segmentation-models-pytorch"],
                     image=image(preinstalled=["torch"]), isolated=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WheelError, match="no wheel in .*kagglekit wheels build"):
        check_wheels(tmp_path / "empty", image=image())


def _needs(dist: str) -> set[str]:
    """Normalised names a distribution installed here requires on the Kaggle target (extras excluded)."""
    env = TARGET.marker_environment()
    reqs = [Requirement(r) for r in importlib.metadata.requires(dist) or []]
    return {normalize_name(r.name) for r in reqs if r.marker is None or r.marker.evaluate(env)}


def test_kaggle_image_data_covers_what_kagglekit_and_smp_require():
    img = kaggle_image()
    assert (img.target.python_version, img.target.abi) == ("3.12", "cp312")
    assert "manylinux2014_x86_64" in img.target.platforms and "manylinux_2_17_x86_64" in img.target.platforms
    missing = {normalize_name(Requirement(r).name): Requirement(r) for r in img.missing}
    assert "segmentation-models-pytorch" in missing
    assert not set(missing) & img.preinstalled
    smp_version = importlib.metadata.version("segmentation-models-pytorch")
    assert missing["segmentation-models-pytorch"].specifier.contains(smp_version)
    # smp < 0.5 needs the sdist-only pretrainedmodels / efficientnet-pytorch: the floor must exclude it.
    assert not missing["segmentation-models-pytorch"].specifier.contains("0.4.0")
    # pyvips (PNG slides streamed) publishes only an sdist: built into a pure wheel; libvips comes as a wheel
    from_source = {normalize_name(Requirement(r).name): Requirement(r) for r in img.from_source}
    assert from_source["pyvips"].specifier.contains(importlib.metadata.version("pyvips"))
    assert missing["pyvips-binary"].specifier.contains(importlib.metadata.version("pyvips-binary"))
    covered = img.preinstalled | set(missing) | set(from_source)
    assert _needs("segmentation-models-pytorch") <= covered
    assert _needs("kagglekit") <= covered
    # the ray extra: the version installed here (the one the job tests ran on) is in range; its needs are in the image
    (ray,) = map(Requirement, img.extras["ray"])
    assert ray.specifier.contains(importlib.metadata.version("ray")) and _needs("ray") <= covered


def test_real_kagglekit_wheel_ships_the_cli_and_the_image_data(kagglekit_wheel):
    wheels = [kagglekit_wheel]  # build_wheels(requirements=[]) on a copy of this tree, once a session (conftest.py)
    assert [w.name for w in wheels] == [f"kagglekit-{kagglekit.__version__}-py3-none-any.whl"]
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "kagglekit/cli.py" in names and "kagglekit/kaggle/wheels.py" in names
    assert "kagglekit/kaggle/kaggle_image.toml" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "kagglekit = kagglekit.cli:main" in zipfile.ZipFile(wheels[0]).read(entry_points).decode()


OLD_SETUPTOOLS_BACKEND = '''
import sys


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    # what setuptools < 70.1 prints and exits with when the wheel package is not installed
    sys.exit("error: invalid command 'bdist_wheel'")
'''


@pytest.mark.parametrize("backend, fix", [("old_setuptools", "pip install wheel"),
                                          ("kk_backend_not_installed", "pip install kk_backend_not_installed")])
def test_build_names_the_missing_build_tool_and_its_install(tmp_path, backend, fix):
    project = tmp_path / "src"
    project.mkdir()
    (project / "old_setuptools.py").write_text(OLD_SETUPTOOLS_BACKEND)
    in_tree = 'backend-path = ["."]\n' if backend == "old_setuptools" else ""
    (project / "pyproject.toml").write_text(f'[build-system]\nrequires = []\nbuild-backend = "{backend}"\n{in_tree}')
    with pytest.raises(WheelError, match=f"building the wheel of .*src failed: .*{fix}"):
        build_wheels(tmp_path / "wheels", project=project, requirements=[], isolated=True)
    assert not (tmp_path / "wheels").exists() or not list((tmp_path / "wheels").glob("*.whl"))
