"""verl: the RL parquet reads back with the names and types verl's RLHFDataset and reward managers use, and
compute_score, called with verl's argument names, scores completions (in process or through the server)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rlaif.errors import RlaifError
from rlaif.integrations.verl import compute_score, compute_score_batch, export_rl_data

PROMPTS = [{"id": "q1", "prompt": "What is 6 times 7?", "reference": "42"},
           {"id": "q2", "prompt": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Name a colour."}]}]


def _write(tmp_path):
    f = tmp_path / "prompts.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    return f


def test_verl_parquet_schema_exactly(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = subprocess.run([sys.executable, "-m", "rlaif", "export", "rl-data", str(_write(tmp_path)), "--format",
                          "verl", "-o", str(tmp_path / "data")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    t = pq.read_table(tmp_path / "data" / "train.parquet")
    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    # the columns of verl's examples/data_preprocess/gsm8k.py, with the same types
    assert t.schema.names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert t.schema.field("data_source").type == pa.string() and t.schema.field("ability").type == pa.string()
    assert t.schema.field("prompt").type == msg
    assert t.schema.field("reward_model").type == pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
    info = t.schema.field("extra_info").type
    assert info.field("index").type == pa.int64() and info.field("split").type == pa.string()
    rows = t.to_pylist()
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is 6 times 7?"}]
    assert rows[0]["reward_model"] == {"style": "model", "ground_truth": "42"}
    assert rows[1]["prompt"][0] == {"role": "system", "content": "Be brief."} and rows[1]["extra_info"]["index"] == 1
    # RLHFDataset reads the files with datasets' parquet loader and applies the chat template to `prompt`
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "data" / "train.parquet"))["train"]
    assert ds[1]["prompt"][-1] == {"role": "user", "content": "Name a colour."}
    assert ds[0]["extra_info"]["question"] == "What is 6 times 7?"


def test_bad_prompts_file_is_a_clear_error(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "prompt": "ok"}\n{"id": "b"}\n')
    out = subprocess.run([sys.executable, "-m", "rlaif", "export", "rl-data", str(f), "-o", str(tmp_path / "d")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "p.jsonl:2: field 'prompt'" in out.stderr
    assert not (tmp_path / "d" / "train.parquet").exists()


def test_compute_score_with_verls_argument_names(tmp_path):
    export_rl_data(_write(tmp_path), tmp_path / "d")
    import pyarrow.parquet as pq

    row = pq.read_table(tmp_path / "d" / "train.parquet").to_pylist()[0]
    kw = {"reward": "rubric:helpfulness@fake/hash"}           # what custom_reward_function.reward_kwargs holds
    out = compute_score(data_source=row["data_source"], solution_str="It is 42.",
                        ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"], **kw)
    assert set(out) == {"score", "rlaif_unscored"} and 1.0 <= out["score"] <= 5.0 and out["rlaif_unscored"] == 0.0
    f = tmp_path / "rw.py"
    f.write_text("def reward(prompts, completions, label=None, **kw):\n"
                 "    return [None if c == '?' else float(c == l) for c, l in zip(completions, label)]\n")
    batch = compute_score_batch(data_sources=["rlaif"] * 2, solution_strs=["42", "41"], ground_truths=["42", "42"],
                                extra_infos=[row["extra_info"]] * 2, reward=str(f))
    assert [b["score"] for b in batch] == [1.0, 0.0]
    with pytest.raises(RlaifError, match="unscored_reward"):
        compute_score("rlaif", "?", "42", row["extra_info"], reward=str(f))
    assert compute_score("rlaif", "?", "42", row["extra_info"], reward=str(f), unscored_reward=-1) == \
        {"score": -1.0, "rlaif_unscored": 1.0}
    with pytest.raises(RlaifError, match="extra_info has no 'question'"):
        compute_score("rlaif", "x", "", {}, reward=str(f))
    with pytest.raises(RlaifError, match="reward_kwargs.reward"):
        compute_score("rlaif", "x", "", row["extra_info"])


def test_compute_score_through_the_reward_server(tmp_path):
    from tests.test_serve_reward import running

    from rlaif.serve import RewardServerConfig, build_app

    app = build_app(RewardServerConfig(rewards=["rubric:helpfulness@fake/hash"]))
    info = {"question": "What is 6 times 7?", "index": 0}
    local = compute_score("rlaif", "It is 42.", "42", info, reward="rubric:helpfulness@fake/hash")
    with running(app) as url:
        remote = compute_score(data_source="rlaif", solution_str="It is 42.", ground_truth="42", extra_info=info,
                               url=url)
    assert remote == local


def test_verls_own_dataset_and_reward_manager_read_them(tmp_path):
    """With verl installed (not a dev dependency): its RLHFDataset reads the parquet, and its NaiveRewardManager
    scores responses through compute_score loaded by its own get_custom_reward_fn."""
    pytest.importorskip("verl.utils.dataset.rl_dataset")
    import numpy as np
    import torch
    from tests._train_utils import smol_tokenizer
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.workers.reward_manager.naive import NaiveRewardManager

    import rlaif.integrations.verl as rv

    path = export_rl_data(PROMPTS, tmp_path / "d")
    tok = smol_tokenizer()
    ds = RLHFDataset(str(path), tok, OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 128,
                                                       "truncation": "error", "filter_overlong_prompts": False}))
    items = [ds[0], ds[1]]
    assert items[0]["reward_model"]["ground_truth"] == "42" and items[1]["extra_info"]["index"] == 1
    fn_cfg = {"path": rv.__file__, "name": "compute_score", "reward_kwargs": {"reward": "rubric:helpfulness@fake/hash"}}
    fn = get_custom_reward_fn(OmegaConf.create({"reward": {"custom_reward_function": fn_cfg},
                                                "custom_reward_function": fn_cfg}))   # newer / older verl layouts
    response = tok(" It is 42.")["input_ids"][:6]
    data = DataProto.from_dict(
        tensors={"prompts": torch.tensor([tok("Q?")["input_ids"][-1:] * 8] * 2),
                 "responses": torch.tensor([response + [tok.pad_token_id] * (6 - len(response))] * 2),
                 "attention_mask": torch.ones(2, 14, dtype=torch.long)},
        non_tensors={k: np.array([it[k] for it in items], dtype=object)
                     for k in ("reward_model", "data_source", "extra_info")})
    out = NaiveRewardManager(tok, num_examine=0, compute_score=fn)(data, return_dict=True)
    assert out["reward_extra_info"]["rlaif_unscored"] == [0.0, 0.0]
    assert all(1.0 <= s <= 5.0 for s in out["reward_extra_info"]["score"])
    assert torch.allclose(out["reward_tensor"].sum(-1), torch.tensor(out["reward_extra_info"]["score"]))
