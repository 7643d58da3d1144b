"""Learning signal on the embedded SmolLM2 (slow): with a checkable target, DPO on pairs judged by
the rule, and GRPO with the rule as the reward, each raise the target rate on held-out prompts by a
clear margin within a few CPU minutes. DPO's target: a finished answer of at most MAX_WORDS words to
"Tell me about X". GRPO's: a finished answer of 1..ONE_WORD words to a short question asked to be
answered in one word (a target the model sometimes hits when sampling, so GRPO's groups differ).

The judge here is the rule itself (it is checkable, which is the point: no model judge can be
wrong about it). Held-out prompts are never trained on. Generation for evaluation is greedy."""
import json
import os
import time

import pytest
import torch

MAX_WORDS = 15           # the target: a complete answer of at most this many words
MAX_NEW = 40             # generation cap; an answer still going at the cap is not "complete"
TOPICS = ["the moon", "coffee", "volcanoes", "the internet", "bees", "chess", "rainbows", "glaciers", "jazz music",
          "the Roman Empire", "electric cars", "sleep", "penguins", "solar panels", "bread", "earthquakes",
          "libraries", "tea", "clouds", "bicycles", "deserts", "whales", "vaccines", "the ocean",
          "mountains", "pianos", "rivers", "owls", "batteries", "forests", "trains", "honey"]
TRAIN, HELD_OUT = TOPICS[:20], TOPICS[20:]
REPORT = os.environ.get("RLAIF_SIGNAL_REPORT")      # optional: append the numbers to this JSONL file


def prompt(topic):
    return [{"role": "user", "content": f"Tell me about {topic}."}]


def target(text: str, finished: bool) -> bool:
    return finished and len(text.split()) <= MAX_WORDS


def brevity_reward(prompts, completions, completion_ids, **kw):
    """GRPO reward = the target itself: 1 for a finished answer (it ends with EOS) of at most MAX_WORDS
    words, 0 for a longer finished one, -1 for an answer still going at the token cap. Finishing is
    read from the token ids, so unfinished output cannot score by having few spaces."""
    out = []
    for c, ids in zip(completions, completion_ids):
        text = c[0]["content"] if isinstance(c, list) else c
        finished = bool(ids) and ids[-1] == EOS[0]
        out.append((1.0 if len(text.split()) <= MAX_WORDS else 0.0) if finished else -1.0)
    return out


EOS = [2]    # SmolLM2's <|im_end|>; checked against the tokenizer in the test


def generate(model, tok, topics, sample=False, n=1):
    """Greedy (or sampled) answers -> list of (text, finished)."""
    from rlaif.train.data import render_prompt

    enc = [render_prompt(tok, prompt(t)) for t in topics]
    w = max(map(len, enc))
    pad = tok.pad_token_id
    ids = torch.tensor([[pad] * (w - len(e)) + e for e in enc])
    att = torch.tensor([[0] * (w - len(e)) + [1] * len(e) for e in enc])
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=MAX_NEW, do_sample=sample,
                             num_return_sequences=n, pad_token_id=pad, **({"top_k": 0} if sample else {}))
    res = []
    for row in out[:, w:].tolist():
        finished = tok.eos_token_id in row
        row = row[: row.index(tok.eos_token_id)] if finished else row
        res.append((tok.decode(row, skip_special_tokens=True).strip(), finished))
    return res


def rate(model, tok, topics):
    answers = generate(model, tok, topics)
    return sum(target(t, f) for t, f in answers) / len(answers), answers


def _report(name, **numbers):
    print(f"[{name}] " + json.dumps(numbers))
    if REPORT:
        with open(REPORT, "a") as f:
            f.write(json.dumps({"test": name, **numbers}) + "\n")


def _adapted(path_out, base):
    from peft import PeftModel
    return PeftModel.from_pretrained(base, os.path.join(path_out, "adapter"))


@pytest.mark.slow
@pytest.mark.ci           # ~1 min on a quiet 2-core machine: issue 5 wants the learning signal in CI
def test_dpo_on_judged_pairs_raises_the_target_rate(tmp_path):
    from rlaif.models import load_model
    from rlaif.train.dpo import train_dpo

    t0 = time.time()
    model, tok = load_model("default", device="cpu")
    # one batched generation: the held-out answers give the starting rate, the training ones the candidates
    answers = generate(model, tok, TRAIN + HELD_OUT)
    before = sum(target(t, f) for t, f in answers[len(TRAIN):]) / len(HELD_OUT)
    # candidates in the model's own words: its greedy answer, its first sentence, its first clause;
    # the rule judges them and the best and worst become a pair when they differ on the target
    rows = []
    for topic, (text, finished) in zip(TRAIN, answers):
        first = text.split(". ")[0].rstrip(".") + "."
        clause = first.split(", ")[0].rstrip(".") + "."
        cands = [(text, finished), (first, True), (clause, True)]
        judged = sorted(cands, key=lambda c: (not target(*c), len(c[0].split())))
        best, worst = judged[0], judged[-1]
        if target(*best) and not target(*worst):
            rows.append({"prompt": prompt(topic), "chosen": [{"role": "assistant", "content": best[0]}],
                         "rejected": [{"role": "assistant", "content": worst[0]}]})
    assert len(rows) >= 10, rows
    t1 = time.time()
    # 8 steps × 4 pairs: about two passes over the pairs; the reference log-probs are computed once
    train_dpo(rows, model=model, tokenizer=tok, max_steps=8, batch_size=4, learning_rate=5e-4, beta=0.1,
              precompute_ref=True, output_dir=str(tmp_path / "dpo"), progress=False, save_steps=0)
    t2 = time.time()
    after, answers_after = rate(model, tok, HELD_OUT)      # model is the trained peft model (adapter on)
    _report("dpo", before=before, after=after, pairs=len(rows), train_s=round(t2 - t1, 1),
            total_s=round(time.time() - t0, 1), example=answers_after[0][0])
    assert after >= before + 0.4, (before, after)


