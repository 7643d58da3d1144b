"""Issue 14 item 1: a trained adapter names a base that loads offline, with no network attempt,
and carries a filled model card; `rlaif export` without --merge keeps the base resolvable."""
import json
import os
import subprocess
import sys

import pytest

from rlaif.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.ci]

GUARD = r"""
import socket, sys
def _no_net(*a, **k):
    raise SystemExit(f"NETWORK ATTEMPT: {a!r}")
socket.socket.connect = _no_net
socket.create_connection = _no_net
socket.getaddrinfo = _no_net
from peft import AutoPeftModelForCausalLM
m = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1])
print("LOADED", type(m).__name__)
"""


def _pairs(path, n=4):
    rows = [{"prompt": f"Name colour {i}.", "chosen": "Red.", "rejected": "I will not say." * (1 + i),
             "judge": "fake/judge", "rubric": "helpfulness@abc123"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapter")
    data = _pairs(d / "pairs.jsonl")
    out = d / "run"
    assert main(["train", "dpo", str(data), "--max-steps", "2", "--batch-size", "2", "--max-length", "64",
                 "--lora-r", "2", "-o", str(out), "--quiet"]) == 0
    return out, data


def _load_offline(adapter, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=os.getcwd())
    script = tmp_path / "guard.py"
    script.write_text(GUARD)
    return subprocess.run([sys.executable, str(script), str(adapter)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)


def test_adapter_loads_offline_with_no_network_attempt(trained, tmp_path):
    out, _ = trained
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    from rlaif.models import embedded_model_dir
    assert cfg["base_model_name_or_path"] == str(embedded_model_dir())
    r = _load_offline(out / "adapter", tmp_path)
    assert r.returncode == 0 and "LOADED" in r.stdout, r.stderr[-2000:]
    assert "NETWORK ATTEMPT" not in r.stdout + r.stderr


def test_adapter_card_is_filled(trained):
    out, data = trained
    card = (out / "adapter" / "README.md").read_text()
    from rlaif.journal import content_hash
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "More Information Needed" not in card
    assert "fake/judge" in card and "helpfulness@abc123" in card
    assert content_hash(data) in card
    assert "loss:" in card and "at the first step" in card
    assert "rlaif train dpo" in card or "train" in card.split("Command:")[1]


def test_export_without_merge_keeps_a_resolvable_base(trained, tmp_path):
    out, _ = trained
    # an adapter from an older rlaif that recorded "default"
    old = tmp_path / "old"
    old.mkdir()
    for f in (out / "adapter").iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((old / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "default"
    (old / "adapter_config.json").write_text(json.dumps(cfg))
    assert main(["export", "--adapter", str(old), "-o", str(tmp_path / "exp")]) == 0
    from rlaif.models import embedded_model_dir
    got = json.loads((tmp_path / "exp" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert got == str(embedded_model_dir())
    assert (tmp_path / "exp" / "adapter_model.safetensors").stat().st_mode & 0o044 == 0o044
    r = _load_offline(tmp_path / "exp", tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]


def test_model_files_are_readable_by_others(trained):
    from rlaif.models import embedded_model_dir
    out, _ = trained
    d = embedded_model_dir()
    assert d.stat().st_mode & 0o005 == 0o005
    for f in [*d.iterdir(), *(out / "adapter").iterdir()]:
        assert f.stat().st_mode & 0o004, f"{f} is not readable by other users"
