"""How many tokens do the token_seq fields of a dataset's ``.item`` file hold, and what would ``seq_len`` cut?

    python bench/field_lengths.py --dataset=amazon-beauty [--cap=32]

RecBole pads every token_seq field to its longest value unless ``seq_len: {field: N}`` caps it, so
one long title sizes the feature tensors of every item (FDSA's feature layer, for one). Tokens are
counted as RecBole splits them: on ``seq_separator`` (a space), empty pieces dropped.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole_tpad.utils import resolve_data_path  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--cap", type=int, default=32, help="a seq_len to count the values it would cut")
    args = parser.parse_args()
    item_file = Path(resolve_data_path(args.dataset)) / args.dataset / f"{args.dataset}.item"
    items = pd.read_csv(item_file, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    print(f"{item_file}: {len(items)} items\n")
    print(f"| field | mean tokens | longest | values over {args.cap} |\n|---|---|---|---|")
    for column in items.columns:
        name, _, kind = column.partition(":")
        if kind != "token_seq":
            continue
        lengths = items[column].map(lambda value: len([piece for piece in value.split(" ") if piece]))
        print(f"| {name} | {lengths.mean():.1f} | {lengths.max()} | {(lengths > args.cap).sum()} |")


if __name__ == "__main__":
    main()
