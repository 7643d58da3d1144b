"""Shared fixtures. Tests run offline: a scripted fake backend, tiny models built from a config,
and the embedded SmolLM2 (loaded once per session) where a real model matters."""
from __future__ import annotations

import os

import pytest

# Keep the 2-core CI machine responsive and results deterministic. One torch thread per process:
# tests run model code in-process *and* in subprocesses (CLI runs, loopback servers) at the same time,
# and two processes spinning two OpenMP threads each on 2 cores were measured 30x slower (330 s vs
# 10 s for one generative judgment); set before any test module imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The fast loop (`pytest -m "not slow and not ci"`, CONTRIBUTING.md) leaves out what costs seconds:
# tests that load the embedded model or build a tiny one, start processes, or import a heavy SDK
# (litellm, trl). Marked here, in one place, as `slow` *and* `ci`, so the default run (`not slow or
# ci`) still runs every one of them exactly as before.
HEAVY_FIXTURES = {"embedded", "local_judge", "tiny", "base_answers"}
HEAVY_TESTS = (
    "test_local_judge.py::test_smollm2", "test_local_judge.py::test_multi_token_scale",
    "test_pipeline.py::test_kill_", "test_pipeline.py::test_examples_pipeline_dataset_trains",
    "test_sampling.py::test_local_seed_reproducible", "test_backends_http.py::test_litellm",
    "test_backends_http.py::test_anthropic_missing_key", "test_train_dpo.py::test_matches_trl",
    "test_models.py::test_local_backend_loads", "test_train_cli.py::", "test_ledger.py::test_two_processes",
    "test_evaluate.py::test_eval_", "test_resume.py::test_sigkill", "test_faults.py::test_sigkill",
    "test_train_dpo.py::", "test_train_grpo.py::", "test_train_data.py::test_boundary",
    "test_models.py::test_unknown_local_model",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow"):
            continue
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())) or any(h in item.nodeid for h in HEAVY_TESTS):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.ci)


@pytest.fixture(scope="session")
def embedded():
    """(model, tokenizer) of the embedded SmolLM2, loaded once for the whole session."""
    from rlaif.models import load_model

    return load_model("default", device="cpu")


@pytest.fixture(scope="session")
def local_judge(embedded):
    """A LocalBackend over the embedded model (shares the loaded weights)."""
    from rlaif.backends.local import LocalBackend

    model, tok = embedded
    return LocalBackend("default", model_obj=model, tokenizer=tok)


@pytest.fixture
def fake_backend():
    """Factory: fake_backend(responder=fn | script=[...]) -> a scripted FakeBackend."""
    from rlaif.backends.fake import FakeBackend

    def make(**kw):
        return FakeBackend("test", **kw)

    return make


@pytest.fixture(autouse=True)
def _own_request_ledger(tmp_path_factory, monkeypatch):
    """Each test gets its own request ledger: API judges cache answers by default, and a test must
    not be answered from another test's ledger (or a developer's ~/.cache)."""
    monkeypatch.setenv("RLAIF_LEDGER", str(tmp_path_factory.mktemp("ledger") / "ledger.sqlite"))
