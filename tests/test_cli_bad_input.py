"""The standing guarantee of issue 15: no bad input ever reaches the user as a traceback.

Every CLI command (enumerated from the argparse tree, so a new command cannot be forgotten: one
missing from COMMANDS fails `test_every_command_is_covered`) runs over a corpus of malformed input
files and bad options. Each run must: exit 2, print ONE line on stderr naming the file (and line /
field) or the option, print no Python traceback, leave nothing at the output path (nor OUT.partial),
send no request to the judge and load no model. A UTF-8 byte order mark is data-neutral: accepted.

Runs are in-process through `rlaif.cli.main` (a subprocess costs ~2 s of imports on 2 cores); a few
subprocess cases at the end prove the real entry point behaves the same.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlaif.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


class ModelLoaded(Exception):
    """Raised by the patched model loaders (and server start): bad input must be refused before."""


# ---------------------------------------------------------------- good inputs each command starts from
ROW = {"prompt": "What is 2+2?", "response": "4"}
PREF = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)




@dataclass
class Files:
    d: Path

    def p(self, name: str) -> str:
        return str(self.d / name)


@pytest.fixture(scope="session")
def result_text(tmp_path_factory) -> str:
    """A complete rubric-test result (the input of `rlaif report`), made once with the fake judge."""
    from rlaif.gold import rubric_test

    d = tmp_path_factory.mktemp("result")
    gold = (ROOT / "examples/gold/human_pairs_dev.jsonl").read_text().splitlines()[:3]
    (d / "gold.jsonl").write_text("\n".join(gold) + "\n")
    rubric_test("helpfulness", d / "gold.jsonl", judge="fake/hash", n_boot=10, output=d / "result.json")
    return (d / "result.json").read_text()


@pytest.fixture
def files(tmp_path, result_text) -> Files:
    d = tmp_path / "in"
    d.mkdir()
    (d / "prompts.jsonl").write_text(jsonl([{"id": i, "prompt": f"question {i}?"} for i in range(2)]))
    (d / "rows.jsonl").write_text(jsonl([{"id": i, **ROW} for i in range(2)]))
    (d / "judged.jsonl").write_text(jsonl(
        [{"id": i, "prompt": "q", "responses": ["a", "bb", "c"], "mode": "rank", "judge": "fake/hash",
          "rubric": "helpfulness@15966ffeda", "ranking": [1, 0, 2], "scores": [0.5, 1.0 + i, -1.0], "error": None}
         for i in range(2)]))
    (d / "prefs.jsonl").write_text(jsonl([PREF, PREF]))
    gold = (ROOT / "examples/gold/human_pairs_dev.jsonl").read_text().splitlines()[:3]
    (d / "gold.jsonl").write_text("\n".join(gold) + "\n")
    (d / "example.json").write_text(json.dumps(ROW))
    (d / "capability.jsonl").write_text(jsonl([{"question": "2+2?", "answer": "4"}, {"question": "3+3?", "answer": "6"}]))
    (d / "prices.yaml").write_text("fake/hash: {input: 1.0, output: 2.0}\n")
    (d / "result.json").write_text(result_text)
    (d / "pipeline.yaml").write_text(
        "name: t\nprompts: prompts.jsonl\nworkdir: work\nsample: {model: fake/hash, n: 2}\n"
        "judge: {model: fake/hash, rubric: helpfulness}\n")
    rubrics = d / "rubrics"
    rubrics.mkdir()
    (rubrics / "tiny.yaml").write_text((ROOT / "rubrics/helpfulness.yaml").read_text())
    adapter = d / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "default"}))
    return Files(d)


# Each leaf command: its argv over good inputs (F: the Files, O: the output path), the argv slot of
# the input the corpus replaces, that input's kind, and whether a good run is cheap enough to check
# that a BOM is accepted (else "reached" = the run got past reading input to the model loader).
@dataclass
class Cmd:
    argv: callable
    kind: str | None            # "jsonl", "json", "yaml", "dir" (a folder input) or None (no input file)
    slot: str | None = None     # the file name in argv the corpus replaces
    out: bool = True            # -o is a file/folder the command creates
    bom: str = "ok"             # "ok": a BOM run exits 0; "model": it gets as far as loading a model; "skip"


COMMANDS: dict[str, Cmd] = {
    "sample": Cmd(lambda F, O: ["sample", F.p("prompts.jsonl"), "-m", "fake/hash", "-n", "2", "-o", O],
                  "jsonl", "prompts.jsonl"),
    "pairs": Cmd(lambda F, O: ["pairs", F.p("judged.jsonl"), "-o", O], "jsonl", "judged.jsonl"),
    "run": Cmd(lambda F, O: ["run", F.p("pipeline.yaml"), "--check"], "yaml", "pipeline.yaml", out=False),
    "judge": Cmd(lambda F, O: ["judge", F.p("rows.jsonl"), "-r", "helpfulness", "-j", "fake/hash", "-o", O],
                 "jsonl", "rows.jsonl"),
    "train dpo": Cmd(lambda F, O: ["train", "dpo", F.p("prefs.jsonl"), "-o", O], "jsonl", "prefs.jsonl",
                     bom="model"),
    "train sft": Cmd(lambda F, O: ["train", "sft", F.p("prefs.jsonl"), "-o", O], "jsonl", "prefs.jsonl",
                     bom="model"),
    "train grpo": Cmd(lambda F, O: ["train", "grpo", F.p("prompts.jsonl"), "--reward", "rubric:helpfulness@fake/hash",
                                    "-o", O], "jsonl", "prompts.jsonl", bom="model"),
    "train rm": Cmd(lambda F, O: ["train", "rm", F.p("prefs.jsonl"), "-o", O], "jsonl", "prefs.jsonl", bom="model"),
    "export": Cmd(lambda F, O: ["export", "-a", F.p("adapter"), "-o", O], "dir", "adapter", bom="skip"),
    "export rl-data": Cmd(lambda F, O: ["export", "rl-data", F.p("prompts.jsonl"), "-o", O], "jsonl",
                          "prompts.jsonl", bom="skip"),
    "eval": Cmd(lambda F, O: ["eval", "-a", F.p("adapter"), "-p", F.p("prompts.jsonl"), "-j", "fake/hash",
                              "--no-capability", "--no-refusal", "-o", O], "jsonl", "prompts.jsonl", bom="model"),
    "rubric lint": Cmd(lambda F, O: ["rubric", "lint", F.p("rubrics/tiny.yaml")], "yaml", "rubrics/tiny.yaml",
                       out=False),
    "rubric render": Cmd(lambda F, O: ["rubric", "render", "helpfulness", "-e", F.p("example.json")], "json",
                         "example.json", out=False),
    "rubric list": Cmd(lambda F, O: ["rubric", "list", "--rubrics-dir", F.p("rubrics")], "dir", "rubrics",
                       out=False),
    "rubric test": Cmd(lambda F, O: ["rubric", "test", "helpfulness", "-g", F.p("gold.jsonl"),
                                     "-j", "fake/hash", "-o", O], "jsonl", "gold.jsonl"),
    "rubric diff": Cmd(lambda F, O: ["rubric", "diff", "helpfulness", "helpfulness",
                                     "-g", F.p("gold.jsonl"), "-j", "fake/hash", "-o", O], "jsonl", "gold.jsonl"),
    "report": Cmd(lambda F, O: ["report", F.p("result.json"), "-o", O], "json", "result.json"),
    "merge": Cmd(lambda F, O: ["merge", F.p("rows.jsonl"), "-o", O], "jsonl", "rows.jsonl"),
    # A good run serves forever: only its options are checked (before the port is bound).
    "serve reward": Cmd(lambda F, O: ["serve", "reward", "--reward", "rubric:helpfulness@fake/hash", "--port", "0"],
                        None, out=False),
}


# Second inputs that commands read before any work, under the same corpus (name: "command flag").
EXTRA_INPUTS: dict[str, Cmd] = {
    "judge --prices": Cmd(lambda F, O: ["judge", F.p("rows.jsonl"), "-r", "helpfulness", "-j", "fake/hash",
                                        "--prices", F.p("prices.yaml"), "-o", O], "yaml", "prices.yaml"),
    "pairs --rubric-test": Cmd(lambda F, O: ["pairs", F.p("judged.jsonl"), "--rubric-test", F.p("result.json"),
                                             "--min-kappa", "-1", "-o", O], "json", "result.json", bom="skip"),
    "merge --input": Cmd(lambda F, O: ["merge", F.p("rows.jsonl"), "--input", F.p("prompts.jsonl"), "-o", O],
                         "jsonl", "prompts.jsonl", bom="skip"),
    "eval --capability": Cmd(lambda F, O: ["eval", "-a", F.p("adapter"), "-p", F.p("prompts.jsonl"), "-j",
                                           "fake/hash", "--capability", F.p("capability.jsonl"), "--no-refusal",
                                           "-o", O], "jsonl", "capability.jsonl", bom="skip"),
}
NO_DUPLICATE_CHECK_EXTRA = {"eval --capability": "items are keyed by position"}
# merge --input skips invalid rows on purpose (judge --skip-invalid skipped them too), so a corrupt row
# surfaces as "N rows of INPUT are in no shard output", naming the file but not the line.
ONLY_PATH_CHECKS = {"merge --input": "invalid input rows are skipped, as judge --skip-invalid did"}


def leaf_commands(parser=None, path=()):
    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaf_commands(sub, (*path, name))


LEAVES = dict(leaf_commands())


def test_every_command_is_covered():
    # `export` and `export rl-data` share one parser (rl-data is a positional choice)
    assert set(LEAVES) | {"export rl-data"} == set(COMMANDS)


# ---------------------------------------------------------------- the harness
@pytest.fixture
def guard(monkeypatch):
    """Counts judge requests; makes loading a model raise ModelLoaded."""
    from rlaif.backends.fake import FakeBackend

    sent = []
    orig = FakeBackend.complete

    async def complete(self, messages, params):
        sent.append(messages)
        return await orig(self, messages, params)

    def no_model(*a, **k):
        raise ModelLoaded()

    monkeypatch.setattr(FakeBackend, "complete", complete)
    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_model)
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", no_model)
    monkeypatch.setattr("rlaif.models.load_model", no_model)
    monkeypatch.setattr("rlaif.serve.serve_reward", no_model)       # a server that starts never returns
    return sent


def run_cli(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:            # argparse refusing an option
        return e.code if isinstance(e.code, int) else 1


def assert_refused(rc, capsys, sent, out: Path | None, *names: str):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"exit {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    for n in names:
        assert n in lines[0], f"{n!r} not named in: {lines[0]}"
    assert not sent, f"{len(sent)} requests sent before refusing"
    if out is not None:
        assert not out.exists(), f"{out} was left behind"
        assert not Path(f"{out}.partial").exists(), f"{out}.partial was left behind"


# ---------------------------------------------------------------- the corpus of malformed inputs
def corrupt_jsonl(kind: str, path: Path, good: str) -> str:
    """Replace the good JSONL at `path` by a malformed one; return what the message must name."""
    rows = [json.loads(line) for line in good.splitlines() if line.strip()]
    first = json.dumps(rows[0])
    if kind == "not-utf8":
        path.write_bytes(first.encode() + b"\n" + b'{"prompt": "caf\xe9"}\n')
        return ":2"
    if kind == "surrogate":
        path.write_text(first + "\n" + json.dumps({**rows[0], "prompt": "\ud800"}) + "\n")
        return ":2"
    if kind == "nan":
        path.write_text(first + "\n" + json.dumps({**rows[0], "x": float("nan")}) + "\n")
        return ":2"
    if kind == "truncated":
        path.write_text(first + "\n" + first[:-3] + "\n")
        return ":2"
    if kind == "missing-field":
        path.write_text(first + "\n" + json.dumps({"id": "only-an-id"}) + "\n")
        return ":2"
    if kind == "duplicate-ids":
        path.write_text(json.dumps({**rows[0], "id": "same"}) + "\n" + json.dumps({**rows[-1], "id": "same"}) + "\n")
        return ":2"
    raise AssertionError(kind)


JSONL_CORRUPTIONS = ["not-utf8", "surrogate", "nan", "truncated", "missing-field", "duplicate-ids"]
# A prompts file for `train grpo`/`sample`/`export rl-data`/`eval` needs only `prompt`; duplicate ids
# among prompts are refused by sample (its candidates are keyed by id).
NO_DUPLICATE_CHECK = {
    "train dpo": "preference pairs carry no ids",
    "train sft": "SFT rows carry no ids",
    "train grpo": "prompts are sampled afresh each step; ids are not keys",
    "train rm": "preference pairs carry no ids",
    "eval": "held-out prompts are keyed by position",
    "export rl-data": "rows are written in order; verl keys by index",
    "rubric test": "gold items are keyed by position",
    "rubric diff": "gold items are keyed by position",
}


def cases():
    for name, cmd in {**COMMANDS, **EXTRA_INPUTS}.items():
        if cmd.kind is None:
            continue
        for bad in ("missing", "directory" if cmd.kind != "dir" else "a-file"):
            yield name, bad
        if cmd.kind == "jsonl" and name not in ONLY_PATH_CHECKS:
            for bad in JSONL_CORRUPTIONS:
                if bad == "duplicate-ids" and (name in NO_DUPLICATE_CHECK or name in NO_DUPLICATE_CHECK_EXTRA):
                    continue
                yield name, bad
        if cmd.kind in ("json", "yaml"):
            yield name, "not-utf8"
            yield name, "truncated"
        if cmd.kind == "json":
            yield name, "nan"
            yield name, "surrogate"
        if name in ("report", "pairs --rubric-test"):
            yield name, "missing-field"


# Known gaps, each a strict xfail so the table says when one is fixed.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


def marked_cases():
    for name, bad in cases():
        gap = KNOWN_GAPS.get((name, bad))
        yield pytest.param(name, bad, id=f"{name}-{bad}",
                           marks=[pytest.mark.xfail(strict=True, reason=gap)] if gap else [])


@pytest.mark.parametrize("name,bad", list(marked_cases()))
def test_bad_input_is_refused_in_one_line(name, bad, files, tmp_path, capsys, guard):
    cmd = {**COMMANDS, **EXTRA_INPUTS}[name]
    out = tmp_path / "out" / "result"
    out.parent.mkdir()
    target = files.d / cmd.slot
    argv = cmd.argv(files, str(out))
    name_it = [cmd.slot.split("/")[-1]]
    if bad == "missing":
        (target.unlink() if target.is_file() else __import__("shutil").rmtree(target))
    elif bad == "directory":
        target.unlink()
        target.mkdir()
    elif bad == "a-file":
        __import__("shutil").rmtree(target)
        target.write_text("not a folder\n")
    elif cmd.kind == "jsonl":
        name_it[0] += corrupt_jsonl(bad, target, target.read_text())
    elif cmd.kind == "dir":
        raise AssertionError(bad)
    elif bad == "not-utf8":
        target.write_bytes(target.read_bytes().replace(b"a", b"\xe9", 1))
    elif bad == "truncated" and cmd.kind == "yaml":
        target.write_text(target.read_text() + "\nextra: [unclosed\n")
        if name == "rubric lint":      # a YAML syntax error is what lint is for: exit 1, the problem on stdout
            assert run_cli(argv) == 1
            assert f"{target}: 1 problem(s)" in capsys.readouterr().out and not guard
            return
    elif bad == "truncated":
        target.write_text(target.read_text()[: len(target.read_text()) // 2])
    elif bad == "nan":
        target.write_text(json.dumps({**json.loads(target.read_text()), "x": float("nan")}))
    elif bad == "surrogate":
        target.write_text(json.dumps({**json.loads(target.read_text()), "prompt": "\ud800"}))
    elif bad == "missing-field":
        obj = json.loads(target.read_text())
        del obj["gold"]
        target.write_text(json.dumps(obj))
        name_it.append("gold")
    assert_refused(run_cli(argv), capsys, guard, out if cmd.out else None, *name_it)


@pytest.mark.parametrize("name", [n for n, c in COMMANDS.items() if c.kind in ("jsonl", "json", "yaml")
                                  and c.bom != "skip"])
def test_a_byte_order_mark_is_accepted(name, files, tmp_path, capsys, guard):
    cmd = COMMANDS[name]
    target = files.d / cmd.slot
    target.write_bytes(b"\xef\xbb\xbf" + target.read_bytes())
    out = tmp_path / "out"
    if cmd.bom == "model":           # it read the input and went on to load the model
        with pytest.raises(ModelLoaded):
            run_cli(cmd.argv(files, str(out)))
        return
    rc = run_cli(cmd.argv(files, str(out)))
    assert rc == 0, capsys.readouterr().err


# ---------------------------------------------------------------- bad options
BAD_OPTIONS = {
    "--concurrency": "-1", "--rpm": "-5", "--max-retries": "-1", "--timeout": "0", "--tie-margin": "-3",
    "--samples": "-2", "--max-tokens": "0", "--batch-size": "0", "--lora-r": "0", "--min-kappa": "5",
    "--max-cost": "-1", "-n": "0", "--max-new-tokens": "0", "--limit": "-1", "--grad-accum": "0",
    "--tpm": "0", "--max-steps": "-2", "--lr": "-1", "--bootstrap": "-1", "--max-body-mb": "0",
    "--min-margin": "-1", "--max-length-ratio": "0", "--inconsistent-weight": "-1", "-G": "0",
    "--max-completion-length": "0", "--temperature": "-1", "--top-p": "0", "--show": "-1", "--port": "70000",
    "--num-iterations": "0", "--warmup-steps": "-1", "--max-length": "0", "--lora-alpha": "0",
    "--lora-dropout": "2", "--save-total-limit": "0", "--n-resamples": "0", "--capability-max-new-tokens": "0",
    "--batch-poll": "-1", "--label-smoothing": "2", "--feature-layer": "0",
}


def option_cases():
    for name, cmd in COMMANDS.items():
        parser = LEAVES["export" if name == "export rl-data" else name]
        flags = {s for a in parser._actions for s in a.option_strings}
        for opt, value in BAD_OPTIONS.items():
            if opt in flags and not (name == "export rl-data"):
                yield name, opt, value


@pytest.mark.parametrize("name,opt,value", list(option_cases()), ids=[f"{n} {o} {v}" for n, o, v in option_cases()])
def test_bad_option_is_refused_in_one_line(name, opt, value, files, tmp_path, capsys, guard):
    out = tmp_path / "out"
    argv = COMMANDS[name].argv(files, str(out)) + [opt, value]
    assert_refused(run_cli(argv), capsys, guard, out if COMMANDS[name].out else None, opt)


# ---------------------------------------------------------------- -o equal to the input / an existing folder
def output_cases():
    for name, cmd in COMMANDS.items():
        if cmd.out and cmd.kind == "jsonl":
            yield name, "input"
        if cmd.out and not name.startswith(("train", "export", "pairs")):   # they write a folder: -o DIR is their form
            yield name, "folder"


@pytest.mark.parametrize("name,what", list(output_cases()), ids=[f"{n} -o {w}" for n, w in output_cases()])
def test_output_path_is_checked_before_any_work(name, what, files, tmp_path, capsys, guard):
    cmd = COMMANDS[name]
    if what == "input":
        out = files.d / cmd.slot
        before = out.read_bytes()
    else:
        out = tmp_path / "existing"
        out.mkdir()
    rc = run_cli(cmd.argv(files, str(out)))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1, err
    assert not guard, f"{len(guard)} requests sent before refusing"
    if what == "input":
        assert out.read_bytes() == before
        assert not Path(f"{out}.partial").exists()
    else:
        assert out.is_dir() and not any(out.iterdir())


def test_a_corrupt_work_file_is_refused_and_kept(files, tmp_path, capsys, guard):
    """15.17: a damaged OUT.partial (not a job header) stops the run in one line, before any request;
    the file is left for the user to inspect (or --fresh)."""
    out = tmp_path / "out.jsonl"
    partial = Path(f"{out}.partial")
    partial.write_bytes(b"garbage\xff\n{\"x\":\n")
    rc = run_cli(COMMANDS["judge"].argv(files, str(out)))
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "out.jsonl.partial" in err and "--fresh" in err, err
    assert not guard and not out.exists() and partial.read_bytes() == b"garbage\xff\n{\"x\":\n"


# ---------------------------------------------------------------- the real entry point
@pytest.mark.parametrize("argv_of", [
    lambda F, O: ["judge", F.p("rows.jsonl"), "-r", "helpfulness", "-j", "fake/hash", "--rpm", "-5", "-o", O],
    lambda F, O: ["report", F.p("missing.json"), "-o", O],
])
def test_subprocess_entry_point(argv_of, files, tmp_path):
    (files.d / "rows.jsonl").write_bytes(b'{"prompt": "caf\xe9", "response": "r"}\n')
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "rlaif", *argv_of(files, str(out))], capture_output=True, text=True,
                       env=env, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(lines) == 1, p.stderr
    assert not out.exists()
