"""LoRA training: DPO, GRPO and SFT loops (dpo.py, grpo.py, sft.py) over shared pieces:
losses.py (pure math), lora.py (peft; reference = adapter disabled), data.py (tokenizing with
prompt/completion boundaries), loop.py (accelerate, checkpoints, metrics), packing.py (a prompt
read once for its continuations, padding-free rows), logps.py (LM-head log-probs without full
logits), generation.py (GRPO sampling: transformers generate or vLLM). torch is imported only
when a function here runs."""
