"""kagglekit.pipeline.classify on a tiny competition of solid-colour images and closed-form models.

Each image is one colour; ColourLogits returns ``gain * (colour_k / 255 - 0.5)`` per class, so the
expected row of every decision kind and output format is computed here plainly (the expected-F-beta
decision by enumerating every label set and every truth).
"""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest

from kagglekit.cli import main
from kagglekit.models import create, register_model, save_checkpoint
from kagglekit.pipeline import PipelineConfigError, classify, run
from kagglekit.thresholds import Decision, write_decision

from competitions import ColourLogits, FakeClock, colour_logits, read_csv, write_png

CLASSES = ["red", "green", "blue"]
COLOURS = {"a": (250, 30, 20), "b": (200, 190, 40), "c": (10, 20, 240), "d": (128, 128, 128), "e": (90, 160, 200)}


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def competition(tmp_path, columns=("id", "label"), colours=COLOURS, shape=(37, 53)):
    (tmp_path / "test").mkdir(exist_ok=True)
    for i, colour in colours.items():
        write_png(tmp_path / "test" / f"{i}.png", np.full((*shape, 3), colour, np.uint8))
    (tmp_path / "sample_submission.csv").write_text(
        ",".join(columns) + "\n" + "".join(f"{i}," + ",".join(["0"] * (len(columns) - 1)) + "\n" for i in colours))


def colour_model(path, classes=CLASSES, num_classes=3, in_channels=3):
    model = create("kagglekit/test_pipeline_colour", in_channels=in_channels, num_classes=num_classes)
    return save_checkpoint(model, path, classes=classes)


def run_config(tmp_path, decision: dict, output: dict | None = None, **top):
    cfg = {"kind": "classify", "models": [{"path": str(tmp_path / "m.safetensors")}],
           "preprocess": {"size": 32}, "tta": {"views": "d4"}, "decision": decision,
           "output": output or {}, "num_workers": 0, **top}
    report = classify(cfg, tmp_path, tmp_path / "out", base_dir=tmp_path)
    rows = read_csv(tmp_path / "out" / "submission.csv")
    return report, {r[next(iter(r))]: r for r in rows}  # keyed by the first (id) column


def expected_fbeta_brute_force(p, beta):
    """The label set maximising the expected F-beta, by enumerating every set and every truth."""
    m = len(p)
    best, best_value = None, -1.0
    for chosen in itertools.product([0, 1], repeat=m):
        value = 0.0
        for truth in itertools.product([0, 1], repeat=m):
            prob = np.prod([p[k] if truth[k] else 1 - p[k] for k in range(m)])
            tp = sum(c and t for c, t in zip(chosen, truth))
            denominator = beta**2 * sum(truth) + sum(chosen)
            value += prob * (1.0 if denominator == 0 else (1 + beta**2) * tp / denominator)
        if value > best_value + 1e-12:
            best, best_value = chosen, value
    return [CLASSES[k] for k in range(m) if best[k]]


@pytest.fixture()
def comp(tmp_path):
    competition(tmp_path)
    colour_model(tmp_path / "m.safetensors")
    return tmp_path


def test_argmax_writes_the_class_of_the_largest_logit(comp):
    report, rows = run_config(comp, {"kind": "argmax"})
    assert {i: r["label"] for i, r in rows.items()} == {i: CLASSES[int(np.argmax(colour_logits(c)))] for i, c in COLOURS.items()}
    assert report.classes == tuple(CLASSES) and len(report.predicted) == 5 and report.exit_code() == 0


def test_a_fixed_threshold_writes_every_class_above_it(comp):
    _, rows = run_config(comp, {"kind": "threshold", "value": 0.7})
    for i, c in COLOURS.items():
        expected = [n for n, z in zip(CLASSES, colour_logits(c)) if sigmoid(z) >= 0.7]
        assert rows[i]["label"] == " ".join(expected)


def test_per_class_thresholds_from_a_decision_file_and_the_separator(comp):
    write_decision(Decision("per_class", thresholds=(0.3, 0.6, 0.9), classes=tuple(CLASSES)), comp / "decision.json")
    _, rows = run_config(comp, {"file": "decision.json"}, {"separator": "|"})
    for i, c in COLOURS.items():
        expected = [n for n, z, t in zip(CLASSES, colour_logits(c), (0.3, 0.6, 0.9)) if sigmoid(z) >= t]
        assert rows[i]["label"] == "|".join(expected)


def test_the_expected_fbeta_decision_equals_the_brute_force(comp):
    _, rows = run_config(comp, {"kind": "expected_fbeta", "beta": 2.0})
    for i, c in COLOURS.items():
        assert rows[i]["label"].split() == expected_fbeta_brute_force(sigmoid(colour_logits(c)), 2.0)


