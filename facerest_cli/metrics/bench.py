"""Throughput of each metric group over one folder (for ``facerest bench``; see ``bench_eval``)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence


def bench_eval(folder: Path | str, metrics: Sequence[str] = ("all",), *, device: str = "cpu", batch_size: int = 8,
               store=None) -> dict[str, Any]:
    """Images/s of each metric group, measured one group at a time over ``folder`` scored against itself (the
    work per image does not depend on the values). Groups whose weights are missing are listed as skipped.

    Returns ``{"folder", "device", "batch_size", "rows": [{"metric", "images", "seconds", "images_per_s"}],
    "skipped": {group: reason}}``; ``seconds`` excludes loading the networks (one warm-up batch is not timed).
    """
    from facerest_cli.metrics.evaluate import EvalOptions, evaluate, expand_metrics, list_images, prepare
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    folder = Path(folder)
    store = store or WeightsStore(WeightsConfig.from_env())
    base = EvalOptions(restored=folder, reference=folder, device=device, batch_size=batch_size)
    n = len(list_images(folder))
    rows, skipped = [], {}
    for group in expand_metrics(metrics):
        opts = replace(base, metrics=(group,))
        prep = prepare(opts, store)
        if not prep.active:
            skipped.update(prep.skipped)
            continue
        # Warm-up (first-call kernel selection) on one image, then the timed pass; networks load once, untimed.
        first = list_images(folder)[:1]
        if first:
            evaluate(replace(opts, restored=folder / first[0], reference=folder / first[0]), store, prepared=prep)
        t0 = time.perf_counter()
        res = evaluate(opts, store, prepared=prep)
        dt = time.perf_counter() - t0
        rows.append({"metric": group, "images": len(res.rows) or n, "seconds": round(dt, 3),
                     "images_per_s": round((len(res.rows) or n) / dt, 2) if dt > 0 else None})
    return {"folder": str(folder), "device": device, "batch_size": batch_size, "rows": rows, "skipped": skipped}
