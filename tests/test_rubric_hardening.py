"""Rubric validation and lint hardening (issue 15: defects 3, 27) and a property-based loader test."""
from __future__ import annotations

import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlaif.errors import RubricError
from rlaif.rubrics import lint, load_rubric, parse_rubric

BASE = textwrap.dedent("""\
    name: t
    description: test
    scale: {min: 1, max: 5}
    criteria:
      - name: a
        weight: WEIGHT
        levels: {1: bad, 5: good}
      - name: b
        weight: 1
        levels: {1: bad, 5: good}
    """)


@pytest.mark.parametrize("weight", [".inf", "-.inf", ".nan", "1e308", "0", "-1"])
def test_weight_must_be_finite_positive_and_bounded(weight):
    with pytest.raises(RubricError) as e:
        parse_rubric(BASE.replace("WEIGHT", weight))
    assert "criteria.0.weight" in str(e.value)


def test_ordinary_weights_pass():
    r = parse_rubric(BASE.replace("WEIGHT", "2.5"))
    assert [c.weight for c in r.criteria] == [2.5, 1.0]


def test_lint_reports_every_problem_at_once(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(textwrap.dedent("""\
        name: t
        description: test
        scale: {min: 1, max: 5}
        modes: [absolute, pairwise]
        templates: {absolute: does_not_exist.j2}
        labels: {low: 0, high: 9}
        criteria:
          - name: a
            weight: -1
            levels: {1: bad, 7: good}
          - name: a
            levels: {1: bad, 5: good}
        """))
    text = "\n".join(map(str, lint(p)))
    for needle in ("criteria.0.weight", "level 7 is outside", "labels.low", "labels.high",
                   "criterion names must be unique", "mode 'pairwise' is listed in modes but has no template",
                   "does_not_exist.j2"):
        assert needle in text, (needle, text)


def test_duplicate_yaml_key_in_rubric(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(BASE.replace("WEIGHT", "1") + "description: again\n")
    with pytest.raises(RubricError, match="given twice"):
        load_rubric(p)
    assert any("given twice" in str(x) for x in lint(p))


def test_rubric_file_not_utf8_or_folder(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_bytes(BASE.replace("WEIGHT", "1").encode().replace(b"test", b"t\xe9st"))
    with pytest.raises(RubricError, match="not UTF-8"):
        load_rubric(p)
    assert "not UTF-8" in str(lint(p)[0])
    d = tmp_path / "dir.yaml"
    d.mkdir()
    with pytest.raises(RubricError, match="folder"):
        load_rubric(d)
    assert "folder" in str(lint(d)[0])


_yaml_scalar = st.one_of(st.integers(-3, 9), st.floats(allow_nan=True), st.text(max_size=8), st.none(), st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(weight=_yaml_scalar, lo=_yaml_scalar, hi=_yaml_scalar, level=_yaml_scalar, name2=st.sampled_from(["a", "b", ""]),
       label=_yaml_scalar, mode=st.sampled_from(["absolute", "pairwise", "rank", "bogus"]))
def test_loader_gives_a_rubric_or_a_rubric_error(weight, lo, hi, level, name2, label, mode):
    import json
    doc = {"name": "t", "description": "d", "scale": {"min": lo, "max": hi}, "modes": [mode],
           "labels": {"x": label},
           "criteria": [{"name": "a", "weight": weight, "levels": {json.dumps(level): "x"}},
                        {"name": name2, "levels": {"1": "y"}}]}
    import yaml
    text = yaml.safe_dump(doc)
    try:
        r = parse_rubric(text)
    except RubricError as e:
        assert e.problems and all(str(p) for p in e.problems)
        return
    import math
    assert all(math.isfinite(c.weight) and c.weight > 0 for c in r.criteria)
    assert r.scale.min < r.scale.max
