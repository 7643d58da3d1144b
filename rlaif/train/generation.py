"""GRPO's sampling back ends: transformers `generate`, or vLLM (colocated in the training process, or a server).

Why: a GRPO step spends most of its time generating G completions per prompt, and HF `generate`
decodes without paged attention or continuous batching. vLLM does both. Two modes, as TRL offers:

- colocate: a vLLM engine inside the training process on the same GPU, created with sleep mode;
  between generation rounds it sleeps (level 1: weights copied to CPU memory, KV cache released) so
  the trainer gets the memory back, and wakes up for the next round.
- server: a vLLM OpenAI-compatible server the user starts (`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
  vllm serve MODEL --enable-lora --max-lora-rank R`), on a path the server can read.

The policy is the base model plus the LoRA adapter being trained, so after every optimiser step the
adapter is written to OUT/.vllm-lora/step-N and handed to vLLM as a new LoRA request (a new id per
step: vLLM caches adapters by id); server mode loads it with /v1/load_lora_adapter and drops the
previous one. Completions come back as token ids (never re-tokenised text), cut after the first EOS.

Without vLLM (CPU, or not installed) `use_vllm=None` falls back to transformers `generate`, said once;
`use_vllm=True` is then an error naming what to install. NOT YET RUN ON A GPU: the vLLM paths are
written against vLLM's documented API (LLM, SamplingParams, LoRARequest, sleep/wake_up; the OpenAI
server's /v1/completions with return_token_ids, /v1/load_lora_adapter) and only the fallback and the
server protocol (against a fake server) are tested here.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from rlaif.errors import MissingDependencyError, RlaifError
from rlaif.train.logps import say_once

VLLM_MODES = ("colocate", "server")


def cut_after_eos(ids: list[int], eos: set[int]) -> list[int]:
    """A completion up to and including its first EOS token (all of it when none)."""
    cut = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
    return list(ids[:cut])


def eos_ids(model, tok) -> set[int]:
    eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None else tok.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def vllm_installed() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def make_generator(run, cfg, model_object: bool = False):
    """The sampler this run uses: vLLM (colocate or server) or transformers generate. model_object:
    the caller passed a loaded model (colocate mode needs a name or folder to load in vLLM)."""
    import torch

    mode = cfg.vllm_mode
    if mode not in VLLM_MODES:
        raise RlaifError(f"unknown vllm_mode '{mode}'; choose one of {', '.join(VLLM_MODES)}")
    if cfg.use_vllm is False:
        return HFGenerator()
    if mode == "server" and cfg.use_vllm:
        return VLLMServerGenerator(run, cfg)
    cuda = torch.cuda.is_available()
    if cfg.use_vllm and not vllm_installed():
        raise MissingDependencyError("vllm", why="for --use-vllm (GRPO generation in colocate mode; needs CUDA)")
    if cfg.use_vllm and not cuda:
        raise RlaifError("--use-vllm: vLLM generation needs a CUDA GPU; run without it (transformers generate)")
    if not (vllm_installed() and cuda):
        say_once("note: GRPO generates with transformers generate ("
                 + ("vLLM is not installed: pip install vllm" if cuda else "no CUDA GPU for vLLM") + ")")
        return HFGenerator()
    if model_object:
        raise RlaifError("vLLM colocate mode loads the base model itself: pass the model as a name or folder, "
                         "not as a loaded object (or use_vllm=False)")
    return VLLMColocateGenerator(run, cfg)


class HFGenerator:
    """transformers generate with the current (LoRA) policy."""

    name = "hf"

    def generate(self, run, prompt_ids: list[list[int]], cfg) -> list[list[int]]:
        import torch

        from rlaif.train.data import pad_id_of

        tok, model = run.tok, run.model
        pad = pad_id_of(tok)
        width = max(len(p) for p in prompt_ids)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids], device=run.device)
        attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids], device=run.device)
        eos = eos_ids(model, tok)
        was_training = model.training
        model.eval()
        fsdp = getattr(run, "fsdp", False)
        if fsdp:      # generate calls the inner model: gather the weights the FSDP root holds (embeddings, head)
            run.lp_model.unshard()
        try:
            with torch.no_grad(), run.acc.autocast():
                out = model.generate(input_ids=ids, attention_mask=attn, do_sample=True, temperature=cfg.temperature,
                                     top_p=cfg.top_p, top_k=0, max_new_tokens=cfg.max_completion_length,
                                     num_return_sequences=cfg.num_generations, pad_token_id=pad, use_cache=True,
                                     # FSDP: every forward gathers weights from all ranks, so a rank whose
                                     # completions ended keeps stepping until every rank's have
                                     synced_gpus=fsdp)
        finally:
            model.train(was_training)
            if fsdp:
                run.lp_model.reshard()
        return [cut_after_eos(row, eos) for row in out[:, width:].tolist()]


def _push_adapter(run) -> tuple[str, int, Path]:
    """Write the current adapter for vLLM: (name, id, folder); the previous step's folder is removed."""
    from rlaif.train.lora import save_adapter

    root = run.out / ".vllm-lora"
    path = root / f"step-{run.step}"
    if run.main:
        if root.exists():
            shutil.rmtree(root)
        save_adapter(run.model, path)
    run.acc.wait_for_everyone()
    return f"rlaif-step-{run.step}", run.step + 1, path


