"""Pipelines: sample → judge → pairs (→ train → eval) from one YAML file, resumable stage by stage.

    rlaif run examples/pipeline.yaml

Why one validated config: a run can cost hours or dollars, so every problem in the file (unknown
keys, bad values, a missing prompts file, an unknown rubric, a malformed model name, a stage this
version cannot run) is reported at once, before any work starts.

Why stages with a manifest: each stage writes its output atomically (temp file, then rename) and
only then records it in `<workdir>/manifest.json` with a key: the hash of the stage's config and
of its input's content. On a re-run a stage whose key matches and whose output is intact (same
sha256) is skipped, so killing `rlaif run` at any moment and running it again never redoes a
finished stage; a changed config or input redoes that stage and everything after it. Inside a
stage, paid calls are protected too: the sample stage journals each candidate as it arrives and
reuses them on a re-run (sample(resume=True)); the judge stage relies on the engine's request
ledger, and on `judge(resume=True)` when this rlaif's judge() offers it (the pipeline passes it
whenever the function accepts it).

The `train:` and `eval:` sections call `rlaif.train_dpo` / `rlaif.evaluate` with the section's
keys as keyword arguments, when this version of rlaif has those functions; otherwise the config
is rejected up front.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import model_validator, BaseModel, ConfigDict, Field, ValidationError

from rlaif.errors import ConfigError, Problem, RlaifError

STAGE_VERSION = 1      # bump when a stage's output format changes, so old outputs are not reused
MANIFEST = "manifest.json"


# ---------------------------------------------------------------------------------------------
# The config people write
# ---------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SampleConfig(_Strict):
    model: str = "local/default"
    n: int = Field(4, ge=1, le=64)
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.8, ge=0, le=5)
    top_p: float = Field(0.95, gt=0, le=1)
    seed: int | None = 0
    concurrency: int = Field(16, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)     # passed to get_backend (base_url=..., batch_size=...)


class JudgeConfig(_Strict):
    model: str = "local/default"
    rubric: str = "helpfulness"
    mode: Literal["absolute", "rank"] = "absolute"
    generative: bool = False
    both_orders: bool = True
    rank_method: Literal["tournament", "listwise"] = "tournament"
    concurrency: int = Field(16, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class PairsConfig(_Strict):
    policy: Literal["best_vs_worst", "all_pairs", "best_vs_random"] = "best_vs_worst"
    min_margin: float | None = Field(None, ge=0)
    inconsistent: Literal["drop", "downweight", "keep"] = "drop"
    inconsistent_weight: float = Field(0.5, gt=0, le=1)
    max_length_ratio: float | None = Field(None, ge=1)
    seed: int = 0
    formats: list[Literal["parquet", "jsonl"]] = Field(default_factory=list)
    push_to_hub: str | None = None
    min_kappa: float | None = Field(None, ge=-1, le=1)    # export gate, with rubric_test (a RESULT.json)
    rubric_test: str | None = None

    @model_validator(mode="after")
    def _gate_needs_a_result(self):
        if self.min_kappa is not None and not self.rubric_test:
            raise ValueError("min_kappa needs rubric_test: the RESULT.json of `rlaif rubric test` for this rubric")
        return self


class PipelineConfig(_Strict):
    name: str | None = None
    prompts: str                                   # JSONL, relative to the config file's folder
    limit: int | None = Field(None, ge=1)          # only the first N prompts (quick demos and trials)
    workdir: str | None = None                     # default: runs/<name or config file stem>
    rubrics_dirs: list[str] = Field(default_factory=list)
    prompts_dirs: list[str] = Field(default_factory=list)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    train: dict[str, Any] | None = None            # keyword arguments of rlaif.train_dpo
    eval: dict[str, Any] | None = None             # keyword arguments of rlaif.evaluate
    # distilled RLAIF (docs/reward_models.md): a reward model on the pairs, then GRPO on the prompts with it
    rm: dict[str, Any] | None = None               # keyword arguments of rlaif.train_rm
    rm_grpo: dict[str, Any] | None = None          # keyword arguments of rlaif.train_grpo (reward: the rm stage's)


# Optional later stages: (section, rlaif function, the arguments the pipeline wires in itself)
HOOKS = {"train": ("train_dpo", ("data", "output_dir", "resume")), "eval": ("evaluate", ("adapter", "output")),
         "rm": ("train_rm", ("data", "output_dir", "resume")),
         "rm_grpo": ("train_grpo", ("prompts", "output_dir", "resume", "rewards"))}
# trainers take **overrides: their options are these config classes' fields ("module:Class")
HOOK_CONFIGS = {"train": "rlaif.train.dpo:DPOConfig", "rm": "rlaif.train.rm:RMConfig",
                "rm_grpo": "rlaif.train.grpo:GRPOConfig"}


@dataclass
class Loaded:
    cfg: PipelineConfig
    path: Path
    base: Path                        # the config file's folder: relative paths start here

    def resolve(self, p: str) -> Path:
        q = Path(os.path.expanduser(p))
        return q if q.is_absolute() else self.base / q

    @property
    def workdir(self) -> Path:
        return self.resolve(self.cfg.workdir or f"runs/{self.cfg.name or self.path.stem}")

    def rubric_ref(self) -> str:
        r = self.cfg.judge.rubric
        return str(self.resolve(r)) if (r.endswith((".yaml", ".yml")) or "/" in r) else r


def _loc(loc) -> str:
    return ".".join(str(x) for x in loc) or "(top level)"


def load_config(path: str | Path) -> Loaded:
    """Parse and validate a pipeline file; ConfigError listing every problem, before any work."""
    path = Path(path)
    src = str(path)
    if not path.exists():
        raise ConfigError([Problem(src, "file not found")], source=src)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{src}:{mark.line + 1}" if mark else src
        raise ConfigError([Problem(where, f"invalid YAML: {getattr(e, 'problem', e)}")], source=src)
    if not isinstance(raw, dict):
        raise ConfigError([Problem(src, f"expected a mapping of sections, got {type(raw).__name__}")], source=src)
    problems: list[Problem] = []
    cfg = None
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(Problem(f"{src}: {_loc(err['loc'])}", msg))
    base = path.resolve().parent
    problems += _semantic_problems(raw, base, src)
    if problems:
        raise ConfigError(problems, source=src)
    return Loaded(cfg, path.resolve(), base)


def _section(raw: dict, name: str) -> dict:
    v = raw.get(name)
    return v if isinstance(v, dict) else {}


def _semantic_problems(raw: dict, base: Path, src: str) -> list[Problem]:
    """What pydantic can't see: files, rubrics, model names, stages this version lacks. Checked on
    the raw values, so these are reported even when other fields failed validation."""
    import rlaif
    from rlaif.backends import DEFAULT_MODEL, PROVIDERS, parse_model_name
    from rlaif.errors import InputError
    from rlaif.rubrics import load_rubric
    from rlaif.sampling import read_prompts

    out: list[Problem] = []

    def at(loc):
        return f"{src}: {loc}"

    def resolve(p):
        q = Path(os.path.expanduser(str(p)))
        return q if q.is_absolute() else base / q

    prompts = raw.get("prompts")
    if isinstance(prompts, str):
        pp = resolve(prompts)
        if not pp.exists():
            out.append(Problem(at("prompts"), f"file not found: {pp}"))
        else:
            try:
                read_prompts(pp)
            except InputError as e:
                out.append(Problem(at("prompts"), str(e)))
    for sec in ("sample", "judge"):
        model = _section(raw, sec).get("model", DEFAULT_MODEL)
        if isinstance(model, str):
            try:
                provider, _ = parse_model_name(model)
                if provider not in PROVIDERS:
                    out.append(Problem(at(f"{sec}.model"), f"unknown provider '{provider}' in '{model}'; "
                                                           f"known: {', '.join(sorted(PROVIDERS))}"))
            except RlaifError as e:
                out.append(Problem(at(f"{sec}.model"), str(e)))
    s = _section(raw, "sample")
    if s.get("temperature", 0.8) == 0 and isinstance(s.get("n", 4), int) and s.get("n", 4) > 1:
        out.append(Problem(at("sample.temperature"), "0 means greedy decoding: all n candidates would be identical"))
    j = _section(raw, "judge")
    rubric = j.get("rubric", "helpfulness")
    if isinstance(rubric, str):
        dirs = [str(resolve(d)) for d in raw.get("rubrics_dirs") or [] if isinstance(d, str)]
        pdirs = [str(resolve(d)) for d in raw.get("prompts_dirs") or [] if isinstance(d, str)]
        ref = str(resolve(rubric)) if (rubric.endswith((".yaml", ".yml")) or "/" in rubric) else rubric
        try:
            r = load_rubric(ref, rubrics_dirs=dirs or None, prompts_dirs=pdirs or None)
            mode = j.get("mode", "absolute")
            if isinstance(mode, str) and mode in ("absolute", "rank") and mode not in r.modes:
                out.append(Problem(at("judge.mode"), f"rubric '{r.name}' does not support {mode} "
                                                     f"(it supports {', '.join(r.modes)})"))
        except ConfigError as e:
            out += [Problem(at(f"judge.rubric ({rubric})"), str(p)) for p in e.problems]
        except RlaifError as e:
            out.append(Problem(at("judge.rubric"), str(e)))
    if isinstance(_section(raw, "pairs").get("push_to_hub"), str):
        from rlaif.pairs import hub_token
        try:
            hub_token()
        except RlaifError as e:
            out.append(Problem(at("pairs.push_to_hub"), str(e)))
    for sec, (fn_name, wired) in HOOKS.items():
        if raw.get(sec) is None:
            continue
        fn = getattr(rlaif, fn_name, None)
        if fn is None:
            out.append(Problem(at(sec), f"the {sec} stage is not available in this version of rlaif "
                                        f"(rlaif.{fn_name} does not exist); remove the section"))
            continue
        if not isinstance(raw[sec], dict):
            continue
        params = dict(inspect.signature(fn).parameters)
        takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
        if sec in HOOK_CONFIGS:       # train_dpo(**overrides) etc.: the options are the config's fields
            import dataclasses
            import importlib

            mod, cls = HOOK_CONFIGS[sec].split(":")
            params.update({f.name: None for f in dataclasses.fields(getattr(importlib.import_module(mod), cls))})
            takes_any = False
        for key in raw[sec]:
            if key in wired:
                out.append(Problem(at(f"{sec}.{key}"), "set by the pipeline itself; remove it"))
            elif key not in params and not takes_any:
                out.append(Problem(at(f"{sec}.{key}"), f"unknown option for rlaif.{fn_name}"))
    return out


# ---------------------------------------------------------------------------------------------
# Stage bookkeeping
# ---------------------------------------------------------------------------------------------
def content_hash(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents)."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0")
            h.update(content_hash(f).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stage_key(name: str, config: dict, inputs: dict) -> str:
    blob = json.dumps({"stage": name, "version": STAGE_VERSION, "config": config, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Manifest:
    """`<workdir>/manifest.json`: finished stages, each with its key and its output's hash."""

    def __init__(self, workdir: Path):
        self.path = workdir / MANIFEST
        self.data = {"stages": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                self.data = {"stages": {}}      # written atomically, so only a hand edit gets here; redo all

    def done(self, name: str, key: str, output: Path) -> bool:
        st = self.data["stages"].get(name)
        return bool(st and st.get("key") == key and output.exists() and st.get("sha256") == content_hash(output))

    def record(self, name: str, key: str, output: Path, summary: dict) -> None:
        self.data["stages"][name] = {"key": key, "output": output.name, "sha256": content_hash(output),
                                     "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "summary": summary}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)


@contextlib.contextmanager
def _lock(workdir: Path):
    """One `rlaif run` per workdir at a time (two would overwrite each other's stage files)."""
    import fcntl

    fh = open(workdir / ".lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RlaifError(f"another `rlaif run` is using {workdir}; wait for it or use another workdir") from None
        yield
    finally:
        fh.close()


@dataclass
class StageResult:
    name: str
    status: str                  # "ran" | "skipped"
    output: Path
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RunResult:
    workdir: Path
    stages: list[StageResult]

    @property
    def dataset(self) -> Path | None:
        return next((s.output for s in self.stages if s.name == "pairs"), None)

    def render(self) -> str:
        lines = [f"pipeline finished in {self.workdir}"]
        for s in self.stages:
            how = f"ran in {s.seconds:.1f}s" if s.status == "ran" else "already done, skipped"
            lines.append(f"  {s.name:7} {how:24} -> {s.output}")
        return "\n".join(lines)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def _call_with(fn, wired: dict, user: dict):
    """Call a hook with the user's keyword arguments plus the wired-in ones it accepts."""
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in wired.items() if k in params or takes_any}
    return fn(**user, **kwargs)


def run(config: str | Path, *, force: bool = False, validate_only: bool = False, progress: bool = True) -> RunResult | None:
    """Run (or resume) the pipeline in `config`; `rlaif run` calls this. Usable in a running event loop."""
    loaded = load_config(config)
    if validate_only:
        return None
    cfg = loaded.cfg
    wd = loaded.workdir
    wd.mkdir(parents=True, exist_ok=True)
    with _lock(wd):
        return _run(loaded, cfg, wd, force, progress)


def _run(loaded: Loaded, cfg: PipelineConfig, wd: Path, force: bool, progress: bool) -> RunResult:
    import rlaif
    from rlaif.backends import get_backend
    from rlaif.judge import judge as judge_fn
    from rlaif.pairs import build_pairs
    from rlaif.rubrics import load_rubric
    from rlaif.sampling import sample

    man = Manifest(wd)
    results: list[StageResult] = []
    backends: dict[str, object] = {}
    rubrics_dirs = [str(loaded.resolve(d)) for d in cfg.rubrics_dirs] or None
    prompts_dirs = [str(loaded.resolve(d)) for d in cfg.prompts_dirs] or None

    def backend(name, options):
        # one backend per (model, options): a local model used to sample and to judge is loaded once
        k = json.dumps([name, options], sort_keys=True, default=str)
        if k not in backends:
            backends[k] = get_backend(name, **options)
        return backends[k]

    def stage(name, key, output: Path, work) -> StageResult:
        if not force and man.done(name, key, output):
            _say(f"[{name}] already done ({output.name}), skipping")
            st = man.data["stages"][name]
            r = StageResult(name, "skipped", output, st.get("summary", {}))
        else:
            _say(f"[{name}] running")
            t0 = time.time()
            summary = work()
            man.record(name, key, output, summary)
            r = StageResult(name, "ran", output, summary, time.time() - t0)
            _say(f"[{name}] done in {r.seconds:.1f}s")
        results.append(r)
        return r

    # 1. sample
    prompts = loaded.resolve(cfg.prompts)
    candidates = wd / "candidates.jsonl"
    sc = cfg.sample

    def do_sample():
        _rows, summ = sample(prompts, sc.n, model=backend(sc.model, sc.options), output=candidates,
                             max_new_tokens=sc.max_new_tokens, temperature=sc.temperature, top_p=sc.top_p,
                             seed=sc.seed, concurrency=sc.concurrency, limit=cfg.limit, resume=True, progress=progress)
        _say(summ.render())
        return summ.to_dict()

    stage("sample", stage_key("sample", {**sc.model_dump(), "limit": cfg.limit}, {"prompts": content_hash(prompts)}),
          candidates, do_sample)

    # 2. judge
    jc = cfg.judge
    rubric = load_rubric(loaded.rubric_ref(), rubrics_dirs=rubrics_dirs, prompts_dirs=prompts_dirs)
    judged = wd / "judged.jsonl"

    def do_judge():
        source = candidates
        if jc.mode == "rank":
            source = wd / "rank_input.jsonl"
            _write_rank_input(candidates, source)
        # judge() writes `judged` atomically once complete and keeps its resumable work in judged.jsonl.partial
        kwargs = dict(judge=backend(jc.model, jc.options), mode=jc.mode, output=judged, generative=jc.generative,
                      both_orders=jc.both_orders, rank_method=jc.rank_method, concurrency=jc.concurrency,
                      prompts_dirs=prompts_dirs, rubrics_dirs=rubrics_dirs, progress=progress)
        if "resume" in inspect.signature(judge_fn).parameters:
            kwargs["resume"] = True          # per-row resume of a killed judge stage, where judge() offers it
        _rows, summ = judge_fn(source, rubric, **kwargs)
        _say(summ.render())
        return summ.to_dict()

    stage("judge", stage_key("judge", {**jc.model_dump(), "rubric": rubric.id}, {"candidates": content_hash(candidates)}),
          judged, do_judge)

    # 3. pairs
    pc = cfg.pairs
    dataset = wd / "dataset"

    def do_pairs():
        res = build_pairs(judged, dataset, policy=pc.policy, min_margin=pc.min_margin, inconsistent=pc.inconsistent,
                          inconsistent_weight=pc.inconsistent_weight, max_length_ratio=pc.max_length_ratio,
                          seed=pc.seed, formats=pc.formats, push_to_hub_repo=pc.push_to_hub, name=cfg.name,
                          min_kappa=pc.min_kappa,
                          rubric_test_result=loaded.resolve(pc.rubric_test) if pc.rubric_test else None)
        _say(res.render())
        return {"counts": res.stats["counts"], "dropped": res.stats["dropped"]}

    stage("pairs", stage_key("pairs", pc.model_dump(), {"judged": content_hash(judged)}), dataset, do_pairs)

    # 4-5. optional train / eval, through the functions other modules provide
    train_dir = wd / "train"
    adapter = train_dir / "adapter"          # written last by train_dpo: its presence means training finished
    if cfg.train is not None:
        def do_train():
            # a killed training run continues from its newest checkpoint, exactly (see rlaif/train/loop.py)
            resume = True if any(train_dir.glob("checkpoint-*")) else None
            out = rlaif.train_dpo(str(dataset), output_dir=str(train_dir), resume=resume, **cfg.train)
            return {k: v for k, v in out.items() if isinstance(v, (int, float, str))} if isinstance(out, dict) else {}
        stage("train", stage_key("train", cfg.train, {"dataset": content_hash(dataset)}), adapter, do_train)
    if cfg.eval is not None:
        report = wd / "eval"

        def do_eval():
            wired = {"output": str(report)}
            if cfg.train is not None:
                wired["adapter"] = str(adapter)
            out = _call_with(rlaif.evaluate, wired, cfg.eval)
            return out if isinstance(out, dict) else {}
        inputs = {"adapter": content_hash(adapter)} if cfg.train is not None else {}
        stage("eval", stage_key("eval", cfg.eval, inputs), report, do_eval)
    # 6-7. optional distilled RLAIF: train a reward model on the pairs, then GRPO with it as the reward
    rm_dir, rm_grpo_dir = wd / "rm", wd / "rm_grpo"
    if cfg.rm is not None or cfg.rm_grpo is not None:
        def do_rm():
            resume = True if any(rm_dir.glob("checkpoint-*")) else None
            out = rlaif.train_rm(str(dataset), output_dir=str(rm_dir), resume=resume, **(cfg.rm or {}))
            return {k: v for k, v in out.items() if isinstance(v, (int, float, str))}
        stage("rm", stage_key("rm", cfg.rm or {}, {"dataset": content_hash(dataset)}), rm_dir / "adapter", do_rm)
    if cfg.rm_grpo is not None:
        def do_rm_grpo():
            resume = True if any(rm_grpo_dir.glob("checkpoint-*")) else None
            out = rlaif.train_grpo(str(prompts), output_dir=str(rm_grpo_dir), resume=resume,
                                   rewards=[f"rm:{rm_dir}"], **cfg.rm_grpo)
            return {k: v for k, v in out.items() if isinstance(v, (int, float, str))}
        stage("rm_grpo", stage_key("rm_grpo", cfg.rm_grpo, {"rm": content_hash(rm_dir / "adapter"),
                                                             "prompts": content_hash(prompts)}),
              rm_grpo_dir / "adapter", do_rm_grpo)
    return RunResult(wd, results)


def _write_rank_input(candidates: Path, dest: Path) -> None:
    """Candidates regrouped one row per prompt, for rank judging (`responses` + their sampler models)."""
    from rlaif.io import iter_jsonl, write_jsonl

    groups: dict[str, dict] = {}
    for _n, r in iter_jsonl(candidates):
        g = groups.setdefault(r["prompt_id"], {"id": r["prompt_id"], "prompt": r["prompt"], "messages": r["messages"],
                                               "responses": [], "models": [], "candidate_ids": []})
        g["responses"].append(r["response"])
        g["models"].append(r.get("model"))
        g["candidate_ids"].append(r["id"])
    write_jsonl(dest, [g for g in groups.values() if len(g["responses"]) >= 2])
