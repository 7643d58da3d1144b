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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rlaif.errors import ConfigError, InputError, Problem, RlaifError
from rlaif.io import read_yaml
from rlaif.journal import content_hash, write_json_atomic
from rlaif.options import JudgeOptions

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


class JudgeStage(JudgeOptions):
    """The `judge:` section: every judging option of `rlaif judge` (rlaif.options.JudgeOptions,
    one definition for the API, the CLI and this file) plus the judge, rubric and mode."""

    model_config = ConfigDict(extra="forbid")
    model: str = "local/default"
    rubric: str = "helpfulness"
    mode: Literal["absolute", "rank"] = "absolute"
    concurrency: int = Field(16, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    def stage_config(self) -> dict:
        """What the stage key hashes: the fields this section always had, plus any other option
        set away from its default (so an upgrade does not redo a finished stage)."""
        first = ("model", "rubric", "mode", "generative", "both_orders", "rank_method", "concurrency", "options")
        dump = self.model_dump()
        return {k: v for k, v in dump.items()
                if k in first or v != type(self).model_fields[k].get_default(call_default_factory=True)}

    def judge_options(self) -> JudgeOptions:
        return JudgeOptions(**{k: getattr(self, k) for k in JudgeOptions.model_fields})


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
    judge: JudgeStage = Field(default_factory=JudgeStage)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    train: dict[str, Any] | None = None            # keyword arguments of rlaif.train_dpo
    eval: dict[str, Any] | None = None             # keyword arguments of rlaif.evaluate
    # distilled RLAIF (docs/reward_models.md): a reward model on the pairs, then GRPO on the prompts with it
    rm: dict[str, Any] | None = None               # keyword arguments of rlaif.train_rm
    rm_grpo: dict[str, Any] | None = None          # keyword arguments of rlaif.train_grpo (reward: the rm stage's)


# Optional later stages: (section, rlaif function, the arguments the pipeline wires in itself)
HOOKS = {"train": ("train_dpo", ("data", "output_dir", "resume")),
         "eval": ("evaluate", ("output", "rubrics_dirs", "prompts_dirs", "progress", "model", "tokenizer")),
         "rm": ("train_rm", ("data", "output_dir", "resume")),
         "rm_grpo": ("train_grpo", ("prompts", "output_dir", "resume", "rewards"))}
# trainers take **overrides: their options are these config classes' fields ("module:Class")
HOOK_CONFIGS = {"train": "rlaif.train.dpo:DPOConfig", "rm": "rlaif.train.rm:RMConfig",
                "rm_grpo": "rlaif.train.grpo:GRPOConfig"}
# Keys of the train/eval sections that name files: resolved from the config file's folder, like `prompts:`.
PATH_KEYS = {"train": ("adapter",), "eval": ("prompts", "capability", "xstest", "adapter")}
# eval options that must be positive integers / fractions (evaluate() would fail on them only after loading models)
EVAL_BOUNDS = {"limit": (1, None), "max_new_tokens": (1, None), "capability_max_new_tokens": (1, None),
               "batch_size": (1, None), "concurrency": (1, None), "n_resamples": (1, None), "confidence": (0, 1)}
EVAL_REPORT = "eval.json"


def config_path(base: Path, p) -> Path:
    """A path written in a pipeline config: `~` expanded; relative paths start at the config's folder."""
    q = Path(os.path.expanduser(str(p)))
    return q if q.is_absolute() else base / q


@dataclass
class Loaded:
    cfg: PipelineConfig
    path: Path
    base: Path                        # the config file's folder: relative paths start here

    def resolve(self, p: str) -> Path:
        return config_path(self.base, p)

    @property
    def workdir(self) -> Path:
        return self.resolve(self.cfg.workdir or f"runs/{self.cfg.name or self.path.stem}")

    def section(self, name: str) -> dict:
        """The train/eval section with its file keys resolved from the config file's folder (a
        relative local model folder too), so a run from any working directory reads the same files."""
        sec = dict(getattr(self.cfg, name) or {})
        for k in PATH_KEYS[name]:
            if isinstance(sec.get(k), str):
                sec[k] = str(self.resolve(sec[k]))
        for k in ("model", "base", "rubric", "refusal_rubric"):
            v = sec.get(k)
            if isinstance(v, str) and not Path(v).is_absolute() and (self.base / v).exists():
                sec[k] = str(self.base / v)
        return sec

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
    try:      # the one reader: encoding, BOM, folders, duplicate keys, YAML errors with their line
        raw = read_yaml(path)
    except InputError as e:
        where = e.path + (f":{e.line}" if e.line is not None else "")
        raise ConfigError([Problem(where, str(e)[len(where) + 2:])], source=src) from None
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
    assert cfg is not None          # a validation error above became a problem, and problems raised
    return Loaded(cfg, path.resolve(), base)


def _section(raw: dict, name: str) -> dict:
    v = raw.get(name)
    return v if isinstance(v, dict) else {}


def _semantic_problems(raw: dict, base: Path, src: str) -> list[Problem]:
    """What pydantic can't see: files, rubrics, model names, stages this version lacks. Checked on
    the raw values, so these are reported even when other fields failed validation."""
    from rlaif.backends import DEFAULT_MODEL, PROVIDERS, parse_model_name
    from rlaif.errors import InputError
    from rlaif.rubrics import load_rubric
    from rlaif.sampling import read_prompts

    out: list[Problem] = []

    def at(loc):
        return f"{src}: {loc}"

    def resolve(p):
        return config_path(base, p)

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
    out += _later_stage_problems(raw, base, src)
    for sec, (fn_name, wired) in HOOKS.items():
        if raw.get(sec) is None:
            continue
        fn = _hook(fn_name)
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
            fields = dataclasses.fields(getattr(importlib.import_module(mod), cls))
            params.update({f.name: None for f in fields})  # type: ignore[misc]  # names only
            takes_any = False
        for key in raw[sec]:
            if key in wired:
                out.append(Problem(at(f"{sec}.{key}"), "set by the pipeline itself; remove it"))
            elif key not in params and not takes_any:
                out.append(Problem(at(f"{sec}.{key}"), f"unknown option for rlaif.{fn_name}"))
    return out


def _later_stage_problems(raw: dict, base: Path, src: str) -> list[Problem]:
    """What the train and eval stages would reject only after sampling, judging and training: the
    eval's files, rubrics, judge and numbers, the adapter it needs, and the trainer's bounds."""
    from rlaif.errors import InputError

    out: list[Problem] = []
    tr, ev = raw.get("train"), raw.get("eval")
    if isinstance(tr, dict):
        try:
            from rlaif.train.dpo import DPOConfig

            DPOConfig(**{k: v for k, v in tr.items() if k not in HOOKS["train"][1] and k != "lora"})
        except ConfigError as e:
            out += [Problem(f"{src}: train.{p.where}", p.message) for p in e.problems]
        except TypeError:
            pass                    # an unknown key: reported by the key check below
    if not isinstance(ev, dict):
        return out

    def at(k):
        return f"{src}: eval.{k}"

    def resolve(p):
        return config_path(base, p)

    if "prompts" not in ev:
        out.append(Problem(at("prompts"), "required: the held-out prompts (JSONL) the win rate is measured on"))
    if tr is None and "adapter" not in ev:
        out.append(Problem(at("adapter"), "required when the pipeline has no train: section (the adapter to evaluate)"))
    if tr is not None and "adapter" in ev:
        out.append(Problem(at("adapter"), "set by the pipeline itself (the adapter the train stage writes); remove it"))
    for k in PATH_KEYS["eval"]:
        if isinstance(ev.get(k), str) and not resolve(ev[k]).exists():
            out.append(Problem(at(k), f"file not found: {resolve(ev[k])}"))
    if isinstance(ev.get("prompts"), str) and resolve(ev["prompts"]).is_file():
        from rlaif.evaluate import read_prompts

        try:
            read_prompts(resolve(ev["prompts"]))
        except InputError as e:
            out.append(Problem(at("prompts"), str(e)))
    for k, (lo, hi) in EVAL_BOUNDS.items():
        v = ev.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (k != "confidence" and not isinstance(v, int)):
            out.append(Problem(at(k), f"expected a {'number' if k == 'confidence' else 'whole number'}, got {v!r}"))
        elif (v <= lo if k == "confidence" else v < lo) or (hi is not None and v >= hi):
            out.append(Problem(at(k), f"{v} is out of range (" + (f"between {lo} and {hi}" if hi else f"≥ {lo}") + ")"))
    if isinstance(ev.get("judge"), str):
        from rlaif.backends import PROVIDERS, parse_model_name

        try:
            provider, _ = parse_model_name(ev["judge"])
            if provider not in PROVIDERS:
                known = ", ".join(sorted(PROVIDERS))
                out.append(Problem(at("judge"), f"unknown provider '{provider}'; known: {known}"))
        except RlaifError as e:
            out.append(Problem(at("judge"), str(e)))
    dirs = [str(resolve(d)) for d in raw.get("rubrics_dirs") or [] if isinstance(d, str)] or None
    pdirs = [str(resolve(d)) for d in raw.get("prompts_dirs") or [] if isinstance(d, str)] or None
    for k, default, mode in (("rubric", "helpfulness", "pairwise"), ("refusal_rubric", "over_refusal", "absolute")):
        name = ev.get(k, default)
        if not isinstance(name, str) or (k == "refusal_rubric" and ev.get("no_refusal")):
            continue
        from rlaif.rubrics import load_rubric

        ref = str(resolve(name)) if (name.endswith((".yaml", ".yml")) or "/" in name) else name
        try:
            r = load_rubric(ref, rubrics_dirs=dirs, prompts_dirs=pdirs)
            if mode not in r.modes:
                out.append(Problem(at(k), f"rubric '{r.name}' does not support {mode} judging, which eval needs"))
        except ConfigError as e:
            out += [Problem(at(f"{k} ({name})"), str(p)) for p in e.problems]
        except RlaifError as e:
            out.append(Problem(at(k), str(e)))
    return out


# ---------------------------------------------------------------------------------------------
# Stage bookkeeping
# ---------------------------------------------------------------------------------------------
def stage_key(name: str, config: dict, inputs: dict) -> str:
    blob = json.dumps({"stage": name, "version": STAGE_VERSION, "config": config, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Manifest:
    """`<workdir>/manifest.json`: finished stages, each with its key and its output's hash."""

    def __init__(self, workdir: Path):
        self.path = workdir / MANIFEST
        self.data: dict = {"stages": {}}
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
        write_json_atomic(self.path, self.data)


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
        ev = next((s for s in self.stages if s.name == "eval"), None)
        if ev is not None:
            wr = ev.summary.get("win_rate")
            lines.append(f"eval: win rate {'n/a' if wr is None else f'{100 * wr:.1f}%'} over {ev.summary.get('n')} "
                         f"prompts; see it with `rlaif report {ev.output} -o {ev.output.with_suffix('.html')}`")
            lines += [f"warning: {w}" for w in ev.summary.get("warnings") or []]
        return "\n".join(lines)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def _hook(fn_name: str):
    """The public function a later stage calls (rlaif.train_dpo, rlaif.evaluate), imported from
    its own module, not through the package __init__ (which imports this module: a cycle)."""
    if fn_name == "train_dpo":
        from rlaif.train.dpo import train_dpo
        return train_dpo
    if fn_name == "evaluate":
        from rlaif.evaluate import evaluate
        return evaluate
    if fn_name == "train_rm":
        from rlaif.train.rm import train_rm
        return train_rm
    if fn_name == "train_grpo":
        from rlaif.train.grpo import train_grpo
        return train_grpo
    return None


def run(config: str | Path, *, force: bool = False, validate_only: bool = False,
        progress: bool = True) -> RunResult | None:
    """Run (or resume) the pipeline in `config`; `rlaif run` calls this. Usable in a running event loop."""
    loaded = load_config(config)
    if validate_only:
        return None
    from rlaif.models import quiet_libraries

    quiet_libraries()            # as `rlaif pairs`: no transformers deprecation noise, no datasets bars
    cfg = loaded.cfg
    wd = loaded.workdir
    wd.mkdir(parents=True, exist_ok=True)
    with _lock(wd):
        return _run(loaded, cfg, wd, force, progress)


def _run(loaded: Loaded, cfg: PipelineConfig, wd: Path, force: bool, progress: bool) -> RunResult:
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
        kwargs = dict(judge=backend(jc.model, jc.options), mode=jc.mode, output=judged, options=jc.judge_options(),
                      concurrency=jc.concurrency,
                      prompts_dirs=prompts_dirs, rubrics_dirs=rubrics_dirs, progress=progress)
        _rows, summ = judge_fn(source, rubric, **kwargs)
        _say(summ.render())
        return summ.to_dict()

    judge_key = stage_key("judge", {**jc.stage_config(), "rubric": rubric.id}, {"candidates": content_hash(candidates)})
    stage("judge", judge_key, judged, do_judge)

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
        train_opts = loaded.section("train")

        def do_train():
            # a killed training run continues from its newest checkpoint, exactly (see rlaif/train/loop.py)
            resume = True if any(train_dir.glob("checkpoint-*")) else None
            out = _hook("train_dpo")(str(dataset), output_dir=str(train_dir), resume=resume, **train_opts)
            return {k: v for k, v in out.items() if isinstance(v, (int, float, str))} if isinstance(out, dict) else {}
        stage("train", stage_key("train", train_opts, {"dataset": content_hash(dataset)}), adapter, do_train)
    if cfg.eval is not None:
        report = wd / EVAL_REPORT
        eval_opts = loaded.section("eval")
        if cfg.train is not None:
            eval_opts["adapter"] = str(adapter)

        def do_eval():
            out = _hook("evaluate")(**eval_opts, output=str(report), rubrics_dirs=rubrics_dirs,
                                     prompts_dirs=prompts_dirs, progress=progress)
            return eval_summary(out)
        inputs = {"adapter": content_hash(Path(eval_opts["adapter"]))}
        stage("eval", stage_key("eval", eval_opts, inputs), report, do_eval)
    # 6-7. optional distilled RLAIF: train a reward model on the pairs, then GRPO with it as the reward
    rm_dir, rm_grpo_dir = wd / "rm", wd / "rm_grpo"
    if cfg.rm is not None or cfg.rm_grpo is not None:
        def do_rm():
            resume = True if any(rm_dir.glob("checkpoint-*")) else None
            out = _hook("train_rm")(str(dataset), output_dir=str(rm_dir), resume=resume, **(cfg.rm or {}))
            return {k: v for k, v in out.items() if isinstance(v, (int, float, str))}
        stage("rm", stage_key("rm", cfg.rm or {}, {"dataset": content_hash(dataset)}), rm_dir / "adapter", do_rm)
    if cfg.rm_grpo is not None:
        def do_rm_grpo():
            resume = True if any(rm_grpo_dir.glob("checkpoint-*")) else None
            out = _hook("train_grpo")(str(prompts), output_dir=str(rm_grpo_dir), resume=resume,
                                           rewards=[f"rm:{rm_dir}"], **cfg.rm_grpo)
            return {k: v for k, v in out.items() if isinstance(v, (int, float, str))}
        stage("rm_grpo", stage_key("rm_grpo", cfg.rm_grpo, {"rm": content_hash(rm_dir / "adapter"),
                                                             "prompts": content_hash(prompts)}),
              rm_grpo_dir / "adapter", do_rm_grpo)
    return RunResult(wd, results)


def eval_summary(report: dict) -> dict:
    """The eval report's headline numbers (the manifest keeps these, not every answer)."""
    wr, tax = report.get("win_rate") or {}, report.get("alignment_tax") or {}
    return {"win_rate": wr.get("value"), "win_rate_ci": wr.get("ci"), "n": wr.get("n"),
            "capability_delta": tax.get("capability_delta"), "over_refusal_delta": tax.get("over_refusal_delta"),
            "unsafe_refusal_delta": tax.get("unsafe_refusal_delta"), "warnings": report.get("warnings") or []}


def _write_rank_input(candidates: Path, dest: Path) -> None:
    """Candidates regrouped one row per prompt, for rank judging (`responses` + their sampler models)."""
    from rlaif.grouping import group_candidates
    from rlaif.io import iter_jsonl, write_jsonl

    rows: list[dict] = []
    for _n, r in iter_jsonl(candidates):
        if isinstance(r, Exception):          # a line that is not JSON: the reader's error names it
            raise r
        rows.append(r)  # type: ignore[arg-type]
    write_jsonl(dest, group_candidates(rows, "rank").rows)