def test_probabilities_in_columns_and_decisions_as_0_1_columns(tmp_path):
    competition(tmp_path, columns=("id", "blue", "red", "green"))  # the sample's column order, not the models'
    colour_model(tmp_path / "m.safetensors")
    _, rows = run_config(tmp_path, {"kind": "probability"}, {"format": "columns"})
    for i, c in COLOURS.items():
        for name, z in zip(CLASSES, colour_logits(c)):
            assert float(rows[i][name]) == pytest.approx(sigmoid(z), abs=1e-6)
    assert list(read_csv(tmp_path / "out" / "submission.csv")[0]) == ["id", "blue", "red", "green"]
    _, rows = run_config(tmp_path, {"kind": "argmax"}, {"format": "columns"})
    for i, c in COLOURS.items():
        top = CLASSES[int(np.argmax(colour_logits(c)))]
        assert {n: rows[i][n] for n in CLASSES} == {n: "1" if n == top else "0" for n in CLASSES}


def test_one_probability_per_id_for_a_binary_model(tmp_path):
    competition(tmp_path, columns=("image_name", "target"))
    colour_model(tmp_path / "m.safetensors", classes=["melanoma"], num_classes=1)
    _, rows = run_config(tmp_path, {"kind": "probability"}, {"format": "probability"})
    for i, c in COLOURS.items():
        assert float(rows[i]["target"]) == pytest.approx(sigmoid(colour_logits(c, 1)[0]), abs=1e-6)


@pytest.mark.parametrize("source", ["cut", "file"])
def test_other_from_an_entropy_cut(comp, source):
    """The grey image has equal logits: the softmax is uniform, its entropy log(3) is above the cut."""
    entropies = {i: -(softmax(colour_logits(c)) * np.log(softmax(colour_logits(c)))).sum() for i, c in COLOURS.items()}
    cut = (entropies["d"] + sorted(entropies.values())[-2]) / 2  # only the grey one above it
    other = {"label": "Other", "cut": cut}
    if source == "file":
        write_decision(Decision("argmax", other_cut=cut), comp / "other.json")
        other = {"label": "Other", "file": "other.json"}
    _, rows = run_config(comp, {"kind": "argmax", "other": other})
    expected = {i: "Other" if entropies[i] > cut else CLASSES[int(np.argmax(colour_logits(c)))] for i, c in COLOURS.items()}
    assert {i: r["label"] for i, r in rows.items()} == expected and expected["d"] == "Other"
    assert sum(v == "Other" for v in expected.values()) == 1


def test_a_temperature_from_the_decision_file_divides_the_logits(comp):
    write_decision(Decision("threshold", threshold=0.6, temperature=4.0), comp / "decision.json")
    _, rows = run_config(comp, {"file": "decision.json"})
    for i, c in COLOURS.items():
        assert rows[i]["label"] == " ".join(n for n, z in zip(CLASSES, colour_logits(c)) if sigmoid(z / 4.0) >= 0.6)


def test_per_id_channel_files(tmp_path):
    (tmp_path / "test").mkdir()
    colours = {"p": (240, 20, 30, 200), "q": (10, 220, 30, 40), "r": (20, 30, 10, 250)}
    for i, colour in colours.items():
        for name, value in zip(("red", "green", "blue", "yellow"), colour):
            assert cv2.imwrite(str(tmp_path / "test" / f"{i}_{name}.png"), np.full((40, 40), value, np.uint8))
    (tmp_path / "test" / "r_yellow.png").unlink()  # one channel file missing for one id
    (tmp_path / "sample_submission.csv").write_text("Id,Predicted\np,0\nq,0\nr,0\n")
    names = ["nucleus", "cytosol", "membrane", "vesicles"]
    save_checkpoint(create("kagglekit/test_pipeline_colour", in_channels=4, num_classes=4), tmp_path / "m.safetensors",
                    classes=names)
    channels = [f"test/{{id}}_{c}.png" for c in ("red", "green", "blue", "yellow")]
    report, rows = run_config(tmp_path, {"kind": "threshold", "value": 0.5}, inputs={"channels": channels})
    for i in ("p", "q"):
        assert rows[i]["Predicted"] == " ".join(n for n, z in zip(names, colour_logits(colours[i], 4)) if z >= 0)
    assert rows["r"]["Predicted"] == "0" and "channel file missing" in report.fallback["r"] and "r_yellow.png" in report.fallback["r"]


def test_gray_images_are_replicated_for_an_rgb_model_and_noted_once(comp):
    for i in ("a", "b"):
        assert cv2.imwrite(str(comp / "test" / f"{i}.png"), np.full((30, 30), 200, np.uint8))
    report, rows = run_config(comp, {"kind": "threshold", "value": 0.5})
    assert rows["a"]["label"] == "red green blue"  # 200 on every channel: every logit positive
    assert [e for e in report.events if "adapted" in e] == [
        "inputs adapted to the models' 3 channels: gray -> 3 channels (replicated)"]


