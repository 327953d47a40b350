"""The declarative configuration (kagglekit.pipeline.schema and the sections declared with it).

Oracles: the literal configs and messages written out here, the README's text, and the identity of
the declaring field objects (a key shared by two kinds is one declaration).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path

import pytest
import torch

from kagglekit.pipeline import PipelineConfigError, load_config
from kagglekit.pipeline import classify_config, config, schema, sections, segment_config
from kagglekit.pipeline.config import ClassifyConfig, SegmentConfig, early_output, kind_of, read_config, reference
from kagglekit.pipeline.kind import get_kind
from kagglekit.pipeline.schema import Integer, Number, String, option, read_section, section

MODELS = {"models": [{"path": "a.safetensors"}]}
CLASSIFY = {"kind": "classify", **MODELS}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inner:
    depth: int = option(3, check=Integer(), help="how deep")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Toy:
    stride: int = option(4, check=Integer(), help="the step")
    ratio: float = option(0.5, check=Number(0.0, 1.0), help="a fraction")
    name: str = option(check=String(), help="required")
    inner: Inner = section(Inner, help="a sub-table")

    def validate(self, t):
        if self.stride > 10 * self.inner.depth:
            t.fail("stride", "must be at most 10 * inner.depth")


def test_the_reader_checks_each_key_and_builds_by_keyword():
    assert read_section(Toy, {"name": "x"}, "toy") == Toy(name="x")
    assert read_section(Toy, {"name": "x", "stride": 7, "inner": {"depth": 1}}, "toy") == Toy(name="x", stride=7, inner=Inner(depth=1))
    assert read_section(Toy, {"name": "x", "ratio": 1}, "toy").ratio == 1.0 and type(read_section(Toy, {"name": "x", "ratio": 1}, "toy").ratio) is float
    cases = [({"name": "x", "strid": 3}, "toy: unknown key(s) ['strid'] (did you mean 'stride'?); allowed keys are "
                                         "['inner', 'name', 'ratio', 'stride']"),
             ({"name": "x", "stride": "4"}, "toy.stride: must be an integer >= 1, got '4'"),
             ({"name": "x", "stride": True}, "toy.stride: must be an integer >= 1, got True"),
             ({"name": "x", "ratio": 2}, "toy.ratio: must be a number in [0.0, 1.0], got 2"),
             ({}, "toy.name: must be a string, got None"),
             ({"name": "x", "inner": {"deep": 1}}, "toy.inner: unknown key(s) ['deep'] (did you mean 'depth'?)"),
             ({"name": "x", "inner": 3}, "toy.inner: must be a table (a dict), got int"),
             ({"name": "x", "stride": 40, "inner": {"depth": 2}}, "toy.stride: must be at most 10 * inner.depth, got 40")]
    for data, message in cases:
        with pytest.raises(PipelineConfigError) as info:
            read_section(Toy, data, "toy")
        assert str(info.value).startswith(message)


def test_every_config_class_is_built_by_keyword_only():
    classes = {SegmentConfig, ClassifyConfig}
    for kind_class in (SegmentConfig, ClassifyConfig):
        classes |= {decl.section for _, decl in schema.declared(kind_class) if decl.section is not None}
    classes |= {segment_config.InputsConfig, classify_config.OtherConfig, classify_config.StainConfig, sections.ModelConfig}
    for cls in classes:
        kinds = {p.kind for p in inspect.signature(cls).parameters.values()}
        assert kinds == {inspect.Parameter.KEYWORD_ONLY}, cls
    with pytest.raises(TypeError):
        sections.BudgetConfig(100.0, 10.0)


def _sections(cls, seen=None):
    """Every section class reachable from ``cls`` (sub-tables and [[tables]])."""
    seen = seen if seen is not None else set()
    seen.add(cls)
    for _, decl in schema.declared(cls):
        sub = decl.section or getattr(decl.check, "cls", None)
        if sub is not None and sub not in seen:
            _sections(sub, seen)
    return seen


def test_a_default_is_declared_once_and_reading_nothing_gives_it():
    """The dataclass default is the declared TOML default as its check converts it; reading an empty table
    gives the class's defaults; a key both kinds take is one field object (one declaration)."""
    for cls in _sections(SegmentConfig) | _sections(ClassifyConfig):
        for f, decl in schema.declared(cls):
            if decl.section is None and decl.toml_default is not dataclasses.MISSING:
                assert f.default == decl.check.default(decl.toml_default), (cls, f.name)
    for cls in (segment_config.TilingConfig, segment_config.ThresholdConfig, classify_config.DecisionConfig,
                sections.TTAConfig, sections.MemoryConfig, sections.BudgetConfig, segment_config.OutputConfig):
        assert read_section(cls, {}, "x") == cls()
    segment_fields = {f.name: f for f in dataclasses.fields(SegmentConfig)}
    for f in dataclasses.fields(ClassifyConfig):
        if f.name in ("models", "tta", "budget", "memory", "device", "workers", "amp"):
            assert segment_fields[f.name] is f
    assert (dataclasses.fields(segment_config.SegmentPreprocess)[0] is dataclasses.fields(classify_config.PreprocessConfig)[0])
    shared_output = {f.name for f in dataclasses.fields(sections.OutputBase)}
    assert shared_output == {"sample_submission", "submission", "id_column"}
    for name in shared_output:
        assert ({f.name: f for f in dataclasses.fields(segment_config.OutputConfig)}[name]
                is {f.name: f for f in dataclasses.fields(classify_config.OutputConfig)}[name])


