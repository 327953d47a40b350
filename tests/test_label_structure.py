"""Label structure (exclusive groups, alone labels) in the decisions, against brute force and plain loops.

The expected-F-beta oracle enumerates every label set, keeps the valid ones, and scores each by
enumerating every truth weighted by its probability under independent labels (the expectation
``expected_fbeta_decision`` documents). The threshold oracle applies the rules row by row in Python.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kagglekit.errors import InvalidArgumentError, KagglekitError
from kagglekit.pipeline import PipelineConfigError, classify
from kagglekit.cli import main
from kagglekit.thresholds import Decision, DecisionFileError, LabelStructure, expected_fbeta_decision, read_decision, write_decision

from competitions import colour_logits, read_csv, write_png

RULES = ("exactly_one", "at_most_one")


def is_valid(chosen, groups, alone) -> bool:
    """The structure's definition, spelled out on one set (a tuple of 0/1)."""
    for labels, rule in groups:
        count = sum(chosen[i] for i in labels)
        if count > 1 or (rule == "exactly_one" and count != 1):
            return False
    return not any(chosen[a] for a in alone) or sum(chosen) == 1


def brute_force(p, beta, empty_fbeta, groups, alone):
    """(best expected F-beta over valid sets, {valid set: its expected F-beta}); truths from independent labels."""
    m = len(p)
    sets = list(itertools.product([0, 1], repeat=m))
    weight = [np.prod([p[k] if t[k] else 1 - p[k] for k in range(m)]) for t in sets]
    values = {}
    for chosen in sets:
        if not is_valid(chosen, groups, alone):
            continue
        total = 0.0
        for truth, w in zip(sets, weight):
            tp = sum(c and t for c, t in zip(chosen, truth))
            denominator = beta**2 * sum(truth) + sum(chosen)
            total += w * (empty_fbeta if denominator == 0 else (1 + beta**2) * tp / denominator)
        values[chosen] = total
    return max(values.values()), values


def random_structure(rng, m):
    """Disjoint groups with random rules, and alone labels where they can be chosen (inside the only
    exactly_one group, or anywhere when there is none)."""
    labels = rng.permutation(m).tolist()
    groups, start = [], 0
    for _ in range(rng.integers(0, 3)):
        size = int(rng.integers(2, 4))
        if start + size > m:
            break
        groups.append((labels[start : start + size], RULES[int(rng.integers(2))]))
        start += size
    exactly = [g for g, rule in groups if rule == "exactly_one"]
    if len(exactly) > 1:
        candidates = []
    elif exactly:
        candidates = exactly[0][:-1]  # not all of the group: a group of alone labels only is refused
    else:
        candidates = list(range(m))
    alone = [a for a in candidates if rng.random() < 0.3]
    return groups, alone