# GRPO needs groups whose samples differ on the target: from "Tell me about X" SmolLM2 almost never
# finishes within the cap, every group ties and there is no gradient. Short factual questions with
# an instruction to answer in one word give a low but non-zero base rate (a few samples in 8 answer
# in a word or three, most say "The answer is ..." or ramble), which is what GRPO can amplify.
ONE_WORD = 3             # the GRPO target: a finished answer of 1..ONE_WORD words
GRPO_NEW = 24            # generation cap for GRPO (training and evaluation); a short answer fits easily
QUESTIONS = ["What is the capital of France?", "What color is the sky?", "How many legs does a spider have?",
             "Who wrote Hamlet?", "What do bees make?", "What is the largest planet?", "What is frozen water called?",
             "What animal says moo?", "What language is spoken in Spain?", "What is the opposite of hot?",
             "What gas do plants absorb?", "What is the capital of Japan?", "What metal is a magnet made of?",
             "What do cows drink?", "Which season comes after winter?", "What is the fastest land animal?",
             # held out
             "What is the capital of Italy?", "What color are bananas?", "How many days are in a week?",
             "Who painted the Mona Lisa?", "What do spiders spin?", "What is the closest star to Earth?",
             "What is the chemical symbol for gold?", "What animal barks?", "What is the largest ocean?",
             "What fruit is used to make wine?", "What is the opposite of up?", "Which month comes after June?"]
Q_TRAIN, Q_HELD_OUT = QUESTIONS[:16], QUESTIONS[16:]


def question(q):
    return [{"role": "user", "content": f"{q} Answer in one word."}]


def one_word_target(text: str, finished: bool) -> bool:
    return finished and 1 <= len(text.split()) <= ONE_WORD


def one_word_reward(prompts, completions, completion_ids, **kw):
    """GRPO reward = the target itself: 1 for a finished answer (it ends with EOS) of 1..ONE_WORD words,
    0 for a longer (or empty) finished one, -1 for an answer still going at the token cap. Finishing is
    read from the token ids, so unfinished output cannot score by having few spaces; an empty answer
    does not count as a short one."""
    out = []
    for c, ids in zip(completions, completion_ids):
        text = c[0]["content"] if isinstance(c, list) else c
        finished = bool(ids) and ids[-1] == EOS[0]
        out.append((1.0 if one_word_target(text, True) else 0.0) if finished else -1.0)
    return out


def one_word_rate(model, tok, qs):
    """Greedy answers to the questions -> (share on target, answers)."""
    from rlaif.train.data import render_prompt

    enc = [render_prompt(tok, question(q)) for q in qs]
    w, pad = max(map(len, enc)), tok.pad_token_id
    ids = torch.tensor([[pad] * (w - len(e)) + e for e in enc])
    att = torch.tensor([[0] * (w - len(e)) + [1] * len(e) for e in enc])
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=GRPO_NEW, do_sample=False, pad_token_id=pad)
    answers = []
    for row in out[:, w:].tolist():
        finished = tok.eos_token_id in row
        row = row[: row.index(tok.eos_token_id)] if finished else row
        answers.append((tok.decode(row, skip_special_tokens=True).strip(), finished))
    return sum(one_word_target(t, f) for t, f in answers) / len(answers), answers


@pytest.mark.slow
@pytest.mark.ci          # about 1 CPU minute on 2 idle cores
def test_grpo_with_the_rule_as_reward_raises_the_target_rate(tmp_path):
    from rlaif.models import load_model
    from rlaif.train.grpo import train_grpo

    t0 = time.time()
    model, tok = load_model("default", device="cpu")
    assert tok.eos_token_id == EOS[0]
    before, answers_before = one_word_rate(model, tok, Q_HELD_OUT)
    t1 = time.time()
    torch.manual_seed(0)
    train_grpo([{"prompt": question(q)} for q in Q_TRAIN], model=model, tokenizer=tok, rewards=[one_word_reward],
               max_steps=5, batch_size=4, num_generations=6,
               max_completion_length=GRPO_NEW, learning_rate=1e-3,
               temperature=1.0, beta=0.0, loss_type="dapo", seed=0,
               output_dir=str(tmp_path / "grpo"), progress=False, save_steps=0)
    t2 = time.time()
    after, answers_after = one_word_rate(model, tok, Q_HELD_OUT)
    m = [json.loads(x) for x in open(tmp_path / "grpo" / "metrics.jsonl")]
    _report("grpo", before=before, after=after, train_s=round(t2 - t1, 1), total_s=round(time.time() - t0, 1),
            reward=[round(x["reward"], 2) for x in m], frac_zero_std=[round(x["frac_zero_std"], 2) for x in m],
            before_answers=[a for a, _ in answers_before], after_answers=[a for a, _ in answers_after])
    assert after >= before + 0.4, (before, after)
