"""GRPO with a reward model: `--reward rm:PATH`, the hybrid fallback and the drift watch.

Why: an LLM judge as the GRPO reward costs one call per completion (8 × 64 × 1,000 steps = 512k
calls). A reward model distilled from that judge (`rlaif train rm`) answers in one batched forward
pass on the training device. Two guards keep it honest:

- **Fallback** (`fallback=` judge, `fallback_band=` b): GRPO only uses a reward through its
  advantage r − mean(group), so the verdicts that matter most are the ones whose *sign* is in doubt.
  A completion whose reward-model score lies within b (rubric scale units) of its group's mean is
  sent to the LLM judge and the judge's score replaces the model's. Each such verdict is appended to
  OUT/relabel.jsonl as a judged row (prompt, response, score, rubric, judge), which the next
  `rlaif train rm OUT/relabel.jsonl` round reads as pointwise data; an API judge's answers also go to
  the request ledger like any judge call. A judge that cannot score a completion leaves the model's
  score in place and is counted (`rm/fallback_unscored`), never turned into a number.
- **Drift watch** (`drift_every=` K, `drift_n=` n, `drift_floor=` f): on every K-th reward call the
  first n completions of the batch (a fixed slice of fresh rollouts) are also judged; agreement is
  the share of same-prompt pairs the judge tells apart that the reward model orders the same way.
  It is logged (`rm/drift_agreement`); under f the run warns on stderr or, with
  `drift_action="stop"`, stops with DriftError: the reward-hacking alarm (the policy has found
  outputs the model scores high and the judge does not).

Rewards are on the rubric's scale when the model has one (expected scale point, or the rescaled
regression); a Bradley–Terry model without a rubric gives its raw reward, mapped onto the fallback
judge's scale (lo + (hi − lo)·σ(r)) when a judge is attached so both speak the same units.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from rlaif.errors import RlaifError

DRIFT_ACTIONS = ("warn", "stop")


class DriftError(RlaifError):
    """The reward model's agreement with the judge fell under --drift-floor (drift_action=stop)."""


def groups_of(prompts: list) -> list[int]:
    """Group id of each completion: GRPO lays out the G completions of a prompt consecutively."""
    ids, g = [], -1
    for i, p in enumerate(prompts):
        if i == 0 or p != prompts[i - 1]:
            g += 1
        ids.append(g)
    return ids


