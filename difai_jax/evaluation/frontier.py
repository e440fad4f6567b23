"""The fidelity-diversity frontier: one DiFAI run scored at several SeFa strengths.

``python -m difai_jax.evaluate --workdir RUN --sefa_degrees 1,2,4,8`` evaluates the run once per
degree d, every SeFa edit moved by exactly ``|d|`` (the sign, the directions and the images'
seeds as in a plain evaluation, so only the step length changes between points), and draws the
curve a reviewer asks for when a method trades quality for diversity: each bucket's fidelity
metrics (FID, LPIPS; their toy-domain forms on the toy faces) against its diversity.

Completion 0 comes from the unperturbed code and does not depend on the degree, so in a sweep
Table 1's metrics read all K completions (``--table1_completions all``, FID pooled over them)
unless ``best`` or ``mean`` is asked for. Methods with a single completion per input (Telea,
the coarse net, any ``--completions_dir`` with K = 1) join the chart as single points at their
diversity (0 or n/a) through ``--frontier_with EVAL_DIR,...``.

Writes ``EVAL_DIR/degree_<d>/`` (a full evaluation each), and ``frontier.{md,json,png}`` in
EVAL_DIR. The bucket masks and the real images' FID statistics are made once, in EVAL_DIR.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping, Sequence

from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from difai_jax.evaluation import comparison
from difai_jax.evaluation import loop as eval_loop
from difai_jax.evaluation import options as eval_options
from difai_jax.evaluation import report as eval_report

DIVERSITY = "diversity"


def degree_dir(degree: float) -> str:
  return f"degree_{degree:g}"


def fidelity_metrics(report: Mapping[str, Any]) -> list[str]:
  """The report's FID-like and LPIPS metrics (toy-domain forms included), in table order."""
  return [m for m in eval_report.reported_metrics(report)
          if eval_report.base_metric(m) in ("fid", "lpips")]


def _value(report: Mapping[str, Any], bucket: str, metric: str):
  value = report["results"].get(bucket, {}).get(metric)
  return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _point_name(report: Mapping[str, Any], eval_dir: str) -> str:
  return (report.get("method") or ("coarse net" if report.get("completions") == "coarse" else "")
          or os.path.basename(os.path.normpath(os.path.dirname(eval_dir) if
                                               os.path.basename(os.path.normpath(eval_dir)) ==
                                               "eval" else eval_dir)))


