"""Benchmark: submitting a candidate for review, and loading the champion for serving.

``submit_candidate`` = log the run (params, metrics, artifacts, plots, lineage, model) +
register the version + gates (DM tests) + HTML/Markdown report + tags. The baseline is
the bare minimum MLflow work for the same model: one run with ``mlflow.sklearn.log_model``
and a registered version. The ratio says what the governance costs per candidate.

Champion loading is compared with a bare ``mlflow.sklearn.load_model("models:/...@champion")``:
ours resolves the alias, checks the last-known-good copy and loads from it.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlflow
import mlflow.sklearn

from models.champion import default_cache_dir, load_champion
from models.mlflow_store import MlflowStore
from models.registry import registered_model_name
from models.submission import submit_candidate
from models.tracking import pip_requirements
from tests.models.registry_factory import DATA_THROUGH, training_run

REPEATS = 3


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    """Best wall time of ``repeats`` calls, in seconds (the least disturbed by neighbours)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        workdir = Path(tmp)
        store = MlflowStore.for_workdir(workdir)
        started = time.perf_counter()
        store.client().search_experiments()
        migrate = time.perf_counter() - started
        name = registered_model_name(24)
        run = training_run(challenger_error=0.2)
        submit_candidate(  # warm-up, and the champion for the loading benchmark
            store,
            run,
            reports_dir=workdir / "reports",
            reference_time=DATA_THROUGH,
            auto_promote=True,
        )

        def ours() -> None:
            submit_candidate(
                store, run, reports_dir=workdir / "reports", reference_time=DATA_THROUGH
            )

        def baseline() -> None:
            experiment = store.ensure_experiment()
            with store.bound(), mlflow.start_run(experiment_id=experiment):
                mlflow.sklearn.log_model(
                    run.model,
                    name="model",
                    registered_model_name=f"{name}-baseline",
                    pip_requirements=pip_requirements(run.model),
                )

        t_ours, t_base = best_of(ours), best_of(baseline)
        cache = default_cache_dir(workdir)
        load_champion(store, name, cache)

        def bare_load() -> None:
            with store.bound():
                mlflow.sklearn.load_model(f"models:/{name}@champion")

        t_load = best_of(lambda: load_champion(store, name, cache), 5)
        t_bare = best_of(bare_load, 5)
        broken = MlflowStore(f"sqlite:///{workdir / 'gone' / 'mlflow.db'}", workdir)
        t_fallback = best_of(lambda: load_champion(broken, name, cache), 5)

    print(f"migrate a fresh SQLite MLflow store : {migrate:7.2f} s")
    print(f"submit_candidate (ours)             : {t_ours:7.2f} s")
    print(f"log_model + register (baseline)     : {t_base:7.2f} s")
    print(f"ratio ours/baseline                 : {t_ours / t_base:7.2f}x")
    print(f"load_champion via registry (ours)   : {1000 * t_load:7.1f} ms")
    print(f"load_model models:/...@champion     : {1000 * t_bare:7.1f} ms")
    print(f"ratio ours/baseline                 : {t_load / t_bare:7.2f}x")
    print(f"load_champion, registry unreachable : {1000 * t_fallback:7.1f} ms (last-known-good)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
