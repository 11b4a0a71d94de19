"""Catalogue items encoded the new-item way against their views from training (the same encoder?).

    python bench/new_item_views.py --model_file=results/new-items/saved/TPAD-....pth \
        --item_file=results/new-items/data/hm-fashion/hm-fashion.item --items=64

Loads the checkpoint with :func:`recbole_tpad.recommend.load_recommender`, encodes ``--items``
random items of its catalogue with :func:`recbole_tpad.recommend.new_items.encode_new_items` (as
``add_items`` would if they were new) and prints, per view, the cosine (min / mean) and the largest
absolute difference to their cached views, and the seconds the encoding took.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def compare(model_file, item_file, n_items, seed=0):
    from recbole_tpad.features import read_cache
    from recbole_tpad.recommend import load_recommender
    from recbole_tpad.recommend.new_items import encode_new_items

    recommender = load_recommender(model_file, device="cpu")
    where = recommender.sidecar["item_views"]
    catalogue = read_cache(where["folder"], where["key"])
    rows = np.sort(np.random.default_rng(seed).choice(np.arange(1, recommender.n_items), n_items, replace=False))
    tokens = [recommender.tokens[r] for r in rows]
    start = time.perf_counter()
    views, image_mask = encode_new_items(recommender.config, recommender.views_manifest,
                                         recommender.sidecar.get("knowledge_mllm"), item_file, tokens)
    result = {"model": recommender.config["model"], "items": n_items, "seconds": round(time.perf_counter() - start, 1),
              "image_mask_equal": bool((image_mask == catalogue.image_mask[rows]).all())}
    for name, new in views.items():
        old = catalogue.views[name][rows]
        cosine = (new * old).sum(1) / (np.linalg.norm(new, axis=1) * np.linalg.norm(old, axis=1))
        result[name] = {"cosine_min": round(float(cosine.min()), 5), "cosine_mean": round(float(cosine.mean()), 5),
                        "max_abs_diff": float(np.abs(new - old).max()), "max_abs": float(np.abs(old).max())}
    return result


def main(argv=None):
    from recbole_tpad import compat

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--item_file", required=True, help="the .item file the model was trained with")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    compat.apply()
    print(compare(args.model_file, args.item_file, args.items, args.seed))


if __name__ == "__main__":
    main()
