"""``kagglekit blend`` on the command line against the Python calls it stands for: fit_blend and
fit_stacker on the OOF tables matched by id and class, applied to the test tables."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from kagglekit.cli import main
from kagglekit.thresholds import fit_blend, fit_stacker, load_stacker, read_blend

CLASSES = ["x", "y", "z"]
N, T = 120, 10


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Labels, three models' OOF tables (a parquet in order, a parquet in another row and column order, a CSV of
    plain class columns) and their test tables; with the arrays in the first table's order, for the oracle."""
    root = tmp_path_factory.mktemp("blend")
    rng = np.random.default_rng(0)
    ids, test_ids = [f"im{k}" for k in range(N)], [f"t{k}" for k in range(T)]
    y = (rng.random((N, 3)) < 0.4).astype(int)
    y[0] = 0  # a row without labels
    tags = [" ".join(c for c, v in zip(CLASSES, row) if v) for row in y]
    pl.DataFrame({"image_name": ids, "tags": tags}).write_csv(root / "train.csv")
    folds = np.arange(N) % 4
    oof = [np.clip(s * y + (1 - s) * rng.random((N, 3)), 0, 1) for s in (0.5, 0.3, 0.0)]
    test = [rng.random((T, 3)) for _ in oof]
    a = pl.DataFrame({"id": ids, "fold": folds, **{f"logit_{c}": oof[0][:, k] * 0 for k, c in enumerate(CLASSES)},
                      **{f"prob_{c}": oof[0][:, k] for k, c in enumerate(CLASSES)}})
    a.write_parquet(root / "a.parquet")
    order = np.arange(N)[::-1]
    pl.DataFrame({"id": [ids[k] for k in order], **{f"prob_{c}": oof[1][order, k] for k, c in reversed(list(enumerate(CLASSES)))}}
                 ).write_parquet(root / "b.parquet")
    pl.DataFrame({"id": ids, **{c: oof[2][:, k] for k, c in enumerate(CLASSES)}}).write_csv(root / "c.csv")
    for name, values, rows in (("a", test[0], range(T)), ("b", test[1], range(T - 1, -1, -1)), ("c", test[2], range(T))):
        pl.DataFrame({"id": [test_ids[k] for k in rows], **{c: values[list(rows), k] for k, c in enumerate(CLASSES)}}
                     ).write_csv(root / f"{name}_test.csv")
    return root, y, folds, oof, test, test_ids


def blend_cli(root, *extra) -> int:
    return main(["blend", *(str(root / n) for n in ("a.parquet", "b.parquet", "c.csv")), "--labels", str(root / "train.csv"),
                 "--label", "tags", "--test", *(str(root / f"{n}_test.csv") for n in "abc"), *extra])


def written(path, ids) -> np.ndarray:
    frame = pl.read_csv(path)
    assert frame.columns == ["id", *CLASSES] and frame["id"].to_list() == ids
    return frame.select(CLASSES).to_numpy()


def test_the_command_line_blend_is_fit_blend_on_the_aligned_tables(tables, tmp_path, capsys):
    root, y, folds, oof, test, test_ids = tables
    assert blend_cli(root, "--method", "hill_climb", "--metric", "auc", "--out", str(tmp_path)) == 0
    fit = fit_blend(oof, y, "auc", method="hill_climb", folds=folds, seed=0)
    np.testing.assert_allclose(read_blend(tmp_path / "blend.json").weights, fit.weights, rtol=0, atol=1e-12)
    np.testing.assert_allclose(written(tmp_path / "test.csv", test_ids), fit.apply(test), rtol=0, atol=1e-12)
    scores = pl.read_csv(tmp_path / "scores.csv")
    assert scores["what"][-1] == "blend (hill_climb, mean)"
    np.testing.assert_allclose(scores.select("in_sample", "estimate").row(-1), (fit.in_sample, fit.nested), atol=1e-12)
    np.testing.assert_allclose(scores["in_sample"][:3], fit.single, atol=1e-12)
    assert fit.weights[2] == 0 and "| blend (hill_climb, mean) |" in capsys.readouterr().out


def test_the_command_line_stacker_is_fit_stacker_on_the_aligned_tables(tables, tmp_path):
    root, y, folds, oof, test, test_ids = tables
    assert blend_cli(root, "--method", "stack", "--repeats", "2", "--out", str(tmp_path)) == 0
    stacker = fit_stacker(oof, y, folds, "logistic", repeats=2, seed=0, classes=CLASSES)
    np.testing.assert_allclose(written(tmp_path / "test.csv", test_ids), stacker.predict(test), rtol=0, atol=1e-12)
    np.testing.assert_allclose(load_stacker(tmp_path / "stacker.json").predict(test), stacker.predict(test), atol=1e-12)
    from sklearn.metrics import roc_auc_score

    assert pl.read_csv(tmp_path / "scores.csv")["estimate"][-1] == pytest.approx(roc_auc_score(y, stacker.oof), abs=1e-12)


def test_mistakes_are_named_and_exit_1(tables, tmp_path, capsys):
    root, *_ = tables
    pl.read_csv(root / "c.csv").head(N - 2).write_csv(tmp_path / "short.csv")
    cases = [(["blend", str(root / "a.parquet"), str(tmp_path / "short.csv"), "--labels", str(root / "train.csv"),
               "--label", "tags", "--out", str(tmp_path / "o1")], "short.csv has no ids ['im118', 'im119'] (2 in all)"),
             (["blend", str(root / "a.parquet"), "--labels", str(root / "train.csv"), "--label", "tags", "--test",
               str(root / "a_test.csv"), str(root / "b_test.csv"), "--out", str(tmp_path / "o2")], "1 OOF table(s) and 2 test"),
             (["blend", str(root / "a.parquet"), "--labels", str(root / "train.csv"), "--out", str(tmp_path / "o3")],
              "needs label=")]
    for argv, words in cases:
        assert main(argv) == 1
        assert capsys.readouterr().err.count(words) == 1, words
