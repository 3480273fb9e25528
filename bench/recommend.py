"""Time to rank the whole catalog for each reference machine.

Reference, measured in the same run: the time to read and parse the bundled catalog JSON
(the least any recommendation must do). The ranking plans every catalog file with the
formula estimator (weights, KV, compute, layers on the GPU, the largest context with full
offload, speed) at 8k and 32k context.
"""

from __future__ import annotations

import json

from bench.common import median, table, timed
from launcher.catalog import BUNDLED_CATALOG, Catalog
from launcher.machines import reference_machines
from launcher.recommend import recommend

TITLE = "Recommendations: time to rank the whole catalog"


def run() -> str:
    text = BUNDLED_CATALOG.read_text(encoding="utf-8")
    parse_s = median(timed(lambda: json.loads(text), repeat=20, warmup=2))
    raw = json.loads(text)
    load_s = median(timed(lambda: Catalog.from_json(raw), repeat=20, warmup=2))
    catalog = Catalog.from_json(raw)
    n_files = len(catalog.candidates())
    rows: list[list[object]] = []
    for name, profile in reference_machines().items():
        for ctx in (8192, 32768):
            secs = median(
                timed(lambda p=profile, c=ctx: recommend(p, context=c, catalog=catalog), repeat=5)
            )
            top = recommend(profile, context=ctx, catalog=catalog, one_per_model=True)
            rows.append(
                [
                    name,
                    ctx,
                    n_files,
                    secs * 1e3,
                    secs / parse_s,
                    top[0].candidate.label if top else "-",
                ]
            )
    return (
        f"Reference: parsing the bundled catalog JSON takes {parse_s * 1e3:.2f} ms "
        f"(building the `Catalog` objects {load_s * 1e3:.2f} ms). Ranking plans every file "
        "with the formula estimator; the dry run is not involved.\n\n"
        + table(
            ["Machine", "Context", "Files ranked", "Rank time (ms)", "x JSON parse", "Top pick"],
            rows,
        )
    )
