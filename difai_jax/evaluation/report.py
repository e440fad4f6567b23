"""Evaluation reports: ``results.{md,csv,json}`` and ``chart.png`` from an evaluation's report.

A report is the JSON-able dict that :func:`difai_jax.evaluate.evaluate` returns: run facts
(title, step, scored weights, image size, K), the protocol it was measured under, ``metrics``
(their order), ``results`` ``{bucket: {metric: value, "n_images", "hole_ratio", ...}}`` and the
paper's column (``paper`` ``{bucket: {metric: value}}``, ``paper_citations`` ``{metric: "Yoon et
al., Table N"}``). Every table shows each of our cells beside the paper's ("n/a" where the paper
gives none). No JAX here: ``difai_jax.compare`` reads reports without loading any network.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Mapping, Sequence

from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

RANDOM_TITLE = "RANDOM METRIC WEIGHTS - not comparable"
METRICS = ("ssim", "ms_ssim", "lpips", "fid", "diversity")
METRIC_LABELS = {"ssim": "SSIM", "ms_ssim": "MS-SSIM", "lpips": "LPIPS", "fid": "FID",
                 "diversity": "diversity", "psnr": "PSNR", "lpips_hole": "LPIPS (hole)",
                 "p_ids": "P-IDS", "u_ids": "U-IDS", "precision": "precision",
                 "recall": "recall", "density": "density", "coverage": "coverage"}
HIGHER_IS_BETTER = {"ssim": True, "ms_ssim": True, "lpips": False, "fid": False,
                    "diversity": True, "psnr": True, "lpips_hole": False, "p_ids": True,
                    "u_ids": True, "precision": True, "recall": True, "density": True,
                    "coverage": True}
# Table 1's readings of the K completions (scoring.Scorer.table1), the opt-in metrics beside the
# paper's (scoring.Scorer.extra) and the FID resizes (scoring.fid_probe).
TABLE1_READINGS = ("first", "all", "best", "mean")
EXTRA_METRICS = ("psnr", "lpips_hole", "ids", "prdc")
FID_RESIZES = ("pytorch-fid", "clean")
# Metrics in the toy recognizer's feature space carry this prefix (toy_fid, toy_p_ids, ...).
TOY_PREFIX = "toy_"


def base_metric(metric: str) -> str:
  """The paper metric a toy-domain one stands for (``toy_fid`` -> ``fid``); others unchanged."""
  if metric.startswith(TOY_PREFIX) and metric[len(TOY_PREFIX):] in METRIC_LABELS:
    return metric[len(TOY_PREFIX):]
  return metric


def label(metric: str) -> str:
  base = base_metric(metric)
  if base != metric:
    return f"toy-domain {METRIC_LABELS[base]}"
  return METRIC_LABELS.get(metric, metric)


def arrow(metric: str) -> str:
  # Plugged-in feature metrics are Frechet distances: lower is better.
  return "↑" if HIGHER_IS_BETTER.get(base_metric(metric), False) else "↓"


def title(workdir: str, step: int, random: bool) -> str:
  base = f"DiFAI evaluation of {os.path.basename(os.path.abspath(workdir))} (step {step})"
  return f"{base} - {RANDOM_TITLE}" if random else base


def fmt(value) -> str:
  return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
      else f"{value:.4f}"


def fmt_paper(value) -> str:
  """A paper number as printed (0.777, 34.55, 0.0849)."""
  return "n/a" if value is None else f"{value:g}"


def reported_metrics(report: Mapping[str, Any]) -> list[str]:
  """The report's metrics in table order (``report["metrics"]``; older reports: detected)."""
  if "metrics" in report:
    return list(report["metrics"])
  present = set()
  for row in report["results"].values():
    present.update(m for m in METRICS if m in row)
  return [m for m in METRICS if m in present]


def paper_value(report: Mapping[str, Any], bucket: str, metric: str):
  return report.get("paper", {}).get(bucket, {}).get(metric)


