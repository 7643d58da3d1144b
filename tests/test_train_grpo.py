"""GRPO: rewards (judge + Python, None excluded), the first-step loss, and exact resume."""
import json
import math
import os

import pytest

from rlaif.errors import RlaifError
from rlaif.train.grpo import train_grpo
from rlaif.train.rewards import RubricReward, load_reward, score
from tests._train_utils import tiny_lm

PROMPTS = [{"prompt": [{"role": "user", "content": f"Say something about {w}."}], "topic": w}
           for w in ("cats", "rain", "tea", "maps", "ice", "gold")]


def _metrics(out):
    return [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]


def short_answer(prompts, completions, **kwargs):
    """Longer completions earn less; the first of each batch is deliberately unscored."""
    assert kwargs["topic"] and len(kwargs["topic"]) == len(completions)
    return [None if i == 0 else -len(c[0]["content"]) / 20 for i, c in enumerate(completions)]


def test_rubric_reward_goes_through_the_judge(fake_backend):
    backend = fake_backend(supports_logprobs=False,
                           responder=lambda msgs, p: "Clear. Score: 4" if "good" in msgs[-1]["content"] else "hmm")
    r = RubricReward("helpfulness", backend=backend)
    out = r(["q1", [{"role": "user", "content": "q2"}]], ["a good answer", [{"role": "assistant", "content": "bad"}]])
    assert out == [4.0, None] and r.errors["parse_error"] == 1
    assert len(backend.calls) == 3          # the unreadable verdict is re-asked once, then left unscored


def test_reward_specs(tmp_path):
    f = tmp_path / "my_reward.py"
    f.write_text("def reward(prompts, completions, **kw):\n    return [1.0 for _ in completions]\n"
                 "def bad(prompts, completions, **kw):\n    return [1.0]\n")
    assert load_reward(str(f))(["p"], ["c"]) == [1.0]
    assert load_reward("tests._train_utils:tiny_lm").__name__ == "tiny_lm"
    with pytest.raises(RlaifError, match="no function 'nope'"):
        load_reward(f"{f}:nope")
    with pytest.raises(RlaifError, match="cannot import"):
        load_reward("no_such_module_xyz:fn")
    with pytest.raises(RlaifError, match="expected a list of 2"):
        score([load_reward(f"{f}:bad")], ["p", "q"], ["a", "b"], {})
    per = score([lambda prompts, completions, **k: [None, 2]], ["p", "q"], ["a", "b"], {})
    assert math.isnan(per[0][0]) and per[1][0] == 2.0


def test_first_step_loss_is_zero_with_gradient_and_none_excluded(tmp_path):
    model, tok = tiny_lm()
    train_grpo(PROMPTS, model=model, tokenizer=tok, rewards=[short_answer], max_steps=2, batch_size=2,
               num_generations=4, max_completion_length=12, beta=0.0, loss_type="grpo", num_iterations=1,
               learning_rate=1e-3, output_dir=str(tmp_path / "g"), progress=False)
    m = _metrics(tmp_path / "g")
    assert abs(m[0]["loss"]) < 1e-6 and m[0]["grad_norm"] > 0
    assert m[0]["unscored"] == pytest.approx(1 / 8)            # one None of 8 completions, not counted as 0
    assert m[0]["reward_std"] > 0 and 0 <= m[0]["frac_zero_std"] <= 1
    assert {"reward", "rewards/short_answer", "clip_ratio", "completion_length"} <= set(m[0])


def test_config_problems_reported_together():
    with pytest.raises(RlaifError) as e:
        train_grpo(PROMPTS, rewards=[], loss_type="x", num_generations=1, output_dir="unused")
    assert "no reward" in str(e.value) and "unknown loss" in str(e.value) and "num_generations" in str(e.value)


