"""The README's usage example runs as written."""

from __future__ import annotations

from helpers import README, code_blocks, readme_section


def test_readme_python_examples_run(capsys):
    from kagglekit.pipeline.kind import get_kind, kinds, unregister

    text = README.read_text().replace(readme_section("Training"), "")  # trains: run small in test_pseudo_recipe.py
    blocks = code_blocks(text, "python")
    assert blocks, "the README has no python example"
    before = kinds()
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert get_kind("mean").command == "mean"  # the example's pipeline kind is registered
    for name in set(kinds()) - set(before):
        unregister(name)
    out = capsys.readouterr().out
    assert "(1, 1000, 1300) float32" in out and "(6, 4) float32" in out and "(8, 2) (3, 2)" in out and "[3, 3] (8,)" in out
    assert "['slide0', 'slide1', 'slide2'] 3\n['slide0', 'slide1', 'slide2']" in out


def test_readme_toml_examples_are_valid_pipeline_configs():
    from kagglekit._toml import tomllib
    from kagglekit.pipeline import load_config
    from kagglekit.pipeline.schema import read_top
    from kagglekit.train.config import TrainConfig

    blocks = code_blocks(README.read_text(), "toml")
    assert blocks, "the README has no TOML example"
    for block in blocks:
        data = tomllib.loads(block)
        if "data" in data:  # a training config (kagglekit train)
            read_top(TrainConfig, data)
            continue
        data.setdefault("models", [{"path": "model.safetensors"}])
        load_config(data)  # raises PipelineConfigError naming the key on a mistake
