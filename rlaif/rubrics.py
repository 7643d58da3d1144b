"""Rubrics: YAML files people write, validated with pydantic, identified by a content hash.

Why pydantic + collect-all: a rubric author should see every problem of a file at once with its
location (`criteria.0.levels.7: level 7 is outside the scale 1..5`), not fix them one run at a time.
Why a hash: every output row records `rubric: "helpfulness@<hash>"`, the hash of the rubric *and*
the templates it renders with, so a dataset says exactly which judging prompt produced it.

Lookup order for `load_rubric("helpfulness")`: a path if it is one, then user dirs
(`--rubrics-dir`, $RLAIF_RUBRICS_PATH, ./rubrics), then the packaged rubrics.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rlaif import templates
from rlaif.errors import InputError, Problem, RubricError, TemplateError
from rlaif.io import parse_yaml, read_text

Mode = Literal["absolute", "pairwise", "rank"]
MODES: tuple[str, ...] = ("absolute", "pairwise", "rank")

# What each mode's template may read. `rubric`, `criterion` and friends come from the rubric;
# the rest from the input row. Anything else a template reads is a lint error.
COMMON_VARS = {"rubric", "criterion", "criteria", "scale", "examples", "reference", "generative", "output_format"}
ROW_VARS = {
    "absolute": {"prompt", "response"},
    "pairwise": {"prompt", "response_a", "response_b"},
    "rank": {"prompt", "responses"},
}


MAX_WEIGHT = 1e6


class Scale(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int
    max: int

    @model_validator(mode="after")
    def _order(self):
        if self.max <= self.min:
            raise ValueError(f"max ({self.max}) must be greater than min ({self.min})")
        if self.max - self.min > 99:
            raise ValueError("a scale of more than 100 points cannot be judged reliably; use at most 100")
        return self

    @property
    def points(self) -> list[int]:
        return list(range(self.min, self.max + 1))


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    # Relative weights: finite, positive, and at most 1e6 so a weighted sum of scores cannot
    # overflow to inf (1e308 twice did, and the verdict became NaN).
    weight: float = Field(default=1.0, gt=0, le=MAX_WEIGHT, allow_inf_nan=False)
    levels: dict[int, str] = Field(min_length=1)

    @field_validator("levels")
    @classmethod
    def _nonempty(cls, v):
        for k, text in v.items():
            if not str(text).strip():
                raise ValueError(f"level {k} has an empty description")
        return v


class Example(BaseModel):
    """A few-shot example shown to the judge: one response and its verdict."""
    model_config = ConfigDict(extra="forbid")
    prompt: str
    response: str | None = None
    response_a: str | None = None
    response_b: str | None = None
    score: int | None = None
    preference: Literal["a", "b"] | None = None
    rationale: str = ""


def _default_modes() -> list[Mode]:
    return ["absolute", "pairwise"]


def _default_templates() -> dict[Mode, str]:
    return {"absolute": "absolute.j2", "pairwise": "pairwise.j2", "rank": "rank.j2"}


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    version: int | str = 1
    description: str = Field(min_length=1)
    scale: Scale
    criteria: list[Criterion] = Field(min_length=1)
    modes: list[Mode] = Field(default_factory=_default_modes, min_length=1)
    # none: the template never sees a reference answer; optional: used when a row has one;
    # required: a row without `reference` is an input error.
    reference: Literal["none", "optional", "required"] = "none"
    # Human label names mapped to scale points, for gold sets with categorical labels
    # (e.g. over-refusal: full_refusal -> 1 ... full_compliance -> 3).
    labels: dict[str, int] | None = None
    examples: list[Example] = Field(default_factory=list)
    templates: dict[Mode, str] = Field(default_factory=_default_templates)

    # set by load_rubric, not by the author
    source: str | None = Field(default=None, exclude=True)
    hash: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self):
        problems = cross_checks(self.model_dump(mode="python"))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def id(self) -> str:
        """`name@hash`, the identity recorded in every output row."""
        return f"{self.name}@{self.hash}" if self.hash else self.name

    def context(self) -> dict:
        """What templates see of the rubric: plain data only (no methods to reach through)."""
        d = self.model_dump(mode="json")
        d["criteria"] = [dict(c, levels={int(k): v for k, v in c["levels"].items()}) for c in d["criteria"]]
        return d


def cross_checks(data: dict) -> list[str]:
    """The checks between fields ("where: what" strings): levels, example scores and labels inside
    the scale, unique criterion names, a template for every mode. Written against the raw YAML data
    and tolerant of wrong types, so they run (and are reported) even when a field is invalid:
    `rubric lint` lists every problem at once, not the next one after each fix."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return problems
    scale = data.get("scale")
    lo: int | None = None
    hi: int | None = None
    if isinstance(scale, dict) and all(isinstance(scale.get(k), int) and not isinstance(scale.get(k), bool)
                                       for k in ("min", "max")):
        lo, hi = scale["min"], scale["max"]
    given = data.get("criteria")
    criteria = given if isinstance(given, list) else []

    def outside(v) -> bool:
        return (lo is not None and hi is not None and isinstance(v, int) and not isinstance(v, bool)
                and not lo <= v <= hi)

    for i, c in enumerate(criteria):
        levels = c.get("levels") if isinstance(c, dict) else None
        for k in levels if isinstance(levels, dict) else ():
            if outside(k):
                problems.append(f"criteria.{i}.levels.{k}: level {k} is outside the scale {lo}..{hi}")
    modes = data.get("modes", ["absolute", "pairwise"])
    tmpl = data.get("templates", {"absolute": "absolute.j2", "pairwise": "pairwise.j2", "rank": "rank.j2"})
    if isinstance(modes, list) and isinstance(tmpl, dict):
        for m in modes:
            if isinstance(m, str) and m in MODES and m not in tmpl:
                problems.append(f"templates: mode '{m}' is listed in modes but has no template")
    for i, ex in enumerate(data.get("examples") or [] if isinstance(data.get("examples"), list) else []):
        if isinstance(ex, dict) and outside(ex.get("score")):
            problems.append(f"examples.{i}.score: {ex['score']} is outside the scale {lo}..{hi}")
    labels = data.get("labels")
    for label, v in (labels.items() if isinstance(labels, dict) else ()):
        if outside(v):
            problems.append(f"labels.{label}: {v} is outside the scale {lo}..{hi}")
    names = [c["name"] for c in criteria if isinstance(c, dict) and isinstance(c.get("name"), str)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"criteria: criterion names must be unique ({', '.join(map(repr, dupes))} given twice)")
    return problems


