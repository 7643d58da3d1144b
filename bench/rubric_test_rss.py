"""Peak memory of `rlaif rubric test` on N gold pairs with the embedded judge (issue 14 item 10).

    OMP_NUM_THREADS=1 python bench/rubric_test_rss.py --limit 20

Runs the command as a child process and reads its peak resident set size (ru_maxrss of the
waited-for child), printing one JSON line. The target: under 1.5 GB for 20 pairs (it was 4.4 GB
when filed). An absolute number on purpose: the target is what a laptop user can spare, and the
model's own weights (~540 MB in float32) set its floor.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 1536


def run_once(limit: int, gold: str, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "rlaif", "rubric", "test", "helpfulness", "--gold", gold, "--limit", str(limit),
               "-o", str(Path(d) / "r.json")]
        t0 = time.time()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024   # the largest child so far
        return {"limit": limit, "rc": proc.returncode, "peak_rss_mb": peak_mb, "seconds": round(time.time() - t0, 1),
                "under_target": peak_mb < TARGET_MB, "stderr_tail": proc.stderr[-300:] if proc.returncode else ""}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--gold", default=str(ROOT / "examples" / "gold" / "human_pairs_dev.jsonl"))
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    print(json.dumps(run_once(a.limit, a.gold, env)))


if __name__ == "__main__":
    main()
