"""How long are the session prefixes a model trains on, and what does ``session_length`` cut?

    python bench/session_lengths.py --dataset=amazon-beauty [--lengths=5,10,20,50]

RecBole's leave-one-out split (``LS: valid_and_test``) keeps the last item of each session for
test and the one before for validation; every earlier position is a training target whose
prefix is the items before it (at most ``MAX_ITEM_LIST_LENGTH``). For each length L the table
gives the share of training prefixes longer than L and the mean number of real items an encoder
reading the L most recent ones sees. A transformer pays for all L positions, padding included.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole_tpad.utils import resolve_data_path  # noqa: E402


def training_prefix_lengths(session_sizes):
    """Prefix length of every training target of sessions of the given sizes (last two held out)."""
    return np.concatenate([np.arange(1, n - 2) for n in session_sizes if n > 3] or [np.zeros(0, int)])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--lengths", default="5,10,20,50")
    parser.add_argument("--max_length", type=int, default=50, help="MAX_ITEM_LIST_LENGTH")
    args = parser.parse_args()
    inter = Path(resolve_data_path(args.dataset)) / args.dataset / f"{args.dataset}.inter"
    sessions = pd.read_csv(inter, sep="\t", usecols=[0]).iloc[:, 0]
    prefixes = np.minimum(training_prefix_lengths(sessions.value_counts().to_numpy()), args.max_length)
    print(f"{args.dataset}: {len(prefixes)} training prefixes, mean length {prefixes.mean():.2f}\n")
    print("| session_length | prefixes longer | mean items read |\n|---|---|---|")
    for length in (int(x) for x in args.lengths.split(",")):
        print(f"| {length} | {(prefixes > length).mean():.1%} | {np.minimum(prefixes, length).mean():.2f} |")


if __name__ == "__main__":
    main()
