"""rlaif.sampling: prompt validation, candidate rows, seeds, batching independence, chat templates."""
from __future__ import annotations

import asyncio
import json

import pytest

from rlaif.errors import BackendError, InputError, RlaifError
from rlaif.records import Completion, GenParams
from rlaif.sampling import read_prompts, request_seed, sample


def write(tmp_path, lines, name="prompts.jsonl"):
    f = tmp_path / name
    f.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return f


@pytest.mark.parametrize("row, where", [
    ({"id": "a"}, "field 'prompt'"),
    ({"prompt": ""}, "field 'prompt'"),
    ({"prompt": 3}, "field 'prompt'"),
    ({"prompt": []}, "field 'prompt'"),
    ({"prompt": [{"role": "robot", "content": "x"}]}, "field 'prompt[0].role'"),
    ({"prompt": [{"role": "user", "content": 5}]}, "field 'prompt[0].content'"),
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "field 'prompt[1].role'"),
    ({"prompt": "ok", "id": [1]}, "field 'id'"),
])
def test_bad_prompt_rows_name_file_line_and_field(tmp_path, row, where):
    f = write(tmp_path, [{"prompt": "fine"}, row])
    with pytest.raises(InputError) as e:
        read_prompts(f)
    assert f"prompts.jsonl:2: {where}" in str(e.value)


def test_duplicate_ids_and_bad_json(tmp_path):
    with pytest.raises(InputError, match=r":2: field 'id': duplicate id 'x' \(first on line 1\)"):
        read_prompts(write(tmp_path, [{"id": "x", "prompt": "a"}, {"id": "x", "prompt": "b"}]))
    with pytest.raises(InputError, match=r":2: invalid JSON"):
        read_prompts(write(tmp_path, [{"prompt": "a"}, "{oops"]))
    with pytest.raises(InputError, match="file not found"):
        read_prompts(tmp_path / "nope.jsonl")