def test_the_readme_table_is_what_the_declarations_render():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = reference()
    assert table in readme
    rows = [line for line in table.splitlines() if line.startswith("| [tiling] |")]
    assert "| [tiling] | `tile` | segment | integer >= 1 | 512 | the tile side the models see |" in rows
    assert "| top level | `batch_size` | segment | integer >= 1 | 8 | tiles per model call |" in table
    assert "| top level | `batch_size` | classify | integer >= 1 | 32 | images per model call |" in table
    assert "| [memory] | `offload` | segment, classify |" in table  # one declaration, both kinds
    assert config.describe("segment", "tiling.stride") == ("tiling.stride (integer >= 1, default -): the step between tiles "
                                                           "(none: the tile, no overlap)")
    assert config.describe("classify", "models.path") == "models.path (file, required): a checkpoint, relative to the config's folder"


def test_old_spellings_give_the_same_config_and_one_note_each(caplog):
    new = {**MODELS, "batch_size": 3, "preprocess": {"normalize": "imagenet"}, "tiling": {"tile": 64}}
    old = {**MODELS, "normalize": "imagenet", "tiling": {"tile": 64, "batch_size": 3}}
    with caplog.at_level(logging.WARNING, logger="kagglekit.pipeline"):
        from_old = load_config(old)
    assert from_old == load_config(new) and from_old.batch_size == 3
    assert from_old.preprocess.normalize == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert from_old.notes == (
        "config: top-level normalize is the old spelling of [preprocess] normalize; it still works, but write "
        "[preprocess] normalize",
        "config: [tiling] batch_size is the old spelling of top-level batch_size; it still works, but write "
        "top-level batch_size")
    assert [r.getMessage() for r in caplog.records] == list(from_old.notes)
    assert load_config(new).notes == () and "\n" not in "".join(from_old.notes)
    assert old == {**MODELS, "normalize": "imagenet", "tiling": {"tile": 64, "batch_size": 3}}  # the input is not changed
    with pytest.raises(PipelineConfigError, match=r"batch_size: given both in \[tiling\] and at the top level; keep the top-level one"):
        load_config({**MODELS, "batch_size": 3, "tiling": {"batch_size": 3}})


