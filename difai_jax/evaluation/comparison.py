"""Several evaluations side by side, the tables of ``python -m difai_jax.compare``.

:func:`run` reads each directory's ``results.json`` (as ``difai_jax.evaluate`` writes it; no
network is loaded) and returns one table: a row per (bucket, metric), per run our number and the
paper's for that run's variant (DiFAI's Tables 1-2, or its Table 3 row for the
``generator.norm`` ablations); :func:`write` stores it as ``compare.{md,csv,json}``. Runs
measured under different protocols (K, images, readings, metric weights) are compared anyway,
with a note saying what differs.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Mapping, Sequence

from difai_jax.evaluation import report as eval_report

# What must agree for two evaluations to be comparable cell by cell.
PROTOCOL_KEYS = ("image_size", "num_images", "num_completions", "protocol",
                 "random_metric_weights", "lpips", "inception", "seed")


def load_report(eval_dir: str) -> dict:
  path = os.path.join(eval_dir, "results.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{eval_dir} has no results.json (run python -m difai_jax.evaluate "
                            "--eval_dir there first)")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def comparison(reports: Sequence[Mapping[str, Any]], names: Sequence[str],
               buckets: Sequence[str] | None = None) -> dict:
  """``{"names", "rows": [{bucket, metric, <name>, "<name> (paper)"}...], "notes"}``."""
  if buckets is None:
    buckets = [b for b in reports[0]["results"] if all(b in r["results"] for r in reports)]
  metrics = []
  for r in reports:
    metrics += [m for m in eval_report.reported_metrics(r) if m not in metrics]
  rows = []
  for b in buckets:
    for m in metrics:
      row = {"bucket": b, "metric": m}
      for name, r in zip(names, reports):
        row[name] = r["results"].get(b, {}).get(m)
        row[f"{name} (paper)"] = eval_report.paper_value(r, b, m)
      rows.append(row)
  notes = []
  for key in PROTOCOL_KEYS:
    values = [json.dumps(r.get(key), sort_keys=True) for r in reports]
    if len(set(values)) > 1:
      notes.append(f"{key} differs: " + ", ".join(f"{n}={v}" for n, v in zip(names, values)))
  cites = sorted({c for r in reports for c in r.get("paper_citations", {}).values()})
  return {"names": list(names), "rows": rows, "notes": notes, "citations": cites,
          "eval_dirs": [r.get("workdir") for r in reports]}


def markdown(table: Mapping[str, Any]) -> str:
  header = ["bucket", "metric"]
  for name in table["names"]:
    header += [name, f"{name} (paper)"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in table["rows"]:
    cells = [row["bucket"], f"{eval_report.label(row['metric'])} "
             f"{eval_report.arrow(row['metric'])}"]
    for name in table["names"]:
      cells += [eval_report.fmt(row[name]), eval_report.fmt_paper(row[f"{name} (paper)"])]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", f"Paper: {'; '.join(table['citations']) or '-'} (n/a: no published number)."]
  lines += [f"Note: {n}" for n in table["notes"]]
  return "\n".join(lines) + "\n"


def write(table: Mapping[str, Any], out_dir: str) -> None:
  eval_report.write_text_and_json(out_dir, "compare", markdown(table), table)
  with open(os.path.join(out_dir, "compare.csv"), "w", encoding="utf-8", newline="") as f:
    columns = list(table["rows"][0]) if table["rows"] else ["bucket", "metric"]
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(table["rows"])


def run(eval_dirs: Sequence[str], names: Sequence[str] | None = None,
        buckets: Sequence[str] | None = None, out_dir: str | None = None) -> dict:
  """Loads the evaluations, prints the table, writes it under ``out_dir`` if given."""
  if names and len(names) != len(eval_dirs):
    raise ValueError(f"--names has {len(names)} entries for {len(eval_dirs)} --eval_dirs")
  reports = [load_report(d) for d in eval_dirs]
  names = list(names or [r.get("method") or r.get("generator_norm") or
                         os.path.basename(os.path.normpath(d))
                         for r, d in zip(reports, eval_dirs)])
  if len(set(names)) != len(names):
    raise ValueError(f"the runs' names {names} repeat; pass --names")
  table = comparison(reports, names, buckets)
  print(markdown(table), end="")
  if out_dir:
    write(table, out_dir)
  return table