def test_candidate_rows_keep_ids_params_and_messages(tmp_path):
    f = write(tmp_path, [{"id": "q1", "prompt": "Say hi", "reference": "hi", "category": "greeting"},
                         {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Color?"}]}])
    out = tmp_path / "cands.jsonl"
    rows, summary = sample(f, 3, model="fake/hash", output=out, max_new_tokens=20, temperature=0.7, top_p=0.9, seed=5)
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert [(r["prompt_id"], r["candidate"], r["id"]) for r in rows] == [
        ("q1", 0, "q1-0"), ("q1", 1, "q1-1"), ("q1", 2, "q1-2"), ("1", 0, "1-0"), ("1", 1, "1-1"), ("1", 2, "1-2")]
    r0, r3 = rows[0], rows[3]
    assert r0["model"] == "fake/hash" and r0["reference"] == "hi" and r0["category"] == "greeting"
    assert r0["sampling"] == {"n": 3, "max_new_tokens": 20, "temperature": 0.7, "top_p": 0.9, "seed": 5,
                              "request_seed": request_seed(5, "q1", 0)}
    assert r0["messages"] == [{"role": "user", "content": "Say hi"}] and r0["prompt"] == "Say hi"
    assert r3["messages"][0] == {"role": "system", "content": "Be brief."}
    assert "Be brief." in r3["prompt"] and "Color?" in r3["prompt"]
    assert summary.written == summary.requested == 6 and summary.prompts == 2


def test_same_seed_same_candidates_other_seed_others(tmp_path):
    f = write(tmp_path, [{"prompt": f"question {i}"} for i in range(3)])
    a, _ = sample(f, 4, model="fake/hash", seed=1)
    b, _ = sample(f, 4, model="fake/hash", seed=1)
    c, _ = sample(f, 4, model="fake/hash", seed=2)
    assert [r["response"] for r in a] == [r["response"] for r in b]
    assert [r["response"] for r in a] != [r["response"] for r in c]
    assert len({r["sampling"]["request_seed"] for r in a}) == 12       # one seed per candidate


def test_every_request_gets_the_asked_params(tmp_path, fake_backend):
    be = fake_backend(responder=lambda m, p: f"ok {p.seed}")
    sample(["one", "two"], 2, model=be, max_new_tokens=7, temperature=1.1, top_p=0.5, seed=3)
    assert len(be.calls) == 4
    assert {(p.max_tokens, p.temperature, p.top_p) for _, p in be.calls} == {(7, 1.1, 0.5)}
    assert sorted(p.seed for _, p in be.calls) == sorted(request_seed(3, pid, k) for pid in ("0", "1") for k in range(2))


def test_failed_requests_are_counted_not_written(tmp_path, fake_backend):
    def responder(messages, params):
        if "bad" in messages[-1]["content"]:
            raise BackendError("server said no", code="api_error", status=400)     # not retried
        return Completion(text="fine", finish_reason="stop")

    rows, summary = sample(["good", "bad"], 2, model=fake_backend(responder=responder))
    assert [r["prompt_id"] for r in rows] == ["0", "0"]
    assert summary.failed == {"api_error:400": 2} and "failed api_error:400: 2" in summary.render()
    with pytest.raises(RlaifError, match="every one of the 2 sampling requests failed"):
        sample(["bad"], 2, model=fake_backend(responder=responder))


def test_bad_parameters_listed_together():
    with pytest.raises(RlaifError) as e:
        sample(["x"], 0, model="fake/hash", top_p=0, max_new_tokens=0)
    msg = str(e.value)
    assert "n: must be" in msg and "top_p" in msg and "max_new_tokens" in msg
    with pytest.raises(RlaifError, match="greedy decoding"):
        sample(["x"], 4, model="fake/hash", temperature=0)


def test_limit_and_cli(tmp_path, capsys):
    from rlaif.cli import main

    f = write(tmp_path, [{"prompt": f"q{i}"} for i in range(5)])
    out = tmp_path / "c.jsonl"
    assert main(["sample", str(f), "-n", "2", "--model", "fake/hash", "--limit", "2", "-o", str(out), "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and {r["prompt_id"] for r in rows} == {"0", "1"}
    assert "sampled 4 of 4 candidates" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing.jsonl"), "-o", str(out)]) == 2
    assert len(out.read_text().splitlines()) == 4          # a failed run leaves the old output alone


def test_resume_reuses_an_interrupted_runs_candidates(tmp_path):
    from rlaif.backends.fake import FakeBackend

    f = write(tmp_path, [{"id": f"q{i}", "prompt": f"question {i}"} for i in range(3)])
    out = tmp_path / "c.jsonl"
    full, _ = sample(f, 2, model="fake/hash", output=out, seed=4, resume=True)
    assert not (tmp_path / "c.jsonl.partial").exists()          # removed once the output is complete
    # an interrupted run: three candidates journaled, the fourth cut off mid-line
    journal = tmp_path / "c.jsonl.partial"
    journal.write_text("".join(json.dumps(r) + "\n" for r in full[:3]) + json.dumps(full[3])[:25])
    be = FakeBackend("hash")
    again, summary = sample(f, 2, model=be, output=out, seed=4, resume=True)
    assert again == full and summary.reused == 3 and len(be.calls) == 3    # only the missing three were asked
    # a journal from other settings is not reused
    journal.write_text("".join(json.dumps(r) + "\n" for r in full))
    be = FakeBackend("hash")
    _, summary = sample(f, 2, model=be, output=out, seed=4, temperature=0.5, resume=True)
    assert summary.reused == 0 and len(be.calls) == 6


async def test_usable_inside_a_running_event_loop():
    rows, _ = sample(["hello"], 2, model="fake/hash")
    assert len(rows) == 2


def test_top_p_filter():
    import torch

    from rlaif.backends.local import top_p_filter

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.7))[0].tolist()
    assert kept == [True, True, False, False]          # 0.5 < 0.7, 0.5+0.3 >= 0.7
    assert torch.isfinite(top_p_filter(logits, 0.1))[0].tolist() == [True, False, False, False]
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isfinite(top_p_filter(shuffled, 0.7))[0].tolist() == [False, True, False, True]


# ---------------------------------------------------------------------------------------------
# The local backend (embedded SmolLM2)
# ---------------------------------------------------------------------------------------------
def test_local_chat_template_is_applied(local_judge, embedded):
    _model, tok = embedded
    msgs = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of Canada?"}]
    _m, _t, enc = local_judge._encode([msgs])
    text = tok.decode(enc["input_ids"][0][enc["attention_mask"][0].bool()])
    assert text == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>")
    assert text.endswith("<|im_start|>user\nCapital of Canada?<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, 2 threads per process can be 10x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_local_seed_reproducible_whatever_the_batch(local_judge, one_thread):
    """Same request seed → the same text alone, in a batch with others, in another position."""
    q = [{"role": "user", "content": "Write a haiku about rain."}]
    others = [[{"role": "user", "content": "Name a fruit."}],
              [{"role": "user", "content": "Explain what a prime number is, in one sentence, for a curious child."}]]
    params = lambda s: GenParams(max_tokens=8, temperature=1.0, top_p=0.95, seed=s)  # noqa: E731

    async def run(batch):
        return [c.text for c in await asyncio.gather(*(local_judge.complete(m, params(s)) for m, s in batch))]

    alone = asyncio.run(run([(q, 11)]))[0]
    batched = asyncio.run(run([(others[0], 3), (q, 11), (others[1], 4)]))
    assert batched[1] == alone
    assert asyncio.run(run([(others[1], 9), (others[0], 8), (q, 11)]))[2] == alone
    different = {asyncio.run(run([(q, s)]))[0] for s in (12, 13, 14)}
    assert different - {alone}                              # other seeds give other text
