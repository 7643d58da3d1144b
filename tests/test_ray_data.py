"""Ray Data: judging a dataset on a local Ray (num_cpus=2) over an actor pool gives `rlaif judge`'s rows, and a
killed actor's batch is judged again, not lost."""
from __future__ import annotations

import math
import os

import pytest

ray = pytest.importorskip("ray")


def _norm(rows):
    """Rows as comparable dicts: Ray's Arrow tables read an absent key back as None."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return sorted(({k: clean(v) for k, v in r.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
                   for r in rows), key=lambda r: r["id"])


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield
    ray.shutdown()


ROWS = [{"id": f"r{i}", "prompt": f"Question {i}: what is {i} squared?", "response": f"It is {i * i}."}
        for i in range(40)]


class KillOnce:
    """A fake/hash backend whose actor dies (os._exit) the first time it is shown the row marked KILL."""

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self):
        from rlaif.backends.fake import FakeBackend, hash_responder

        marker = self.marker

        def respond(messages, params):
            if any("KILL" in m["content"] for m in messages) and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            return hash_responder(messages, params)

        return FakeBackend("hash", responder=respond)


@pytest.mark.slow
def test_ray_rows_equal_rlaif_judge_and_a_killed_actor_loses_nothing(local_ray, tmp_path):
    from rlaif.integrations.ray_data import judge_dataset
    from rlaif.judge import judge

    expected, _ = judge(ROWS, "helpfulness", judge="fake/hash")
    ds = ray.data.from_items(ROWS)
    got = judge_dataset(ds, "helpfulness", judge="fake/hash", actors=2, batch_size=8).take_all()
    assert _norm(got) == _norm(expected)

    rows = [dict(r) for r in ROWS]
    rows[13]["response"] = "KILL " + rows[13]["response"]
    expected, _ = judge(rows, "helpfulness", judge="fake/hash")
    marker = tmp_path / "killed"
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])    # workers cannot import this test module
    got = judge_dataset(ray.data.from_items(rows), "helpfulness", actors=2, batch_size=8,
                        backend_factory=KillOnce(str(marker))).take_all()
    assert marker.exists()                      # an actor did die mid-batch
    assert _norm(got) == _norm(expected)        # and every row came back, judged as `rlaif judge` judges it


@pytest.mark.slow
def test_ray_sampling_equals_rlaif_sample(local_ray):
    from rlaif.integrations.ray_data import sample_dataset
    from rlaif.sampling import sample

    prompts = [{"id": f"p{i}", "prompt": f"Tell me about item {i}."} for i in range(12)]
    expected, _ = sample(prompts, 3, model="fake/hash")
    got = sample_dataset(ray.data.from_items(prompts), 3, model="fake/hash", actors=2, batch_size=4).take_all()
    assert len(got) == 36 and _norm(got) == _norm(expected)      # ids are prompt-candidate: unique