def _problems_from_validation(err: ValidationError, source: str) -> list[Problem]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        # model-level validators pack several problems into one message
        for part in msg.split("; "):
            if (": " in part and part.split(": ", 1)[0].replace(".", "").replace("_", "").isalnum()
                    and loc == "(top level)"):
                where, what = part.split(": ", 1)
                out.append(Problem(f"{source}: {where}", what))
            else:
                out.append(Problem(f"{source}: {loc}", part))
    return out


def find_rubric(name: str, extra_dirs: list[str | Path] | None = None) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise RubricError([Problem(str(p), "file not found")], source=str(p))
        return p
    dirs = templates.search_path("rubrics", extra_dirs)
    for d in dirs:
        for ext in (".yaml", ".yml"):
            if (d / f"{name}{ext}").exists():
                return d / f"{name}{ext}"
    known = sorted({f.stem for d in dirs if d.is_dir() for f in d.glob("*.y*ml")})
    raise RubricError([Problem(name, f"unknown rubric; known: {', '.join(known)} "
                                     f"(searched {', '.join(map(str, dirs))})")],
                      source=name)


def list_rubrics(extra_dirs: list[str | Path] | None = None) -> list[str]:
    return sorted({f.stem for d in templates.search_path("rubrics", extra_dirs) if d.is_dir()
                   for f in d.glob("*.y*ml")})


def parse_rubric(text: str, source: str = "<string>", prompts_dirs: list | None = None) -> Rubric:
    """Validate rubric YAML text; raises RubricError listing every problem."""
    try:
        data = parse_yaml(text, source)          # duplicate keys are an error, not the last value
    except InputError as e:
        where = f"{source}:{e.line}" if e.line else source
        raise RubricError([Problem(where, str(e).split(": ", 1)[1] if e.line else str(e))], source=source) from None
    if not isinstance(data, dict):
        raise RubricError([Problem(source, "a rubric must be a YAML mapping (name:, description:, scale:, criteria:)")],
                          source=source)
    try:
        rubric = Rubric.model_validate(data)
    except ValidationError as e:
        # Field errors stop pydantic before the model-level checks: run those on the raw data too,
        # and look for the templates, so every problem is reported in one go.
        problems = _problems_from_validation(e, source)
        seen = {str(p) for p in problems}
        for part in cross_checks(data):
            where, what = part.split(": ", 1)
            p = Problem(f"{source}: {where}", what)
            if str(p) not in seen:
                problems.append(p)
        problems += _missing_templates(data, source, prompts_dirs)
        raise RubricError(problems, source=source) from None
    rubric.source = source
    # Templates are part of the rubric's identity: hash them too.
    h = hashlib.sha256(json.dumps(rubric.model_dump(mode="json"), sort_keys=True).encode())
    problems = []
    for mode in rubric.modes:
        try:
            src, _ = templates.template_source(rubric.templates[mode], prompts_dirs)
            h.update(mode.encode() + b"\0" + src.encode())
        except TemplateError as e:
            problems.append(Problem(f"{source}: templates.{mode}", str(e)))
    if problems:
        raise RubricError(problems, source=source)
    rubric.hash = h.hexdigest()[:10]
    return rubric


