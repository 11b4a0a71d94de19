"""Published full-ranking numbers on a benchmark dataset, set beside ours (``bench/report.py``).

Each anchor names its source; ``PROTOCOL`` says what differs between the source's protocol and
ours. docs/results.md carries the same table between the markers ``<!-- begin: anchors-<dataset> -->``
and ``<!-- end: anchors-<dataset> -->``; the report rewrites it from the benchmark's CSV.
"""

import json

ESASREC = "[eSASRec paper](https://arxiv.org/abs/2508.06450), preliminary-study table"
# How each row ranks: the anchors' rankings differ, and on this set (no item repeats within a session)
# removing a session's own items from the candidates only moves targets up (PROTOCOL, (2)).
SEEN_REMOVED = "without the user's seen items"
SEEN_KEPT = "RecBole's: a session's items kept"
OWN_REMOVED = "without the session's items"  # ours, as the 'Calculated' anchors rank
NOT_STATED = "not stated"
PSWREC = ("[kanishkaRandunu/pswrec2k26](https://github.com/kanishkaRandunu/pswrec2k26), "
          "`archives/results/results_old/benchmark_beauty.md`")
PSWREC_TRAINING = ("RecBole's model with the same parameter count as ours (SASRec 877,824, BERT4Rec 894,278); "
                   "its config files not read here; early stopping on valid NDCG@10, one run, seed 2026")
SOURCES = {"amazon-beauty": (
    "Sources: eSASRec: Tikhonovich et al., *eSASRec: Enhancing Transformer-based Recommendations in a "
    "Modular Fashion*, RecSys 2025, arXiv:2508.06450; its preliminary-study table on Amazon Beauty (22,363 "
    "users, 12,101 items, 198,502 interactions, leave-one-out) is also in the README of "
    "[blondered/transformer_benchmark](https://github.com/blondered/transformer_benchmark), where the numbers "
    "here were read: 'Calculated' columns are the authors' runs, 'Reported' columns copy the cited papers. "
    "The 'Calculated' rows are ranked without each user's seen items: the authors' evaluation "
    "(`validate_model_on_holdout` in `src/evaluation/common.py` of that repository) calls RecTools' "
    "`recommend(..., filter_viewed=True)`, and its leave-one-out holdout (`src/val_schemes/leave_one_out.py`, "
    "cold items and already seen items filtered) keeps 22,311 of the 22,363 test users "
    "(`data/s3_beauty/statistics.csv`). "
    "The two RecBole threads are users' runs of RecBole's SASRec with its default CE loss, ranked as RecBole "
    "ranks (a session's items kept). The pswrec2k26 file is another user's RecBole runs on the same set "
    "(22,364 users and 12,102 items as RecBole counts them, padding included), ranked as RecBole ranks and "
    "stopped early on valid NDCG@10: a repository's results file, not a paper."
)}

# Amazon Beauty 5-core, leave-one-out (22,363 users, 12,101 items, 198,502 interactions): the same
# sequences as ours (/work/shared/datasets/README.md). Metrics with one target per session:
# recall@K = hit@K = HR@K.
ANCHORS = {
    "amazon-beauty": [
        {"model": "SASRec + sampled softmax (SASRec+SS)", "recall@10": 0.0921, "ndcg@10": 0.0531,
         "source": f"{ESASREC}, 'Calculated'",
         "training": "tuned: 64 dims, 1 block, 256 sampled negatives, up to 200 epochs, patience 50",
         "ranking": SEEN_REMOVED},
        {"model": "eSASRec (SASRec + LiGR layers + sampled softmax)", "recall@10": 0.0928, "ndcg@10": 0.0523,
         "source": f"{ESASREC}, 'Calculated'", "training": "as SASRec+SS, LiGR layers", "ranking": SEEN_REMOVED},
        {"model": "DuoRec", "recall@10": 0.0845, "ndcg@10": 0.0443,
         "source": f"{ESASREC}, 'Reported' (from DuoRec's paper)", "training": "as published",
         "ranking": NOT_STATED},
        {"model": "SASRec (as reported in the literature)", "recall@10": 0.0605, "ndcg@10": 0.0318,
         "source": f"{ESASREC}, 'Reported'", "training": "binary cross-entropy, one negative",
         "ranking": NOT_STATED},
        {"model": "RecBole SASRec, CE loss (a user's run)", "recall@10": 0.083, "ndcg@10": 0.0416,
         "source": "[RUCAIBox/RecBole#1290](https://github.com/RUCAIBox/RecBole/issues/1290)",
         "training": "RecBole's SASRec defaults, CE over all items; data and split as the poster ran them",
         "ranking": SEEN_KEPT},
        {"model": "RecBole SASRec, CE loss (a user's run)", "recall@10": 0.0821, "ndcg@10": 0.0405,
         "source": "[HonghuiBao2000/LETTER#20](https://github.com/HonghuiBao2000/LETTER/issues/20)",
         "training": "RecBole's SASRec, CE; LETTER's Beauty files (counts not given in the thread)",
         "ranking": SEEN_KEPT},
        # one file of a user's RecBole runs gives both models: both are here, so that neither is picked alone
        {"model": "RecBole BERT4Rec (a user's run)", "recall@10": 0.0404, "ndcg@10": 0.0211,
         "source": PSWREC, "training": PSWREC_TRAINING, "ranking": SEEN_KEPT},
        {"model": "RecBole SASRec (a user's run)", "recall@10": 0.0736, "ndcg@10": 0.0391,
         "source": PSWREC, "training": PSWREC_TRAINING, "ranking": SEEN_KEPT},
    ],
}

