"""LoRA training: DPO, GRPO and SFT loops (dpo.py, grpo.py, sft.py) over shared pieces:
losses.py (pure math), lora.py (peft; reference = adapter disabled), data.py (tokenizing with
prompt/completion boundaries), loop.py (accelerate, checkpoints, metrics). torch is imported
only when a function here runs."""
