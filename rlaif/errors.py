"""Errors rlaif raises on purpose.

Every error a user can cause names what to fix: the file, the line (row), the field.
ConfigError carries *all* problems found in one go (like torchtune's ConfigError), so a
rubric or pipeline author fixes everything in one edit instead of one error per run.
"""
from __future__ import annotations

from dataclasses import dataclass


class RlaifError(Exception):
    """Base class: anything rlaif raises deliberately."""


@dataclass
class Problem:
    """One problem in a file people write: where it is and what is wrong."""

    where: str      # "rubrics/x.yaml: criteria.0.levels" or "data.jsonl:12: response"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ConfigError(RlaifError):
    """A file people author (rubric, pipeline) has one or more problems; all are listed."""

    def __init__(self, problems: list[Problem] | list[str], source: str | None = None):
        self.problems = [p if isinstance(p, Problem) else Problem(source or "", str(p)) for p in problems]
        self.source = source
        if len(self.problems) == 1:        # one problem: one line (the CLI prints it as `error: ...`)
            p = self.problems[0]
            one = str(p) if p.where else f"{source}: {p.message}" if source else p.message
            super().__init__(one if not source or source in one else f"{source}: {one}")
            return
        head = f"{len(self.problems)} problem(s)" + (f" in {source}" if source else "")
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class RubricError(ConfigError):
    """A rubric or its templates cannot be used."""


class TemplateError(RlaifError):
    """A template failed to render (unsafe access, missing variable, syntax)."""


class InputError(RlaifError):
    """A data row is malformed. Names file, line and field."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field = path, line, field
        loc = path + (f":{line}" if line is not None else "") + (f": field '{field}'" if field else "")
        super().__init__(f"{loc}: {message}")


class BackendError(RlaifError):
    """A model backend failed in a way a retry won't fix (bad model name, auth, config)."""

    def __init__(self, message: str, code: str = "backend_error", status: int | None = None,
                 retry_after: float | None = None, retryable: bool = False):
        super().__init__(message)
        self.code, self.status, self.retry_after, self.retryable = code, status, retry_after, retryable


class JobStopped(RlaifError):
    """A failure that every later request would repeat (the provider rejected the credentials): the
    engine stops the whole job instead of sending, and paying for, each remaining row. Deliberately
    not a BackendError, so it is not turned into one unscored row: it ends the run (CLI exit 2);
    rows finished before it are kept in OUT.partial and resume after the fix."""

    def __init__(self, message: str, cause: BackendError | None = None):
        super().__init__(message)
        self.cause = cause


class MissingDependencyError(RlaifError):
    """An optional package is not installed; the message says what to pip install."""

    def __init__(self, package: str, extra: str | None = None, why: str = ""):
        hint = f"pip install 'rlaif[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{package} is required{(' ' + why) if why else ''}. Install it with: {hint}")
        self.package = package
