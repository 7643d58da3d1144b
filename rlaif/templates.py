"""Prompt templates: Jinja2 files rendered in a sandbox.

Why a sandbox: rubric authors share templates, and a template is code. ImmutableSandboxedEnvironment
refuses attribute access to Python internals (`__class__`, `__globals__`, ...) and mutation of the
values passed in; StrictUndefined turns a misspelled variable into an error instead of silent "".

Data is never template: the prompt and candidate texts are passed as variables, so `{{ 7*7 }}`
inside a response reaches the judge verbatim. Templates delimit them with the `data` filter,
which wraps text in tags and defuses a closing fence tag inside the text (any case, any spacing),
so a response cannot end its own block and pose as instructions.

Rendering is bounded (output size, loop iterations, wall time; see BoundedSandbox): a template
that would loop for hours or build gigabytes fails with a TemplateError instead.

A template is one .j2 file with a `user` block and an optional `system` block; each block becomes
one chat message. Search order: user dirs (`--prompts-dir`, $RLAIF_PROMPTS_PATH, ./prompts),
then the packaged defaults.
"""
from __future__ import annotations

import os
import re
import time
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rlaif.errors import ConfigError, Problem, TemplateError
from rlaif.records import Message

PACKAGE_ROOT = Path(__file__).resolve().parent


def default_dir(kind: str) -> Path:
    """The shipped `prompts/` or `rubrics/`: inside the wheel, or at the repo root in a checkout."""
    packaged = PACKAGE_ROOT / "_defaults" / kind
    return packaged if packaged.is_dir() else PACKAGE_ROOT.parent / kind


def search_path(kind: str, extra: list[str | Path] | None = None) -> list[Path]:
    """User dirs first, then the packaged defaults. kind: 'prompts' or 'rubrics'."""
    # Memoised on everything it reads (judging renders once per request: resolving paths each
    # time cost ~1 ms per row); a copy so callers may change the list.
    env = os.environ.get(f"RLAIF_{kind.upper()}_PATH", "")
    for p in extra or []:       # a folder the user named must exist: a typo would silently search nothing
        if not Path(p).is_dir():
            why = "not a folder" if Path(p).exists() else "no such folder"
            raise ConfigError([Problem(f"{kind}_dirs", f"{p}: {why}")], source="options")
    return list(_search_path(kind, tuple(str(p) for p in (extra or [])), env, os.getcwd()))


@lru_cache(maxsize=64)
def _search_path(kind: str, extra: tuple[str, ...], env: str, cwd_str: str) -> tuple[Path, ...]:
    dirs = [Path(p) for p in extra] + [Path(p) for p in env.split(os.pathsep) if p]
    cwd = Path(cwd_str) / kind
    if cwd.is_dir() and cwd.resolve() != default_dir(kind).resolve():
        dirs.append(cwd)
    dirs.append(default_dir(kind))
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen:
            seen.add(r)
            out.append(d)
    return tuple(out)


# Tags the shipped templates use as data fences (request, reference, response, response_a,
# response_3...); a closing tag of any of them, or of the tag being written, is defused inside data.
FENCE_NAMES = r"data|request|prompt|reference|response(?:_[a-z0-9]+)?|responses"
_CLOSING = re.compile(rf"<(\s*/\s*(?:{FENCE_NAMES})\s*)>", re.IGNORECASE)


def _wrap_data(value, tag: str = "data") -> str:
    """Delimit untrusted text: <tag>…</tag>, with any closing fence tag inside the text defused.
    Matched case- and whitespace-insensitively (`</Response>`, `</RESPONSE >`, `</ response>`): a
    model reads those as the same tag. Defusing inserts a backslash before the slash (`<\\/response>`)."""
    text = "" if value is None else str(value)
    _budget_tick()
    if "<" in text:           # (most texts have no tag at all: skip the regexes)
        own = re.compile(rf"<(\s*/\s*{re.escape(str(tag))}\s*)>", re.IGNORECASE)
        text = own.sub(_defuse, _CLOSING.sub(_defuse, text))
    return f"<{tag}>\n{text}\n</{tag}>"


def _defuse(m: re.Match) -> str:
    inner = m.group(1)
    slash = inner.index("/")
    return "<" + inner[:slash] + "\\" + inner[slash:] + ">"