def test_an_unreadable_image_keeps_the_sample_row_and_the_others_are_predicted(comp, capsys):
    (comp / "test" / "c.png").write_bytes(b"\x89PNG broken")
    report, rows = run_config(comp, {"kind": "argmax"}, {"fallback": "green"})
    assert rows["c"]["label"] == "green" and "ImageReadError" in report.fallback["c"]
    assert rows["a"]["label"] == "red" and sorted(report.predicted) == ["a", "b", "d", "e"]


@pytest.mark.parametrize("setup, words", [
    (lambda t: save_checkpoint(create("kagglekit/test_pipeline_colour", num_classes=4), t / "m2.safetensors",
                               classes=["red", "green", "blue", "grey"]), "different output channel counts"),
    (lambda t: colour_model(t / "m2.safetensors", classes=["r", "g", "b"]), "the checkpoints name different classes"),
])
def test_models_that_disagree_are_refused_with_a_valid_submission(comp, capsys, setup, words):
    setup(comp)
    (comp / "classify.toml").write_text('kind = "classify"\nnum_workers = 0\n[[models]]\npath = "m.safetensors"\n'
                                        '[[models]]\npath = "m2.safetensors"\n')
    assert main(["classify", "--config", str(comp / "classify.toml"), "--input", str(comp), "--output", str(comp / "out")]) == 1
    assert words in capsys.readouterr().err
    assert [r["id"] for r in read_csv(comp / "out" / "submission.csv")] == list(COLOURS)


def test_classes_that_do_not_fit_the_sample_columns_are_refused(tmp_path, capsys):
    competition(tmp_path, columns=("id", "red", "green", "purple"))
    colour_model(tmp_path / "m.safetensors")
    with pytest.raises(Exception, match=r"missing: \['blue'\], extra: \['purple'\]"):
        run_config(tmp_path, {"kind": "probability"}, {"format": "columns"})
    assert [r["id"] for r in read_csv(tmp_path / "out" / "submission.csv")] == list(COLOURS)


