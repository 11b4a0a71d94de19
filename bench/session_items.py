"""How much of a trained model's ranking goes to items already in the test session.

    python bench/session_items.py --model_file=saved/SASRec-....pth [--dataset=amazon-beauty]

RecBole's full ranking (every model's, ours included) keeps a session's own items as candidates.
amazon-beauty never repeats an item within a session, so every place such an item takes in the top
20 is lost. This prints, on the test sessions of RecBole's own test loader (same split as every
row), the model's recall@20 and MRR@20 as RecBole ranks (they match the run's test result) beside
the same ranking with the session's items dropped (``SessionRecommender.recommend(exclude_seen=True)``),
how often the top-1 item is one of the session's, and how often the target is (a repeat). The dropped ranking is an upper bound of what a
model can gain by learning to rank those items low (TPAD's ``session_item_bias``); it is not a
protocol change for the benchmark.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recbole.data import create_dataset, data_preparation  # noqa: E402

from recbole_tpad import compat  # noqa: E402
from recbole_tpad.quick_start import load_config  # noqa: E402
from recbole_tpad.recommend import load_recommender  # noqa: E402


def test_sessions(dataset_name, data_path=None):
    """``(sessions, targets)`` of RecBole's test loader, as item tokens (sessions oldest item first)."""
    config_dict = {"show_progress": False, "state": "WARNING", **({"data_path": data_path} if data_path else {})}
    config = load_config("SASRec", dataset_name, config_dict=config_dict)  # the data and split of every model
    dataset = create_dataset(config)
    _, _, test = data_preparation(config, dataset)
    tokens = dataset.field2id_token[config["ITEM_ID_FIELD"]]
    item_seq_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    sessions, targets = [], []
    for interaction, _, _, positive_i in test:
        lengths = interaction[config["ITEM_LIST_LENGTH_FIELD"]].tolist()
        for seq, length, target in zip(interaction[item_seq_field].tolist(), lengths, positive_i.tolist()):
            sessions.append([str(tokens[i]) for i in seq[:length]])
            targets.append(str(tokens[target]))
    return sessions, targets


def session_item_effect(recommender, sessions, targets, k=20):
    """Recall@k and MRR@k of the ranking as it is and with the session's items dropped, and the share of
    sessions whose top-1 item is one of their own."""
    plain = recommender.recommend(sessions, topk=k)
    dropped = recommender.recommend(sessions, topk=k, exclude_seen=True)

    def metrics(recommendations):
        ranks = [r.items.index(t) + 1 if t in r.items else 0 for r, t in zip(recommendations, targets)]
        return float(np.mean([r > 0 for r in ranks])), float(np.mean([1.0 / r if r else 0.0 for r in ranks]))

    (recall, mrr), (recall_dropped, mrr_dropped) = metrics(plain), metrics(dropped)
    top1_seen = float(np.mean([bool(r.items) and r.items[0] in set(s) for r, s in zip(plain, sessions)]))
    repeats = float(np.mean([t in set(s) for s, t in zip(sessions, targets)]))
    return {"sessions": len(sessions), "target_is_a_session_item": repeats, f"recall@{k}": recall, f"mrr@{k}": mrr,
            f"recall@{k}_session_items_dropped": recall_dropped, f"mrr@{k}_session_items_dropped": mrr_dropped,
            "top1_is_a_session_item": top1_seen}


def main():
    compat.apply()  # RecBole 1.2.1 shims (recbole_tpad/compat.py) before any RecBole call
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_file", required=True, help="a checkpoint saved by run_recbole_tpad (its sidecar beside it)")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None)
    args = parser.parse_args()
    sessions, targets = test_sessions(args.dataset, args.data_path)
    result = session_item_effect(load_recommender(args.model_file, device="cpu"), sessions, targets)
    print(f"| model file | {' | '.join(result)} |\n|---|{'---|' * len(result)}")
    print(f"| {Path(args.model_file).name} | " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in result.values()) + " |")


if __name__ == "__main__":
    main()
