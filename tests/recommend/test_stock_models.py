"""Every stock sequential model loads from a checkpoint and its sidecar and ranks as its own full_sort_predict does."""

import inspect

import numpy as np
import pytest
import recbole.model.sequential_recommender as recbole_sequential
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import ModelType

from conftest import tiny_config, write_tiny_dataset
from recbole_tpad.model_defaults import build_model
from recbole_tpad.quick_start import load_config
from recbole_tpad.recommend import load_recommender
from recbole_tpad.recommend.sidecar import write_sidecar
from recbole_tpad.utils import get_model

KG_MODELS = {"GRU4RecKG", "KSR"}  # need a knowledge graph beside the dataset (tests/foundation covers them)
MODELS = sorted(name for name, cls in inspect.getmembers(recbole_sequential, inspect.isclass)
                if cls.type == ModelType.SEQUENTIAL and name not in KG_MODELS)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """The tiny dataset's training split and one test batch, shared by the models (the split is model-independent)."""
    root = tmp_path_factory.mktemp("stock")
    write_tiny_dataset(str(root / "data"), n_items=120, n_sessions=80, with_images=False)  # the CPR models rerank 100 items
    settings = tiny_config(root / "data", root, selected_features=["categories", "brand"], item_attribute="categories")
    config = load_config("SASRec", "tiny", config_dict=settings)
    train, _, test = data_preparation(config, create_dataset(config))
    return settings, train._dataset, next(iter(test))[0]


@pytest.mark.parametrize("name", MODELS)
def test_stock_model_ranks_as_its_full_sort_predict(split, name, tmp_path):
    settings, dataset, batch = split
    config = load_config(name, "tiny", config_dict=settings)
    torch.manual_seed(0)
    model = build_model(get_model(name), config, dataset).eval()
    model_file = tmp_path / f"{name}.pth"
    torch.save({"config": config, "state_dict": model.state_dict(), "other_parameter": model.other_parameter()}, model_file)
    write_sidecar(model_file, config, dataset)

    recommender = load_recommender(model_file, device="cpu")
    seq, length = batch[model.ITEM_SEQ][:8], batch[model.ITEM_SEQ_LEN][:8]
    sessions = [[recommender.tokens[i] for i in row[:n].tolist()] for row, n in zip(seq, length)]
    got = recommender.recommend(sessions, topk=5)
    expected = recommender.scores([[i for i in row[:n].tolist()] for row, n in zip(seq, length)])
    assert np.allclose([r.scores for r in got], expected.topk(5, dim=1).values.numpy(), atol=1e-5)
    if hasattr(model, "full_sort_predict") and name not in ("DIN", "DIEN"):
        interaction = recommender._interaction([row[:n].tolist() for row, n in zip(seq, length)])
        with torch.no_grad():
            own = model.full_sort_predict(interaction).view(len(sessions), -1)
        own[:, 0] = -np.inf
        assert np.allclose(own.topk(5, dim=1).values.numpy(), [r.scores for r in got], atol=1e-5)
