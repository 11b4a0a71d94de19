"""Check a dataset's atomic files before RecBole reads them, and say what RecBole will drop.

Each file is read once as RecBole will read it (:class:`~recbole_tpad.data.atomic_file.AtomicFile`):
a row RecBole would misread stops the run with the file, line and column, instead of a traceback
deep in pandas or a silent NaN. The notes returned count lines that are not valid UTF-8 (RecBole
reads them with replacement characters, see compat.py), rows whose fields past the header RecBole
ignores, and interactions whose item is missing from the ``.item`` file (RecBole drops them:
``filter_inter_by_user_or_item``).
"""

from pathlib import Path

from recbole_tpad.data.atomic_file import AtomicFile

ATOMIC_SUFFIXES = ("inter", "item", "user")


def check_dataset_files(config):
    """Read every atomic file of the run's dataset; return log lines about what will be replaced or dropped."""
    dataset, item_field = config["dataset"], config["ITEM_ID_FIELD"]
    notes, items = [], {}
    for suffix in ATOMIC_SUFFIXES:
        path = Path(config["data_path"]) / f"{dataset}.{suffix}"
        if not path.is_file():
            continue
        atomic = AtomicFile(path, config["field_separator"], config["seq_separator"], config["encoding"] or "utf-8")
        if item_field in atomic.columns:
            column = atomic.columns.index(item_field)
            items[suffix] = [fields[column] for _, fields in atomic.rows()]
        else:
            for _ in atomic.rows():  # read to the end all the same: any bad row stops the run
                pass
        notes += atomic.notes()
    if "inter" in items and "item" in items:
        known = set(items["item"])
        unknown = [v for v in items["inter"] if v not in known]
        if unknown:
            notes.append(
                f"{dataset}.inter: {len(unknown)} of {len(items['inter'])} interactions name "
                f"{len(set(unknown))} items missing from {dataset}.item; RecBole drops them (filter_inter_by_user_or_item)"
            )
    return notes
