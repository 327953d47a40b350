"""kagglekit.thresholds stacking: second-level out-of-fold predictions that never see a row's own label,
equal to scikit-learn fitted plainly here; the saved file loads in a process where pickle raises; and
classify's [stack] applies a stacker or a blend file to closed-form models' probabilities."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.linear_model import LogisticRegression

from kagglekit.cli import main
from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.models import create, save_checkpoint
from kagglekit.pipeline import PipelineConfigError, classify, load_config
from kagglekit.pipeline.degrade import Degrader
from kagglekit.thresholds import (BlendFit, Decision, StackFileError, blend, fit_stacker, load_stacker, repeat_folds, write_blend,
                                  write_decision)
from kagglekit.thresholds.stack_heads import export_head, head_proba

from competitions import colour_logits, read_csv, write_png

N, C = 160, 2


def problem(seed=0, n=N, c=C):
    """Two first-level OOF tables (one informative, one weak) of multi-label ``y``, and a 4-fold column."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.4).astype(np.int64)
    strong = np.clip(0.55 * y + 0.45 * rng.random((n, c)), 0, 1)
    weak = np.clip(0.2 * y + 0.8 * rng.random((n, c)), 0, 1)
    return [strong, weak], y, np.arange(n) % 4


@pytest.mark.parametrize("estimator", ["logistic", "extra_trees"])
def test_a_folds_own_labels_never_reach_its_second_level_predictions(estimator):
    tables, y, folds = problem()
    rows = np.flatnonzero(folds == 1)
    permuted = y.copy()
    permuted[rows] = y[np.random.default_rng(1).permutation(rows)]
    one, two = (fit_stacker(tables, labels, folds, estimator) for labels in (y, permuted))
    assert np.array_equal(one.oof[folds == 1], two.oof[folds == 1])  # bit for bit
    assert not np.allclose(one.oof[folds != 1], two.oof[folds != 1])  # the labels do reach the other folds


def test_logistic_per_class_equals_sklearn_fitted_plainly_on_the_same_folds():
    tables, y, folds = problem()
    stacker = fit_stacker(tables, y, folds, "logistic")
    expected = np.empty((N, C))
    for c in range(C):
        X = np.stack([t[:, c] for t in tables], axis=1)
        for f in range(4):
            model = LogisticRegression(max_iter=1000).fit(X[folds != f], y[folds != f, c])
            expected[folds == f, c] = model.predict_proba(X[folds == f])[:, 1]
    np.testing.assert_allclose(stacker.oof, expected, rtol=0, atol=1e-12)
    test_tables, _, _ = problem(seed=7, n=50)
    for c in range(C):
        model = LogisticRegression(max_iter=1000).fit(np.stack([t[:, c] for t in tables], 1), y[:, c])
        expected = model.predict_proba(np.stack([t[:, c] for t in test_tables], 1))[:, 1]
        np.testing.assert_allclose(stacker.predict(test_tables)[:, c], expected, rtol=0, atol=1e-12)


def test_extra_features_follow_each_class_columns():
    tables, y, folds = problem()
    extra = np.random.default_rng(2).random((N, 2))
    stacker = fit_stacker(tables, y, folds, "logistic", extra_features=extra)
    for c in range(C):
        X = np.column_stack([tables[0][:, c], tables[1][:, c], extra])
        expected = np.empty(N)
        for f in range(4):
            model = LogisticRegression(max_iter=1000).fit(X[folds != f], y[folds != f, c])
            expected[folds == f] = model.predict_proba(X[folds == f])[:, 1]
        np.testing.assert_allclose(stacker.oof[:, c], expected, rtol=0, atol=1e-12)
    with pytest.raises(ShapeError, match=r"fitted with 2 extra feature column\(s\); pass extra_features of shape \(N, 2\)"):
        stacker.predict(tables)


