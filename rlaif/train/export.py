"""`rlaif export --adapter DIR [--merge] -o OUT`: ship what training produced.

Without --merge: the adapter alone (a few MB; load it on top of the base with peft), its
base_model_name_or_path kept resolvable (the embedded model's converted folder, or --base). With
--merge: the LoRA update folded into the base weights (W + BA·alpha/r), saved as a plain
transformers model folder with its tokenizer — loadable with AutoModelForCausalLM, servable by
vLLM/TGI/llama.cpp converters, no peft needed. Written to a temporary folder and renamed, so a
failed export never leaves a half-written OUT.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from rlaif.errors import RlaifError


def _base_of(adapter: Path) -> str:
    cfg = adapter / "adapter_config.json"
    if not cfg.exists():
        raise RlaifError(f"{adapter}: not an adapter folder (no adapter_config.json); "
                         f"pass OUT/adapter or a checkpoint's adapter/ from `rlaif train`")
    base = json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise RlaifError(f"{cfg}: no base_model_name_or_path; pass --base")
    return base


def export(adapter: str | Path, output: str | Path, *, merge: bool = False, base: str | None = None,
           dtype: str | None = None) -> Path:
    """Export a trained adapter: merged into its base model (`merge=True`) or copied alone.
    `base` overrides the base model recorded in the adapter ("default" = the embedded model)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlaif.models import base_reference, make_shareable, resolve_model_path

    adapter, output = Path(adapter), Path(output)
    if not adapter.is_dir():
        raise RlaifError(f"--adapter {adapter}: no such folder")
    base_name = base or _base_of(adapter)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        if merge:
            path = resolve_model_path(base_name)
            try:
                model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype) if dtype else "auto")
            except OSError as e:
                raise RlaifError(f"cannot load the base model '{base_name}' to merge into: {e}; pass --base") from e
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
            model.save_pretrained(str(tmp), safe_serialization=True)
            tok_src = adapter if (adapter / "tokenizer_config.json").exists() else path
            AutoTokenizer.from_pretrained(str(tok_src)).save_pretrained(str(tmp))
        else:
            for f in adapter.iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
            # keep a base that resolves: an older adapter's "default" becomes the converted folder;
            # --base (a Hub id to share under, or another folder) replaces the recorded one
            cfg_file = tmp / "adapter_config.json"
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            cfg["base_model_name_or_path"] = base_reference(base_name)
            cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        make_shareable(tmp)
        if output.exists():
            shutil.rmtree(output)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return output
