"""Distilled RLAIF on the embedded SmolLM2 (slow): teacher → reward model → GRPO.

The teacher is a deterministic judge on the conciseness scale (5: a one-to-three-word answer, 1:
anything longer), the same target tests/test_train_signal.py's GRPO test trains with the rule itself.
It labels three candidate answers per training question (a short one, a sentence, a wordy one) once; a reward
model learns them (`train_rm --probe`, pointwise regression); it must agree with the teacher on the
held-out questions' candidates (pairs ordered as the teacher orders them) ≥ 0.9. Then GRPO with
`rm:` (same settings as the rule-reward GRPO test: 5 steps × 4 prompts × 6 samples = 120 completions,
i.e. 120 teacher calls for direct RLAIF) must raise the held-out one-word rate by the same ≥ 0.4 the
direct run is held to, while the teacher is called only by the fallback band and the drift watch
(≥ 10× fewer than 120). Both paths are exercised and asserted. Teacher calls for the one-time labels
are counted and reported separately (they are paid once per reward model, not per GRPO step)."""
import json
import time

import pytest
import torch

from tests.test_train_signal import GRPO_NEW, Q_HELD_OUT, Q_TRAIN, _report, one_word_rate, question

SHORT = {"What is the capital of France?": "Paris.", "What color is the sky?": "Blue.",
         "How many legs does a spider have?": "Eight.", "Who wrote Hamlet?": "William Shakespeare.",
         "What do bees make?": "Honey.", "What is the largest planet?": "Jupiter.",
         "What is frozen water called?": "Ice.", "What animal says moo?": "A cow.",
         "What language is spoken in Spain?": "Spanish.", "What is the opposite of hot?": "Cold.",
         "What gas do plants absorb?": "Carbon dioxide.", "What is the capital of Japan?": "Tokyo.",
         "What metal is a magnet made of?": "Iron.", "What do cows drink?": "Water.",
         "Which season comes after winter?": "Spring.", "What is the fastest land animal?": "The cheetah.",
         "What is the capital of Italy?": "Rome.", "What color are bananas?": "Yellow.",
         "How many days are in a week?": "Seven.", "Who painted the Mona Lisa?": "Leonardo da Vinci.",
         "What do spiders spin?": "Webs.", "What is the closest star to Earth?": "The Sun.",
         "What is the chemical symbol for gold?": "Au.", "What animal barks?": "A dog.",
         "What is the largest ocean?": "The Pacific.", "What fruit is used to make wine?": "Grapes.",
         "What is the opposite of up?": "Down.", "Which month comes after June?": "July."}


def wordy(q: str) -> str:
    return (f"That is a great question! When people ask \"{q.rstrip('?')}\", the answer depends on a few things, "
            f"and I would be happy to explain them in detail: {SHORT[q].rstrip('.')} is the usual answer.")


def medium(q: str) -> str:
    return f"I believe the answer is {SHORT[q].rstrip('.')}."


class Teacher:
    """The deterministic judge: conciseness 5 for a 1..3-word answer, 1 otherwise. Counts its calls."""

    def __init__(self):
        self.calls = 0
        self.__name__ = "teacher"

    def __call__(self, prompts, completions, **kw):
        self.calls += len(completions)
        texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
        return [5.0 if 1 <= len(t.split()) <= 3 else 1.0 for t in texts]


@pytest.mark.slow
@pytest.mark.ci          # issue 11's acceptance test; about as long as the GRPO signal test plus 30 s
def test_teacher_to_reward_model_to_grpo(tmp_path):
    from rlaif.models import load_model
    from rlaif.train.grpo import train_grpo
    from rlaif.train.rm import train_rm
    from rlaif.train.rm_model import RewardModel
    from rlaif.train.rm_reward import RMReward

    t0 = time.time()
    teacher = Teacher()
    cands = [(q, a) for q in Q_TRAIN for a in (SHORT[q], medium(q), wordy(q))]
    labels = teacher([question(q) for q, _ in cands], [a for _, a in cands])
    label_calls = teacher.calls
    rows = [{"prompt": question(q), "response": a, "score": s} for (q, a), s in zip(cands, labels)]
    train_rm(rows, rubric="conciseness", mode="pointwise", probe=True, max_steps=60, batch_size=16,
             learning_rate=1e-2, max_length=96, output_dir=str(tmp_path / "rm"), progress=False, save_steps=0,
             eval_fraction=0.0)
    t1 = time.time()
    # held-out agreement: the held-out questions' candidates, ordered by the teacher and by the model
    rm = RewardModel(tmp_path / "rm")
    held = [(q, a) for q in Q_HELD_OUT for a in (SHORT[q], medium(q), wordy(q))]
    want = Teacher()([question(q) for q, _ in held], [a for _, a in held])
    got = rm.rewards([question(q) for q, _ in held], [a for _, a in held])
    pairs = [(i, j) for i in range(len(held)) for j in range(len(held))
             if i < j and held[i][0] == held[j][0] and want[i] != want[j]]
    agreement = sum((got[i] - got[j]) * (want[i] - want[j]) > 0 for i, j in pairs) / len(pairs)
    assert agreement >= 0.9, (agreement, list(zip(held, got)))
    del rm
    # GRPO with the reward model (+ fallback band and drift watch to the teacher)
    model, tok = load_model("default", device="cpu")
    before, _ = one_word_rate(model, tok, Q_HELD_OUT)
    teacher.calls = 0
    torch.manual_seed(0)
    rm_reward = RMReward(tmp_path / "rm")
    train_grpo([{"prompt": question(q)} for q in Q_TRAIN], model=model, tokenizer=tok,
               rewards=[rm_reward], fallback=teacher, fallback_band=0.01, drift_every=5, drift_n=6,
               drift_floor=0.5, max_steps=5, batch_size=4, num_generations=6, max_completion_length=GRPO_NEW,
               learning_rate=1e-3, temperature=1.0, beta=0.0, loss_type="dapo", seed=0,
               output_dir=str(tmp_path / "grpo"), progress=False, save_steps=0)
    after, answers = one_word_rate(model, tok, Q_HELD_OUT)
    m = [json.loads(x) for x in open(tmp_path / "grpo" / "metrics.jsonl")]
    direct_calls = 5 * 4 * 6
    _report("distilled", before=before, after=after, agreement=round(agreement, 3), label_calls=label_calls,
            grpo_teacher_calls=teacher.calls, direct_calls=direct_calls, rm_train_s=round(t1 - t0, 1),
            total_s=round(time.time() - t0, 1), fallback=[x.get("rm/fallback") for x in m],
            drift=[x.get("rm/drift_agreement") for x in m], answers=[a for a, _ in answers])
    assert after >= before + 0.4, (before, after)
    assert 0 < teacher.calls and direct_calls >= 10 * teacher.calls, teacher.calls
    # both hybrid paths ran: one drift check (reward call 1 of 5; its slice reuses fallback verdicts), and
    # every completion sent by the band is in the relabel file with the teacher's score
    assert rm_reward.totals["drift_checks"] == 1 and m[0]["rm/judge_calls"] > 0
    relabel = [json.loads(x) for x in open(tmp_path / "grpo" / "relabel.jsonl")]
    assert sum(x["rm/fallback"] for x in m) == rm_reward.totals["fallback"] == sum(
        r["source"] == "fallback" for r in relabel)
    assert len(relabel) == teacher.calls and all(r["score"] in (1.0, 5.0) for r in relabel)
