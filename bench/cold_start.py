"""Test metrics recomputed from one full-sort pass: over all targets, over targets whose item is rare
in training (cold-start targets), and over the ranking without the session's own items.

RecBole's evaluator reports over all test sessions; this recomputes Recall/MRR/NDCG/Hit from the
same full-sort scores for a subset of targets. With one target per session, Recall@K = Hit@K.
A target's rank counts the items scored strictly higher (ties resolved in the target's favour).
"""

import numpy as np
import torch

from bench.session_outcomes import session_outcomes


def training_item_counts(train_dataset):
    """Interactions per item in the training split: every target, plus each session's first item."""
    inter = train_dataset.inter_feat
    iid = train_dataset.iid_field
    counts = np.bincount(inter[iid].numpy(), minlength=train_dataset.item_num)
    seq_field = iid + train_dataset.config["LIST_SUFFIX"]
    first_items = inter[seq_field][inter[train_dataset.item_list_length_field] == 1][:, 0]
    counts += np.bincount(first_items.numpy(), minlength=train_dataset.item_num)
    return counts


@torch.no_grad()
def test_ranks(model, test_data, device):
    """(target item ids, 1-based ranks, 1-based ranks without the session's own items) of every test
    target under full ranking, from one pass of ``full_sort_predict``. In the second ranking the
    session's items are no candidates (a target that repeats one then ranks last)."""
    model.eval()
    targets, ranks, unseen_ranks = [], [], []
    for interaction, history_index, positive_u, positive_i in test_data:
        interaction = interaction.to(device)
        scores = model.full_sort_predict(interaction).view(-1, test_data._dataset.item_num)
        scores[:, 0] = -np.inf
        if history_index is not None:
            scores[history_index] = -np.inf
        target_scores = scores[positive_u, positive_i][:, None]
        ranks.append(((scores[positive_u] > target_scores).sum(dim=1) + 1).cpu())
        scores.scatter_(1, interaction[model.ITEM_SEQ], -np.inf)  # padding (item 0) is already out
        target_scores = scores[positive_u, positive_i][:, None]
        unseen_ranks.append(((scores[positive_u] > target_scores).sum(dim=1) + 1).cpu())
        targets.append(positive_i.cpu())
    return torch.cat(targets).numpy(), torch.cat(ranks).numpy(), torch.cat(unseen_ranks).numpy()


def metrics_from_ranks(ranks, topk=(10, 20)):
    """Recall, MRR, NDCG and Hit at each K from 1-based ranks of single targets: the means of the
    per-session outcomes (``bench/session_outcomes.py``)."""
    return {name: float(values.mean()) if len(values) else float("nan")
            for name, values in session_outcomes(ranks, topk).items()}


def ranking_metrics(train_dataset, test_ranks_result, max_train_interactions=5, topk=(10, 20)):
    """From one test pass (``test_ranks_result``: what :func:`test_ranks` returns): metrics over all test
    targets (as recomputed here, ``all_*``), over the cold-start ones (``cold_*``), and of the ranking
    without each session's own items (``unseen_*``). RecBole's full ranking keeps a session's items as
    candidates, and a set that never repeats an item within a session (amazon-beauty) loses every place
    they take; ``unseen_*`` is the protocol of evaluation code that removes a user's history."""
    counts = training_item_counts(train_dataset)
    targets, ranks, unseen_ranks = test_ranks_result
    cold = counts[targets] <= max_train_interactions
    result = {f"all_{name}": value for name, value in metrics_from_ranks(ranks, topk).items()}
    result.update({f"cold_{name}": value for name, value in metrics_from_ranks(ranks[cold], topk).items()})
    result["cold_targets"] = int(cold.sum())
    result["test_targets"] = int(len(targets))
    result.update({f"unseen_{name}": value for name, value in metrics_from_ranks(unseen_ranks, topk).items()})
    return result
