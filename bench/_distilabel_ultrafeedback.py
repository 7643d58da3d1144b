"""Run by bench/judge_throughput.py inside a venv with distilabel==1.5.3: times distilabel's
UltraFeedback task (OpenAILLM against the same local server) and prints one JSON line.

Default: the task is driven directly (load, then process() per batch of `--concurrency` inputs),
which is distilabel's own concurrency model (one asyncio.gather per input batch) without a
Pipeline's multiprocessing and serialisation overhead, i.e. distilabel at its fastest.
--pipeline: the way distilabel's docs run it, LoadDataFromDicts >> UltraFeedback in a Pipeline
(timed from pipeline.run() to its return, start-up included, as a user waits for it)."""
import argparse
import json
import time
import warnings

warnings.filterwarnings("ignore")

ap = argparse.ArgumentParser()
ap.add_argument("--base-url", required=True)
ap.add_argument("--n", type=int, default=1000)
ap.add_argument("--concurrency", type=int, default=64)
ap.add_argument("--pipeline", action="store_true")
a = ap.parse_args()

from distilabel.models import OpenAILLM  # noqa: E402
from distilabel.steps.tasks import UltraFeedback  # noqa: E402

llm = OpenAILLM(model="test-model", base_url=a.base_url, api_key="sk-bench", max_retries=0, timeout=120,
                generation_kwargs={"max_new_tokens": 64, "temperature": 0.0})
inputs = [{"instruction": f"Question number {i}: explain item {i}.", "generations": [f"Answer number {i}."]}
          for i in range(a.n)]
if a.pipeline:
    import tempfile

    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts

    with Pipeline(name="rlaif-bench", cache_dir=tempfile.mkdtemp()) as pipeline:
        load = LoadDataFromDicts(data=inputs, batch_size=a.concurrency)
        uf = UltraFeedback(llm=llm, aspect="helpfulness", input_batch_size=a.concurrency)
        load >> uf
    t0 = time.perf_counter()
    ds = pipeline.run(use_cache=False)
    el = time.perf_counter() - t0
    n = len(ds["default"]["train"])
    print(json.dumps({"n": n, "seconds": el, "per_s": n / el, "cpu_s": None, "per_cpu_s": None}))
    raise SystemExit(0)
task = UltraFeedback(llm=llm, aspect="helpfulness", input_batch_size=a.concurrency)
task.load()
t0, c0 = time.perf_counter(), time.process_time()
done = 0
for k in range(0, a.n, a.concurrency):
    out = next(task.process(inputs[k:k + a.concurrency]))
    done += len(out)
el, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"n": done, "seconds": el, "per_s": done / el, "cpu_s": cpu, "per_cpu_s": done / cpu}))
