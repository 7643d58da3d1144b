"""`rlaif train dpo|grpo|sft` and `rlaif export` from the command line, on a tiny model folder."""
import importlib.util
import json

import pytest

from rlaif.cli import main
from tests._train_utils import pair_rows, save_tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model")


def test_bad_data_is_a_clear_error(tmp_path, capsys, tiny_dir):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "chosen": "a"}) + "\n")
    assert main(["train", "dpo", str(bad), "--model", tiny_dir, "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: field 'rejected'" in err
    assert main(["train", "dpo", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["train", "grpo", str(bad), "--reward", "no_such_mod_q:f", "-o", str(tmp_path / "o")]) == 2
    assert "cannot import module" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed here")
def test_report_to_without_the_package(tmp_path, capsys):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps(pair_rows(1)[0]) + "\n")
    assert main(["train", "dpo", str(data), "--report-to", "tensorboard", "-o", str(tmp_path / "o")]) == 2
    assert "pip install tensorboard" in capsys.readouterr().err


def test_dpo_on_a_dataset_folder_then_export(tmp_path, tiny_dir, capsys):
    from datasets import Dataset

    Dataset.from_list(pair_rows(4)).save_to_disk(str(tmp_path / "pairs"))
    out = tmp_path / "run"
    assert main(["train", "dpo", str(tmp_path / "pairs"), "--model", tiny_dir, "--max-steps", "2", "--batch-size", "2",
                 "--soft-labels", "-o", str(out), "--quiet"]) == 0
    m = [json.loads(x) for x in open(out / "metrics.jsonl")]
    assert len(m) == 2 and {"loss", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"} <= set(m[0])
    assert json.load(open(out / "adapter" / "adapter_config.json"))["base_model_name_or_path"] == tiny_dir
    # a second run into the same folder must not silently overwrite it
    assert main(["train", "dpo", str(tmp_path / "pairs"), "--model", tiny_dir, "-o", str(out), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["export", "--adapter", str(out / "adapter"), "--merge", "-o", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "config.json").exists() and not (tmp_path / "merged" / "adapter_config.json").exists()
    assert main(["export", "--adapter", str(tmp_path), "-o", str(tmp_path / "x")]) == 2


def test_grpo_with_a_reward_file(tmp_path, tiny_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Say {w}", "word": w}) + "\n" for w in ("a", "b", "c")))
    rf = tmp_path / "rw.py"
    rf.write_text("def has_word(prompts, completions, word, **kw):\n"
                  "    return [float(w in c) if i % 2 else None for i, (c, w) in enumerate(zip(completions, word))]\n")
    out = tmp_path / "g"
    assert main(["train", "grpo", str(prompts), "--model", tiny_dir, "--reward", f"{rf}:has_word", "-G", "2",
                 "--max-steps", "1", "--max-completion-length", "4", "-o", str(out), "--quiet"]) == 0
    m = json.loads(open(out / "metrics.jsonl").readline())
    assert m["unscored"] == pytest.approx(0.5) and "rewards/has_word" in m