def result_line(bucket: str, row: Mapping[str, Any], metrics: Sequence[str]) -> str:
  """One bucket's numbers on one line (the CLI's log)."""
  return f"[{bucket}] " + " ".join(f"{label(m)}={fmt(row.get(m))}" for m in metrics
                                  if m in row)


def protocol_text(report: Mapping[str, Any]) -> str:
  """One sentence per reading: which completions Table 1 and the diversity score read."""
  p = report["protocol"]
  k = report["num_completions"]
  table1 = {"first": "completion 0 (the unperturbed code w, as the paper)",
            "all": f"all K = {k} completions per input (FID pooled over them)",
            "best": f"the best of the K = {k} completions per input for each per-image metric "
                    "(highest SSIM / PSNR, lowest LPIPS), FID over all K pooled",
            "mean": f"each of the K = {k} completions separately, averaged over k (FID "
                    "computed per completion number, then averaged)"}[p["table1_completions"]]
  if report.get("diversity_na"):
    diversity = f"n/a ({report['diversity_na']})"
  elif p["diversity_pairs"] == "paper":
    diversity = (f"mean LPIPS over {p['pairs_per_image']} seeded pairs of perturbed completions "
                 f"(w_delta, never completion 0) per image, on {p['diversity_images']} images "
                 "per bucket (the paper: 4K pairs from 1K images)")
  else:
    diversity = "mean LPIPS over every pair of the K completions per input, completion 0 included"
  return f"Table 1 metrics (SSIM, LPIPS, FID, ...) on {table1}; diversity = {diversity}."


