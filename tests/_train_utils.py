"""Helpers for the training tests: a tiny Llama built from a config with the embedded SmolLM2
tokenizer (real chat template, tiny weights), and small preference / prompt rows."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def smol_tokenizer():
    from transformers import AutoTokenizer

    from rlaif.models import embedded_model_dir

    tok = AutoTokenizer.from_pretrained(str(embedded_model_dir()))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_lm(seed: int = 0, hidden: int = 64, layers: int = 2):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smol_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, tok


def save_tiny(path, seed: int = 0):
    model, tok = tiny_lm(seed)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return str(path)


def pair_rows(n: int = 6) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"Name a colour, number {i}."}],
             "chosen": [{"role": "assistant", "content": ["Red.", "Blue.", "Green."][i % 3]}],
             "rejected": [{"role": "assistant", "content": "Well, there are many colours and " * (1 + i % 3)}],
             "p_chosen": 0.6 + 0.05 * i}
            for i in range(n)]


def tiny_refusal_rm(tmp_path_factory, max_steps: int) -> str:
    """A categorical over_refusal reward model (head-only probe) on a tiny base: the rm/ judge and
    rm: reward tests' shared fixture body."""
    from rlaif.train.rm import train_rm
    from tests.test_train_rm import _refusal_rows

    base = save_tiny(tmp_path_factory.mktemp("base") / "tiny")
    out = tmp_path_factory.mktemp("rm") / "out"
    train_rm(_refusal_rows(), model=base, rubric="over_refusal", probe=True, max_steps=max_steps, batch_size=8,
             learning_rate=1e-2, output_dir=str(out), progress=False, save_steps=0, eval_fraction=0.0)
    return str(out)
