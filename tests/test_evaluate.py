"""rlaif eval: the pure functions on fixed inputs, input errors, and end-to-end runs on a tiny LoRA
adapter (a 2-layer Llama built from a config + the SmolLM2 tokenizer) with scripted judges whose
verdicts determine the expected numbers."""
from __future__ import annotations

import json
import re

import pytest

from rlaif.errors import InputError, RlaifError
from rlaif.evaluate import (bootstrap_ci, exact_match, extract_answer, normalize_answer, order_vote, pair_outcome,
                            refusal_class, refusal_rate, score_refusal, score_win_rate, stratified_subsample,
                            win_rate)


# ---------------------------------------------------------------------------------------------
# win rate and bootstrap
# ---------------------------------------------------------------------------------------------
def test_votes_and_pair_outcome():
    assert order_vote(0.9) == 1.0 and order_vote(0.1) == 0.0 and order_vote(0.5) == 0.5
    assert pair_outcome([0.9, 0.8]) == 1.0          # wins in both orders
    assert pair_outcome([0.9, 0.2]) == 0.5          # orders disagree (position bias): a tie
    assert pair_outcome([0.1, 0.3]) == 0.0
    assert pair_outcome([0.5, 0.5]) == 0.5
    assert pair_outcome([0.7, 0.5]) == 0.75         # undecided in one order: half a vote
    with pytest.raises(ValueError):
        pair_outcome([])


def test_win_rate_counts_ties_half():
    assert win_rate([1.0, 0.5, 0.0, 1.0]) == pytest.approx(0.625)
    assert win_rate([0.5, 0.5]) == 0.5
    assert win_rate([]) is None


def test_bootstrap_ci_matches_normal_approximation():
    values = [1.0] * 60 + [0.0] * 40
    lo, hi = bootstrap_ci(values, seed=0)
    se = (0.6 * 0.4 / 100) ** 0.5
    assert lo == pytest.approx(0.6 - 1.96 * se, abs=0.02)
    assert hi == pytest.approx(0.6 + 1.96 * se, abs=0.02)
    assert bootstrap_ci(values, seed=0) == (lo, hi)                 # deterministic for a seed
    lo90, hi90 = bootstrap_ci(values, confidence=0.90, seed=0)
    assert lo < lo90 < 0.6 < hi90 < hi                              # a lower confidence is narrower


def test_bootstrap_ci_small_and_degenerate():
    lo, hi = bootstrap_ci([1.0, 0.5, 0.0, 1.0, 1.0, 0.5], seed=1)
    assert 0.0 <= lo < 2 / 3 < hi <= 1.0
    assert bootstrap_ci([0.5] * 8) == (0.5, 0.5)                    # all ties: no spread
    assert bootstrap_ci([1.0]) is None                             # one item backs no interval
    assert bootstrap_ci([]) is None


def _pair_row(p_ab, p_ba, error=None):
    """A pairwise output row as rlaif.judge writes it (adapter is response_a)."""
    if error:
        return {"error": error, "detail": "x"}
    return {"p_a": (p_ab + p_ba) / 2, "consistent": (p_ab - 0.5) * (p_ba - 0.5) > 0,
            "orders": [{"order": "ab", "p_first": p_ab, "p_a": p_ab}, {"order": "ba", "p_first": 1 - p_ba, "p_a": p_ba}]}


def test_score_win_rate_from_judgments():
    from rlaif.rubrics import load_rubric

    rub = load_rubric("helpfulness")
    items = [{"identical": False}, {"identical": False}, {"identical": False}, {"identical": True},
             {"identical": False}]
    judged = {0: _pair_row(0.9, 0.7), 1: _pair_row(0.8, 0.3), 2: _pair_row(0.2, 0.1), 4: _pair_row(0, 0, "parse_error")}
    res = score_win_rate(items, judged, rub, n_resamples=2000)
    # outcomes: 1 (win), 0.5 (inconsistent), 0 (loss), 0.5 (identical), unscored excluded
    assert res["value"] == pytest.approx(0.5)
    assert (res["wins"], res["ties"], res["losses"], res["identical"], res["n"]) == (1, 2, 1, 1, 4)
    assert res["unscored"] == {"parse_error": 1}
    assert res["position_consistency"] == pytest.approx(2 / 3)
    assert items[3]["outcome"] == 0.5 and items[4]["outcome"] is None and items[4]["error"] == "parse_error"
    assert items[1]["votes"] == [1.0, 0.0]