def uncertain(rewards: list[float], groups: list[int], band: float) -> list[int]:
    """Indices whose reward lies within `band` of its group's mean (strictly): their advantage sign is
    in doubt. Groups of one carry no advantage and are never sent."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out: list[int] = []
    for idx in members.values():
        if len(idx) < 2:
            continue
        mean = sum(rewards[i] for i in idx) / len(idx)
        out.extend(i for i in idx if abs(rewards[i] - mean) < band)
    return sorted(out)


def pair_agreement(model: list[float], judge: list[float | None], groups: list[int]) -> float | None:
    """Share of same-group pairs the judge tells apart (different scores) that the model orders the
    same way; None when there is no such pair."""
    agree = total = 0
    for i in range(len(model)):
        for j in range(i + 1, len(model)):
            ji, jj = judge[i], judge[j]
            if groups[i] != groups[j] or ji is None or jj is None or ji == jj:
                continue
            total += 1
            agree += (model[i] - model[j]) * (ji - jj) > 0
    return agree / total if total else None


class RMReward:
    """A reward model as a TRL-style reward function `f(prompts, completions, **kw) -> list[float]`."""

    def __init__(self, path: str, device=None, batch_size: int = 32, model=None, tokenizer=None):
        from rlaif.train.rm_model import read_info

        self.path = str(path)
        self.info = read_info(path)
        self.device, self.batch_size = device, batch_size
        self._preloaded = (model, tokenizer)
        self._rm = None
        self.__name__ = f"rm:{path}"
        self.judge: Callable[..., list] | None = None     # the LLM judge reward (configure)
        self.judge_name: str | None = None
        self.scale: tuple[float, float] | None = ((min(self.info.points), max(self.info.points))
                                                 if self.info.points else None)
        self.band: float | None = None
        self.drift_floor: float | None = None
        self.drift_every, self.drift_n, self.drift_action = 0, 8, "warn"
        self.relabel_path: Path | None = None
        self.calls = 0
        self.judge_calls = 0              # completions sent to the LLM judge (fallback + drift)
        self.totals = {"fallback": 0, "fallback_unscored": 0, "drift_checks": 0}
        self._last: dict = {}

    def configure(self, *, judge=None, band: float | None = None, drift_every: int = 0, drift_n: int = 8,
                  drift_floor: float | None = None, drift_action: str = "warn", out_dir=None,
                  judge_backends: dict | None = None) -> RMReward:
        """Attach the LLM judge (a `rubric:NAME@provider/model` spec or a reward callable) for the
        fallback band and/or the drift watch."""
        from rlaif.train.rewards import RubricReward, load_reward, reward_name

        problems = []
        if (band is not None or drift_every) and judge is None:
            problems.append("--fallback-band / --drift-every need a judge: --fallback rubric:NAME@provider/model")
        if band is not None and band < 0:
            problems.append(f"--fallback-band must be ≥ 0, got {band}")
        if drift_action not in DRIFT_ACTIONS:
            problems.append(f"--drift-action must be one of {', '.join(DRIFT_ACTIONS)}, got {drift_action!r}")
        if drift_floor is not None and not 0 <= drift_floor <= 1:
            problems.append(f"--drift-floor is an agreement in [0, 1], got {drift_floor}")
        if drift_every < 0 or drift_n < 2:
            problems.append("--drift-every must be ≥ 0 and --drift-n ≥ 2 (agreement compares pairs)")
        if problems:
            raise RlaifError("; ".join(problems))
        if judge is None:
            return self
        self.judge = load_reward(judge, judge_backends)
        self.judge_name = reward_name(self.judge)
        if isinstance(self.judge, RubricReward):
            rub = self.judge.rubric
            if self.info.rubric and self.info.rubric != rub.name:
                raise RlaifError(f"{self.__name__} was trained for rubric '{self.info.rubric}', "
                                 f"the fallback judge uses '{rub.name}'")
            self.scale = (rub.scale.min, rub.scale.max)
            self._use_ledger(self.judge)
        self.band = band
        self.drift_every, self.drift_n = drift_every, drift_n
        self.drift_floor, self.drift_action = drift_floor, drift_action
        if out_dir is not None:
            self.relabel_path = Path(out_dir) / "relabel.jsonl"
        return self

    @staticmethod
    def _use_ledger(reward) -> None:
        """API judges keep their answers in the request ledger (as `rlaif judge` does)."""
        from rlaif.engine import Engine
        from rlaif.judge import default_cache
        from rlaif.ledger import Ledger

        if default_cache(reward.backend):
            reward.engine = Engine(reward.backend, concurrency=reward.engine.concurrency, ledger=Ledger())

    def model(self):
        from rlaif.train.rm_model import RewardModel

        if self._rm is None:
            m, t = self._preloaded
            self._rm = RewardModel(self.path, device=self.device, batch_size=self.batch_size, model=m, tokenizer=t)
        return self._rm

    def scores(self, prompts: list, completions: list) -> list[float]:
        from rlaif.train.rewards import completion_text
        from rlaif.train.rm_model import scale_score

        outs = self.model().outputs(list(prompts), [completion_text(c) for c in completions])
        if self.scale is None:
            return [float(o[0]) for o in outs]
        lo, hi = self.scale
        return [scale_score(self.info.kind, o, lo, hi) for o in outs]

    def _ask_judge(self, prompts, completions, idx: list[int], columns: dict) -> list[float | None]:
        if not idx:
            return []
        cols = {k: [v[i] for i in idx] for k, v in columns.items() if isinstance(v, list) and len(v) == len(prompts)}
        assert self.judge is not None, "only asked once configure() attached a judge"
        self.judge_calls += len(idx)
        vals = self.judge(prompts=[prompts[i] for i in idx], completions=[completions[i] for i in idx], **cols)
        return [None if v is None else float(v) for v in vals]

    def __call__(self, prompts, completions, **columns) -> list[float]:
        self.calls += 1
        rewards = self.scores(prompts, completions)
        groups = groups_of(list(prompts))
        model_scores = list(rewards)
        judged: dict[int, float | None] = {}
        last: dict = {"rm/fallback": 0.0}
        if self.judge is not None and self.band is not None and self.band > 0:
            idx = uncertain(rewards, groups, self.band)
            for i, v in zip(idx, self._ask_judge(prompts, completions, idx, columns)):
                judged[i] = v
                if v is None:
                    self.totals["fallback_unscored"] += 1
                else:
                    rewards[i] = v
            self.totals["fallback"] += len(idx)
            last["rm/fallback"] = float(len(idx))
            self._relabel(prompts, completions, {i: judged[i] for i in idx}, model_scores, "fallback")
        if self.judge is not None and self.drift_every and (self.calls - 1) % self.drift_every == 0:
            sl = list(range(min(self.drift_n, len(rewards))))
            todo = [i for i in sl if i not in judged]
            for i, v in zip(todo, self._ask_judge(prompts, completions, todo, columns)):
                judged[i] = v
            self._relabel(prompts, completions, {i: judged[i] for i in todo}, model_scores, "drift")
            agreement = pair_agreement([model_scores[i] for i in sl], [judged[i] for i in sl], [groups[i] for i in sl])
            self.totals["drift_checks"] += 1
            if agreement is not None:
                last["rm/drift_agreement"] = agreement
                if self.drift_floor is not None and agreement < self.drift_floor:
                    msg = (f"drift watch: {self.__name__} agrees with {self.judge_name} on {agreement:.0%} of pairs "
                           f"(floor {self.drift_floor:.0%}) at reward call {self.calls}")
                    if self.drift_action == "stop":
                        raise DriftError(msg + "; stopping (retrain the reward model on OUT/relabel.jsonl)")
                    print("warning: " + msg, file=sys.stderr, flush=True)
        last["rm/judge_calls"] = float(self.judge_calls)
        self._last = last
        return rewards

    def _relabel(self, prompts, completions, verdicts: dict, model_scores, source: str) -> None:
        from rlaif.train.rewards import completion_text

        if self.relabel_path is None or not verdicts:
            return
        self.relabel_path.parent.mkdir(parents=True, exist_ok=True)
        rubric = getattr(getattr(self.judge, "rubric", None), "name", None)
        with open(self.relabel_path, "a", encoding="utf-8") as f:
            for i, v in verdicts.items():
                if v is None:
                    continue
                f.write(json.dumps({"prompt": prompts[i], "response": completion_text(completions[i]), "score": v,
                                    "rubric": rubric, "judge": self.judge_name, "rm_score": model_scores[i],
                                    "source": source, "reward_call": self.calls}, ensure_ascii=False) + "\n")

    def step_metrics(self) -> dict:
        """What the GRPO loop logs after each step: this call's fallback count and drift agreement,
        and the running count of judge calls."""
        return dict(self._last)