PROTOCOL = {
    "amazon-beauty": (
        "Same data: the 22,363 sequences and 12,101 items of the Beauty 5-core set most papers use "
        "(S3Rec's release; ours comes from the P5 release, cross-checked for the same users, items and order). "
        "Same split in principle: per sequence, the last item is the test target, the one before it the "
        "validation target, the rest trains. What differs: (1) training, as each row says: the anchors "
        "tuned their hyper-parameters, sampled softmax or BCE losses and patience of 50 epochs; ours are "
        "RecBole's defaults with CE over all items, early stopping on valid MRR@20 (the rule in the header of "
        "`docs/results/amazon-beauty.md`, from `stopping_step` in `properties/overall.yaml`); (2) ranking (the `ranking` column): ours ranks all 12,101 "
        "items with RecBole's sequential full ranking, which keeps a session's earlier items as candidates; "
        "the eSASRec authors' runs ('Calculated') rank without a user's seen items, which on this set (no item "
        "repeats within a session) only moves targets up, and they leave out the 52 test users whose test "
        "item never occurs in training (RecBole keeps them, 0.2% of the test sessions): the rows 'own items removed' are ours ranked that way (the benchmark's `unseen_*` "
        "columns, section 'Ranking without the session's own items'), the protocol of the 'Calculated' rows; "
        "the 'Reported' rows do not say which ranking they used; "
        "(3) training samples: RecBole trains on every prefix of a training sequence (data augmentation), "
        "at most 50 items (`MAX_ITEM_LIST_LENGTH`), as SASRec-style code does with its 50-item window; "
        "(4) same-day order: timestamps are day-granular, and the order of same-day items (ours: file order, "
        "`tie_order: file`) decides the target of 43% of the sessions (`bench/tie_order.py`); the eSASRec "
        "authors read S3Rec's sequence files, where an item's position is its only time "
        "(`src/datasets/s3_repro.py`): the same order as ours; (5) the anchors report one run (the eSASRec "
        "table: one seed per tuned model), ours the mean over the seeds each row ran."
    ),
}

# Our rows in the table: the models the published tables share, and ours.
OUR_MODELS = ("SASRec", "GRU4Rec", "BERT4Rec", "KDSR", "TPAD")
COLUMNS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def anchors_table(dataset, rows):
    """Published anchors of ``dataset`` then our rows (mean over seeds of each model in ``OUR_MODELS``
    that ``rows``, the benchmark's, holds without error). Empty when the dataset has no anchors."""
    if dataset not in ANCHORS:
        return []
    table = [dict(anchor) for anchor in ANCHORS[dataset]]
    for model in OUR_MODELS:
        runs = [row for row in rows if row["model"] == model and not row.get("error")]
        if not runs:
            continue
        cap = json.loads(runs[0].get("overrides") or "{}").get("epochs")
        entry = {"model": f"**{model} (ours)**", "source": f"this benchmark, mean of {len(runs)} seed(s)",
                 "ranking": SEEN_KEPT,
                 "training": "its defaults, CE over all items, "
                 + (f"capped at {cap} epochs: a quick run, not converged" if cap else "early stopping on valid MRR@20")
                 + (f"; {runs[0]['epochs']} epochs run (first seed)" if runs[0].get("epochs") else "")}
        table.append(_with_means(entry, runs, ""))
        # the same runs ranked without the session's earlier items, as the 'Calculated' anchors rank
        # (rows made before the benchmark ranked that way lack its columns: the mean is over those that have them)
        ranked = [row for row in runs if isinstance(row.get("unseen_recall@10"), (int, float))]
        if ranked:
            table.append(_with_means({"model": f"**{model} (ours), own items removed**",
                                      "source": f"this benchmark, mean of {len(ranked)} seed(s)",
                                      "ranking": OWN_REMOVED,
                                      "training": "the same runs, ranked without the session's earlier items"},
                                     ranked, "unseen_"))
    return table


def _with_means(entry, runs, prefix):
    """``entry`` with the mean over ``runs`` of each of ``COLUMNS`` (read from ``prefix + column``)."""
    for column in COLUMNS:
        values = [row[prefix + column] for row in runs if isinstance(row.get(prefix + column), (int, float))]
        entry[column] = sum(values) / len(values) if values else None
    return entry