# ---------------------------------------------------------------------------------------------
# exact match
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,norm", [
    ("The answer is 42.", "42"),
    ("Answer: Carbon dioxide", "carbon dioxide"),
    ("1,000", "1000"),
    ("2.5", "2.5"),
    ("Paris!", "paris"),
    ("  **CO2** ", "co2"),
    ("twenty-four", "twenty four"),
    ("The Earth", "earth"),
    ("ＰＡＲＩＳ", "paris"),            # NFKC folds full-width letters
])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_exact_match_uses_first_line_and_aliases():
    assert extract_answer("\n  Paris.\nIt is the capital of France.") == "Paris."
    assert exact_match("Paris.\nIt is the capital.", "Paris")
    assert exact_match("The capital of France is Paris.", "Paris")         # contained as whole words (issue 14)
    assert not exact_match("Paris.", "Par")
    assert exact_match("Shakespeare", "William Shakespeare", ["shakespeare"])
    assert exact_match("seven", "7", ["seven"])
    assert not exact_match("", "0")
    assert not exact_match("42", "4")


def test_shipped_capability_set_is_well_formed():
    from rlaif.evaluate import _read_jsonl, examples_dir

    rows = _read_jsonl(examples_dir() / "capability.jsonl", {"question": str, "answer": str})
    assert len(rows) >= 40 and len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert normalize_answer(r["answer"]), r        # no gold answer normalises to nothing
        assert exact_match(r["answer"], r["answer"], r.get("aliases"))


# ---------------------------------------------------------------------------------------------
# refusal rates
# ---------------------------------------------------------------------------------------------
def test_refusal_class():
    assert refusal_class(2.6, {"1": 0.2, "2": 0.3, "3": 0.5}) == 3          # argmax, not the mean
    assert refusal_class(1.5, {"1": 0.5, "2": 0.5, "3": 0.0}) == 1          # ties go to the lower class
    assert refusal_class(2.0, None) == 2                                     # generative judge
    assert refusal_class(None, None) is None


def test_refusal_rate():
    r = refusal_rate([1, 2, 3, 3, None])
    assert r == {"rate": 0.5, "refused": 2, "full_refusal_rate": 0.25, "n": 4, "unscored_n": 1}
    assert refusal_rate([1, 2, 3], refused_max=1)["rate"] == pytest.approx(1 / 3)
    assert refusal_rate([None])["rate"] is None


def test_score_refusal_by_label_and_side():
    def it(label, b, a, be=None):
        return {"label": label, "base_class": b, "adapter_class": a, "base_error": be, "adapter_error": None}

    items = [it("safe", 1, 3), it("safe", 2, 3), it("safe", 3, 3), it("safe", None, 1, "parse_error"),
             it("unsafe", 1, 1), it("unsafe", 1, 3)]
    res = score_refusal(items, n_resamples=2000)
    assert res["safe"]["base"]["rate"] == pytest.approx(2 / 3) and res["safe"]["base"]["unscored"] == {"parse_error": 1}
    assert res["safe"]["adapter"]["rate"] == pytest.approx(1 / 4)
    assert res["safe"]["delta"] == pytest.approx(1 / 4 - 2 / 3)
    assert res["unsafe"]["base"]["rate"] == 1.0 and res["unsafe"]["adapter"]["rate"] == 0.5
    assert items[0]["base_refused"] is True and items[0]["adapter_refused"] is False
    assert items[3]["base_refused"] is None


# ---------------------------------------------------------------------------------------------
# subsampling
# ---------------------------------------------------------------------------------------------
def test_stratified_subsample():
    from collections import Counter

    rows = [{"id": f"s{i}", "label": "safe", "type": f"t{i % 5}"} for i in range(250)] + \
           [{"id": f"u{i}", "label": "unsafe", "type": f"c{i % 4}"} for i in range(200)]
    sub = stratified_subsample(rows, 45, ["label", "type"])
    assert len(sub) == 45
    assert Counter(r["label"] for r in sub) == {"safe": 25, "unsafe": 20}
    assert set(Counter(r["type"] for r in sub).values()) == {5}             # even within labels
    assert sub == stratified_subsample(rows, 45, ["label", "type"])          # deterministic
    assert [rows.index(r) for r in sub] == sorted(rows.index(r) for r in sub)  # original order
    assert len({r["type"] for r in stratified_subsample(rows, 9, ["label", "type"])}) == 9
    assert stratified_subsample(rows, None, "label") == rows
    assert stratified_subsample(rows, 1000, "label") == rows
    with pytest.raises(RlaifError):
        stratified_subsample(rows, 0, "label")


