"""The run's attacks as one tidy table: a row per round, client and attack, for pandas, R or a spreadsheet.

``events.jsonl`` nests what each update's attacks did (``auto``'s ``portfolio``, the attacks that did not apply
and why). Flattened here into ``attacks.csv`` (and ``attacks.parquet`` where pyarrow is installed): one row per
attack that ran on an update, with its own scores and whether it ran to the end of its setting (``complete``),
one per stage of an attack that applies but never started on it, and one per attack that did not apply, with the
reason; the update's ``verdict`` repeats on each of its rows. Each update appears once, with its standing verdict:
a deep pass's (``phase`` deep) where one superseded the round's.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fl_sim.results import read_events

ATTACKS_CSV, ATTACKS_PARQUET = "attacks.csv", "attacks.parquet"

#: The columns and their Arrow types, in order: where the row's update came from, the attack, its scores (Flower's
#: node ids are unsigned 64-bit; ``clients`` is set for a secure aggregate: how many clients it sums).
TYPES = {"round": "int64", "partition_id": "int64", "node_id": "uint64", "defense": "string", "verdict": "string",
         "phase": "string", "held": "int64", "clients": "int64", "attack": "string", "applied": "bool",
         "why_not": "string", "iterations": "int64", "needed": "int64", "complete": "bool", "seconds": "double",
         "images_leaked": "int64", "images_identified": "int64", "best_ssim": "double", "mean_ssim": "double",
         "label_accuracy": "double"}
COLUMNS = tuple(TYPES)
#: The columns an attack that ran fills from its own result.
SCORES = COLUMNS[COLUMNS.index("iterations"):]


def attack_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per attack of every standing ``attack`` event of ``records`` (the dicts of ``events.jsonl``)."""
    standing: dict[tuple, dict[str, Any]] = {}
    for event in records:
        if event.get("event") == "attack":
            standing[(event.get("round"), event.get("node_id"), event.get("partition_id"))] = event
    rows = []
    for event in standing.values():
        update = {key: event.get(key) for key in ("round", "partition_id", "node_id", "defense", "verdict", "phase",
                                                  "held", "clients")}
        ran = [] if event.get("verdict") == "no attack applies" else (event.get("portfolio") or [_as_entry(event)])
        for entry in ran:
            rows.append({**update, "attack": entry["attack"], "applied": True, "why_not": None,
                         **{key: entry.get(key) for key in SCORES}})
        for run in event.get("runs") or []:
            for stage in run.get("unstarted") or []:
                rows.append({**update, "attack": stage, "applied": True, "why_not": None, "iterations": 0,
                             "complete": False, "seconds": 0.0})
        for attack, reason in (event.get("not_applied") or {}).items():
            rows.append({**update, "attack": attack, "applied": False, "why_not": reason})
    return [{column: row.get(column) for column in COLUMNS} for row in rows]


def _as_entry(event: dict[str, Any]) -> dict[str, Any]:
    """A single attack's event in the shape of a portfolio entry."""
    images = event.get("per_image") or []
    ssims = [image["ssim"] for image in images]
    runs = event.get("runs") or []
    return {"attack": event.get("attack") or event.get("method"), "iterations": event.get("iterations"),
            "needed": runs[0].get("needed") if runs else None, "complete": runs[0].get("complete") if runs else None,
            "seconds": event.get("seconds"), "images_leaked": sum(bool(image.get("leaked")) for image in images),
            "images_identified": event.get("images_identified"), "best_ssim": max(ssims, default=None),
            "mean_ssim": sum(ssims) / len(ssims) if ssims else None, "label_accuracy": event.get("label_accuracy")}


def write_attack_table(run_dir: Path) -> list[Path]:
    """Write ``attacks.csv`` (and ``attacks.parquet`` where pyarrow is installed) into ``run_dir``; the paths."""
    rows = attack_rows(read_events(run_dir))
    written = [run_dir / ATTACKS_CSV]
    with open(written[0], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    schema = pa.schema([(column, pa.type_for_alias(kind)) for column, kind in TYPES.items()])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), run_dir / ATTACKS_PARQUET)
    return [*written, run_dir / ATTACKS_PARQUET]
