"""Issue 14 item 10: `rlaif run` is as quiet as `rlaif pairs`: no datasets progress bars and no
transformers deprecation warnings in its output."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.ci
def test_run_prints_no_progress_bars_or_deprecation_warnings(tmp_path):
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q {i}?"}) + "\n"
                                              for i in range(3)))
    f = tmp_path / "pipe.yaml"
    f.write_text(yaml.safe_dump({"prompts": "p.jsonl", "workdir": "w", "sample": {"model": "fake/hash", "n": 3},
                                 "judge": {"model": "fake/hash"}, "pairs": {"min_margin": 0.0}}))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="default")
    r = subprocess.run([sys.executable, "-m", "rlaif", "run", str(f)], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "Saving the dataset" not in out and "examples/s" not in out
    assert "FutureWarning" not in out and "DeprecationWarning" not in out