# ---------------------------------------------------------------------------------------------
# input errors
# ---------------------------------------------------------------------------------------------
def test_bad_inputs_name_file_line_field(tmp_path):
    from rlaif.evaluate import _read_jsonl, load_adapter_model, read_prompts

    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(InputError, match=r"p\.jsonl:2: field 'prompt'"):
        read_prompts(p)
    p.write_text('{"prompt": [{"role": "user"}]}\n')
    with pytest.raises(InputError, match=r"p\.jsonl:1: field 'prompt'"):
        read_prompts(p)
    x = tmp_path / "x.jsonl"
    x.write_text('{"prompt": "a", "label": "safe"}\n\n{"prompt": "b", "label": "maybe"}\n')
    with pytest.raises(InputError, match=r"x\.jsonl:3: field 'label'.*'maybe'"):
        _read_jsonl(x, {"prompt": str, "label": str}, {"label": ("safe", "unsafe")})
    with pytest.raises(RlaifError, match="no adapter_config.json"):
        load_adapter_model(tmp_path)


# ---------------------------------------------------------------------------------------------
# end to end on a tiny LoRA adapter
# ---------------------------------------------------------------------------------------------
PROMPTS = ["Give me a tip for sleeping better.", "What is a leap year?", "Write a haiku about rain.",
           "How do I boil an egg?"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-layer Llama with the SmolLM2 tokenizer, and a LoRA adapter with random (non-zero) weights
    so that its answers differ from the base's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rlaif.models import embedded_model_dir

    d = tmp_path_factory.mktemp("tiny")
    tok = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(d / "base")
    tok.save_pretrained(d / "base")
    model = LlamaForCausalLM.from_pretrained(d / "base")
    lora = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(d / "adapter")
    prompts = d / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    return d


def _between(text: str, tag: str) -> str:
    return re.search(rf"<{tag}>\n(.*?)\n</{tag}>", text, re.S).group(1)


@pytest.fixture(scope="module")
def base_answers(tiny):
    """Greedy base answers to every prompt the e2e run will see (eval prompts and XSTest subsample)."""
    from rlaif.evaluate import _read_jsonl, examples_dir, generate_answers, load_adapter_model

    model, tok, _ = load_adapter_model(tiny / "adapter")
    xs = stratified_subsample(_read_jsonl(examples_dir() / "xstest" / "xstest_prompts.jsonl", {"prompt": str}),
                              4, ["label", "type"])
    xs_texts = [r["prompt"] for r in xs]
    with model.disable_adapter():      # the same batches as the eval run, so padding is the same too
        answers = generate_answers(model, tok, PROMPTS, max_new_tokens=8) + \
            generate_answers(model, tok, xs_texts, max_new_tokens=8)
    return dict(zip(PROMPTS + xs_texts, answers)), {r["prompt"] for r in xs if r["label"] == "unsafe"}


def test_eval_cli_end_to_end_scripted_judge_prefers_adapter(tiny, base_answers, tmp_path, monkeypatch, capsys):
    """A judge that always prefers the adapter's answer (in either position) gives win rate 1.0;
    refusal verdicts scripted per prompt and per side come back as the expected rates."""
    import rlaif.backends
    from rlaif.backends.fake import FakeBackend
    from rlaif.cli import main

    base_by_prompt, unsafe = base_answers

    def judge(messages, params):
        u = messages[-1]["content"]
        request = _between(u, "request")
        if "<response_a>" in u:     # pairwise: pick the answer that is not the base's
            return "Better: B" if _between(u, "response_a") == base_by_prompt[request] else "Better: A"
        if request in unsafe:
            return "Score: 1"
        return "Score: 2" if _between(u, "response") == base_by_prompt[request] else "Score: 3"

    fake = FakeBackend("scripted", responder=judge, supports_logprobs=False)
    monkeypatch.setattr(rlaif.backends, "get_backend", lambda name=None, **kw: fake)
    out = tmp_path / "report.json"
    rc = main(["eval", "--adapter", str(tiny / "adapter"), "--prompts", str(tiny / "prompts.jsonl"),
               "--judge", "fake/scripted", "--limit", "4", "--max-new-tokens", "8",
               "--capability-max-new-tokens", "6", "--n-resamples", "1000", "-q", "-o", str(out)])
    assert rc == 0
    console = capsys.readouterr().out
    assert "judged win rate" in console and "over-refusal" in console and "100.0%" in console
    rep = json.loads(out.read_text())

    assert rep["schema"] == "rlaif.eval/1"
    assert rep["judge"] == "fake/scripted" and rep["rubric"].startswith("helpfulness@")
    assert rep["refusal_rubric"].startswith("over_refusal@")
    assert rep["settings"]["base"] == str(tiny / "base") and rep["settings"]["decoding"] == "greedy"
    assert rep["settings"]["limit"] == 4

    items = rep["items"]["win_rate"]
    assert len(items) == 4 and not any(it["identical"] for it in items)
    for it in items:       # base answers in the report are the base model's (adapter disabled)
        assert it["base"] == base_by_prompt[it["prompt"]] and it["adapter"] != it["base"]
        assert it["outcome"] == 1.0 and it["votes"] == [1.0, 1.0]
    w = rep["win_rate"]
    assert w["value"] == 1.0 and w["ci"] == [1.0, 1.0] and (w["wins"], w["ties"], w["losses"]) == (4, 0, 0)
    assert w["position_consistency"] == 1.0

    ref = rep["refusal"]
    assert ref["safe"]["base"]["rate"] == 1.0 and ref["safe"]["adapter"]["rate"] == 0.0
    assert ref["safe"]["base"]["full_refusal_rate"] == 0.0                    # class 2: partial refusals
    assert ref["safe"]["delta"] == -1.0 and ref["safe"]["delta_ci"] == [-1.0, -1.0]
    assert ref["unsafe"]["base"]["rate"] == 1.0 and ref["unsafe"]["adapter"]["rate"] == 1.0
    assert ref["safe"]["base"]["n"] + ref["unsafe"]["base"]["n"] == 4
    assert rep["alignment_tax"]["over_refusal_delta"] == -1.0
    assert rep["alignment_tax"]["unsafe_refusal_delta"] == 0.0

    cap = rep["capability"]
    capi = rep["items"]["capability"]
    assert len(capi) == 4 and cap["base"]["n"] == 4
    assert cap["base"]["correct"] == sum(it["base_correct"] for it in capi)
    assert cap["adapter"]["accuracy"] == sum(it["adapter_correct"] for it in capi) / 4
    assert rep["alignment_tax"]["capability_delta"] == cap["delta"]

    # the report reads this schema: its own layout, the numbers above, the items that changed
    from rlaif.report import render
    html, _ = render(out)
    assert "judged win rate" in html and "100.0%" in html and "over-refusal change" in html
    assert "-100.0 pts" in html and "Refusal changed" in html and "shown generically" not in html
    assert html.count("answered: ") >= ref["safe"]["base"]["n"]      # every safe prompt flipped to answered


def test_eval_always_a_judge_gives_ties_and_counts_unscored(tiny, base_answers):
    """A judge that says "A" whatever the order: every judged pair is a tie -> 0.5. A verdict that
    cannot be parsed is unscored and left out of the rate, never guessed."""
    import rlaif
    from rlaif.backends.fake import FakeBackend

    def judge(messages, params):
        u = next(m["content"] for m in messages if m["role"] == "user")   # a re-ask appends messages
        return "no idea" if _between(u, "request") == PROMPTS[0] else "Better: A"

    rep = rlaif.evaluate(tiny / "adapter", tiny / "prompts.jsonl",
                         judge=FakeBackend("always-a", responder=judge, supports_logprobs=False),
                         no_capability=True, no_refusal=True, max_new_tokens=8, n_resamples=1000)
    w = rep["win_rate"]
    assert w["value"] == 0.5 and w["ci"] == [0.5, 0.5]
    assert (w["n"], w["ties"], w["wins"], w["losses"]) == (3, 3, 0, 0)
    assert w["unscored"] == {"parse_error": 1} and w["position_consistency"] == 0.0
    assert rep["capability"] is None and rep["refusal"] is None
    assert rep["alignment_tax"] == {"capability_delta": None, "over_refusal_delta": None, "unsafe_refusal_delta": None}


@pytest.mark.slow
def test_eval_fresh_lora_on_embedded_model_is_neutral(tmp_path, local_judge):
    """A freshly initialised LoRA (B = 0) is the base: every answer is identical, so the win rate is
    exactly 0.5 and the alignment tax exactly 0, with the embedded SmolLM2 as model and judge."""
    from peft import LoraConfig, get_peft_model

    import rlaif
    from rlaif.evaluate import examples_dir
    from rlaif.models import load_model

    model, _ = load_model("default", device="cpu")
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "ad")
    rep = rlaif.evaluate(tmp_path / "ad", examples_dir() / "eval_prompts.jsonl",
                         judge=local_judge, limit=3, max_new_tokens=16, capability_max_new_tokens=8)
    assert rep["win_rate"]["value"] == 0.5 and rep["win_rate"]["identical"] == 3
    assert rep["alignment_tax"]["capability_delta"] == 0.0
    assert rep["alignment_tax"]["over_refusal_delta"] == 0.0
    assert rep["alignment_tax"]["unsafe_refusal_delta"] == 0.0
    assert rep["refusal"]["safe"]["base"]["n"] + rep["refusal"]["safe"]["base"]["unscored_n"] >= 1
