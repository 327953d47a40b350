"""Fold makers: every splitter's partition, group and balance promises, checked by brute force."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
from threadpoolctl import threadpool_limits

from kagglekit.cv import (
    MultilabelStratifiedKFold,
    PatientBalancedKFold,
    StratifiedGroupKFold,
    adversarial_validation,
    fold_report,
    make_folds,
)
from kagglekit.errors import KagglekitError

K = 5


def folds_of(splitter, X, y, groups=None) -> np.ndarray:
    """Fold per row from ``split``, checking on the way that validation folds partition the rows."""
    n = len(X)
    fold = np.full(n, -1)
    splits = list(splitter.split(X, y, groups))
    assert len(splits) == splitter.get_n_splits() == K
    for j, (train, test) in enumerate(splits):
        assert (fold[test] == -1).all(), "a row is in two validation folds"
        fold[test] = j
        np.testing.assert_array_equal(np.sort(np.r_[train, test]), np.arange(n))
        assert len(test) > 0
    assert (fold >= 0).all(), "a row is in no validation fold"
    return fold


def assert_groups_whole(fold, groups):
    for g in np.unique(groups):
        assert np.unique(fold[groups == g]).size == 1, f"group {g} split across folds"


def per_fold_counts(fold, onehot) -> np.ndarray:
    return np.stack([onehot[fold == j].sum(axis=0) for j in range(K)])


def random_multilabel(rng, n, n_labels, low=0.01, high=0.5):
    return (rng.random((n, n_labels)) < rng.uniform(low, high, n_labels)).astype(np.int64)


# ---------------------------------------------------------------- StratifiedGroupKFold


def test_stratified_multi_key_without_groups_within_one_of_ideal():
    rng = np.random.default_rng(0)
    n = 3000
    keys = np.stack([rng.integers(0, 4, n), rng.choice(["TMA", "WSI"], n, p=[0.2, 0.8])], axis=1)
    fold = folds_of(StratifiedGroupKFold(K, shuffle=True, random_state=1), np.zeros(n), keys)
    combos = [tuple(r) for r in keys]
    for combo in set(combos):
        member = np.array([c == combo for c in combos])
        counts = np.bincount(fold[member], minlength=K)
        assert np.all(np.abs(counts - member.sum() / K) < 1), (combo, counts)


def test_stratified_groups_within_largest_group_of_ideal():
    rng = np.random.default_rng(1)
    n_groups = 300
    group_class = rng.integers(0, 3, n_groups)  # every group lies in one stratum
    group_size = rng.integers(1, 12, n_groups)
    groups = np.repeat(np.arange(n_groups), group_size)
    y = group_class[groups]
    splitter = StratifiedGroupKFold(K, shuffle=True, random_state=2)
    fold = folds_of(splitter, np.zeros(len(y)), y, groups)
    assert_groups_whole(fold, groups)
    for c in range(3):
        counts = np.bincount(fold[y == c], minlength=K)
        largest = group_size[group_class == c].max()
        assert np.all(np.abs(counts - (y == c).sum() / K) <= largest), (c, counts, largest)


def test_stratified_without_y_balances_sizes_and_is_deterministic():
    groups = np.repeat(np.arange(50), np.arange(50) % 7 + 1)
    a = StratifiedGroupKFold(K, shuffle=True, random_state=3).assign(np.zeros(len(groups)), None, groups)
    b = StratifiedGroupKFold(K, shuffle=True, random_state=3).assign(np.zeros(len(groups)), None, groups)
    np.testing.assert_array_equal(a, b)
    assert_groups_whole(a, groups)
    sizes = np.bincount(a, minlength=K)
    assert np.all(np.abs(sizes - len(groups) / K) <= 7)


def test_usable_by_sklearn_cross_validation():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    groups = np.arange(200) // 4
    scores = cross_val_score(LogisticRegression(), X, y, groups=groups, cv=StratifiedGroupKFold(K, shuffle=True, random_state=0))
    assert scores.shape == (K,)


# ---------------------------------------------------------------- MultilabelStratifiedKFold


def test_multilabel_one_hot_gives_floor_or_ceil():
    rng = np.random.default_rng(5)
    n = 4000
    onehot = np.eye(6, dtype=np.int64)[rng.choice(6, n, p=[0.4, 0.3, 0.15, 0.1, 0.04, 0.01])]
    fold = folds_of(MultilabelStratifiedKFold(K, shuffle=True, random_state=0), np.zeros(n), onehot)
    counts = per_fold_counts(fold, onehot)
    totals = onehot.sum(axis=0)
    assert np.all((counts == totals // K) | (counts == -(-totals // K)))


def assert_pass_bound(unit_counts: np.ndarray, unit_fold: np.ndarray):
    """Replay the documented order (label with fewest unplaced rows first, lowest index on ties) and
    check the per-pass promise: a fold that received units of label l in l's pass ends holding at
    most (largest unit count of l in the pass) more of l than the fold holding the fewest."""
    remaining = unit_counts.sum(axis=0)
    unplaced = np.ones(len(unit_counts), bool)
    processed = np.zeros(unit_counts.shape[1], bool)
    n_passes = 0
    while True:
        candidates = np.where(processed | (remaining == 0), np.iinfo(np.int64).max, remaining)
        label = int(np.argmin(candidates))
        if candidates[label] == np.iinfo(np.int64).max:
            break
        batch = (unit_counts[:, label] > 0) & unplaced
        placed_after = ~unplaced | batch
        after = np.array([unit_counts[placed_after & (unit_fold == j), label].sum() for j in range(K)])
        received = np.unique(unit_fold[batch])
        assert after[received].max() <= after.min() + unit_counts[batch, label].max(), (label, after)
        processed[label] = True
        unplaced &= ~batch
        remaining = remaining - unit_counts[batch].sum(axis=0)
        n_passes += 1
    assert n_passes > 0


def test_multilabel_pass_bound_and_small_deviation():
    rng = np.random.default_rng(6)
    y = random_multilabel(rng, 5000, 25)
    fold = folds_of(MultilabelStratifiedKFold(K, shuffle=True, random_state=1), np.zeros(len(y)), y)
    assert_pass_bound(y, fold)
    deviation = np.abs(per_fold_counts(fold, y) - y.sum(axis=0) / K)
    # the rarest label (placed first, nothing carried in) is within one of its ideal
    rarest = np.argmin(y.sum(axis=0))
    assert deviation[:, rarest].max() < 1


def test_multilabel_with_groups_keeps_groups_and_pass_bound():
    rng = np.random.default_rng(7)
    groups = rng.integers(0, 400, 2000)
    y = random_multilabel(rng, 2000, 10, 0.02, 0.3)
    splitter = MultilabelStratifiedKFold(K, shuffle=True, random_state=2)
    fold = folds_of(splitter, np.zeros(len(y)), y, groups)
    assert_groups_whole(fold, groups)
    ids = np.unique(groups)
    unit_counts = np.stack([y[groups == g].sum(axis=0) for g in ids])
    unit_fold = np.array([fold[groups == g][0] for g in ids])
    assert_pass_bound(unit_counts, unit_fold)


def test_multilabel_deterministic_for_a_seed():
    y = random_multilabel(np.random.default_rng(8), 1000, 8)
    a = MultilabelStratifiedKFold(K, shuffle=True, random_state=11).assign(np.zeros(1000), y)
    b = MultilabelStratifiedKFold(K, shuffle=True, random_state=11).assign(np.zeros(1000), y)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- PatientBalancedKFold


def patient_table(seed=9, n_patients=400):
    rng = np.random.default_rng(seed)
    n_images = rng.geometric(0.15, n_patients)
    groups = np.repeat(np.arange(n_patients) * 7 + 3, n_images)  # ids need not be 0..n-1
    positive_patient = rng.random(n_patients) < 0.3
    y = np.where(np.repeat(positive_patient, n_images), rng.random(groups.size) < 0.3, 0).astype(int)
    return y, groups


def test_patient_balanced_strata_and_floor_ceil_bound():
    y, groups = patient_table()
    splitter = PatientBalancedKFold(K, n_bins=4, shuffle=True, random_state=0)
    fold = folds_of(splitter, np.zeros(len(y)), y, groups)
    assert_groups_whole(fold, groups)
    unit, target, size_bin = splitter.patient_strata(y, groups)
    ids = np.unique(groups)
    n_images = np.array([(groups == g).sum() for g in ids])
    np.testing.assert_array_equal(target, [y[groups == g].max() for g in ids])
    order = np.argsort(n_images, kind="stable")
    assert np.all(np.diff(size_bin[order]) >= 0), "a patient with more images sits in a lower bin"
    assert np.unique(size_bin).size > 1
    patient_fold = np.array([fold[groups == g][0] for g in ids])
    for stratum in set(zip(target, size_bin)):
        member = (target == stratum[0]) & (size_bin == stratum[1])
        counts = np.bincount(patient_fold[member], minlength=K)
        total = member.sum()
        assert np.all((counts == total // K) | (counts == -(-total // K))), (stratum, counts)


def test_patient_balanced_merges_bins_rather_than_failing():
    y, groups = patient_table(seed=10, n_patients=30)
    _, target, size_bin = PatientBalancedKFold(K, n_bins=10).patient_strata(y, groups)
    for stratum in set(zip(target, size_bin)):
        assert ((target == stratum[0]) & (size_bin == stratum[1])).sum() >= K


# ---------------------------------------------------------------- all splitters


def splitter_cases():
    y, groups = patient_table(seed=15, n_patients=150)
    multilabel = np.c_[y, np.random.default_rng(16).random((len(y), 3)) < 0.3].astype(int)
    return [
        (StratifiedGroupKFold, y, groups),
        (MultilabelStratifiedKFold, multilabel, groups),
        (PatientBalancedKFold, y, groups),
    ]


@pytest.mark.parametrize("case", range(3))
def test_every_splitter_partitions_keeps_groups_and_repeats_for_a_seed(case):
    cls, y, groups = splitter_cases()[case]
    X = np.zeros((len(y), 2))
    fold = folds_of(cls(K, shuffle=True, random_state=4), X, y, groups)
    assert_groups_whole(fold, groups)
    np.testing.assert_array_equal(fold, folds_of(cls(K, shuffle=True, random_state=4), X, y, groups))
    assert any(not np.array_equal(fold, cls(K, shuffle=True, random_state=s).assign(X, y, groups)) for s in range(5, 9))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make",
    [
        lambda: StratifiedGroupKFold(K).assign(np.zeros(12), np.r_[np.zeros(9), np.ones(3)]),  # class of 3 rows
        lambda: StratifiedGroupKFold(K).assign(np.zeros(12), None, np.arange(12) % 4),  # 4 groups
        lambda: StratifiedGroupKFold(K).assign(np.zeros(12), np.r_[np.zeros(11), np.nan]),
        lambda: StratifiedGroupKFold(K).assign(np.zeros(12), np.zeros(12), np.array([None] + [1] * 11)),
        lambda: StratifiedGroupKFold(1).assign(np.zeros(12), np.zeros(12)),
        lambda: StratifiedGroupKFold(K).assign(np.zeros(12), np.zeros(15)),
        lambda: PatientBalancedKFold(K).assign(np.zeros(12), np.zeros(15), np.arange(15)),
        lambda: MultilabelStratifiedKFold(K).assign(np.zeros(20), np.c_[np.ones(20), np.r_[np.ones(4), np.zeros(16)]]),
        lambda: MultilabelStratifiedKFold(K).assign(np.zeros(20), np.c_[np.ones(20), np.r_[np.nan, np.ones(19)]]),
        lambda: MultilabelStratifiedKFold(K).assign(np.zeros(20), np.full((20, 2), 2)),
        lambda: MultilabelStratifiedKFold(K).assign(np.zeros(20), np.full((20, 2), 0.5)),
        lambda: MultilabelStratifiedKFold(K).assign(np.zeros(20), np.ones(20)),
        lambda: PatientBalancedKFold(K).assign(np.zeros(20), np.zeros(20)),  # no groups
        lambda: PatientBalancedKFold(K).assign(np.zeros(20), np.r_[np.ones(3), np.zeros(17)], np.arange(20)),
    ],
)
def test_bad_input_raises_kagglekit_error(make):
    with pytest.raises(KagglekitError):
        make()


def test_error_message_names_the_short_class_and_the_fix():
    with pytest.raises(KagglekitError, match=r"'rare'.*lower n_splits"):
        StratifiedGroupKFold(K).assign(np.zeros(12), np.array(["common"] * 9 + ["rare"] * 3))


# ---------------------------------------------------------------- make_folds / fold_report


def table(seed=12, n=600):
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "image": [f"img{i}" for i in range(n)],
            "label": rng.integers(0, 3, n),
            "source": rng.choice(["TMA", "WSI"], n),
            "patient": rng.integers(0, 120, n),
            "a": rng.integers(0, 2, n),
            "b": (rng.random(n) < 0.2).astype(int),
        }
    )


def test_make_folds_matches_the_splitter_and_keeps_columns():
    df = table()
    out = make_folds(df, K, target="label", stratify=["source"], groups="patient", seed=3)
    assert out.columns == df.columns + ["fold"]
    assert out.drop("fold").equals(df)
    keys = np.stack([df["label"].to_numpy(), df["source"].to_numpy()], axis=1)
    expected = StratifiedGroupKFold(K, shuffle=True, random_state=3).assign(np.zeros(df.height), keys, df["patient"].to_numpy())
    np.testing.assert_array_equal(out["fold"].to_numpy(), expected)


@pytest.mark.parametrize(
    "key",
    [
        pl.date(2024, 1, 1) + pl.duration(days=pl.col("patient") % 4),
        pl.datetime(2024, 1, 1) + pl.duration(hours=pl.col("patient") % 4),
        pl.duration(minutes=pl.col("patient") % 4),
    ],
    ids=["date", "datetime", "duration"],
)
def test_make_folds_stratifies_an_integer_target_with_a_date_key(key):
    """numpy cannot stack int64 with datetime64 keys; each (label, key) pair must still be balanced."""
    df = table().with_columns(key.alias("when"))
    fold = make_folds(df, K, target="label", stratify=["when"], seed=4)["fold"].to_numpy()
    pairs = list(zip(df["label"].to_list(), df["when"].to_list()))
    assert len(set(pairs)) == 12
    for pair in set(pairs):  # brute force: each pair's rows per fold are within 1 of an even share
        rows = np.array([p == pair for p in pairs])
        assert np.abs(np.bincount(fold[rows], minlength=K) - rows.sum() / K).max() < 1
    grouped = make_folds(df, K, target="label", stratify=["when"], groups="patient", seed=4)["fold"].to_numpy()
    assert_groups_whole(grouped, df["patient"].to_numpy())


def test_make_folds_label_list_column_equals_indicator_columns():
    df = table()
    as_list = df.with_columns(
        tags=pl.concat_list(
            pl.when(pl.col("a") == 1).then(pl.lit("a")), pl.when(pl.col("b") == 1).then(pl.lit("b"))
        ).list.drop_nulls()
    )
    from_list = make_folds(as_list, K, labels="tags", seed=1)["fold"].to_numpy()
    from_columns = make_folds(df, K, labels=["a", "b"], seed=1)["fold"].to_numpy()
    np.testing.assert_array_equal(from_list, from_columns)
    report = fold_report(make_folds(as_list, K, labels="tags", seed=1), labels="tags")
    assert report.columns == ["fold", "rows", "tags=a", "tags=b"]
    np.testing.assert_array_equal(report["tags=b"], [df["b"].to_numpy()[from_list == j].sum() for j in range(K)])


def test_make_folds_patient_balanced_keeps_patients_whole():
    df = table()
    fold = make_folds(df, K, target="b", groups="patient", balance_group_sizes=True)["fold"].to_numpy()
    assert_groups_whole(fold, df["patient"].to_numpy())


def test_fold_report_counts_match_brute_force():
    df = make_folds(table(), K, target="label", groups="patient", seed=0)
    report = fold_report(df, target="label", groups="patient", labels=["a", "b"])
    fold = df["fold"].to_numpy()
    assert report["fold"].to_list() == list(range(K))
    for j in range(K):
        rows = df.filter(pl.col("fold") == j)
        row = report.row(j, named=True)
        assert row["rows"] == (fold == j).sum()
        assert row["groups"] == len(set(rows["patient"].to_list()))
        for c in range(3):
            assert row[f"label={c}"] == sum(v == c for v in rows["label"].to_list())
        assert row["a"] == sum(rows["a"].to_list()) and row["b"] == sum(rows["b"].to_list())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": "missing"},
        {"groups": "nope"},
        {"labels": ["a", "zzz"]},
        {"labels": "label"},  # not a list column
        {"labels": ["a"], "target": "label"},
        {"target": "label", "balance_group_sizes": True},  # no groups
    ],
)
def test_make_folds_bad_arguments(kwargs):
    with pytest.raises(KagglekitError):
        make_folds(table(), K, **kwargs)


def test_make_folds_rejects_null_target():
    df = table().with_columns(label=pl.when(pl.col("a") == 1).then(None).otherwise(pl.col("label")))
    with pytest.raises(KagglekitError, match="missing"):
        make_folds(df, K, target="label")


# ---------------------------------------------------------------- adversarial validation


@pytest.fixture
def one_openmp_thread():
    """HistGradientBoosting's OpenMP threads slow it 10-20x on a shared 2-core machine."""
    with threadpool_limits(1):
        yield