@pytest.mark.parametrize("decision, output, words", [
    ({"kind": "per_class"}, {}, "decision.file: is required for kind = 'per_class'"),
    ({"kind": "probability"}, {}, "decision.kind = 'probability' writes probabilities"),
    ({"kind": "argmax"}, {"format": "probability"}, "use kind = 'probability'"),
    ({"kind": "argmax", "other": {"label": "Other"}}, {}, "give the entropy cut itself"),
    ({"kind": "vote"}, {}, "decision.kind: must be one of"),
    ({"kind": "argmax", "other": {"label": "Other", "cut": 0.5}}, {"format": "columns"}, "have no column in format = 'columns'"),
])
def test_decision_mistakes_name_the_key(comp, decision, output, words):
    from kagglekit.pipeline import PipelineConfigError

    with pytest.raises(PipelineConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        run_config(comp, decision, output)


def test_a_segment_config_given_to_classify_says_which_command_to_use(comp, capsys):
    (comp / "seg.toml").write_text('[[models]]\npath = "m.safetensors"\n')
    assert main(["classify", "--config", str(comp / "seg.toml"), "--input", str(comp), "--output", str(comp / "out")]) == 1
    assert "this config is kind = 'segment'; run it with `kagglekit segment`" in capsys.readouterr().err


def test_run_dispatches_on_kind_and_the_cli_check_reads_the_decision_file(comp, capsys):
    write_decision(Decision("per_class", thresholds=(0.5, 0.5, 0.5), classes=tuple(CLASSES)), comp / "decision.json")
    (comp / "classify.toml").write_text('kind = "classify"\nnum_workers = 0\n[preprocess]\nsize = 32\n'
                                        '[[models]]\npath = "m.safetensors"\n[decision]\nfile = "decision.json"\n')
    report = run(comp / "classify.toml", comp, comp / "out")
    assert sorted(report.predicted) == sorted(COLOURS)
    assert main(["classify", "--check", "--config", str(comp / "classify.toml"), "--input", str(comp)]) == 0
    out = capsys.readouterr().out
    assert "classes ['red', 'green', 'blue']" in out and "ok: decision file" in out and "5 of 5 ids" in out
    (comp / "decision.json").write_text(json.dumps({"kind": "per_class"}))
    assert main(["classify", "--check", "--config", str(comp / "classify.toml"), "--input", str(comp)]) == 1
    assert "problem: decision file" in capsys.readouterr().out
    (comp / "decision.json").write_text(json.dumps({"kind": "per_class", "thresholds": [0.5, 0.5]}))
    assert main(["classify", "--config", str(comp / "classify.toml"), "--input", str(comp), "--output", str(comp / "o2")]) == 1
    assert "holds 2 per-class thresholds but the models have 3 classes" in capsys.readouterr().err
    assert [r["id"] for r in read_csv(comp / "o2" / "submission.csv")] == list(COLOURS)


class ClockedColour(ColourLogits):
    """ColourLogits whose every forward (but the zero-input probe) costs one second of FakeClock."""

    def forward(self, x):
        if x.any():
            FakeClock.now += 1.0
        return super().forward(x)


register_model("test_classify_clocked", ClockedColour)


def test_the_budget_drops_views_for_classify_too(comp):
    """Batches of one image, chunks of four: the first chunk costs 4 x 8 views x 2 models = 64 s; with 70 s
    the projected 64 + 16 = 80 s drops the views to 4, and the last image costs 1 x 4 x 2 = 8 s."""
    from kagglekit.kaggle.budget import Budget

    for name in ("m", "m2"):
        save_checkpoint(create("kagglekit/test_classify_clocked"), comp / f"{name}.safetensors", classes=CLASSES)
    FakeClock.now = 0.0
    cfg = {"kind": "classify", "models": [{"path": "m.safetensors"}, {"path": "m2.safetensors"}], "preprocess": {"size": 32},
           "tta": {"views": "d4"}, "batch_size": 1, "num_workers": 0}
    report = classify(cfg, comp, comp / "out", base_dir=comp, budget=Budget(70, 0, clock=FakeClock()))
    assert [e.split(":")[0] for e in report.events] == ["dropped TTA views 8 -> 4"]
    assert sorted(report.predicted) == sorted(COLOURS) and report.views == 4 and report.models == 2 and FakeClock.now == 72
    rows = {r["id"]: r["label"] for r in read_csv(comp / "out" / "submission.csv")}
    assert rows == {i: CLASSES[int(np.argmax(colour_logits(c)))] for i, c in COLOURS.items()}


def test_a_last_batch_of_only_unreadable_images_costs_only_their_rows(comp):
    """Batches of two: (a, b), (c, d), then e alone, unreadable: an error-only batch after real ones."""
    (comp / "test" / "e.png").write_bytes(b"\x89PNG broken")
    report, rows = run_config(comp, {"kind": "argmax"}, batch_size=2)
    assert sorted(report.predicted) == ["a", "b", "c", "d"] and list(report.fallback) == ["e"]
    assert rows["a"]["label"] == "red" and rows["e"]["label"] == "0"


@pytest.mark.parametrize("value, k", [("green", 1), (2, 2)])
def test_one_class_probability_from_a_multi_class_model(comp, value, k):
    """SIIM-ISIC's route: a softmax over many classes, one column written (oracle: the softmax computed plainly)."""
    _, rows = run_config(comp, {"kind": "probability"}, {"format": "probability", "value": value})
    for i, c in COLOURS.items():
        assert float(rows[i]["label"]) == pytest.approx(softmax(colour_logits(c))[k], abs=1e-6)


def test_one_probability_from_many_outputs_without_a_value_stops_before_any_image(comp, capsys):
    toml = comp / "p.toml"
    toml.write_text('kind = "classify"\nnum_workers = 0\n[[models]]\npath = "m.safetensors"\n[inputs]\nglob = "test/*.png"\n'
                    '[preprocess]\nsize = 32\n[decision]\nkind = "probability"\n[output]\nformat = "probability"\n')
    assert main(["classify", str(toml), "--input", str(comp), "--output", str(comp / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("set output.value = \"<class>\" (one of ['red', 'green', 'blue']) or an index") == 1
    assert [r["label"] for r in read_csv(comp / "out" / "submission.csv")] == ["0"] * 5  # the sample's rows
    assert main(["classify", str(toml), "--input", str(comp), "--check"]) == 1
    assert "problem: output value: output.format = 'probability' writes one probability, but the models have 3" in capsys.readouterr().out
    toml.write_text(toml.read_text() + 'value = "blue"\n')
    assert main(["classify", str(toml), "--input", str(comp), "--check"]) == 0
    assert "output value: the probability of 'blue' (output 2 of 3)" in capsys.readouterr().out


def test_a_value_needs_the_probability_format_and_a_known_class(comp):
    with pytest.raises(PipelineConfigError, match="output.value: picks the class of format = 'probability'"):
        run_config(comp, {"kind": "argmax"}, {"value": "green"})
    with pytest.raises(PipelineConfigError, match=r"output.value: 'melanoma' is not a class of the models \(\['red'"):
        run_config(comp, {"kind": "probability"}, {"format": "probability", "value": "melanoma"})