def probability_rows(rng, m, n):
    P = rng.beta(0.5, 0.8, size=(n, m))
    P[0, : m // 2] = np.round(P[0, : m // 2], 1)  # ties and exact 0 / 1
    P[1] = 0.0
    P[2] = 1.0
    P[3, : m // 2] = 0.5
    return P


@pytest.mark.parametrize("beta, empty_fbeta", [(0.5, 1.0), (1.0, 0.0), (2.0, 1.0), (2.0, 0.0)])
def test_the_structured_expected_fbeta_decision_equals_brute_force_over_every_valid_set(beta, empty_fbeta):
    rng = np.random.default_rng(int(10 * beta + empty_fbeta))
    planet = (8, [(list(range(4)), "exactly_one")], [3])  # weather: exactly one, "cloudy" alone
    cases = [planet, (5, [], [0]), (7, [([0, 1], "at_most_one"), ([2, 3, 4], "at_most_one")], [5]), (6, [], [])]
    cases += [(m, *random_structure(rng, m)) for m in (3, 4, 5, 6, 7, 8) for _ in range(4)]
    for m, groups, alone in cases:
        P = probability_rows(rng, m, 6)
        result = expected_fbeta_decision(P, beta, empty_fbeta, structure=LabelStructure(groups, alone))
        for row, chosen, value in zip(P, result.labels, result.expected_fbeta):
            best, values = brute_force(row, beta, empty_fbeta, groups, alone)
            ours = tuple(int(c) for c in chosen)
            assert ours in values, (groups, alone, row, ours)  # valid
            assert abs(values[ours] - best) <= 1e-12 and abs(value - best) <= 1e-12


def test_class_names_and_indices_give_the_same_decision_and_no_structure_is_the_plain_one():
    rng = np.random.default_rng(1)
    P = rng.random((40, 6))
    names = ["clear", "haze", "cloudy", "primary", "water", "road"]
    by_name = LabelStructure([(["clear", "haze", "cloudy"], "exactly_one")], ["cloudy"])
    by_index = LabelStructure([([0, 1, 2], "exactly_one")], [2])
    a = expected_fbeta_decision(P, 2.0, structure=by_name, classes=names)
    b = expected_fbeta_decision(P, 2.0, structure=by_index, chunk=7)
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.expected_fbeta, b.expected_fbeta, rtol=1e-15)
    plain, empty = expected_fbeta_decision(P, 2.0), expected_fbeta_decision(P, 2.0, structure=LabelStructure())
    assert np.array_equal(plain.labels, empty.labels) and np.array_equal(plain.expected_fbeta, empty.expected_fbeta)


def enforce_by_loop(chosen, P, groups, alone):
    """The threshold rules written plainly, one row at a time."""
    out = []
    for row, p in zip(chosen.tolist(), P.tolist()):
        row = list(row)
        for labels, rule in groups:
            passing = [i for i in labels if row[i]]
            keep = max(passing, key=lambda i: p[i]) if passing else None  # max keeps the first of equal ones
            if keep is None and rule == "exactly_one":
                keep = max(labels, key=lambda i: p[i])
            for i in labels:
                row[i] = i == keep
        chosen_alone = [a for a in alone if row[a]]
        if chosen_alone:
            keep = max(chosen_alone, key=lambda a: p[a])
            row = [i == keep for i in range(len(row))]
        out.append(row)
    return np.array(out, dtype=bool)


@pytest.mark.parametrize("kind", ["threshold", "per_class"])
def test_threshold_decisions_with_a_structure_equal_a_plain_loop(kind):
    rng = np.random.default_rng(2)
    for m in (4, 6, 9):
        for _ in range(5):
            groups, alone = random_structure(rng, m)
            P = rng.random((200, m))
            P[:20] = np.round(P[:20], 1)
            cut = {"threshold": float(rng.uniform(0.2, 0.8))} if kind == "threshold" else {
                "thresholds": tuple(rng.uniform(0.1, 0.9, m).tolist())}
            decision = Decision(kind, structure=LabelStructure(groups, alone), **cut)
            raw = P >= np.asarray(cut.get("threshold", cut.get("thresholds")))
            expected = enforce_by_loop(raw, P, groups, alone)
            assert np.array_equal(decision.apply(P), expected)
            assert all(is_valid(tuple(r), groups, alone) for r in expected.astype(int).tolist())


def test_a_structured_decision_round_trips_and_old_files_still_read(tmp_path):
    structure = LabelStructure([(["a", "b", "c"], "exactly_one"), (["d", "e"], "at_most_one")], ["c"])
    decision = Decision("per_class", thresholds=(0.2, 0.3, 0.4, 0.5, 0.6), classes=("a", "b", "c", "d", "e"),
                        structure=structure)
    assert read_decision(write_decision(decision, tmp_path / "s.json")) == decision
    old = tmp_path / "old.json"  # a format-1 file, as written before label structure and repeats
    old.write_text('{"format": 1, "kind": "threshold", "threshold": 0.3, "thresholds": null, "beta": 2.0, '
                   '"other_cut": null, "other": "Other", "temperature": 1.0, "classes": null, "score": 0.7}')
    assert read_decision(old) == Decision("threshold", threshold=0.3, beta=2.0, score=0.7)
    plain = write_decision(Decision("threshold", threshold=0.3, beta=2.0, score=0.7), tmp_path / "plain.json")
    assert plain.read_text() == write_decision(read_decision(old), tmp_path / "again.json").read_text()
    assert '"format": 1' in plain.read_text() and "structure" not in plain.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 2, "kind": "threshold", "threshold": 0.3, "structure": {"groups": [{"labels": ["a"], '
                   '"rule": "exactly_one"}]}}')
    with pytest.raises(DecisionFileError) as info:
        read_decision(bad)
    assert str(info.value).count("group 0 has 1 label") == 1 and str(bad) in str(info.value)


@pytest.mark.parametrize("make, words", [
    (lambda: LabelStructure([(["a", "b"], "exactly_two")]), "unknown rule of group 0 'exactly_two'"),
    (lambda: LabelStructure([(["a"], "exactly_one")]), "group 0 has 1 label"),
    (lambda: LabelStructure([(["a", "b", "a"], "at_most_one")]), "group 0 repeats ['a']"),
    (lambda: LabelStructure([], [1.5]), "alone holds 1.5"),
    (lambda: LabelStructure([(["a", "b"], "exactly_one")]).bind(["a", "bb"]), "['b'] not among the 2 columns"),
    (lambda: LabelStructure([(["a", "b"], "exactly_one")]).bind(m=2), "no classes= were given"),
    (lambda: LabelStructure([([0, 7], "exactly_one")]).bind(m=3), "['7'] not among the 3 columns"),
    (lambda: LabelStructure([(["a", "b"], "at_most_one"), (["b", "c"], "at_most_one")]).bind(["a", "b", "c"]),
     "label 'b' is in groups 0 and 1"),
    (lambda: LabelStructure([(["a", "b"], "exactly_one")], ["c"]).bind(["a", "b", "c"]), "alone label 'c' can never be"),
    (lambda: LabelStructure([(["a", "b"], "exactly_one")], ["a", "b"]).bind(["a", "b"]), "alone labels only"),
    (lambda: Decision("argmax", structure=LabelStructure([], [0])), "argmax already writes one label"),
    (lambda: Decision("threshold", threshold=0.5, classes=("a", "b"), structure=LabelStructure([], ["z"])),
     "['z'] not among"),
])
def test_structure_mistakes_are_named_once(make, words):
    with pytest.raises(InvalidArgumentError) as info:
        make()
    assert str(info.value).count(words) == 1 and isinstance(info.value, KagglekitError)


# -- classify with [decision] groups / alone, on closed-form models -------------------------------------------

WEATHER = ["clear", "cloudy", "haze", "primary", "water"]  # ColourLogits: class k reads channel k % 3
COLOURS = {"a": (250, 30, 20), "b": (200, 190, 40), "c": (10, 200, 240), "d": (128, 128, 128), "e": (90, 220, 200),
           "f": (20, 20, 20)}
GROUPS = [{"labels": ["clear", "cloudy", "haze"], "rule": "exactly_one"}]


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.fixture()
def weather(tmp_path):
    from kagglekit.models import create, save_checkpoint

    (tmp_path / "test").mkdir()
    for i, colour in COLOURS.items():
        write_png(tmp_path / "test" / f"{i}.png", np.full((24, 24, 3), colour, np.uint8))
    (tmp_path / "sample_submission.csv").write_text("id,tags\n" + "".join(f"{i},x\n" for i in COLOURS))
    save_checkpoint(create("kagglekit/test_pipeline_colour", num_classes=5), tmp_path / "m.safetensors", classes=WEATHER)
    return tmp_path


def run_weather(tmp_path, decision: dict) -> dict:
    cfg = {"kind": "classify", "models": [{"path": "m.safetensors"}], "preprocess": {"size": 16}, "num_workers": 0,
           "decision": decision, "output": {"label_column": "tags"}}
    classify(cfg, tmp_path, tmp_path / "out", base_dir=tmp_path)
    return {r["id"]: r["tags"].split() for r in read_csv(tmp_path / "out" / "submission.csv")}


def probabilities():
    return np.array([sigmoid(colour_logits(c, 5)) for c in COLOURS.values()])


@pytest.mark.parametrize("decision", [
    {"kind": "threshold", "value": 0.3, "groups": GROUPS, "alone": ["cloudy"]},
    {"kind": "threshold", "value": 0.6, "groups": [{"labels": ["primary", "water"], "rule": "at_most_one"}]},
    {"kind": "expected_fbeta", "beta": 2.0, "groups": GROUPS, "alone": ["cloudy"]},
])
def test_classify_writes_label_sets_that_respect_the_structure(weather, decision):
    rows = run_weather(weather, decision)
    P = probabilities()
    groups = [([WEATHER.index(n) for n in g["labels"]], g["rule"]) for g in decision["groups"]]
    alone = [WEATHER.index(n) for n in decision.get("alone", [])]
    structure = LabelStructure([(g["labels"], g["rule"]) for g in decision["groups"]], decision.get("alone", ()))
    expected = Decision(decision["kind"], threshold=decision.get("value"), beta=decision.get("beta", 1.0),
                        classes=tuple(WEATHER), structure=structure).apply(P)
    if decision["kind"] == "threshold":
        assert np.array_equal(expected, enforce_by_loop(P >= decision["value"], P, groups, alone))
    else:  # the grey images tie every label: any best set is right, the brute force checks its value
        for p, chosen in zip(P, expected.astype(int).tolist()):
            best, values = brute_force(p, 2.0, 1.0, groups, alone)
            assert abs(values[tuple(chosen)] - best) <= 1e-12
    assert rows == {i: [WEATHER[k] for k in np.flatnonzero(e)] for i, e in zip(COLOURS, expected)}
    assert all(is_valid(tuple(e), groups, alone) for e in expected.astype(int).tolist())


def test_classify_reads_the_structure_from_a_decision_file(weather):
    structure = LabelStructure([(["clear", "cloudy", "haze"], "exactly_one")], ["cloudy"])
    thresholds = (0.4, 0.3, 0.5, 0.6, 0.2)
    write_decision(Decision("per_class", thresholds=thresholds, classes=tuple(WEATHER), structure=structure),
                   weather / "decision.json")
    rows = run_weather(weather, {"file": "decision.json"})
    P = probabilities()
    expected = enforce_by_loop(P >= np.array(thresholds), P, [([0, 1, 2], "exactly_one")], [1])
    assert rows == {i: [WEATHER[k] for k in np.flatnonzero(e)] for i, e in zip(COLOURS, expected)}
    with pytest.raises(PipelineConfigError, match="holds a label structure already; give it in one place"):
        run_weather(weather, {"file": "decision.json", "alone": ["cloudy"]})


@pytest.mark.parametrize("decision, words", [
    ({"kind": "argmax", "alone": ["cloudy"]}, "decision.alone: a label structure goes with kind = 'threshold'"),
    ({"kind": "threshold", "groups": [{"labels": ["clear", "haze"], "rule": "one"}]},
     "decision.groups[0].rule: must be one of ['exactly_one', 'at_most_one']"),
    ({"kind": "threshold", "groups": [{"labels": ["clear", "haze"], "rule": "exactly_one", "size": 2}]},
     "decision.groups[0]: unknown key(s) ['size']"),
    ({"kind": "threshold", "groups": GROUPS, "alone": ["water"]}, "decision.groups: label structure: alone label 'water'"),
    ({"kind": "threshold", "groups": [{"labels": ["clear", "cloudy"], "rule": "exactly_one"},
                                      {"labels": ["cloudy", "haze"], "rule": "at_most_one"}]}, "label 'cloudy' is in groups"),
    ({"kind": "threshold", "groups": [{"labels": ["clear", "cloudyy"], "rule": "exactly_one"}]}, "['cloudyy'] not among"),
])
def test_config_mistakes_are_named_once(weather, decision, words):
    with pytest.raises(PipelineConfigError) as info:
        run_weather(weather, decision)
    assert str(info.value).count(words) == 1


def test_check_names_a_label_that_is_not_a_class(weather, capsys):
    toml = weather / "classify.toml"
    toml.write_text('kind = "classify"\nnum_workers = 0\n[[models]]\npath = "m.safetensors"\n[preprocess]\nsize = 16\n'
                    '[decision]\nkind = "threshold"\nalone = ["cloudy"]\n'
                    '[[decision.groups]]\nlabels = ["clear", "cloudy", "hazy"]\nrule = "exactly_one"\n'
                    '[output]\nlabel_column = "tags"\n')
    assert main(["classify", str(toml), "--input", str(weather), "--check"]) == 1
    out = capsys.readouterr().out
    assert out.count("problem: label structure: decision: label structure: ['hazy'] not among the 5 columns") == 1
    toml.write_text(toml.read_text().replace('"hazy"', '"haze"'))
    assert main(["classify", str(toml), "--input", str(weather), "--check"]) == 0
    assert "label structure: 1 group(s), alone ['cloudy']: every label is one of the 5 classes" in capsys.readouterr().out