def write_text_and_json(out_dir: str, stem: str, text: str, data: Mapping[str, Any]) -> None:
  """``STEM.md`` (``text``) and ``STEM.json`` (``data``) in ``out_dir``, created if needed."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"{stem}.md"), "w", encoding="utf-8") as f:
    f.write(text)
  with open(os.path.join(out_dir, f"{stem}.json"), "w", encoding="utf-8") as f:
    json.dump(data, f, indent=1)


def write_reports(report: Mapping[str, Any], out_dir: str) -> None:
  """``results.md`` / ``results.csv`` / ``results.json`` and ``chart.png`` in ``out_dir``."""
  write_text_and_json(out_dir, "results", markdown(report), report)
  write_csv(report, os.path.join(out_dir, "results.csv"))
  draw_chart(report, reported_metrics(report), os.path.join(out_dir, "chart.png"))


def _table(report: Mapping[str, Any], results: Mapping[str, Any], metrics) -> list[str]:
  header = ["bucket"]
  for m in metrics:
    header += [f"{label(m)} {arrow(m)}", f"{label(m)} (paper)"]
  header += ["images", "mean hole"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for b, row in results.items():
    cells = [b]
    for m in metrics:
      cells += [fmt(row.get(m)), fmt_paper(paper_value(report, b, m))]
    cells += [str(row["n_images"]), f"{row['hole_ratio']:.1%}"]
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def markdown(report: Mapping[str, Any]) -> str:
  metrics = reported_metrics(report)
  cites = sorted({c for m, c in report.get("paper_citations", {}).items() if m in metrics})
  lines = [f"# {report['title']}", "",
           f"Scored: {report.get('weights', 'generator params')}. {report['num_images']} test "
           f"images per bucket, {report['image_size']} px, K = {report['num_completions']} "
           "completions per input.", "",
           f"Protocol: {protocol_text(report)}", "",
           f"Paper: {report.get('paper_label', 'DiFAI')} as printed ({'; '.join(cites) or '-'}); "
           "n/a where the paper gives no number.", ""]
  lines += _table(report, report["results"], metrics)
  if report.get("results_raw"):
    lines += ["", "The files as they are (known pixels as the method left them; the table above "
              "puts the ground truth back on them):", ""]
    lines += _table(report, report["results_raw"], metrics)
  if report["notes"]:
    lines += ["", "Notes:", ""] + [f"* {n}" for n in report["notes"]]
  return "\n".join(lines) + "\n"


def write_csv(report: Mapping[str, Any], path: str) -> None:
  """One row per (bucket, metric): ours, the paper's and where the paper's comes from."""
  cites = report.get("paper_citations", {})
  weights = "random (not comparable)" if report["random_metric_weights"] else "converted"
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(f"# {report['title']}\n")
    writer = csv.writer(f)
    writer.writerow(["bucket", "metric", "ours", "paper", "paper_source", "n_images",
                     "metric_weights"])
    for b, row in report["results"].items():
      for m in reported_metrics(report):
        value, paper = row.get(m), paper_value(report, b, m)
        writer.writerow([b, m, "" if value is None else f"{value:.6g}",
                         "" if paper is None else paper, cites.get(m, "") if paper is not None
                         else "", row["n_images"], weights])


def draw_chart(report: Mapping[str, Any], metrics: Sequence[str], path: str) -> None:
  """One bar panel per metric: each bucket's value, ours (blue) beside the paper's (orange)."""
  font = ImageFont.load_default()
  buckets = list(report["results"])
  panel_w, panel_h, top = 760, 230, 50
  width, height = panel_w + 40, top + panel_h * max(len(metrics), 1) + 30
  img = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(img)
  draw.text((20, 10), report["title"], fill="red" if report["random_metric_weights"] else "black",
            font=font)
  cites = "; ".join(sorted(set(report.get("paper_citations", {}).values()))) or "-"
  draw.text((20, 28), f"blue: ours   orange: paper ({cites}; n/a: no published number)",
            fill="gray", font=font)
  for p, m in enumerate(metrics):
    values = [report["results"][b].get(m) for b in buckets]
    papers = [paper_value(report, b, m) for b in buckets]
    _draw_panel(draw, font, top + p * panel_h, panel_w, panel_h, m, buckets, values, papers)
  img.save(path, format="PNG")


def _draw_panel(draw, font, y0, panel_w, panel_h, metric, buckets, values, papers) -> None:
  ours_colour, paper_colour = (52, 101, 164), (245, 121, 0)
  x0, plot_w, plot_h = 70, panel_w - 80, panel_h - 70
  better = "higher is better" if HIGHER_IS_BETTER.get(base_metric(metric), False) else \
      "lower is better"
  draw.text((x0, y0 + 4), f"{label(metric)} per mask bucket ({better})", fill="black", font=font)
  finite = [v for v in values + papers if v is not None and math.isfinite(v)]
  vmax = max(finite + [1e-12]) * 1.15
  vmin = min(finite + [0.0])
  base_y = y0 + 24 + plot_h
  draw.line((x0, y0 + 24, x0, base_y), fill="black")
  draw.line((x0, base_y, x0 + plot_w, base_y), fill="black")
  scale = lambda v: base_y - (v - vmin) / (vmax - vmin) * plot_h
  for i in range(4):
    tick = vmin + (vmax - vmin) * i / 3
    draw.text((5, scale(tick) - 5), f"{tick:.3g}", fill="gray", font=font)
  group = plot_w / max(len(buckets), 1)
  bar = group * 0.3
  for i, b in enumerate(buckets):
    gx = x0 + i * group + group * 0.15
    for j, (v, colour) in enumerate(((values[i], ours_colour), (papers[i], paper_colour))):
      bx = gx + j * (bar + 4)
      if v is None or not math.isfinite(v):
        draw.text((bx, base_y - 14), "n/a", fill=colour, font=font)
        continue
      draw.rectangle((bx, scale(v), bx + bar, base_y), fill=colour)
      draw.text((bx, scale(v) - 12), f"{v:.3g}" if j == 0 else fmt_paper(v), fill="black",
                font=font)
    draw.text((gx, base_y + 6), b, fill="black", font=font)
