"""Session prompts come from the training split only; knowledge examples hold out the right fields."""

import pytest
import torch

from recbole_tpad.features.items import ItemRecord
from recbole_tpad.stages.session_prompts import (
    TrainingSessions,
    knowledge_example,
    sample_rows,
    training_sessions,
)


def _splits(tiny_dataset):
    from recbole.data import create_dataset, data_preparation

    from recbole_tpad.quick_start import load_config

    _, config_dict = tiny_dataset
    config = load_config("GRU4Rec", "tiny", config_dict=config_dict)
    dataset = create_dataset(config)
    return data_preparation(config, dataset)


def test_training_sessions_never_contain_validation_or_test_targets(tiny_dataset):
    train, valid, test = _splits(tiny_dataset)
    sessions = training_sessions(train.dataset)
    # per session: its full sequence, and the position of its first held-out (valid or test) target
    full, first_held_out = {}, {}
    for split in (valid, test):
        feat = split.dataset.inter_feat
        for r, u in enumerate(feat["session_id"].tolist()):
            length = int(feat["item_length"][r])
            seq = feat["item_id_list"][r, :length].tolist() + [int(feat["item_id"][r])]
            if len(seq) > len(full.get(u, [])):
                full[u] = seq
            first_held_out[u] = min(first_held_out.get(u, length), length)
    assert len(sessions) > 0
    for row in range(len(sessions)):
        u = int(sessions.session[row])
        prefix = sessions.prefix(row, max_items=100)
        # the pair is a prefix of the session whose target comes before every held-out target
        assert len(prefix) < first_held_out[u]
        assert prefix + [int(sessions.target[row])] == full[u][: len(prefix) + 1]


def test_training_sessions_rejects_a_non_sequential_split(tiny_dataset):
    train, _, _ = _splits(tiny_dataset)
    del train.dataset.inter_feat.interaction["item_id_list"]
    with pytest.raises(ValueError, match="item_id_list"):
        training_sessions(train.dataset)


def _records():
    titles = ["", "Red Dress", "Blue Shirt with a very long title that keeps going on and on", "Hat"]
    return [
        ItemRecord(item_id=f"i{k}", fields={"title": t, "brand": "Acme" if k else "", "categories": "Women, Dresses"},
                   image_path=None, is_pad=(k == 0))
        for k, t in enumerate(titles)
    ]


def test_heldout_pairs_are_whole_sessions_and_seeded():
    from recbole_tpad.stages.transition_distillation import heldout_pairs

    session = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4])
    pairs = TrainingSessions(torch.zeros(12, 3, dtype=torch.long), torch.ones(12, dtype=torch.long),
                             torch.ones(12, dtype=torch.long), session)
    rows = heldout_pairs(pairs, limit=5, seed=1)
    assert 0 < len(rows) <= 5 and list(rows) == list(heldout_pairs(pairs, limit=5, seed=1))
    held = set(session[rows].tolist())
    assert all((session[rows] == s).sum() == (session == s).sum() for s in held)  # no session split in two
    assert len(heldout_pairs(pairs, limit=0, seed=1)) == 0


def test_knowledge_spans_are_cut_to_their_first_words():
    from recbole_tpad.features.prompt import item_prompt_spans
    from recbole_tpad.stages.item_states import first_words

    prompt, title, knowledge = item_prompt_spans(ItemRecord("x", {"title": "Red lip stick", "brand": "Foo Bar"}))
    assert prompt[slice(*title)] == "Red lip stick" and prompt[slice(*knowledge)] == "Brand: Foo Bar."
    assert prompt[slice(*first_words(prompt, title, 2))] == "Red lip"
    assert first_words(prompt, None, 3) is None


def test_knowledge_example_prompts_the_title_and_holds_out_the_rest():
    records = _records()
    prompt, answer = knowledge_example(records[1], {"brand": "Brand", "categories": "Category"})
    assert prompt == "Item: Red Dress."
    assert answer == " Brand: Acme. Category: Women, Dresses."
    assert knowledge_example(records[1], answer_words=3)[1] == " Brand: Acme. Category:"
    only_title = ItemRecord(item_id="x", fields={"title": "Hat", "brand": ""}, image_path=None, is_pad=False)
    assert knowledge_example(only_title) == ("Item: Hat.", None)


def test_sample_rows_is_seeded_and_without_replacement():
    a, b = sample_rows(100, 10, seed=1, epoch=0), sample_rows(100, 10, seed=1, epoch=0)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 10
    assert sample_rows(100, 10, seed=1, epoch=1).tolist() != a.tolist()
    assert sorted(sample_rows(5, 0, seed=1, epoch=0).tolist()) == [0, 1, 2, 3, 4]
