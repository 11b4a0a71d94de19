"""Run several models on one dataset, split and seed, and tabulate their test results."""

import csv
import os
import tempfile
import traceback
from logging import getLogger
from pathlib import Path

from recbole.utils import get_local_time

from recbole_tpad.quick_start import run_recbole_tpad

LEADING_COLUMNS = ["model", "dataset", "seed"]
COST_COLUMNS = ["params", "train_s_per_epoch", "epochs", "eval_s"]


def result_row(model, dataset, seed, run):
    """One table row from a ``run_recbole_tpad`` result."""
    epoch_seconds = run["epoch_seconds"]
    row = {"model": model, "dataset": dataset, "seed": seed}
    row.update({metric.lower(): value for metric, value in run["test_result"].items()})
    row["params"] = run["params"]
    row["train_s_per_epoch"] = round(sum(epoch_seconds) / max(len(epoch_seconds), 1), 2)
    row["epochs"] = len(epoch_seconds)
    row["eval_s"] = round(run["eval_seconds"], 2)
    return row


def table_columns(rows):
    """Leading columns, every metric seen (in first-seen order), costs, then ``error``."""
    metrics = []
    for row in rows:
        for key in row:
            if key not in LEADING_COLUMNS + COST_COLUMNS + ["error"] + metrics:
                metrics.append(key)
    return LEADING_COLUMNS + metrics + COST_COLUMNS + ["error"]


def to_markdown(rows):
    columns = table_columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def write_csv(rows, path):
    """Write the table atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=table_columns(rows), restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def compare_models(models, dataset, config_file_list=None, config_dict=None, results_file=None):
    """Run ``models`` one after another; a failing model gets a row with ``error`` filled."""
    config_dict = dict(config_dict or {})
    results_file = results_file or os.path.join("results", f"{dataset}-{get_local_time()}.csv")
    rows = []
    for model in models:
        seed = config_dict.get("seed", "")
        try:
            run = run_recbole_tpad(model, dataset, config_file_list, config_dict)
            rows.append(result_row(model, dataset, run["config"]["seed"], run))
        except Exception as error:  # one model's failure must not lose the others' rows
            getLogger().error(f"{model} failed:\n{traceback.format_exc()}")
            rows.append({"model": model, "dataset": dataset, "seed": seed, "error": f"{type(error).__name__}: {error}"})
        write_csv(rows, results_file)
    table = to_markdown(rows)
    getLogger().info("\n" + table)
    return rows, table, results_file
