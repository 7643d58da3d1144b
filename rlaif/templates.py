"""Prompt templates: Jinja2 files rendered in a sandbox.

Why a sandbox: rubric authors share templates, and a template is code. ImmutableSandboxedEnvironment
refuses attribute access to Python internals (`__class__`, `__globals__`, ...) and mutation of the
values passed in; StrictUndefined turns a misspelled variable into an error instead of silent "".

Data is never template: the prompt and candidate texts are passed as variables, so `{{ 7*7 }}`
inside a response reaches the judge verbatim. Templates delimit them with the `data` filter,
which wraps text in tags and defuses a closing tag inside the text, so a response cannot end its
own block and pose as instructions.

A template is one .j2 file with a `user` block and an optional `system` block; each block becomes
one chat message. Search order: user dirs (`--prompts-dir`, $RLAIF_PROMPTS_PATH, ./prompts),
then the packaged defaults.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rlaif.errors import TemplateError
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


def _wrap_data(value, tag: str = "data") -> str:
    """Delimit untrusted text: <tag>…</tag>, with any closing tag inside the text defused."""
    text = "" if value is None else str(value)
    text = text.replace(f"</{tag}>", f"<\\/{tag}>")
    return f"<{tag}>\n{text}\n</{tag}>"


@lru_cache(maxsize=32)
def _environment(dirs: tuple[str, ...]) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(list(dirs)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,          # plain text prompts, not HTML
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["data"] = _wrap_data
    return env


def environment(extra_dirs: list[str | Path] | None = None) -> ImmutableSandboxedEnvironment:
    return _environment(tuple(str(d) for d in search_path("prompts", extra_dirs)))


def template_source(name: str, extra_dirs: list[str | Path] | None = None) -> tuple[str, str]:
    """(source text, file path) of a template, following the search path."""
    env = environment(extra_dirs)
    try:
        src, filename, _ = env.loader.get_source(env, name)
    except TemplateNotFound:
        raise TemplateError(f"template '{name}' not found in {', '.join(str(d) for d in search_path('prompts', extra_dirs))}")
    return src, filename


def undeclared_variables(name: str, extra_dirs: list[str | Path] | None = None) -> set[str]:
    """Variables a template reads from its context (for lint: can the rubric/row supply them?)."""
    env = environment(extra_dirs)
    src, filename = template_source(name, extra_dirs)
    try:
        ast = env.parse(src, name=name, filename=filename)
    except TemplateSyntaxError as e:
        raise TemplateError(f"{filename}:{e.lineno}: syntax error: {e.message}")
    return set(meta.find_undeclared_variables(ast))


def render_messages(name: str, context: dict, extra_dirs: list[str | Path] | None = None) -> list[Message]:
    """Render template `name` with `context` into chat messages (system block optional, user block required)."""
    env = environment(extra_dirs)
    try:
        tmpl = env.get_template(name)
    except TemplateNotFound:
        raise TemplateError(f"template '{name}' not found in {', '.join(str(d) for d in search_path('prompts', extra_dirs))}")
    except TemplateSyntaxError as e:
        raise TemplateError(f"{e.filename or name}:{e.lineno}: syntax error: {e.message}")
    if "user" not in tmpl.blocks:
        raise TemplateError(f"template '{name}' has no {{% block user %}}: a judge template needs one")
    messages: list[Message] = []
    try:
        ctx = tmpl.new_context(dict(context))
        for role in ("system", "user"):
            if role in tmpl.blocks:
                text = "".join(tmpl.blocks[role](ctx)).strip()
                if text:
                    messages.append({"role": role, "content": text})
    except SecurityError as e:
        raise TemplateError(f"template '{name}' was refused by the sandbox (unsafe access): {e}")
    except UndefinedError as e:
        raise TemplateError(f"template '{name}' uses a variable the rubric/row does not supply: {e.message}")
    except TemplateSyntaxError as e:
        raise TemplateError(f"{e.filename or name}:{e.lineno}: syntax error: {e.message}")
    except Exception as e:  # noqa: BLE001 - anything else from a template is the template's fault
        raise TemplateError(f"template '{name}' failed to render: {type(e).__name__}: {e}")
    return messages
