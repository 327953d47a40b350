"""SubmissionGuard: the file on disk is a valid submission before, during and after failures."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from kagglekit.errors import InvalidArgumentError, SubmissionError
from kagglekit.kaggle.submission import SubmissionGuard

IDS = ["007", "010", "123", "200", "999", "a-1"]


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample_submission.csv"
    path.write_text("id,rle,score\n" + "".join(f"{i},,0.5\n" for i in IDS))
    return path


def read_rows(path):
    """The rows as the csv module reads them, blank lines skipped."""
    with open(path, newline="") as f:
        return [row for row in csv.reader(f) if row]


def assert_valid(path, sample_path):
    """Oracle written plainly with the csv module: same header, every sample id exactly once."""
    rows, expected = read_rows(path), read_rows(sample_path)
    assert rows[0] == expected[0]
    ids = [r[0] for r in rows[1:]]
    assert sorted(ids) == sorted(r[0] for r in expected[1:]) and len(ids) == len(set(ids))
    assert all(len(r) == len(rows[0]) for r in rows)
    assert all(r[2] not in ("", "NaN", "nan") for r in rows[1:])


def predictions(tag):
    return {"id": IDS[::-1], "rle": [f"1 {k + 1}" for k in range(len(IDS))], "score": [float(tag)] * len(IDS)}


def test_fallback_is_written_on_entry_with_ids_verbatim(sample, tmp_path):
    target = tmp_path / "out" / "submission.csv"
    with SubmissionGuard(target, sample, fill={"score": 0.25}):
        assert_valid(target, sample)
        rows = read_rows(target)
        assert [r[0] for r in rows[1:]] == IDS  # "007" stays "007"
        assert {r[1] for r in rows[1:]} == {""} and {r[2] for r in rows[1:]} == {"0.25"}


def test_exception_mid_run_keeps_the_last_valid_file(sample, tmp_path):
    target = tmp_path / "submission.csv"
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        with SubmissionGuard(target, sample) as guard:
            guard.commit(predictions(1))
            raise RuntimeError("CUDA out of memory")
    assert_valid(target, sample)
    assert {r[2] for r in read_rows(target)[1:]} == {"1.0"}
    with pytest.raises(ValueError):
        with SubmissionGuard(target, sample):
            raise ValueError("boom")
    assert_valid(target, sample)  # the fallback
    assert {r[1] for r in read_rows(target)[1:]} == {""}


def test_suppress_errors_ends_normally_with_the_fallback(sample, tmp_path, capsys):
    target = tmp_path / "submission.csv"
    with SubmissionGuard(target, sample, suppress_errors=True):
        raise KeyError("missing model")
    assert_valid(target, sample)
    assert "keeps the fallback submission" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):  # only Exception subclasses are swallowed
        with SubmissionGuard(target, sample, suppress_errors=True):
            raise KeyboardInterrupt


def test_kill_between_write_and_rename_leaves_the_previous_file(sample, tmp_path):
    target = tmp_path / "submission.csv"
    script = textwrap.dedent(
        f"""
        import os, signal
        from kagglekit.kaggle.submission import SubmissionGuard
        guard = SubmissionGuard({str(target)!r}, {str(sample)!r}).__enter__()
        guard.commit({predictions(1)!r})
        os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)  # dies right before the rename
        guard.commit({predictions(2)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert_valid(target, sample)
    assert {r[2] for r in read_rows(target)[1:]} == {"1.0"}
    leftovers = list(tmp_path.glob(".submission.csv.*.tmp"))
    assert len(leftovers) == 1 and "2.0" in leftovers[0].read_text()  # the new file was fully written
    with SubmissionGuard(target, sample):
        assert not list(tmp_path.glob(".submission.csv.*.tmp"))
        assert_valid(target, sample)


def test_interrupt_during_rename_keeps_the_file_and_cleans_up(sample, tmp_path, monkeypatch):
    target = tmp_path / "submission.csv"
    with SubmissionGuard(target, sample) as guard:
        guard.commit(predictions(1))

        def interrupted(src, dst):
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            guard.commit(predictions(2))
    monkeypatch.undo()
    assert_valid(target, sample)
    assert {r[2] for r in read_rows(target)[1:]} == {"1.0"}
    assert not list(tmp_path.glob(".submission.csv.*.tmp"))


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d.update(id=IDS[:-1] + ["010"]), ["duplicated ids: '010'", "missing ids: 'a-1'"]),
        (lambda d: d.update(id=IDS[:-1] + ["zzz"]), ["unknown ids (not in the sample submission): 'zzz'", "'a-1'"]),
        (lambda d: d.update(score=[float("nan")] + [0.1] * 5), ["null, NaN or infinite value in column 'score' for ids: '007'"]),
        (lambda d: d.update(score=[0.1, float("inf"), float("-inf")] + [0.1] * 3), ["in column 'score' for ids: '010', '123'"]),
        (lambda d: d.update(rle=[None] * 6), ["null, NaN or infinite value in column 'rle'", "... (6 in all)"]),
        (lambda d: d.update(rle=[[1, 2]] * 6), ["column 'rle' holds List"]),
        (lambda d: d.update(score=[0.1] * 5), ["different lengths", "'score': 5"]),
        (lambda d: d.pop("score"), ["missing columns: 'score'"]),
        (lambda d: d.update(extra=[1] * 6), ["unexpected columns: 'extra'"]),
        (lambda d: d.update(id=list(range(6))), ["unknown ids", "missing ids: '007'"]),
    ],
)
def test_commit_rejects_invalid_rows_and_keeps_the_file(sample, tmp_path, change, words):
    target = tmp_path / "submission.csv"
    rows = {"id": list(IDS), "rle": [""] * 6, "score": [0.1] * 6}
    change(rows)
    with SubmissionGuard(target, sample) as guard:
        with pytest.raises(SubmissionError) as info:
            guard.commit(rows)
    for w in words:
        assert w in str(info.value)
    assert_valid(target, sample)
    assert not guard.committed