def test_adversarial_matches_sklearn_cross_val_predict(one_openmp_thread):
    rng = np.random.default_rng(13)
    train, test = rng.normal(size=(300, 4)), rng.normal(size=(200, 4)) + [0.8, 0, 0, 0]
    result = adversarial_validation(train, test, n_splits=4, seed=5)
    x = np.r_[train, test]
    is_test = np.r_[np.zeros(300), np.ones(200)]
    cv = StratifiedKFold(4, shuffle=True, random_state=5)
    expected = cross_val_predict(HistGradientBoostingClassifier(random_state=5), x, is_test, cv=cv, method="predict_proba")[:, 1]
    np.testing.assert_allclose(np.r_[result.train_proba, result.test_proba], expected)
    assert result.auc == pytest.approx(roc_auc_score(is_test, expected))
    assert result.auc > 0.65
    top = result.most_test_like(20)
    assert result.train_proba[top].min() >= np.sort(result.train_proba)[-20]


def test_adversarial_same_distribution_is_near_chance_and_encodes_strings(one_openmp_thread):
    rng = np.random.default_rng(14)

    def frame(n):
        return pl.DataFrame({"x": rng.normal(size=n), "site": rng.choice(["a", "b", "c"], n)})

    result = adversarial_validation(frame(400), frame(400), seed=0)
    assert abs(result.auc - 0.5) < 0.1
    shifted = frame(400).with_columns(site=pl.lit("d"))
    assert adversarial_validation(frame(400), shifted, seed=0).auc > 0.95


