"""Every shipped rubric loads, lints clean and renders in every mode; lint reports every problem at once."""
from __future__ import annotations

from pathlib import Path

import pytest

from rlaif.errors import RubricError, TemplateError
from rlaif.judge import build_messages
from rlaif.rubrics import lint, list_rubrics, load_rubric, sample_row
from rlaif.templates import default_dir

SHIPPED = sorted(p.stem for p in default_dir("rubrics").glob("*.yaml"))
REQUIRED = {"helpfulness", "harmlessness", "honesty", "over_refusal", "conciseness", "instruction_following"}


def test_the_required_rubrics_ship():
    assert REQUIRED <= set(SHIPPED)
    assert set(SHIPPED) <= set(list_rubrics())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_rubric_lints_clean_and_renders_every_mode(name):
    rubric = load_rubric(name)
    assert lint(rubric.source) == []
    assert {"absolute", "pairwise"} <= set(rubric.modes)
    assert rubric.id.startswith(f"{name}@") and len(rubric.hash) == 10
    for mode in rubric.modes:
        row = sample_row(rubric, mode)
        for generative in (False, True):
            for ci in range(len(rubric.criteria)):
                msgs = build_messages(rubric, mode, row, generative=generative, criterion=ci)
                assert msgs[-1]["role"] == "user"
                text = "\n".join(m["content"] for m in msgs)
                assert row["prompt"] in text
                assert rubric.criteria[ci].name in text
                if mode == "absolute":
                    assert row["response"] in text
                if mode == "pairwise":
                    assert row["response_a"] in text and row["response_b"] in text
                if rubric.reference != "none":
                    assert row["reference"] in text
                assert ("Score: N" in text or "Better: A" in text or "Ranking:" in text) == generative


def test_pairwise_swap_exchanges_the_responses():
    r = load_rubric("helpfulness")
    row = {"prompt": "p", "response_a": "FIRST-TEXT", "response_b": "SECOND-TEXT"}
    plain = build_messages(r, "pairwise", row)[-1]["content"]
    swapped = build_messages(r, "pairwise", row, swap=True)[-1]["content"]
    assert plain.index("FIRST-TEXT") < plain.index("SECOND-TEXT")
    assert swapped.index("SECOND-TEXT") < swapped.index("FIRST-TEXT")


BAD = """\
name: bad rubric
description: ""
scale: {min: 5, max: 1}
criteria:
  - name: x
    levels: {1: ""}
    weight: -1
modes: [absolute, sideways]
colour: blue
"""


def test_lint_lists_every_problem_with_its_location(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    problems = [str(x) for x in lint(p)]
    joined = "\n".join(problems)
    for where in ("name", "description", "scale", "criteria.0.weight", "criteria.0.levels", "modes.1", "colour"):
        assert f": {where}:" in joined, (where, joined)
    assert len(problems) >= 7
    assert all(x.startswith(str(p)) for x in problems)


def test_cross_field_problems_are_all_reported(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: r\ndescription: d\nscale: {min: 1, max: 5}\ncriteria:\n  - name: c\n    levels: {1: a, 9: b}\n"
                 "modes: [absolute, rank]\ntemplates: {absolute: absolute.j2}\nlabels: {refused: 7}\n")
    joined = "\n".join(map(str, lint(p)))
    assert "criteria.0.levels.9" in joined and "mode 'rank'" in joined and "labels.refused" in joined


def test_cli_lint_exit_code_and_output(tmp_path, capsys):
    from rlaif.cli import main

    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    assert main(["rubric", "lint", str(p)]) == 1
    out = capsys.readouterr().out
    assert "problem(s)" in out and "colour" in out
    assert main(["rubric", "lint", "helpfulness", "over_refusal"]) == 0


def test_template_variable_the_row_cannot_supply_is_a_lint_error(tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "mine.j2").write_text("{% block user %}{{ prompt }} {{ response }} {{ respones_typo }}{% endblock %}")
    r = tmp_path / "r.yaml"
    r.write_text("name: r\ndescription: d\nscale: {min: 1, max: 3}\ncriteria:\n  - name: c\n    levels: {1: a, 3: b}\n"
                 "modes: [absolute]\ntemplates: {absolute: mine.j2}\n")
    problems = "\n".join(map(str, lint(r, prompts_dirs=[prompts])))
    assert "respones_typo" in problems


def test_missing_template_and_syntax_error_are_lint_errors(tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "broken.j2").write_text("{% block user %}{{ prompt }{% endblock %}")
    r = tmp_path / "r.yaml"
    r.write_text("name: r\ndescription: d\nscale: {min: 1, max: 3}\ncriteria:\n  - name: c\n    levels: {1: a, 3: b}\n"
                 "modes: [absolute, pairwise]\ntemplates: {absolute: broken.j2, pairwise: nope.j2}\n")
    problems = "\n".join(map(str, lint(r, prompts_dirs=[prompts])))
    assert "nope.j2" in problems and "not found" in problems


def test_reference_required_but_not_shown_is_a_lint_error(tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "noref.j2").write_text("{% block user %}{{ prompt }} {{ response }}{% endblock %}")
    r = tmp_path / "r.yaml"
    r.write_text("name: r\ndescription: d\nscale: {min: 1, max: 3}\ncriteria:\n  - name: c\n    levels: {1: a, 3: b}\n"
                 "modes: [absolute]\nreference: required\ntemplates: {absolute: noref.j2}\n")
    assert "never shows it" in "\n".join(map(str, lint(r, prompts_dirs=[prompts])))


def test_hash_covers_the_templates(tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    t = prompts / "t.j2"
    t.write_text("{% block user %}{{ prompt }} {{ response }} v1{% endblock %}")
    r = tmp_path / "r.yaml"
    r.write_text("name: r\ndescription: d\nscale: {min: 1, max: 3}\ncriteria:\n  - name: c\n    levels: {1: a, 3: b}\n"
                 "modes: [absolute]\ntemplates: {absolute: t.j2}\n")
    h1 = load_rubric(r, prompts_dirs=[prompts]).hash
    from rlaif.templates import _environment
    t.write_text("{% block user %}{{ prompt }} {{ response }} v2{% endblock %}")
    _environment.cache_clear()
    h2 = load_rubric(r, prompts_dirs=[prompts]).hash
    assert h1 != h2


def test_unknown_rubric_names_the_known_ones():
    with pytest.raises(RubricError) as e:
        load_rubric("no_such_rubric")
    assert "helpfulness" in str(e.value)


def test_user_rubric_dir_is_searched_first(tmp_path):
    d = tmp_path / "rubrics"
    d.mkdir()
    (d / "helpfulness.yaml").write_text(Path(load_rubric("conciseness").source).read_text().replace(
        "name: conciseness", "name: helpfulness"))
    assert load_rubric("helpfulness", rubrics_dirs=[d]).source == str(d / "helpfulness.yaml")
