"""Issue 14 item 6 and issue 15 item 16: `rlaif report` draws a training report from a real run's
output folder or metrics.jsonl, says clearly when a file is no result it knows (exit 2), and
turns a result with missing fields into one clear error."""
import json
import re

import pytest

from rlaif.cli import main
from rlaif.errors import InputError
from rlaif.report import render, report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from rlaif.train.dpo import train_dpo
    from tests._train_utils import pair_rows, tiny_lm

    d = tmp_path_factory.mktemp("train") / "dpo"
    model, tok = tiny_lm()
    train_dpo(pair_rows(4), model=model, tokenizer=tok, output_dir=str(d), max_steps=3, batch_size=2,
              max_length=64, progress=False, beta=0.2)
    return d


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.parametrize("which", ["folder", "metrics.jsonl", "train_summary.json"])
def test_training_report_from_a_real_run(run_dir, tmp_path, which):
    src = run_dir if which == "folder" else run_dir / which
    out = report(src, tmp_path / "t.html")
    html = (tmp_path / "t.html").read_text()
    assert out["html"].endswith("t.html") and html.startswith("<!DOCTYPE html>")
    for title in ("loss", "reward margin", "preference accuracy", "log-probs", "learning rate", "gradient norm"):
        assert f"<title>{title}" in html, title
    assert html.count("<polyline") >= 6
    assert "Settings" in html and ">beta<" in html and ">0.2<" in html      # the run's own settings
    assert "Training report" in html and "3 steps logged" in html
    assert not re.search(r"<script|src=|href=\"http", html, re.I)


@pytest.mark.slow
@pytest.mark.ci
def test_cli_training_report_and_unknown_kinds(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir / "metrics.jsonl"), "-o", str(tmp_path / "m.html")]) == 0
    capsys.readouterr()
    (tmp_path / "rlaif_stats.json").write_text(json.dumps({"mode": "absolute", "counts": {"pairs": 1}}))
    (tmp_path / "custom.json").write_text(json.dumps({"kind": "custom", "x": 1}))
    (tmp_path / "rows.jsonl").write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    for f, says in (("rlaif_stats.json", "no kind or schema"), ("custom.json", "kind 'custom'"),
                    ("rows.jsonl", "not judged rows")):
        assert main(["report", str(tmp_path / f), "-o", str(tmp_path / "x.html")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a result rlaif can report on" in err and says in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "x.html").exists()


def test_result_with_missing_fields_is_one_clear_error(tmp_path, capsys):
    res = {"kind": "rubric_test", "rubric": {"id": "h@1"}, "judge": "fake/x"}      # no metrics, items ...
    (tmp_path / "r.json").write_text(json.dumps(res))
    with pytest.raises(InputError, match=r"r.json: field '\w+': missing from this rubric-test result"):
        render(tmp_path / "r.json")
    (tmp_path / "e.json").write_text(json.dumps({"schema": "rlaif.eval/1", "settings": {}}))
    assert main(["report", str(tmp_path / "e.json"), "-o", str(tmp_path / "e.html")]) == 2
    err = capsys.readouterr().err
    assert "missing from this eval report" in err and "Traceback" not in err
    assert not (tmp_path / "e.html").exists()