@pytest.mark.slow
def test_crashed_grpo_resumes_exactly(tmp_path):
    """Sampling depends on the RNG: a resumed run must restore it to reproduce the curve."""
    common = dict(max_steps=4, batch_size=2, num_generations=3, max_completion_length=10, beta=0.04,
                  learning_rate=2e-3, save_steps=2, progress=False)
    model, tok = tiny_lm()
    train_grpo(PROMPTS, model=model, tokenizer=tok, rewards=[short_answer], output_dir=str(tmp_path / "full"), **common)
    calls = {"n": 0}

    def crashing(prompts, completions, **kw):
        calls["n"] += 1
        if calls["n"] == 3:                       # step 3: after checkpoint-2
            raise KeyboardInterrupt("simulated kill")
        return short_answer(prompts, completions, **kw)
    crashing.__name__ = "short_answer"
    model, tok = tiny_lm()
    with pytest.raises(KeyboardInterrupt):
        train_grpo(PROMPTS, model=model, tokenizer=tok, rewards=[crashing], output_dir=str(tmp_path / "cut"), **common)
    model, tok = tiny_lm()                        # the same base; adapter, optimiser, RNG, data position come from the checkpoint
    train_grpo(PROMPTS, model=model, tokenizer=tok, rewards=[short_answer], output_dir=str(tmp_path / "cut"),
               resume=True, **common)
    a, b = _metrics(tmp_path / "full"), _metrics(tmp_path / "cut")
    assert [x["step"] for x in b] == [1, 2, 3, 4]
    for x, y in zip(a, b):
        for k in ("loss", "reward", "kl", "completion_length"):
            assert x[k] == pytest.approx(y[k], abs=1e-6), (x["step"], k)


def test_generation_falls_back_to_transformers_said_once(tmp_path, capsys):
    """No vLLM / no GPU here: use_vllm=None samples with transformers generate and says so once per
    process; use_vllm=True is a clear error instead of a silent fallback."""
    from rlaif.train import logps

    logps._said.clear()
    for name in ("a", "b"):
        model, tok = tiny_lm()
        train_grpo(PROMPTS, model=model, tokenizer=tok, rewards=[short_answer], max_steps=1, batch_size=2,
                   num_generations=2, max_completion_length=4, output_dir=str(tmp_path / name), progress=False)
    assert capsys.readouterr().err.count("GRPO generates with transformers generate") == 1
    model, tok = tiny_lm()
    with pytest.raises(RlaifError, match="vllm|vLLM"):
        train_grpo(PROMPTS, model=model, tokenizer=tok, rewards=[short_answer], max_steps=1, use_vllm=True,
                   output_dir=str(tmp_path / "c"), progress=False)


def test_vllm_server_protocol_against_a_fake_server(tmp_path):
    """Server mode's HTTP exchange (the adapter pushed each round, the previous one unloaded, prompt-major
    completions read as token ids and cut after EOS), against a stand-in for vLLM's OpenAI server."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    from rlaif.train.generation import VLLMServerGenerator

    seen = []

    class Fake(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            out = {}
            if self.path == "/v1/completions":
                n = body["n"]
                out = {"choices": [{"index": i * n + k, "token_ids": [100 + i, 200 + k, EOS, 7]}
                                   for i in range(len(body["prompt"])) for k in range(n)][::-1]}
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    model, tok = tiny_lm()
    EOS = tok.eos_token_id
    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from peft import LoraConfig, get_peft_model

        peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
        run = SimpleNamespace(model=peft_model, tok=tok, out=tmp_path, step=0, main=True,
                              acc=SimpleNamespace(wait_for_everyone=lambda: None))
        cfg = SimpleNamespace(vllm_server_url=f"http://127.0.0.1:{server.server_port}", vllm_server_timeout=10,
                              num_generations=2, temperature=1.0, top_p=1.0, max_completion_length=8)
        gen = VLLMServerGenerator(run, cfg)
        assert gen.generate(run, [[1, 2], [3]], cfg) == [[100, 200, EOS], [100, 201, EOS], [101, 200, EOS],
                                                          [101, 201, EOS]]
        run.step = 1
        gen.generate(run, [[1, 2]], cfg)
    finally:
        server.shutdown()
    paths = [p for p, _ in seen]
    assert paths == ["/v1/load_lora_adapter", "/v1/completions", "/v1/load_lora_adapter",
                     "/v1/unload_lora_adapter", "/v1/completions"]
    assert seen[0][1]["lora_name"] == "rlaif-step-0" and seen[3][1] == {"lora_name": "rlaif-step-0"}
    assert seen[1][1]["prompt"] == [[1, 2], [3]] and seen[1][1]["model"] == "rlaif-step-0"
    assert (tmp_path / ".vllm-lora" / "step-1" / "adapter_model.safetensors").exists()
    assert not (tmp_path / ".vllm-lora" / "step-0").exists()
