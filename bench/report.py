"""Results on disk: ``<stamp>.json`` (everything), ``<stamp>.md`` (the table, also printed) and
``<stamp>.png`` (direct vs routed bars), each tagged with the machine it ran on."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import psutil

from bench.scenarios import Result


def machine() -> dict[str, Any]:
    """Enough to tell whether two result files are comparable - and how busy the box was."""
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def _number(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "x":
        return f"{value:.3f}×"
    if isinstance(value, int):  # counts
        return f"{value:,}" + (f" {unit}" if unit else "")
    digits = 0 if abs(value) >= 100 else 2 if abs(value) < 10 else 1
    return f"{value:,.{digits}f}" + (f" {unit}" if unit else "")


def markdown(results: list[Result], info: dict[str, Any], plan: dict[str, Any]) -> str:
    lines = [
        f"# Router overhead benchmark - {info['date']}",
        "",
        f"Machine: {info['cpu_model']}, {info['logical_cores']} logical cores, {info['memory_gb']} GB, "
        f"Python {info['python']}; load average {info['load_average_at_start']} at start, "
        f"{info.get('load_average_at_end')} at end. Plan: {'quick' if plan.get('quick') else 'full'}.",
    ]
    for result in results:
        lines += [
            "",
            f"## {result.title}",
            "",
            "| metric | unit | direct | routed | routed − direct | routed / direct |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for row in result.rows:
            lines.append(
                f"| {row.metric} | {row.unit} | {_number(row.direct)} | {_number(row.routed)} | "
                f"{_number(row.added)} | {_number(row.ratio, 'x')} |"
            )
        lines += [f"- note: {note}" for note in result.notes]
    targets = [target for result in results for target in result.targets]
    lines += ["", "## Targets", "", "| target | measured | limit | result |", "|---|---:|---:|:---:|"]
    for target in targets:
        lines.append(
            f"| {target.name} | {_number(target.measured, target.unit)} | {target.op} {_number(target.limit, target.unit)} "
            f"| {'PASS' if target.passed else '**FAIL**'} |"
        )
    return "\n".join(lines) + "\n"


def chart(results: list[Result], path: Path, title: str) -> None:
    """One panel per scenario and unit: its headline rows, direct and routed side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (result, [row for row in result.rows if row.plot and row.unit == unit])
        for result in results
        for unit in dict.fromkeys(row.unit for row in result.rows if row.plot)
    ]
    columns = min(3, len(panels)) or 1
    lines = math.ceil(len(panels) / columns) or 1
    figure, axes = plt.subplots(lines, columns, figsize=(5.2 * columns, 3.8 * lines), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, (result, rows) in zip(axes.flat, panels, strict=False):
        positions = range(len(rows))
        paired = any(row.direct is not None for row in rows)  # memory has no direct counterpart
        width = 0.38 if paired else 0.6
        if paired:
            direct = [row.direct if row.direct is not None else 0.0 for row in rows]
            axis.bar([p - width / 2 for p in positions], direct, width, label="direct", color="#7f9fbf")
        routed_at = [p + width / 2 for p in positions] if paired else list(positions)
        axis.bar(routed_at, [row.routed for row in rows], width, label="routed", color="#d9822b")
        axis.set_xticks(list(positions), [row.metric for row in rows], rotation=20, ha="right", fontsize=8)
        axis.set_ylabel(rows[0].unit)
        axis.set_title(result.name, fontsize=10)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: list[Result], info: dict[str, Any], plan: dict[str, Any], directory: Path) -> tuple[Path, str]:
    """Write the three files; return the JSON path and the markdown text."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / info["date"].replace(":", "").replace(" ", "_")
    text = markdown(results, info, plan)
    payload = {"machine": info, "plan": plan, "results": [result.to_json() for result in results]}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(text)
    chart(
        results, stem.with_suffix(".png"), f"inference-service router vs direct - {info['date']} - {info['cpu_model']}"
    )
    return stem.with_suffix(".json"), text
