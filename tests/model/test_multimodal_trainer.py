"""MultimodalTrainer / KDSRTrainer end to end on tiny atomic files, with random item views."""

import numpy as np
import pytest

from recbole.data import create_dataset, data_preparation

from recbole_tpad.model.tpad import TPAD
from recbole_tpad.quick_start import load_config, run_recbole_tpad
from recbole_tpad.trainer import KDSRTrainer, MultimodalTrainer
from recbole_tpad.utils import get_trainer




@pytest.fixture
def random_views(monkeypatch):
    """Replace the feature cache by random views; record the datasets they were asked for."""
    calls = []

    def prepare_item_views(self, dataset):
        calls.append(dataset)
        n_items = dataset.item_num
        rng = np.random.default_rng(0)
        views = {name: rng.normal(size=(n_items, 20)).astype(np.float32) for name in ("text", "image", "fused")}
        return views, rng.random(n_items) > 0.2

    monkeypatch.setattr(MultimodalTrainer, "prepare_item_views", prepare_item_views)
    return calls


SMALL = {"embedding_size": 16, "n_sub_vectors": 4, "n_codes": 4, "kmeans_pairs": 2000, "n_pairs": 256}


def test_kdsr_runs_end_to_end_with_slow_modality_tables(tiny_dataset, random_views):
    root, config = tiny_dataset
    assert get_trainer(None, "KDSR") is KDSRTrainer
    run = run_recbole_tpad("KDSR", "tiny", config_dict=dict(config, learning_rate=0.01, modality_lr_scale=0.1, **SMALL))
    assert len(random_views) == 1  # views prepared once, before fit
    assert np.isfinite(run["test_result"]["mrr@20"])
    groups = run["trainer"].optimizer.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.001, 0.01])
    assert sum(len(g["params"]) for g in groups) == len(list(run["model"].parameters()))


def test_tpad_adapters_join_the_optimizer_and_survive_checkpoint_reload(tiny_dataset, random_views):
    root, config_dict = tiny_dataset
    config = load_config("TPAD", "tiny", config_dict=dict(config_dict, backbone="GRU4Rec", **SMALL))
    train, valid, test = data_preparation(config, create_dataset(config))
    model = TPAD(config, train._dataset)
    trainer = MultimodalTrainer(config, model)
    assert not model.adapters  # sized by the views, which come in fit
    trainer.fit(train, valid, saved=True)
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in model.adapters.parameters()} <= optimized
    result = trainer.evaluate(test, load_best_model=True)  # the checkpoint holds no frozen views
    assert np.isfinite(result["mrr@20"])

    fresh = TPAD(config, train._dataset)  # a new model: evaluate brings the views first
    fresh_trainer = MultimodalTrainer(config, fresh)
    again = fresh_trainer.evaluate(test, load_best_model=True, model_file=trainer.saved_model_file)
    assert again == result and len(random_views) == 2
