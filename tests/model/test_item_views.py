"""Item views at the data boundary, end to end on tiny atomic files with random views: prepared once
by the runner, read by the model in ``__init__``, RecBole's own trainer around it (KDSR's optimizer groups)."""

import numpy as np
import pytest
import torch

from recbole.data import create_dataset, data_preparation
from recbole.trainer import Trainer

from recbole_tpad.features import ItemViews
from recbole_tpad.model.item_views import SUCCESSOR_VIEWS, prepare_item_views
from recbole_tpad.model.multimodal_recommender import MultimodalSequentialRecommender
from recbole_tpad.model.tpad import TPAD
from recbole_tpad.quick_start import load_config, run_recbole_tpad
from recbole_tpad.trainer import KDSRTrainer
from recbole_tpad.utils import get_trainer


@pytest.fixture
def random_views(monkeypatch):
    """Replace the feature cache by random views; record the datasets they were made from."""
    calls = []

    def make_item_views(cls, config, train_dataset, features):
        calls.append(train_dataset)
        n_items = train_dataset.item_num
        rng = np.random.default_rng(0)
        torch.rand(3)  # a draw from the global RNG, as feature extraction may make
        views = {name: rng.normal(size=(n_items, 20)).astype(np.float32) for name in ("text", "image", "fused")}
        for name in SUCCESSOR_VIEWS:  # stage 3's unit rows
            views[name] = views["text"] / np.linalg.norm(views["text"], axis=1, keepdims=True)
        return ItemViews(views, rng.random(n_items) > 0.2, manifest={}, folder=None), {"views_s": 0.0}

    for model_class in (MultimodalSequentialRecommender, TPAD):  # the feature cache, TPAD's stages
        monkeypatch.setattr(model_class, "make_item_views", classmethod(make_item_views))
    return calls


SMALL = {"embedding_size": 16, "n_sub_vectors": 4, "n_codes": 4, "kmeans_pairs": 2000, "n_pairs": 256}


def test_kdsr_runs_end_to_end_with_slow_modality_tables(tiny_dataset, random_views):
    root, config = tiny_dataset
    assert get_trainer(None, "KDSR") is KDSRTrainer
    run = run_recbole_tpad("KDSR", "tiny", config_dict=dict(config, learning_rate=0.01, modality_lr_scale=0.1, **SMALL))
    assert random_views == [run["train_data"]._dataset]  # prepared once, from the training split
    assert run["view_info"] == {"views_s": 0.0} and run["item_views"] is run["train_data"]._dataset.item_views
    assert np.isfinite(run["test_result"]["mrr@20"])
    groups = run["trainer"].optimizer.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.001, 0.01])
    assert sum(len(g["params"]) for g in groups) == len(list(run["model"].parameters()))


def test_stock_models_and_id_only_tpad_get_no_views(tiny_dataset, random_views):
    _, config_dict = tiny_dataset
    for model, overrides in [("SASRec", {}), ("TPAD", {"views": ["id"], "neighbour_views": [], "transition_score": False})]:
        config = load_config(model, "tiny", config_dict=dict(config_dict, **overrides))
        train, _, _ = data_preparation(config, create_dataset(config))
        assert prepare_item_views(config, train) == (None, {})
        assert not hasattr(train._dataset, "item_views")
    assert not random_views


def test_the_preparation_leaves_the_model_initialisation_alone(tiny_dataset, random_views):
    _, config_dict = tiny_dataset
    config = load_config("TPAD", "tiny", config_dict=dict(config_dict, **SMALL))
    train, _, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    expected = torch.rand(5)
    torch.manual_seed(0)
    prepare_item_views(config, train)  # draws inside a forked RNG
    assert torch.equal(torch.rand(5), expected) and random_views


def test_tpad_is_built_whole_and_evaluates_without_fit(tiny_dataset, random_views):
    root, config_dict = tiny_dataset
    config = load_config("TPAD", "tiny", config_dict=dict(config_dict, session_encoder="GRU4Rec", **SMALL))
    train, valid, test = data_preparation(config, create_dataset(config))
    prepare_item_views(config, train)
    model = TPAD(config, train._dataset)
    assert set(model.view_adapters) == {"text", "image", "fused"}  # sized by the views, in __init__
    trainer = Trainer(config, model)
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in model.parameters()}
    trainer.fit(train, valid, saved=True)
    result = trainer.evaluate(test, load_best_model=True)  # the checkpoint holds no frozen views
    assert np.isfinite(result["mrr@20"])

    fresh = TPAD(config, train._dataset)  # a new model and trainer, no fit: the views came with the dataset
    again = Trainer(config, fresh).evaluate(test, load_best_model=True, model_file=trainer.saved_model_file)
    assert again == result and len(random_views) == 1