# ---------------------------------------------------------------------------------------------
# Bounded rendering. The sandbox stops a template from reaching Python internals, not from
# looping 10^10 times or building a 4 GB string. Every render runs under a budget: output size,
# loop iterations and wall time. A template past any of them fails with a TemplateError (a lint
# finding, or the row's error), it does not hang the job or exhaust memory.
# ---------------------------------------------------------------------------------------------
MAX_RENDER_CHARS = 10_000_000   # 10M characters (~2.5M tokens): beyond any judge's context, yet finite
MAX_ITERATIONS = 1_000_000      # loop iterations in one render; the shipped templates use < 100
MAX_RENDER_SECONDS = 10.0       # one render normally takes ~0.3 ms
MAX_EXPONENT = 1024             # `x ** n` with a larger n is refused (10 ** 10 ** 9 would never finish)


class _Budget:
    __slots__ = ("deadline", "iterations")

    def __init__(self):
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.iterations = 0


_current: ContextVar[_Budget | None] = ContextVar("rlaif_render_budget", default=None)


def _budget_tick(n: int = 0) -> None:
    b = _current.get()
    if b is None:
        return
    b.iterations += n
    if b.iterations > MAX_ITERATIONS:
        raise SecurityError(f"the template ran more than {MAX_ITERATIONS:,} loop iterations")
    if time.monotonic() > b.deadline:
        raise SecurityError(f"rendering took longer than {MAX_RENDER_SECONDS:g}s")


def _check_size(value):
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_RENDER_CHARS:
        raise SecurityError(f"the template built a value of {len(value):,} items (limit {MAX_RENDER_CHARS:,})")
    return value


class _Counted:
    """A loop's iterable, counted against the render budget (len() kept for `loop.length`)."""

    __slots__ = ("_it",)

    def __init__(self, it):
        self._it = it

    def __len__(self):
        return len(self._it)

    def __iter__(self):
        for i, x in enumerate(self._it):
            if i % 256 == 0:
                _budget_tick(256)
            yield x


def _bounded_iter(value):
    return value if isinstance(value, jinja2.Undefined) else _Counted(value)