def test_single_label_multinomial_stacker_sees_every_column_table_by_table():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 150)
    tables = [0.5 * np.eye(3)[y] + 0.5 * rng.dirichlet(np.ones(3), 150), rng.dirichlet(np.ones(3), 150)]
    stacker = fit_stacker(tables, y, 3, "logistic", per_class=False)
    folds = repeat_folds(3, y, 0, 0)
    X = np.hstack(tables)  # table m's column c at m * 3 + c
    expected = np.empty((150, 3))
    for f in range(3):
        model = LogisticRegression(max_iter=1000).fit(X[folds != f], y[folds != f])
        expected[folds == f] = model.predict_proba(X[folds == f])
    np.testing.assert_allclose(stacker.oof, expected, rtol=0, atol=1e-12)
    one_vs_rest = fit_stacker(tables, y, 3, "logistic")
    np.testing.assert_allclose(one_vs_rest.oof.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_features, n_classes", [(1, 2), (4, 2), (5, 3)])
def test_the_numpy_tree_walk_equals_sklearn_predict_proba(n_features, n_classes):
    rng = np.random.default_rng(n_features)
    X = rng.random((300, n_features))
    y = (X.sum(axis=1) * n_classes / n_features + 0.3 * rng.random(300)).astype(int) % n_classes
    forest = ExtraTreesClassifier(n_estimators=20, min_samples_leaf=2, random_state=0).fit(X, y)
    test = np.r_[rng.random((200, n_features)), X[:50]]  # new rows and training rows (on thresholds' sides)
    assert np.array_equal(head_proba(export_head(forest), test), forest.predict_proba(test))


BLOCKED = """
import pickle, _pickle, sys
def refuse(*args, **kwargs):
    raise RuntimeError("pickle was used")
for module in (pickle, _pickle):
    module.load = module.loads = module.Unpickler = refuse
import numpy as np
from kagglekit.thresholds import load_stacker
tables = [np.load(sys.argv[2] + f"_{m}.npy") for m in range(2)]
np.save(sys.argv[3], load_stacker(sys.argv[1]).predict(tables))
print("sklearn loaded" if "sklearn" in sys.modules else "no sklearn")
"""


@pytest.mark.parametrize("estimator", ["logistic", "extra_trees"])
def test_the_saved_stacker_reloads_in_a_fresh_process_with_pickle_blocked(tmp_path, estimator):
    tables, y, folds = problem()
    stacker = fit_stacker(tables, y, folds, estimator, per_class=estimator == "logistic", classes=["a", "b"])
    stacker.save(tmp_path / "stacker.json")
    test_tables, _, _ = problem(seed=5, n=70)
    for m, t in enumerate(test_tables):
        np.save(tmp_path / f"t_{m}.npy", t)
    done = subprocess.run([sys.executable, "-c", BLOCKED, str(tmp_path / "stacker.json"), str(tmp_path / "t"),
                           str(tmp_path / "p.npy")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no sklearn"
    assert np.array_equal(np.load(tmp_path / "p.npy", allow_pickle=False), stacker.predict(test_tables))
    saved = json.loads((tmp_path / "stacker.json").read_text())
    assert (saved["kind"], saved["n_models"], saved["classes"]) == ("stacker", 2, ["a", "b"])


def test_repeats_average_the_second_level_over_the_documented_reshuffles():
    tables, y, folds = problem()
    for given in (folds, 4):
        three = fit_stacker(tables, y, given, "extra_trees", repeats=3, seed=5)
        runs = [fit_stacker(tables, y, repeat_folds(given, y, r, 5), "extra_trees", seed=5 + r).oof for r in range(3)]
        np.testing.assert_allclose(three.oof, np.mean(runs, axis=0), rtol=1e-15, atol=0)
        assert not np.allclose(runs[0], runs[1])
    shuffled = repeat_folds(folds, y, 1, 5)
    assert not np.array_equal(shuffled, folds)
    for f in range(4):  # each fold keeps its size and its count of every label combination
        assert sorted(map(tuple, y[shuffled == f])) == sorted(map(tuple, y[folds == f]))


def test_mistakes_are_named_once(tmp_path):
    tables, y, folds = problem()
    with pytest.raises(ShapeError, match="prediction table 1 has shape"):
        fit_stacker([tables[0], tables[1][:-1]], y, folds)
    with pytest.raises(ShapeError, match=r"multi-label y must have the tables' shape \(160, 2\)"):
        fit_stacker(tables, y[:, :1].repeat(3, axis=1), folds)
    lonely = y.copy()
    lonely[:, 1] = (folds == 0) & (y[:, 1] == 1)  # class 1's positives only in fold 0
    with pytest.raises(InvalidArgumentError, match=r"the rows outside fold 0 \(class 1\) hold no positive row"):
        fit_stacker(tables, lonely, folds)
    with pytest.raises(InvalidArgumentError, match="lightgbm' is not supported yet"):
        fit_stacker(tables, y, folds, "lightgbm")
    stacker = fit_stacker(tables, y, folds)
    with pytest.raises(ShapeError, match="takes 2 table"):
        stacker.predict(tables[:1])
    write_decision(Decision("threshold", threshold=0.5), tmp_path / "decision.json")
    (tmp_path / "blend.json").write_text(json.dumps({"format": 1, "kind": "blend", "mode": "mean", "weights": [1, 1],
                                                     "models": ["a", "b"]}))
    stacker.save(tmp_path / "newer.json")
    (tmp_path / "newer.json").write_text((tmp_path / "newer.json").read_text().replace('"format": 1', '"format": 2'))
    for name, words in (("decision.json", "its kind is 'threshold', not 'stacker'"), ("blend.json", "its kind is 'blend'"),
                        ("newer.json", "format 2, not one this kagglekit reads"), ("absent.json", "not found")):
        with pytest.raises(StackFileError, match=words) as info:
            load_stacker(tmp_path / name)
        assert str(info.value).count(name) == 1


# -- classify's [stack] ------------------------------------------------------------------------------------------

CLASSES = ["red", "green", "blue"]
COLOURS = {"a": (250, 30, 20), "b": (200, 190, 40), "c": (10, 20, 240), "d": (128, 128, 128), "e": (90, 160, 200)}
GAINS = (8.0, 3.0)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.fixture()
def comp(tmp_path):
    (tmp_path / "test").mkdir()
    for i, colour in COLOURS.items():
        write_png(tmp_path / "test" / f"{i}.png", np.full((20, 30, 3), colour, np.uint8))
    (tmp_path / "sample_submission.csv").write_text("id,blue,red,green\n" + "".join(f"{i},0,0,0\n" for i in COLOURS))
    for k, gain in enumerate(GAINS):
        save_checkpoint(create("kagglekit/test_pipeline_colour", gain=gain), tmp_path / f"m{k}.safetensors", classes=CLASSES)
    return tmp_path


def softmax(z):
    return np.exp(z - z.max()) / np.exp(z - z.max()).sum()


def first_level(activation=sigmoid) -> list[np.ndarray]:
    """Each model's (5, 3) probabilities of the colour images, in closed form (D4 views change nothing)."""
    return [np.array([activation(colour_logits(c, 3, gain)) for c in COLOURS.values()]) for gain in GAINS]


def classify_with(comp, stack_file, decision=None, models=None, **top):
    cfg = {"kind": "classify", "models": models or [{"path": f"m{k}.safetensors"} for k in range(2)],
           "preprocess": {"size": 16}, "tta": {"views": "d4"}, "num_workers": 0, "stack": {"file": stack_file},
           "decision": decision or {"kind": "probability"}, "output": {"format": "columns"}, **top}
    report = classify(cfg, comp, comp / "out", base_dir=comp)
    rows = read_csv(comp / "out" / "submission.csv")
    return report, np.array([[float(r[name]) for name in CLASSES] for r in rows])


def test_classify_applies_a_saved_stacker_to_the_models_probabilities(comp):
    rng = np.random.default_rng(0)
    y = (rng.random((120, 3)) < 0.5).astype(int)
    oof = [np.clip(0.5 * y + 0.5 * rng.random((120, 3)), 0, 1), rng.random((120, 3))]
    stacker = fit_stacker(oof, y, 4, classes=CLASSES)
    stacker.save(comp / "stacker.json")
    report, written = classify_with(comp, "stacker.json")
    np.testing.assert_allclose(written, stacker.predict(first_level()), rtol=0, atol=1e-6)
    assert report.models == 2 and not np.allclose(written, np.mean(first_level(), axis=0), atol=1e-3)


def test_the_folds_of_a_variant_are_averaged_into_one_input_of_the_stack(comp):
    for k, gain in ((2, 5.0), (3, 1.0)):
        save_checkpoint(create("kagglekit/test_pipeline_colour", gain=gain), comp / f"m{k}.safetensors", classes=CLASSES)
    rng = np.random.default_rng(1)
    y = (rng.random((120, 3)) < 0.5).astype(int)
    stacker = fit_stacker([np.clip(0.5 * y + 0.5 * rng.random((120, 3)), 0, 1), rng.random((120, 3))], y, 4, classes=CLASSES)
    stacker.save(comp / "stacker.json")
    models = [{"path": "m0.safetensors", "variant": "a"}, {"path": "m2.safetensors", "variant": "b"},
              {"path": "m1.safetensors", "variant": "a"}, {"path": "m3.safetensors", "variant": "b"}]
    _, written = classify_with(comp, "stacker.json", models=models)
    p = {gain: np.array([sigmoid(colour_logits(c, 3, gain)) for c in COLOURS.values()]) for gain in (8.0, 3.0, 5.0, 1.0)}
    expected = stacker.predict([(p[8.0] + p[3.0]) / 2, (p[5.0] + p[1.0]) / 2])  # variant a: m0, m1; b: m2, m3
    np.testing.assert_allclose(written, expected, rtol=0, atol=1e-6)
    with pytest.raises(PipelineConfigError, match="gives 4 .a variant's folds count once"):
        classify_with(comp, "stacker.json", models=[{"path": f"m{k}.safetensors"} for k in range(4)])
    with pytest.raises(PipelineConfigError, match=r"models\[0\].variant: groups folds into one input of \[stack\]"):
        load_config({"kind": "classify", "models": models})
    with pytest.raises(PipelineConfigError, match=r"models\[0\].variant: groups folds for classify's \[stack\]"):
        load_config({"kind": "segment", "models": models})


def test_classify_applies_a_blend_file_written_to_the_contract(comp):
    (comp / "blend.json").write_text(json.dumps({"format": 1, "kind": "blend", "mode": "logit_mean", "weights": [3, 1],
                                                 "models": ["m0", "m1"], "score": 0.9}))
    _, written = classify_with(comp, "blend.json")
    np.testing.assert_allclose(written, blend(first_level(), [3, 1], "logit_mean"), rtol=0, atol=1e-6)
    _, written = classify_with(comp, "blend.json", {"kind": "argmax"})  # each model's own softmax, then the blend
    assert np.array_equal(written, np.eye(3)[blend(first_level(softmax), [3, 1], "logit_mean").argmax(axis=1)])
    write_blend(BlendFit(np.array([0.0, 1.0]), "hill_climb", "mean", 0.9, 0.8), comp / "fitted.json")  # a weight of 0
    _, written = classify_with(comp, "fitted.json")
    np.testing.assert_allclose(written, first_level()[1], rtol=0, atol=1e-6)


def test_a_stack_that_does_not_fit_the_models_is_refused_by_the_run_and_by_check(comp, capsys):
    (comp / "blend.json").write_text(json.dumps({"format": 1, "kind": "blend", "mode": "mean", "weights": [1, 1, 1],
                                                 "models": ["x", "y", "z"]}))
    refusal = r"blend.json combines 3 model\(s\) but \[\[models\]\] gives 2 \(a variant.s folds count once\); list"
    with pytest.raises(PipelineConfigError, match=refusal) as info:
        classify_with(comp, "blend.json")
    assert str(info.value).count("blend.json") == 1
    assert [r["id"] for r in read_csv(comp / "out" / "submission.csv")] == list(COLOURS)  # the fallback is written
    (comp / "classify.toml").write_text('kind = "classify"\nnum_workers = 0\n[preprocess]\nsize = 16\n[[models]]\n'
                                        'path = "m0.safetensors"\n[[models]]\npath = "m1.safetensors"\n[stack]\n'
                                        'file = "blend.json"\n[decision]\nkind = "probability"\n[output]\n'
                                        'format = "columns"\n')
    assert main(["classify", "--check", "--config", str(comp / "classify.toml"), "--input", str(comp)]) == 1
    assert "problem: stack file: stack.file:" in capsys.readouterr().out
    (comp / "blend.json").write_text(json.dumps({"format": 1, "kind": "blend", "mode": "rank", "weights": [1, 1],
                                                 "models": ["x", "y"]}))
    with pytest.raises(PipelineConfigError, match="blends ranks, which need every test row at once"):
        classify_with(comp, "blend.json")
    (comp / "blend.json").write_text(json.dumps({"format": 1, "kind": "blend", "mode": "mean", "weights": [1, 1],
                                                 "models": ["x", "y"]}))
    assert main(["classify", "--check", "--config", str(comp / "classify.toml"), "--input", str(comp)]) == 0
    assert "ok: stack file:" in capsys.readouterr().out
    with pytest.raises(PipelineConfigError, match=r"models\[1\].weight: with \[stack\] the stack file combines"):
        classify_with(comp, "blend.json", models=[{"path": "m0.safetensors"}, {"path": "m1.safetensors", "weight": 2.0}])


def test_a_stack_needs_every_model_its_classes_and_no_temperature(comp):
    rng = np.random.default_rng(0)
    y = (rng.random((80, 3)) < 0.5).astype(int)
    fit_stacker([rng.random((80, 3)), rng.random((80, 3))], y, 4, classes=["a", "b", "c"]).save(comp / "stacker.json")
    with pytest.raises(PipelineConfigError, match=r"fitted on 3 classes \['a', 'b', 'c'\], the models return 3 "
                                                  r"\(\['red', 'green', 'blue'\]\)"):
        classify_with(comp, "stacker.json")
    (comp / "blend.json").write_text(json.dumps({"format": 1, "kind": "blend", "mode": "mean", "weights": [1, 1],
                                                 "models": ["x", "y"]}))
    write_decision(Decision("threshold", threshold=0.5, temperature=2.0), comp / "decision.json")
    with pytest.raises(PipelineConfigError, match="its temperature divides each model's logits, but with .stack."):
        classify_with(comp, "blend.json", decision={"file": "decision.json"})
    (comp / "m1.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(PipelineConfigError, match=r"needs every model, but \[.*m1.safetensors'\] could not load or run"):
        classify_with(comp, "blend.json")


def test_the_budget_drops_views_but_never_a_stacks_model():
    degrader, steps = Degrader(8, 3, models_dropped=False), []
    while (step := degrader.step()) is not None:
        steps.append((degrader.views, degrader.models))
    assert steps == [(4, 3), (2, 3), (1, 3)]  # views halved to one; the three models stay