def _model_path(run) -> str:
    from rlaif.models import resolve_model_path

    return str(resolve_model_path(run.cfg.model))


class VLLMColocateGenerator:
    """A vLLM engine in this process, asleep between rounds, the adapter pushed as a LoRA request."""

    name = "vllm-colocate"

    def __init__(self, run, cfg):
        from vllm import LLM

        if run.acc.num_processes > 1:
            raise RlaifError("vLLM colocate mode runs with one training process; with several, use vllm_mode='server'")
        self.eos = eos_ids(run.model, run.tok)
        self.llm = LLM(model=_model_path(run), enable_lora=True, max_lora_rank=max(8, cfg.lora.r), max_loras=1,
                       gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, enable_sleep_mode=True,
                       dtype="bfloat16", seed=cfg.seed,
                       max_model_len=cfg.vllm_max_model_len)
        self.llm.sleep(level=1)            # the trainer's first steps need the memory until the first round

    def generate(self, run, prompt_ids, cfg):
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        name, lora_id, path = _push_adapter(run)
        self.llm.wake_up()
        try:
            params = SamplingParams(n=cfg.num_generations, temperature=cfg.temperature, top_p=cfg.top_p,
                                    max_tokens=cfg.max_completion_length)
            outs = self.llm.generate([{"prompt_token_ids": p} for p in prompt_ids], params,
                                     lora_request=LoRARequest(name, lora_id, str(path)), use_tqdm=False)
        finally:
            self.llm.sleep(level=1)
        return [cut_after_eos(list(o.token_ids), self.eos) for out in outs for o in out.outputs]


class VLLMServerGenerator:
    """A running vLLM OpenAI-compatible server (runtime LoRA updating on), reached over HTTP."""

    name = "vllm-server"

    def __init__(self, run, cfg):
        import httpx

        self.url = cfg.vllm_server_url.rstrip("/")
        self.http = httpx.Client(timeout=cfg.vllm_server_timeout)
        self.eos = eos_ids(run.model, run.tok)
        self.loaded: str | None = None

    def _post(self, path: str, body: dict) -> dict:
        import httpx

        try:
            r = self.http.post(self.url + path, json=body)
        except httpx.HTTPError as e:
            raise RlaifError(f"vLLM server {self.url}{path}: {type(e).__name__}: {e}") from e
        if r.status_code != 200:
            raise RlaifError(f"vLLM server {self.url}{path}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else {}

    def generate(self, run, prompt_ids, cfg):
        name, _, path = _push_adapter(run)
        self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path.resolve())})
        if self.loaded and self.loaded != name:
            self._post("/v1/unload_lora_adapter", {"lora_name": self.loaded})
        self.loaded = name
        n = cfg.num_generations
        out = self._post("/v1/completions", {
            "model": name, "prompt": prompt_ids, "n": n, "temperature": cfg.temperature, "top_p": cfg.top_p,
            "max_tokens": cfg.max_completion_length, "return_token_ids": True})
        choices = sorted(out.get("choices", []), key=lambda c: c["index"])   # prompt-major: i * n + k
        if len(choices) != n * len(prompt_ids) or any("token_ids" not in c for c in choices):
            raise RlaifError(f"vLLM server {self.url}: expected {n * len(prompt_ids)} completions with token_ids "
                             f"(vLLM >= 0.10.2 returns them with return_token_ids), got {len(choices)}")
        return [cut_after_eos(c["token_ids"], self.eos) for c in choices]


__all__ = ["make_generator", "HFGenerator", "VLLMColocateGenerator", "VLLMServerGenerator", "cut_after_eos",
           "VLLM_MODES"]