def test_adversarial_bad_input():
    with pytest.raises(KagglekitError):
        adversarial_validation(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(KagglekitError):
        adversarial_validation(pl.DataFrame({"x": [1.0] * 10}), pl.DataFrame({"y": [1.0] * 10}))


@pytest.mark.parametrize("make, y, groups", [
    (lambda **kw: StratifiedGroupKFold(n_splits=5, **kw), np.arange(200) % 3, np.arange(200) // 4),
    (lambda **kw: MultilabelStratifiedKFold(n_splits=5, **kw), (np.arange(200)[:, None] % [2, 3, 5] == 0).astype(int), None),
    (lambda **kw: PatientBalancedKFold(n_splits=5, **kw), (np.arange(200) // 4) % 2, np.arange(200) // 4),
])
def test_splitters_take_shuffle_and_random_state_as_scikit_learn_does(make, y, groups):
    """A Kaggler's line works unchanged; random_state without shuffle is refused as scikit-learn's KFold
    refuses it; without shuffle the folds do not change between calls; the splitters run inside
    cross_validate (oracle: sklearn's own loop over the same split)."""
    from sklearn.model_selection import KFold, cross_validate

    from sklearn.multioutput import MultiOutputClassifier

    X = np.random.default_rng(0).normal(size=(200, 3))
    estimator = LogisticRegression() if y.ndim == 1 else MultiOutputClassifier(LogisticRegression())
    seeded = make(shuffle=True, random_state=42)
    again = make(shuffle=True, random_state=42)
    first = [test.tolist() for _, test in seeded.split(X, y, groups)]
    assert first == [test.tolist() for _, test in again.split(X, y, groups)]
    assert [t.tolist() for _, t in make().split(X, y, groups)] == [t.tolist() for _, t in make().split(X, y, groups)]
    assert first != [t.tolist() for _, t in make(shuffle=True, random_state=7).split(X, y, groups)]
    with pytest.raises(ValueError, match="random_state has no effect since shuffle is False") as info:
        list(make(random_state=42).split(X, y, groups))
    with pytest.raises(ValueError, match="random_state has no effect"):
        KFold(5, random_state=42)  # the message mirrors scikit-learn's own
    assert isinstance(info.value, KagglekitError)
    from sklearn.base import clone

    scores = cross_validate(estimator, X, y, groups=groups, cv=seeded)["test_score"]
    plain = [clone(estimator).fit(X[tr], y[tr]).score(X[te], y[te]) for tr, te in seeded.split(X, y, groups)]
    np.testing.assert_allclose(scores, plain)
    assert "shuffle=True" in repr(seeded) and "random_state=42" in repr(seeded)