def _bounded_center(value, width: int = 80) -> str:
    if isinstance(width, int) and width > MAX_RENDER_CHARS:
        raise SecurityError(f"center({width}) is larger than the render limit of {MAX_RENDER_CHARS:,} characters")
    return str(value).center(width)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox plus the render budget: every loop's iterable is counted (the parsed template is
    rewritten so each `{% for %}` iterates through a counter, and each `~` concatenation is size
    checked), calls check the clock, and `*`, `+`, `**` refuse results past the size limit."""

    intercepted_binops = frozenset({"*", "+", "**"})

    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        if isinstance(source, str):
            source = self.parse(source, name, filename)
            for loop in source.find_all(nodes.For):
                loop.iter = nodes.Filter(loop.iter, "rlaif_bounded", [], [], None, None, lineno=loop.lineno)
            for cat in list(source.find_all(nodes.Concat)):
                _wrap_concat(source, cat)
        return super().compile(source, name, filename, raw, defer_init)

    def call(self, __context, __obj, *args, **kwargs):
        _budget_tick()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context, operator, left, right):
        _budget_tick()
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT and left not in (0, 1, -1):
            raise SecurityError(f"exponent {right} is too large (limit {MAX_EXPONENT})")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_RENDER_CHARS:
                    raise SecurityError(f"the template would build a value of {len(seq) * n:,} items "
                                        f"(limit {MAX_RENDER_CHARS:,})")
        if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            if len(left) + len(right) > MAX_RENDER_CHARS:
                raise SecurityError(f"the template would build a value of {len(left) + len(right):,} items "
                                    f"(limit {MAX_RENDER_CHARS:,})")
        return super().call_binop(context, operator, left, right)


def _wrap_concat(tree: nodes.Node, cat: nodes.Concat) -> None:
    """Replace Concat node `cat` in `tree` by rlaif_sized(cat) (size-checked after each `~`)."""
    lineno = cat.lineno
    for parent in tree.find_all(nodes.Node):
        for field in parent.fields:
            value = getattr(parent, field, None)
            if value is cat:
                setattr(parent, field, nodes.Filter(cat, "rlaif_sized", [], [], None, None, lineno=lineno))
                return
            if isinstance(value, list) and any(v is cat for v in value):
                setattr(parent, field, [nodes.Filter(v, "rlaif_sized", [], [], None, None, lineno=lineno)
                                        if v is cat else v for v in value])
                return


@lru_cache(maxsize=32)
def _environment(dirs: tuple[str, ...]) -> ImmutableSandboxedEnvironment:
    env = BoundedSandbox(
        loader=jinja2.FileSystemLoader(list(dirs)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,          # plain text prompts, not HTML
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["data"] = _wrap_data
    env.filters["rlaif_bounded"] = _bounded_iter
    env.filters["rlaif_sized"] = _check_size
    env.filters["center"] = _bounded_center
    return env


def _search_dirs(extra_dirs: list[str | Path] | None) -> str:
    """The template search path as one line, for 'not found' errors."""
    return ", ".join(str(d) for d in search_path("prompts", extra_dirs))


def environment(extra_dirs: list[str | Path] | None = None) -> ImmutableSandboxedEnvironment:
    return _environment(tuple(str(d) for d in search_path("prompts", extra_dirs)))


def template_source(name: str, extra_dirs: list[str | Path] | None = None) -> tuple[str, str]:
    """(source text, file path) of a template, following the search path."""
    env = environment(extra_dirs)
    assert env.loader is not None       # _environment always sets a FileSystemLoader
    try:
        src, filename, _ = env.loader.get_source(env, name)
    except TemplateNotFound as e:
        raise TemplateError(f"template '{name}' not found in {_search_dirs(extra_dirs)}") from e
    return src, filename or name          # a FileSystemLoader always gives the file name


def undeclared_variables(name: str, extra_dirs: list[str | Path] | None = None) -> set[str]:
    """Variables a template reads from its context (for lint: can the rubric/row supply them?)."""
    env = environment(extra_dirs)
    src, filename = template_source(name, extra_dirs)
    try:
        ast = env.parse(src, name=name, filename=filename)
    except TemplateSyntaxError as e:
        raise TemplateError(f"{filename}:{e.lineno}: syntax error: {e.message}") from e
    return set(meta.find_undeclared_variables(ast))


def render_messages(name: str, context: dict, extra_dirs: list[str | Path] | None = None) -> list[Message]:
    """Render template `name` with `context` into chat messages (system block optional, user block required)."""
    env = environment(extra_dirs)
    try:
        tmpl = env.get_template(name)
    except TemplateNotFound as e:
        raise TemplateError(f"template '{name}' not found in {_search_dirs(extra_dirs)}") from e
    except TemplateSyntaxError as e:
        raise TemplateError(f"{e.filename or name}:{e.lineno}: syntax error: {e.message}") from e
    if "user" not in tmpl.blocks:
        raise TemplateError(f"template '{name}' has no {{% block user %}}: a judge template needs one")
    messages: list[Message] = []
    token = _current.set(_Budget())
    try:
        ctx = tmpl.new_context(dict(context))
        size = 0
        for role in ("system", "user"):
            if role in tmpl.blocks:
                parts = []
                for chunk in tmpl.blocks[role](ctx):
                    size += len(chunk)
                    if size > MAX_RENDER_CHARS:
                        raise SecurityError(f"the rendered prompt passed {MAX_RENDER_CHARS:,} characters")
                    _budget_tick()
                    parts.append(chunk)
                text = "".join(parts).strip()
                if text:
                    messages.append({"role": role, "content": text})
    except SecurityError as e:
        raise TemplateError(f"template '{name}' was refused by the sandbox (unsafe access or past a render "
                            f"limit): {e}") from None
    except UndefinedError as e:
        raise TemplateError(f"template '{name}' uses a variable the rubric/row does not supply: {e.message}") from e
    except TemplateSyntaxError as e:
        raise TemplateError(f"{e.filename or name}:{e.lineno}: syntax error: {e.message}") from e
    except Exception as e:  # anything else from a template is the template's fault (re-raised with its cause)
        raise TemplateError(f"template '{name}' failed to render: {type(e).__name__}: {e}") from e
    finally:
        _current.reset(token)
    return messages
