"""Run several models on one dataset, split and seed, and tabulate their test results."""

import csv
import os
import traceback
from logging import getLogger
from pathlib import Path

from recbole.utils import get_local_time

from recbole_tpad.atomic import atomic_path
from recbole_tpad.distributed import is_main_process
from recbole_tpad.errors import PluginError
from recbole_tpad.model_defaults import trained_loss
from recbole_tpad.quick_start import run_recbole_tpad
from recbole_tpad.settings import DISPLAY_KEYS
from recbole_tpad.store import file_sha256, stable_hash
from recbole_tpad.utils import PROPERTIES_DIR

LEADING_COLUMNS = ["model", "dataset", "seed"]
COST_COLUMNS = ["params", "train_s_per_epoch", "epochs", "eval_s"]
# Keys that change how a run is shown, or where its ranks meet, not what it computes: they may differ
# between a run and its resume.
TEXT_COLUMNS = ("model", "dataset", "loss_type", "settings", "overrides")  # read back as text: a hex fingerprint may look like a number


def result_row(model, dataset, seed, run):
    """One table row from a ``run_recbole_tpad`` result."""
    epoch_seconds = run["epoch_seconds"]
    # the loss it trained with; empty for a model with a fixed loss of its own (TransRec, DIN, DIEN)
    row = {"model": model, "dataset": dataset, "seed": seed, "loss_type": trained_loss(run["config"]) or ""}
    row.update({metric.lower(): value for metric, value in run["test_result"].items()})
    row["params"] = run["params"]
    row["train_s_per_epoch"] = round(sum(epoch_seconds) / max(len(epoch_seconds), 1), 2)
    row["epochs"] = len(epoch_seconds)
    row["eval_s"] = round(run["eval_seconds"], 2)
    return row


def table_columns(rows, order=()):
    """Leading columns and ``loss_type`` (the comparison's rows have it, the benchmark's not), every
    metric seen, costs, ``settings`` and the benchmark's ``overrides`` if any, ``error``. Metrics come in
    ``order`` (an earlier header), then the others in first-seen order."""
    leading = LEADING_COLUMNS + [key for key in ("loss_type",) if any(key in row for row in rows)]
    trailing = [key for key in ("settings", "overrides") if any(key in row for row in rows)] + ["error"]
    seen = {key for row in rows for key in row}
    metrics = [key for key in order if key in seen and key not in leading + COST_COLUMNS + trailing]
    for row in rows:
        for key in row:
            if key not in leading + COST_COLUMNS + trailing + metrics:
                metrics.append(key)
    return leading + metrics + COST_COLUMNS + trailing


def csv_header(path):
    """The column names of an existing table, or none."""
    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def to_markdown(rows):
    columns = table_columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def write_csv(rows, path):
    """Write the table atomically (``recbole_tpad.atomic``): a reader never sees half a file. A rewrite
    keeps the columns of the file it replaces in their order (new ones after), so a new row shows in a
    diff as that row."""
    columns = table_columns(rows, order=csv_header(path))
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def finished_rows(csv_path):
    """``(model, seed) -> row`` of the rows of an earlier run that have no error (numbers parsed back)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        return {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kept = {}
    for row in rows:
        if row.get("error"):
            continue
        parsed = {key: value if key in TEXT_COLUMNS else _number(value) for key, value in row.items() if value != ""}
        parsed["seed"] = int(parsed["seed"])
        kept[(row["model"], parsed["seed"])] = parsed
    return kept


def _number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return text


def settings_fingerprint(dataset, config_file_list, config_dict):
    """Short hash of what decides a row: the dataset's name, the plugin's code and properties, the
    user's files and the overrides (the seed among them). The data files are not hashed.

    A resumed comparison keeps only rows with the same fingerprint, so an edit to any of them between
    the interrupted run and its resume reruns every model instead of mixing two settings in one table.
    """
    package = Path(__file__).resolve().parent
    sources = sorted(package.rglob("*.py")) + sorted(PROPERTIES_DIR.rglob("*.yaml")) + [Path(n) for n in config_file_list or []]
    overrides = {key: str(value) for key, value in config_dict.items() if key not in DISPLAY_KEYS}
    return stable_hash({"dataset": dataset, "sources": [file_sha256(path) for path in sources],
                        "overrides": overrides}, length=12)


def model_state_file(config_dict, model):
    """``config_dict`` with ``train_state_file`` made the model's own (``<stem>-<model><suffix>``): one
    state file holds one fit, and the models of a comparison differ in their settings."""
    if not config_dict.get("train_state_file"):
        return config_dict
    path = Path(config_dict["train_state_file"])
    return dict(config_dict, train_state_file=str(path.with_name(f"{path.stem}-{model}{path.suffix}")))


def compare_models(models, dataset, config_file_list=None, config_dict=None, results_file=None, resume=False):
    """Run ``models`` one after another; a failing model gets a row with ``error`` filled.

    With ``resume``, a model that already has an error-free row in ``results_file`` from the same
    dataset, seed and settings keeps it instead of running again, so an interrupted comparison
    (a long CPU run, a lost session) finishes where it stopped.
    """
    config_dict = dict(config_dict or {})
    if resume and not results_file:
        raise PluginError("--resume needs --results_file: the CSV of the comparison to finish.")
    results_file = results_file or os.path.join("results", f"{dataset}-{get_local_time()}.csv")
    settings = settings_fingerprint(dataset, config_file_list, config_dict)
    earlier = finished_rows(results_file) if resume else {}
    kept = {name: row for (name, _), row in earlier.items() if name in models and row.get("settings") == settings}
    rows = []
    for position, model in enumerate(models):
        seed = config_dict.get("seed", "")
        if model in kept:
            getLogger().info(f"{model}: kept its finished row from {results_file} (resume)")
            rows.append(kept[model])
            continue
        try:
            run = run_recbole_tpad(model, dataset, config_file_list, model_state_file(config_dict, model))
            rows.append(dict(result_row(model, dataset, run["config"]["seed"], run), settings=settings))
        except Exception as error:  # one model's failure must not lose the others' rows
            # a user error (a setting the model cannot run with) is its message; anything else, a bug
            getLogger().error(f"{model} failed: {error}" if isinstance(error, PluginError) else f"{model} failed:\n{traceback.format_exc()}")
            rows.append({"model": model, "dataset": dataset, "seed": seed, "settings": settings,
                         "error": f"{type(error).__name__}: {error}"})
        # the kept rows of models still to come stay in the file: an interruption now must not lose them
        if is_main_process():  # one writer in a distributed run
            write_csv(rows + [kept[name] for name in models[position + 1:] if name in kept], results_file)
    table = to_markdown(rows)
    getLogger().info("\n" + table)
    return rows, table, results_file
