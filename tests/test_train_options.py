"""Issue 14 items 5 and 8, issue 15 item 18: training options bounded before any model loads,
--epochs deriving the steps, warnings for degenerate data, summaries in significant digits."""
import json

import pytest

from rlaif.cli import main
from rlaif.errors import ConfigError
from rlaif.train.checks import data_warnings, format_summary, significant, steps_for_epochs


def test_significant_digits_keep_small_numbers():
    assert significant(5e-5) == 5e-05
    assert significant(3.6e-7) == 3.6e-07
    assert significant(1e-5) == 1e-05
    assert significant(0.123456) == 0.1235
    assert significant({"a": [2.0e-9, 1]}) == {"a": [2e-09, 1]}
    line = format_summary({"steps": 2, "seconds": 1.0, "adapter": "x", "final": {"lr": 5e-5, "loss": 3.6e-7}})
    assert '"lr": 5e-05' in line and '"loss": 3.6e-07' in line


@pytest.mark.parametrize("flag,value,field", [("--batch-size", "0", "batch_size"), ("--lora-r", "0", "lora.r"),
                                              ("--max-steps", "0", "max_steps"), ("--lr", "-1", "learning_rate"),
                                              ("--grad-accum", "0", "grad_accum"), ("--epochs", "0", "epochs")])
def test_out_of_range_options_are_one_clear_error(tmp_path, capsys, flag, value, field):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n")
    out = tmp_path / "o"
    assert main(["train", "dpo", str(data), flag, value, "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{flag}: " in err and "out of range" in err and "Traceback" not in err
    assert not out.exists()


def test_every_problem_at_once():
    from rlaif.train.dpo import DPOConfig
    from rlaif.train.lora import LoraSettings

    with pytest.raises(ConfigError) as e:
        DPOConfig(batch_size=0, beta=-1, lora=LoraSettings(r=0))
    assert {p.where for p in e.value.problems} == {"batch_size", "beta", "lora.r"}


def test_steps_from_epochs_and_degenerate_data_warnings():
    assert steps_for_epochs(10, 2, 4) == 5
    assert steps_for_epochs(1, 1, 4) == 1
    w = data_warnings(1, 100, 4, "pairs")
    assert any("only 1 pairs" in x for x in w) and any("400 passes" in x for x in w)
    assert data_warnings(1000, 10, 4) == []


@pytest.mark.slow
def test_epochs_flag_sets_the_steps_and_warns(tmp_path, capsys):
    from tests._train_utils import pair_rows, save_tiny

    tiny = save_tiny(tmp_path / "tiny")
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in pair_rows(3)))
    assert main(["train", "dpo", str(data), "--model", tiny, "--epochs", "2", "--batch-size", "2",
                 "-o", str(tmp_path / "o"), "--quiet"]) == 0
    err = capsys.readouterr()
    assert "only 3 rows" in err.out + err.err
    summary = json.loads((tmp_path / "o" / "train_summary.json").read_text())
    assert summary["steps"] == 3           # ceil(2 epochs × 3 pairs / 2 per step)