def _missing_templates(data: dict, source: str, prompts_dirs) -> list[Problem]:
    """Templates a (possibly invalid) rubric names that cannot be found."""
    tmpl = data.get("templates", {"absolute": "absolute.j2", "pairwise": "pairwise.j2", "rank": "rank.j2"})
    modes = data.get("modes", ["absolute", "pairwise"])
    out = []
    if isinstance(tmpl, dict) and isinstance(modes, list):
        for m in modes:
            if isinstance(m, str) and isinstance(tmpl.get(m), str):
                try:
                    templates.template_source(tmpl[m], prompts_dirs)
                except TemplateError as e:
                    out.append(Problem(f"{source}: templates.{m}", str(e)))
    return out


def load_rubric(name: str | Path, rubrics_dirs: list | None = None, prompts_dirs: list | None = None) -> Rubric:
    """Load and validate a rubric by name or path. Raises RubricError listing every problem."""
    if isinstance(name, Rubric):
        return name
    path = find_rubric(str(name), rubrics_dirs)
    try:
        text = read_text(path)
    except InputError as e:
        raise RubricError([Problem(str(path), str(e).removeprefix(f"{path}: "))], source=str(path)) from None
    return parse_rubric(text, source=str(path), prompts_dirs=prompts_dirs)


def sample_row(rubric: Rubric, mode: str) -> dict:
    """A plausible input row for `mode`, for lint trial renders and `rubric render` without --example."""
    row: dict[str, str | list[str]] = {"prompt": "How do I boil an egg?"}
    if mode == "absolute":
        row["response"] = "Put it in boiling water for 8 minutes."
    elif mode == "pairwise":
        row.update(response_a="Boil it for 8 minutes.", response_b="I can't help with that.")
    else:
        row["responses"] = ["Boil it for 8 minutes.", "I can't help with that.", "Eggs are tasty."]
    if rubric.reference != "none":
        row["reference"] = "Place the egg in boiling water for 7-9 minutes, then cool it in cold water."
    return row


def lint(path: str | Path, prompts_dirs: list | None = None) -> list[Problem]:
    """Every problem of a rubric file: schema, templates, variables a template reads that the
    rubric/row cannot supply, and a trial render of every mode in the sandbox. [] means clean."""
    from rlaif.render import build_messages  # the judge's own template context; one definition of it

    path = Path(path)
    source = str(path)
    try:
        text = read_text(path)
    except InputError as e:
        return [Problem(source, str(e).removeprefix(f"{source}: "))]
    try:
        rubric = parse_rubric(text, source=source, prompts_dirs=prompts_dirs)
    except RubricError as e:
        return list(e.problems)
    problems: list[Problem] = []
    for mode in rubric.modes:
        tname = rubric.templates[mode]
        where = f"{source}: templates.{mode} ({tname})"
        try:
            used = templates.undeclared_variables(tname, prompts_dirs)
        except TemplateError as e:
            problems.append(Problem(where, str(e)))
            continue
        allowed = COMMON_VARS | ROW_VARS[mode]
        for var in sorted(used - allowed):
            problems.append(Problem(where, f"template reads '{var}', which neither the rubric nor a {mode} row "
                                           f"supplies (available: {', '.join(sorted(allowed))})"))
        if rubric.reference != "none" and "reference" not in used:
            problems.append(Problem(where, f"rubric sets reference: {rubric.reference} "
                                           "but the template never shows it"))
        for generative in (False, True):
            try:
                build_messages(rubric, mode, sample_row(rubric, mode), generative=generative,
                                         prompts_dirs=prompts_dirs)
            except Exception as e:  # noqa: BLE001 - any failure of a trial render is a lint finding
                problems.append(Problem(where, f"trial render failed: {e}"))
                break
    return problems