def test_commit_reorders_columns_and_accepts_frames(sample, tmp_path):
    target = tmp_path / "submission.csv"
    frame = pl.DataFrame({"score": [0.9] * 6, "id": IDS, "rle": [""] * 6})
    with SubmissionGuard(target, sample) as guard:
        guard.commit(frame)
    assert read_rows(target)[0] == ["id", "rle", "score"]
    assert_valid(target, sample)


def test_fallback_without_a_sample_defines_the_reference(tmp_path):
    target = tmp_path / "submission.csv"
    fallback = {"image_id": ["x1", "x2"], "label": ["Other", "Other"]}
    with SubmissionGuard(target, fallback=fallback) as guard:
        assert read_rows(target) == [["image_id", "label"], ["x1", "Other"], ["x2", "Other"]]
        with pytest.raises(SubmissionError, match="missing ids: 'x2'"):
            guard.commit({"image_id": ["x1"], "label": ["HGSC"]})
        guard.commit({"image_id": ["x2", "x1"], "label": ["HGSC", "CC"]})
    assert read_rows(target) == [["image_id", "label"], ["x2", "HGSC"], ["x1", "CC"]]


def test_bad_configuration_raises(sample, tmp_path):
    with pytest.raises(InvalidArgumentError, match="sample_submission"):
        SubmissionGuard(tmp_path / "s.csv")
    with pytest.raises(SubmissionError, match="does not exist"):
        SubmissionGuard(tmp_path / "s.csv", tmp_path / "nope.csv")
    with pytest.raises(InvalidArgumentError, match="fill names"):
        SubmissionGuard(tmp_path / "s.csv", sample, fill={"target": 0})
    with pytest.raises(InvalidArgumentError, match="id_column"):
        SubmissionGuard(tmp_path / "s.csv", sample, id_column="image")
    with pytest.raises(SubmissionError, match="null"):  # a fill of None would make the fallback invalid
        with SubmissionGuard(tmp_path / "s.csv", sample, fill={"score": None}):
            pass
    with pytest.raises(InvalidArgumentError, match="polars DataFrame"):
        SubmissionGuard(tmp_path / "s.csv", sample).validate([1, 2])


@pytest.mark.parametrize("blank_lines", [1, 2])
def test_blank_lines_in_the_sample_are_skipped_like_csv_readers_do(tmp_path, blank_lines):
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("id,rle,score\n" + "".join(f"{i},,0.5\n" for i in IDS) + "\n" * blank_lines)
    target = tmp_path / "submission.csv"
    with SubmissionGuard(target, sample) as guard:
        assert read_rows(target) == read_rows(sample)
        guard.commit({"id": IDS, "rle": [""] * 6, "score": [0.1] * 6})
    assert_valid(target, sample)


def test_an_empty_sample_is_a_clear_error(tmp_path):
    (tmp_path / "sample.csv").write_text("")
    with pytest.raises(SubmissionError, match="sample.csv is empty"):
        SubmissionGuard(tmp_path / "submission.csv", tmp_path / "sample.csv")
