"""The layout a newcomer reads (docs/architecture.md) is the layout the code has: imports point
down the layers and never form a cycle (function-local imports count; `if TYPE_CHECKING:` blocks
do not, they never run), no module reads another's `_private` names, public functions stay short
unless they say why, and `rlaif.judge` keeps a small signature."""
import ast
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "rlaif"

# Bottom first; a module may import its own layer or any layer below (docs/architecture.md).
LAYERS = [
    ("foundation", ["rlaif.errors", "rlaif.records", "rlaif.version", "rlaif.jsondata", "rlaif.ties", "rlaif.refusal_strmatch", "rlaif.options", "rlaif.agreement",
                    "rlaif.models"]),
    ("files", ["rlaif.cost", "rlaif.journal", "rlaif.progress", "rlaif.io", "rlaif.shards", "rlaif.templates", "rlaif.grouping"]),
    ("rubrics", ["rlaif.rubrics", "rlaif.render"]),
    ("backends", ["rlaif.backends"]),
    ("engine", ["rlaif.ledger", "rlaif.engine"]),
    ("judging", ["rlaif.judging", "rlaif.judge", "rlaif.jury", "rlaif.batch"]),
    ("data", ["rlaif.sampling", "rlaif.pairs", "rlaif.gold", "rlaif.gate"]),
    ("results", ["rlaif.train", "rlaif.evaluate", "rlaif.report", "rlaif.judge_cards",
                 "rlaif.backends.rm"]),   # reached only through the provider registry, by name
    ("integrations", ["rlaif.rewards", "rlaif.serve", "rlaif.integrations"]),
    ("pipeline", ["rlaif.pipeline"]),
    ("interface", ["rlaif.cli", "rlaif.__main__", "rlaif"]),
]
# Private attributes of other libraries that rlaif uses on purpose, with the reason.
FOREIGN_PRIVATE_OK = {
    "super()._get_help_string": "argparse's documented hook for help formatters",
    "torch._dynamo": "torch.compile's configuration namespace",
}


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        if "_defaults" in p.parts:
            continue
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = modules()


def runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (annotations only; never imported)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def resolve(dotted: str) -> str | None:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return None


def imports_of(name: str) -> set[str]:
    path = MODULES[name]
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {m for a in node.names if a.name.startswith("rlaif") and (m := resolve(a.name))}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("rlaif"):
                continue
            for a in node.names:
                m = resolve(f"{base}.{a.name}") if f"{base}.{a.name}" in MODULES else resolve(base)
                if m:
                    out.add(m)
    out.discard(name)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def layer(name: str) -> int:
    best, level = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for pre in prefixes:
            if (name == pre or (pre != "rlaif" and name.startswith(pre + "."))) and len(pre) > best:
                best, level = len(pre), i
    assert level is not None, f"{name} is in no layer: add it to LAYERS and docs/architecture.md"
    return level


def test_every_module_is_in_a_documented_layer():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for name in MODULES:
        layer(name)
    for title, prefixes in LAYERS:
        assert title in doc, f"layer '{title}' is not described in docs/architecture.md"
        for pre in prefixes:
            if pre != "rlaif":
                assert pre.removeprefix("rlaif.").split(".")[0] in doc, f"{pre} is not in docs/architecture.md"


def test_the_import_graph_has_no_cycle():
    seen, on_path, cycles = set(), [], []

    def visit(m):
        if m in on_path:
            cycles.append(on_path[on_path.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        on_path.append(m)
        for n in sorted(GRAPH[m]):
            visit(n)
        on_path.pop()

    for m in sorted(GRAPH):
        visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers():
    upward = [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
              for a, targets in GRAPH.items() for b in targets if layer(b) > layer(a)]
    assert not upward, "\n".join(upward)


def test_no_module_imports_or_reads_another_modules_private_names():
    bad = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rlaif"):
                bad += [f"{name}: from {node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                receiver = node.value
                if isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
                    continue
                text = ast.unparse(node)
                if text not in FOREIGN_PRIVATE_OK:
                    bad.append(f"{name}:{node.lineno}: {text}")
    assert not bad, "\n".join(bad)


def test_long_public_functions_say_why():
    long = []
    for name, path in MODULES.items():
        src = path.read_text(encoding="utf-8")
        lines = src.splitlines()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                n = node.end_lineno - node.lineno + 1
                body = "\n".join(lines[node.lineno - 1:node.end_lineno])
                if n > 80 and "# why long:" not in body:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, "public functions over 80 lines without a '# why long:' comment:\n" + "\n".join(long)


def test_rlaif_judge_has_at_most_12_parameters_and_no_private_ones():
    import rlaif

    params = inspect.signature(rlaif.judge).parameters
    assert len(params) <= 12, list(params)
    assert not [p for p in params if p.startswith("_")]


@pytest.mark.parametrize("old", ["JudgeConfig"])
def test_renamed_public_names_still_work_with_a_warning(old):
    import sys

    import rlaif  # noqa: F401  (binds rlaif.judge, the function; the module is in sys.modules)

    judge_module = sys.modules["rlaif.judge"]
    with pytest.warns(DeprecationWarning):
        getattr(judge_module, old)()