def test_a_gpu_config_reads_here_and_check_device_says_what_this_machine_lacks(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for kind in (MODELS, CLASSIFY):
        assert load_config({**kind, "device": "cuda:1"}).device == "cuda:1"
    with pytest.raises(PipelineConfigError, match="device: 'cuda', but this machine has no CUDA device; use device = 'auto'"):
        sections.check_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    sections.check_device("cuda:0")
    with pytest.raises(PipelineConfigError, match=r"device: 'cuda:1', but this machine has 1 CUDA device\(s\) \(cuda:0..cuda:0\)"):
        sections.check_device("cuda:1")
    sections.check_device("cpu")
    sections.check_device("auto")
    with pytest.raises(PipelineConfigError, match="device: 'gpu0' is not a torch device"):
        load_config({**MODELS, "device": "gpu0"})


def test_amp_is_one_key_in_both_kinds():
    assert load_config({**MODELS, "amp": "bf16"}).amp == "bf16" and load_config({**CLASSIFY, "amp": "auto"}).amp == "auto"
    assert load_config(MODELS).amp is False and load_config(CLASSIFY).amp is False
    for kind in (MODELS, CLASSIFY):
        with pytest.raises(PipelineConfigError, match="amp: must be false, true, 'auto', 'fp16' or 'bf16', got 1"):
            load_config({**kind, "amp": 1})  # 1 == True in Python, not in TOML
    with pytest.raises(PipelineConfigError, match=r"amp: is bfloat16 autocast, but \[memory\] fp16 = true"):
        load_config({**MODELS, "amp": "bf16", "memory": {"fp16": True}})


def test_classify_takes_memory_but_refuses_what_it_does_not_honour_yet():
    assert load_config({**CLASSIFY, "memory": {"offload": "disk"}}).memory.offload == "disk"
    for key, value in (("max_resident", 2), ("fp16", True)):
        with pytest.raises(PipelineConfigError, match=rf"memory.{key}: is segment-only for now"):
            load_config({**CLASSIFY, "memory": {key: value}})
    with pytest.raises(PipelineConfigError, match=r"preprocess: unknown key\(s\) \['size'\]"):
        load_config({**MODELS, "preprocess": {"size": 224}})  # size is classify's


def test_normalize_volume_is_segments_only():
    assert load_config({**MODELS, "preprocess": {"normalize": "volume"}}).preprocess.normalize == "volume"
    with pytest.raises(PipelineConfigError, match="preprocess.normalize: must be 'scale', 'none', 'imagenet' or a table"):
        load_config({**CLASSIFY, "preprocess": {"normalize": "volume"}})


def test_sub_tables_keep_the_flat_names_consumers_read(tmp_path):
    cfg = load_config({**CLASSIFY, "decision": {"other": {"label": "Other", "cut": 0.9}},
                       "slides": {"backbone": "b.safetensors", "stain": {"method": "macenko", "reference": "r.png"}}},
                      base_dir=tmp_path)
    assert (cfg.decision.other_label, cfg.decision.other_cut, cfg.decision.other_file) == ("Other", 0.9, None)
    assert (cfg.slides.stain_method, cfg.slides.stain_reference) == ("macenko", tmp_path / "r.png")
    assert cfg.slides.backbone == str(tmp_path / "b.safetensors")
    bare = load_config(CLASSIFY)
    assert bare.decision.other_label is None and bare.decision.other_file is None


def test_a_toml_is_read_once_for_the_output_the_kind_and_the_config(tmp_path, monkeypatch):
    toml = tmp_path / "c.toml"
    toml.write_text('kind = "classify"\n[[models]]\npath = "m.safetensors"\n[output]\nlabel_column = "y"\n')
    reads = []
    original = config.read_toml
    monkeypatch.setattr(config, "read_toml", lambda path: reads.append(path) or original(path))
    source = read_config(toml)
    assert kind_of(source).name == "classify" and early_output(source).label_column == "y"
    assert load_config(source).models[0].path == tmp_path / "m.safetensors"
    assert reads == [toml]
    missing = read_config(tmp_path / "absent.toml")  # kept, raised where the config is loaded
    assert early_output(missing, get_kind("segment")) == segment_config.OutputConfig()
    with pytest.raises(PipelineConfigError, match="absent.toml not found"):
        load_config(missing)
    with pytest.raises(PipelineConfigError, match=r"c2.toml: tiling.tile: must be an integer >= 1, got 0"):
        (tmp_path / "c2.toml").write_text('[tiling]\ntile = 0\n[[models]]\npath = "m"\n')
        load_config(read_config(tmp_path / "c2.toml"))