def frontier_table(degrees: Sequence[float], reports: Sequence[Mapping[str, Any]],
                   points: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> dict:
  """The sweep's numbers: ``{"metrics", "buckets", "curve": [{bucket, degree, metric...}],
  "points": [{name, bucket, metric...}], "notes"}``; a single-completion method's diversity is
  None (n/a) unless its report gives one."""
  metrics = fidelity_metrics(reports[0])
  buckets = list(reports[0]["results"])
  curve = [{"bucket": b, "degree": float(d), DIVERSITY: _value(r, b, DIVERSITY),
            **{m: _value(r, b, m) for m in metrics}}
           for b in buckets for d, r in zip(degrees, reports)]
  rows, notes = [], []
  for name, r in points:
    for b in buckets:
      if b not in r["results"]:
        continue
      diversity = _value(r, b, DIVERSITY)
      if int(r.get("num_completions", 1)) == 1:
        diversity = None
      rows.append({"name": name, "bucket": b, DIVERSITY: diversity,
                   **{m: _value(r, b, m) for m in metrics}})
    missing = [m for m in metrics if m not in eval_report.reported_metrics(r)]
    if missing:
      notes.append(f"{name} has no {', '.join(missing)}")
  first = reports[0]
  return {"degrees": [float(d) for d in degrees], "metrics": metrics, "buckets": buckets,
          "curve": curve, "points": rows, "notes": notes,
          "table1_completions": first["protocol"]["table1_completions"],
          "num_completions": first["num_completions"], "num_images": first["num_images"],
          "random_metric_weights": first["random_metric_weights"], "title": first["title"]}


def markdown(table: Mapping[str, Any]) -> str:
  metrics = table["metrics"]
  head = ["bucket", "SeFa degree / method", f"{eval_report.label(DIVERSITY)} ↑"] + [
      f"{eval_report.label(m)} {eval_report.arrow(m)}" for m in metrics]
  lines = [f"# Fidelity-diversity frontier: {table['title']}", "",
           f"Table 1 metrics read {table['table1_completions']} of the K = "
           f"{table['num_completions']} completions; {table['num_images']} test images per "
           "bucket; each SeFa edit moved by exactly the degree (random sign).", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for b in table["buckets"]:
    for row in (r for r in table["curve"] if r["bucket"] == b):
      lines.append("| " + " | ".join([b, f"{row['degree']:g}", eval_report.fmt(row[DIVERSITY])]
                                     + [eval_report.fmt(row[m]) for m in metrics]) + " |")
    for row in (r for r in table["points"] if r["bucket"] == b):
      lines.append("| " + " | ".join([b, row["name"], eval_report.fmt(row[DIVERSITY])]
                                     + [eval_report.fmt(row.get(m)) for m in metrics]) + " |")
  lines += [""] + [f"Note: {n}" for n in table["notes"]]
  return "\n".join(lines).rstrip() + "\n"


def write(table: Mapping[str, Any], out_dir: str) -> None:
  eval_report.write_text_and_json(out_dir, "frontier", markdown(table), table)
  draw(table, os.path.join(out_dir, "frontier.png"))


# Colours of the buckets' curves and the single points' marker.
_COLOURS = [(52, 101, 164), (204, 0, 0), (78, 154, 6), (117, 80, 123), (193, 125, 17),
            (46, 52, 54)]
_LEGEND_LINE = 13       # px per line of a panel's key of single-completion methods
_POINT = (0, 0, 0)


def draw(table: Mapping[str, Any], path: str) -> None:
  """One panel per fidelity metric: the metric (y) against diversity (x), a curve per bucket
  through the degrees (labelled), single-completion methods as squares (n/a diversity at 0)."""
  font = ImageFont.load_default()
  metrics = table["metrics"] or [DIVERSITY]
  panel_w, top = 520, 64
  panel_h = 360 + _LEGEND_LINE * -(-len(table["points"]) // 2)   # the key under each plot
  img = Image.new("RGB", (panel_w * len(metrics) + 20, top + panel_h + 20), "white")
  canvas = ImageDraw.Draw(img)
  canvas.text((12, 8), f"Fidelity-diversity frontier: {table['title']}",
              fill="red" if table["random_metric_weights"] else "black", font=font)
  canvas.text((12, 24), "curves: one per bucket (colours below), a point per SeFa degree;  "
              "squares: single-completion methods (diversity n/a: drawn at 0)", fill="gray",
              font=font)
  for i, b in enumerate(table["buckets"]):
    canvas.text((12 + 60 * i, 40), b, fill=_COLOURS[i % len(_COLOURS)], font=font)
  for p, metric in enumerate(metrics):
    _panel(canvas, font, (10 + p * panel_w, top), (panel_w - 20, 350), metric, table)
  img.save(path, format="PNG")


def _panel(canvas, font, origin, size, metric, table) -> None:
  (x0, y0), (w, h) = origin, size
  left, bottom = x0 + 56, y0 + h - 30
  plot_w, plot_h = w - 70, h - 50
  rows = list(table["curve"]) + list(table["points"])
  xs = [r[DIVERSITY] or 0.0 for r in rows if r.get(metric) is not None]
  ys = [r[metric] for r in rows if r.get(metric) is not None]
  if not ys:
    canvas.text((left, y0 + 20), f"no {metric} values", fill="gray", font=font)
    return
  x_max = max(xs + [1e-6]) * 1.1
  y_min, y_max = min(ys), max(ys)
  pad = (y_max - y_min) * 0.1 or abs(y_max) * 0.1 or 1.0
  y_min, y_max = (max(y_min - pad, 0.0) if y_min >= 0 else y_min - pad), y_max + pad
  sx = lambda v: left + (v or 0.0) / x_max * plot_w
  sy = lambda v: bottom - (v - y_min) / (y_max - y_min) * plot_h
  canvas.line((left, y0 + 20, left, bottom), fill="black")
  canvas.line((left, bottom, left + plot_w, bottom), fill="black")
  better = "lower is better" if eval_report.arrow(metric) == "↓" else "higher is better"
  canvas.text((left, y0 + 4), f"{eval_report.label(metric)} ({better}) against diversity",
              fill="black", font=font)
  for i in range(4):
    yv, xv = y_min + (y_max - y_min) * i / 3, x_max * i / 3
    canvas.text((x0, sy(yv) - 5), f"{yv:.3g}", fill="gray", font=font)
    canvas.text((sx(xv) - 8, bottom + 4), f"{xv:.3g}", fill="gray", font=font)
  canvas.text((left + plot_w - 120, bottom + 16), "diversity (LPIPS) ->", fill="gray", font=font)
  for i, b in enumerate(table["buckets"]):
    colour = _COLOURS[i % len(_COLOURS)]
    pts = [(sx(r[DIVERSITY]), sy(r[metric]), r["degree"]) for r in table["curve"]
           if r["bucket"] == b and r.get(metric) is not None]
    if len(pts) > 1:
      canvas.line([(x, y) for x, y, _ in pts], fill=colour, width=2)
    for x, y, d in pts:
      canvas.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
      canvas.text((x + 4, y - 12), f"d={d:g}", fill=colour, font=font)
  _single_points(canvas, font, table, metric, sx, sy, (left, bottom + 34), plot_w)


def _single_points(canvas, font, table, metric, sx, sy, key_origin, key_width) -> None:
  """Single-completion methods: numbered squares at diversity 0 (the numbers of points closer
  than a line share one label) and their key in two columns under the plot, off the curves."""
  placed = [(sx(r[DIVERSITY]), sy(r[metric]), n, r) for n, r in enumerate(table["points"], 1)
            if r.get(metric) is not None]
  groups = []                                        # points within a line's height share one
  for x, y, n, r in sorted(placed, key=lambda p: p[1]):
    colour = _COLOURS[table["buckets"].index(r["bucket"]) % len(_COLOURS)]
    canvas.rectangle((x - 4, y - 4, x + 4, y + 4), outline=_POINT, fill=colour)
    if groups and y - groups[-1][1] < 11:
      groups[-1][2].append(str(n))
    else:
      groups.append((x, y, [str(n)]))
  for x, y, numbers in groups:
    canvas.text((x + 7, y - 5), ",".join(numbers), fill=_POINT, font=font)
  for i, (_, _, n, r) in enumerate(sorted(placed, key=lambda p: p[2])):
    kx = key_origin[0] + (i % 2) * key_width // 2
    ky = key_origin[1] + (i // 2) * _LEGEND_LINE
    colour = _COLOURS[table["buckets"].index(r["bucket"]) % len(_COLOURS)]
    canvas.rectangle((kx, ky + 2, kx + 7, ky + 9), outline=_POINT, fill=colour)
    canvas.text((kx + 12, ky), f"{n}  {r['name']} ({r['bucket']})", fill=_POINT, font=font)


def sweep(workdir: str, options, degrees: Sequence[float], *, data_config=None,
          eval_dir: str | None = None, probes: Sequence[tuple[Any, Any]] = (),
          points: Sequence[str] = (), verbose: bool = True) -> dict:
  """Evaluates ``workdir`` once per SeFa degree (``EVAL_DIR/degree_<d>``), then writes and
  returns the frontier table; ``points`` are other evaluations' directories (results.json)."""
  eval_options.check_degrees(degrees)
  others = [(_point_name(r, d), r) for d, r in ((d, comparison.load_report(d)) for d in points)]
  out_dir = eval_dir or os.path.join(workdir, "eval")
  if options.table1_completions == "first":
    options = dataclasses.replace(options, table1_completions="all")
    if verbose:
      print("frontier: Table 1 metrics read all K completions (completion 0 does not depend on "
            "the SeFa degree)", flush=True)
  reports = []
  for d in sorted(degrees):
    if verbose:
      print(f"frontier: SeFa degree {d:g} ({len(reports) + 1} of {len(degrees)})", flush=True)
    reports.append(eval_loop.evaluate(
        workdir, options, data_config=data_config, eval_dir=os.path.join(out_dir, degree_dir(d)),
        probes=probes, verbose=verbose, shared_dir=out_dir, sefa_degree=float(d)))
  table = frontier_table(sorted(degrees), reports, others)
  write(table, out_dir)
  if verbose:
    print(markdown(table), end="", flush=True)
    print(f"wrote {out_dir}/frontier.md, frontier.json, frontier.png", flush=True)
  return table
