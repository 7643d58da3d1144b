"""Tokenizing training data: prompt/completion boundaries under the chat template, and errors
that name the file, the line and the field."""
import json

import pytest

from rlaif.errors import InputError
from rlaif.train.data import best_demos, collate_pairs, encode, read_rows, render_prompt, tokenize_pairs
from tests._train_utils import pair_rows, smol_tokenizer


def test_boundary_matches_the_chat_template():
    tok = smol_tokenizer()
    prompt = [{"role": "user", "content": "Hi there"}]
    p_ids, (c_ids,) = encode(tok, prompt, [[{"role": "assistant", "content": "Hello!"}]])
    full = tok.apply_chat_template(prompt + [{"role": "assistant", "content": "Hello!"}], tokenize=True, return_dict=True)["input_ids"]
    assert p_ids + c_ids == list(full)
    assert p_ids == render_prompt(tok, prompt)                      # the prompt ends with the generation prompt
    assert tok.decode(p_ids).endswith("<|im_start|>assistant\n")
    assert tok.decode(c_ids).startswith("Hello!") and "<|im_end|>" in tok.decode(c_ids)


def test_plain_strings_are_wrapped_as_messages():
    tok = smol_tokenizer()
    a = encode(tok, "Hi there", ["Hello!"])
    b = encode(tok, [{"role": "user", "content": "Hi there"}], [[{"role": "assistant", "content": "Hello!"}]])
    assert a == b


def test_pairs_collate_masks_only_completions():
    tok = smol_tokenizer()
    rows = read_rows(pair_rows(2))
    ex, dropped = tokenize_pairs(tok, rows, max_length=512, soft_labels=True)
    assert dropped == 0 and ex[0]["p_chosen"] == pytest.approx(0.6)
    b = collate_pairs(ex, tok.pad_token_id)
    assert b["input_ids"].shape[0] == 4
    for i, e in enumerate(ex):
        n_p, n_c = len(e["prompt_ids"]), len(e["chosen_ids"])
        assert b["completion_mask"][i, :n_p].sum() == 0 and b["completion_mask"][i, n_p:n_p + n_c].sum() == n_c
        assert b["completion_mask"][i].sum() == n_c                # padding is not scored
    # a prompt that fills max_length is dropped and counted
    _, dropped = tokenize_pairs(tok, rows, max_length=5)
    assert dropped == 2


def test_errors_name_file_line_field(tmp_path):
    tok = smol_tokenizer()
    p = tmp_path / "pairs.jsonl"
    good = pair_rows(1)[0]
    p.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "rejected": 3}) + "\n")
    with pytest.raises(InputError) as e:
        tokenize_pairs(tok, read_rows(p))
    assert str(p) in str(e.value) and ":3:" in str(e.value) and "rejected" in str(e.value)
    p.write_text(json.dumps({**good, "chosen": [{"role": "assistant"}]}) + "\n")
    with pytest.raises(InputError, match=r":1: field 'chosen\[0\]'"):
        tokenize_pairs(tok, read_rows(p))
    p.write_text(json.dumps({**good, "p_chosen": 1.5}) + "\n")
    with pytest.raises(InputError, match="p_chosen"):
        tokenize_pairs(tok, read_rows(p), soft_labels=True)
    p.write_text("{not json\n")
    with pytest.raises(InputError, match=":1:"):
        read_rows(p)


def test_dataset_folder(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(pair_rows(3)), "test": Dataset.from_list(pair_rows(1))}).save_to_disk(str(tmp_path / "ds"))
    assert len(read_rows(tmp_path / "ds").rows) == 3
    assert len(read_rows(tmp_path / "ds", split="test").rows) == 1
    with pytest.raises(InputError, match="no 'dev' split"):
        read_rows(tmp_path / "ds", split="dev")


def test_best_demos_pick_the_best_scored_and_skip_unscored():
    rows = read_rows([
        {"prompt": "a", "response": "a1", "score": 2.0},
        {"prompt": "a", "response": "a2", "score": 4.5},
        {"prompt": "a", "response": "a3", "score": None, "error": "parse_error"},
        {"prompt": "b", "response": "b1", "score": None, "error": "refused"},
        {"prompt": "c", "response": "c1", "score": 1.0},
    ])
    demos, stats = best_demos(rows)
    assert [(d[0], d[1]) for d in demos] == [("a", "a2"), ("c", "c1")]
    assert stats == {"rows": 5, "unscored": 2, "prompts": 2}
    with pytest.raises(InputError, match="score"):
        best_demos(read_rows([{"prompt": "a", "response": "x"}]))
