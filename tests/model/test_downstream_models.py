"""TPAD and KDSR on every session encoder: losses, scores, gradients, no label leak, cached item side."""

import copy

import numpy as np
import pytest
import torch

from conftest import tiny_config, write_tiny_dataset
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction

from recbole_tpad.errors import ConfigError, DataError
from recbole_tpad.features import ItemViews
from recbole_tpad.model import renamed_keys
from recbole_tpad.model.item_views import SUCCESSOR_VIEWS, attach_item_views
from recbole_tpad.model.kdsr import KDSR
from recbole_tpad.model.session_encoders import keep_recent_items
from recbole_tpad.model.tpad import SESSION_ITEM_BIAS_RATE, TPAD
from recbole_tpad.quick_start import load_config

SMALL = {"TPAD": {"embedding_size": 16, "teacher_dim": 8, "n_sub_vectors": 4, "n_codes": 4, "kmeans_pairs": 2000, "n_pairs": 256},
         "KDSR": {"embedding_size": 16, "n_sub_vectors": 4, "n_codes": 4, "kmeans_pairs": 2000, "n_pairs": 256}}
SESSION_ENCODERS = ["SASRec", "GRU4Rec", "SRGNN", "STAMP"]



@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Config dict, train and test batches of a tiny dataset, built once for the module."""
    tmp = tmp_path_factory.mktemp("downstream")
    write_tiny_dataset(str(tmp / "data"))
    config_dict = tiny_config(tmp / "data", tmp, n_heads=2)
    config = load_config("TPAD", "tiny", config_dict=config_dict)
    train, _, test = data_preparation(config, create_dataset(config))
    return config_dict, train._dataset, next(iter(train)), next(iter(test))[0]


def random_views(n_items, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    views = {name: rng.normal(size=(n_items, dim)).astype(np.float32) for name in ("text", "image", "fused")}
    for name in SUCCESSOR_VIEWS:  # unit rows, row 0 (padding) zero, as stage 3 writes them
        unit = rng.normal(size=(n_items, dim)).astype(np.float32)
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        unit[0] = 0
        views[name] = unit
    image_mask = rng.random(n_items) > 0.3
    return views, image_mask


def with_views(dataset, views, image_mask):
    """A shallow copy of ``dataset`` carrying ``views`` (the module's dataset stays without)."""
    dataset = copy.copy(dataset)
    attach_item_views(dataset, ItemViews(views, image_mask, manifest={}, folder=None))
    return dataset


def build(tiny, model_class, with_views_of=True, **overrides):
    """A model on the tiny dataset; ``with_views_of``: ``(views, image_mask)`` to attach, True for random ones, False for none."""
    config_dict, dataset, _, _ = tiny
    torch.manual_seed(0)
    config = load_config(model_class.__name__, "tiny", config_dict={**config_dict, **SMALL[model_class.__name__], **overrides})
    if with_views_of:
        dataset = with_views(dataset, *(random_views(dataset.item_num) if with_views_of is True else with_views_of))
    return model_class(config, dataset)


CASES = ([(TPAD, e, {"shared_encoder": s}) for e in SESSION_ENCODERS for s in (True, False)]
         + [(TPAD, e, {"tied_output": False}) for e in SESSION_ENCODERS] + [(TPAD, "SASRec", {"output_map": True})]
         + [(KDSR, e, {}) for e in SESSION_ENCODERS])


@pytest.mark.parametrize("model_class,session_encoder,extra", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_loss_scores_and_gradients(tiny, model_class, session_encoder, extra):
    model = build(tiny, model_class, session_encoder=session_encoder, **extra)
    _, _, train_batch, test_batch = tiny
    losses = model.calculate_loss(train_batch)
    assert all(torch.isfinite(loss) for loss in losses)
    sum(losses).backward()
    encoder_params = list((model.encoders if model_class is TPAD else model.encoder).parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder_params)
    if model_class is TPAD:
        assert all(p.grad is not None for p in model.view_adapters.parameters())
    else:
        assert all(t.weight.grad.abs().sum() > 0 for t in model.modality_embedding.values())

    model.eval()
    with torch.no_grad():
        full = model.full_sort_predict(test_batch)
        single = model.predict(test_batch)
    batch_size = len(test_batch)
    assert full.shape == (batch_size, model.n_items) and single.shape == (batch_size,)
    targets = test_batch[model.ITEM_ID]
    assert torch.allclose(full[torch.arange(batch_size), targets], single, atol=1e-5)


@pytest.mark.parametrize("model_class", [TPAD, KDSR])
def test_full_sort_predict_reads_the_session_only(tiny, model_class):
    """RecBole's eval batch also carries the target item's id and features: changing them changes nothing."""
    model = build(tiny, model_class).eval()
    batch = tiny[3][torch.arange(len(tiny[3]))]  # a copy: the module's batch stays as it is
    with torch.no_grad():
        before = model.full_sort_predict(batch)
        batch[model.ITEM_ID] = torch.flip(batch[model.ITEM_ID], [0]) % (model.n_items - 1) + 1
        touched = [model.ITEM_ID]
        for field in batch.columns:
            if field not in (model.ITEM_SEQ, model.ITEM_SEQ_LEN, model.ITEM_ID, model.USER_ID):
                batch[field] = torch.zeros_like(batch[field])
                touched.append(field)
        after = model.full_sort_predict(batch)
        assert not torch.equal(model.predict(batch), model.predict(tiny[3]))  # predict does read the target
    assert len(touched) > 2, touched  # the target's own features were in the batch
    assert torch.equal(before, after)


def test_item_side_is_computed_once_per_evaluation(tiny, monkeypatch):
    model = build(tiny, TPAD)
    calls = []
    original = model.item_representations
    monkeypatch.setattr(model, "item_representations", lambda: calls.append(1) or original())
    batch = tiny[3]
    model.eval()
    with torch.no_grad():
        first = model.full_sort_predict(batch)
        model.full_sort_predict(batch)
        model.predict(batch)
    assert len(calls) == 1
    model.train()
    model.calculate_loss(tiny[2])
    assert len(calls) == 2  # training never uses the cache
    with torch.no_grad():
        model.view_adapters["text"].net.weight.add_(1.0)  # weights change while training...
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model.full_sort_predict(batch), first)  # ...so eval() recomputes
    assert len(calls) == 3


def test_a_model_built_without_views_names_the_call_that_prepares_them(tiny):
    for model_class in (TPAD, KDSR):
        with pytest.raises(RuntimeError, match=r"prepare_item_views\(config, train_data\)"):
            build(tiny, model_class, with_views_of=False)
    id_only = build(tiny, TPAD, with_views_of=False, views=["id"], transition_score=False)  # needs no views at all
    assert len(id_only.calculate_loss(tiny[2])) == 1


def test_views_are_validated(tiny):
    views, mask = random_views(tiny[1].item_num)
    with pytest.raises(DataError, match="image"):
        build(tiny, TPAD, with_views_of=({"text": views["text"], "fused": views["fused"]}, mask))
    with pytest.raises(DataError, match="n_items"):
        build(tiny, TPAD, with_views_of=({k: v[:-1] for k, v in views.items()}, mask))
    with pytest.raises(DataError, match="no images"):
        build(tiny, TPAD, with_views_of=(views, np.zeros(len(mask), bool)))
    assert "view_text" not in build(tiny, TPAD).state_dict()  # frozen views never go into checkpoints


@pytest.mark.parametrize("overrides", [{"views": ["foo"]}, {"fusion": "average"}, {"session_encoder": "NARM"},
                                       {"view_adapter": "conv"},
                                       {"correlation_supervision": True, "correlation_views": ["id"]},
                                       {"fusion_weights": {"text": -1.0}}, {"session_length": -1},
                                       {"neighbour_views": ["id"]}, {"neighbour_views": ["text"], "neighbour_scale": 0},
                                       {"transition_scale": 0}, {"transition_fusion": "late"},
                                       {"transition_scales": []}, {"transition_scales": [0.0, -1.0]},
                                       {"tied_output": ["foo"]}, {"tied_output": "id"}])
def test_bad_tpad_config_fails_early(tiny, overrides):
    with pytest.raises(ConfigError):
        TPAD.check_config(load_config("TPAD", "tiny", config_dict={**tiny[0], **overrides}))  # the runner's early check
    with pytest.raises(ConfigError):
        build(tiny, TPAD, with_views_of=False, **overrides)


@pytest.mark.parametrize("views", [["text"], ["image"], ["id", "fused"]])
def test_view_ablations(tiny, views):
    model = build(tiny, TPAD, views=views, fusion="fixed", fusion_weights={views[0]: 2.0})
    assert len(model.item_representations()) == len(views)
    assert model.view_weights()[0] == 2.0
    assert torch.isfinite(model.calculate_loss(tiny[2])[0])


def test_tpad_correlation_switch(tiny):
    plain = build(tiny, TPAD)
    assert plain.correlation is None and len(plain.calculate_loss(tiny[2])) == 1
    model = build(tiny, TPAD, correlation_supervision=True, correlation_views=["text", "image"])
    rec, holistic, code = model.calculate_loss(tiny[2])
    assert holistic > 0 and code > 0
    (holistic + code).backward()  # the supervision alone reaches the supervised adapters, not the others
    assert model.view_adapters["text"].net.weight.grad.abs().sum() > 0
    assert model.view_adapters["image"].net.weight.grad.abs().sum() > 0
    fused_grad = model.view_adapters["fused"].net.weight.grad
    assert fused_grad is None or fused_grad.abs().sum() == 0


def test_view_loss_adds_one_term(tiny):
    model = build(tiny, TPAD, view_loss_weight=0.5)
    assert len(model.calculate_loss(tiny[2])) == 2


def test_kdsr_student_starts_at_teacher_and_has_slow_group(tiny):
    model = build(tiny, KDSR, modality_lr_scale=0.1)
    teacher = model.correlation.teachers["text"].teacher
    assert torch.allclose(model.modality_embedding["text"].weight, teacher)
    slow, rest = model.parameter_groups(0.01)
    assert slow["lr"] == pytest.approx(0.001) and "lr" not in rest
    assert {id(p) for p in slow["params"]} == {id(t.weight) for t in model.modality_embedding.values()}
    assert len(slow["params"]) + len(rest["params"]) == len(list(model.parameters()))
    # items without a photo never weigh the image table in their gate
    model.eval()
    no_image = ~model.modality_mask[:, 2]
    assert no_image[1:].any() and not model.modality_mask[0, 1:].any()
    before = model.item_representations()[0]
    with torch.no_grad():
        model.modality_embedding["image"].weight.add_(100.0)
    after = model.item_representations()[0]
    assert torch.allclose(before[no_image], after[no_image]) and not torch.allclose(before[~no_image], after[~no_image])


def test_bad_kdsr_config_fails_early(tiny):
    with pytest.raises(ConfigError, match="n_sub_vectors"):
        build(tiny, KDSR, with_views_of=False, n_sub_vectors=5)
    with pytest.raises(ConfigError, match="views"):
        build(tiny, KDSR, with_views_of=False, views=["id", "audio"])
    with pytest.raises(ConfigError, match="'id'"):
        build(tiny, KDSR, with_views_of=False, views=["text"])


def test_renamed_keys_still_work_with_a_warning(tiny, caplog):
    renamed_keys._warned.clear()
    with caplog.at_level("WARNING"):
        tpad = build(tiny, TPAD, backbone="GRU4Rec", adapter_type="mlp", adapter_dropout=0.3)
        kdsr = build(tiny, KDSR, modalities=["text"])
    assert tpad.session_encoder == "GRU4Rec" and type(tpad.encoders[0]).__name__ == "GRU4RecEncoder"
    assert (tpad.view_adapter, tpad.view_adapter_dropout) == ("mlp", 0.3)
    assert isinstance(tpad.view_adapters["text"].net, torch.nn.Sequential)
    assert kdsr.views == ["id", "text"] and list(kdsr.modality_embedding) == ["text"]
    for old, new in [("backbone", "session_encoder"), ("adapter_type", "view_adapter"),
                     ("adapter_dropout", "view_adapter_dropout"), ("modalities", "views")]:
        assert f"`{old}` is a deprecated name of `{new}`" in caplog.text


def test_keep_recent_items_matches_recbole_truncation(tiny):
    # TPAD's session_length must read exactly what RecBole keeps with a shorter MAX_ITEM_LIST_LENGTH.
    config_dict = tiny[0]
    sequences = {}
    for length in (10, 2):
        config = load_config("TPAD", "tiny", config_dict={**config_dict, "MAX_ITEM_LIST_LENGTH": length})
        feat = data_preparation(config, create_dataset(config))[0]._dataset.inter_feat
        sequences[length] = feat["item_id_list"], feat["item_length"]
    long_seq, long_len = sequences[10]
    assert (long_len > 2).any(), "the fixture needs sessions longer than the cut"
    recent_seq, recent_len = keep_recent_items(long_seq, long_len, 2)
    assert torch.equal(recent_len, sequences[2][1])
    assert torch.equal(recent_seq, sequences[2][0])
    assert keep_recent_items(long_seq, long_len, 0)[0] is long_seq


def test_session_length_changes_what_tpad_reads(tiny):
    model = build(tiny, TPAD, session_length=1).eval()
    batch = tiny[3]
    seq, seq_len = batch["item_id_list"], batch["item_length"]
    last_only = seq.gather(1, (seq_len - 1).unsqueeze(1))
    short = Interaction(dict(batch.interaction))  # a new batch: the module's fixture stays as it is
    short.interaction["item_id_list"] = torch.nn.functional.pad(last_only, (0, seq.size(1) - 1))
    short.interaction["item_length"] = torch.ones_like(seq_len)
    with torch.no_grad():
        assert torch.allclose(model.full_sort_predict(batch), model.full_sort_predict(short), atol=1e-6)


def test_fused_logits_equal_the_weighted_sum_of_view_scores(tiny):
    model = build(tiny, TPAD, fusion="fixed", fusion_weights={"id": 2.0, "text": 0.5})
    items = model.item_representations()
    seq_output = torch.randn(len(model.views), 5, items.size(-1))
    per_view = model._fuse(model._view_logits(seq_output, items))
    assert torch.allclose(model._fused_logits(seq_output, items), per_view, atol=1e-5)


def test_untied_output_scores_items_with_their_own_tables(tiny):
    tied = build(tiny, TPAD, transition_score=False)
    untied = build(tiny, TPAD, transition_score=False, tied_output=False)
    assert not any(name.startswith("output_") for name, _ in tied.named_parameters())
    assert build(tiny, TPAD, transition_score=False, tied_output=None).untied_views == []  # an older checkpoint's config
    # the output side is drawn after everything else: a seed gives the input side the tied model's weights
    tied_weights = dict(tied.named_parameters())
    for name, weight in untied.named_parameters():
        if not name.startswith("output_"):
            assert torch.equal(weight, tied_weights[name]), name
    items, targets = untied.item_representations(), untied.target_representations(untied.item_representations())
    assert targets.shape == items.shape and not torch.allclose(targets, items)
    assert torch.equal(tied.target_representations(items), items)

    loss = untied.calculate_loss(tiny[2])[0]
    loss.backward()  # both sides learn: the input side through the sessions, the output side through the scores
    for table in (untied.item_embedding, untied.output_embedding):
        assert table.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in untied.output_adapters.parameters())
    assert untied.output_missing_image.grad is not None

    untied.eval()
    batch = tiny[3]
    with torch.no_grad():
        before, sessions = untied.full_sort_predict(batch), untied(batch[untied.ITEM_SEQ], batch[untied.ITEM_SEQ_LEN])
        untied.output_embedding.weight.mul_(2.0)
        untied.eval()  # drops the cached item side
        after = untied.full_sort_predict(batch)
        assert torch.equal(untied(batch[untied.ITEM_SEQ], batch[untied.ITEM_SEQ_LEN]), sessions)  # sessions read the input side
    assert not torch.allclose(before, after)

    views, image_mask = random_views(3, seed=1)
    untied.add_items(views, image_mask)  # items added after training: zero rows in both ID tables
    assert untied.item_embedding.weight.shape == untied.output_embedding.weight.shape == (untied.n_items, 16)
    assert untied.output_embedding.weight[-3:].abs().sum() == 0
    with torch.no_grad():
        assert untied.full_sort_predict(batch).shape == (len(batch), untied.n_items)

    # a list keeps those views tied: here the ID table is shared, the text view gets its own adapter
    partial = build(tiny, TPAD, transition_score=False, tied_output=["id"], views=["id", "text"])
    assert partial.output_embedding is None and list(partial.output_adapters) == ["text"]
    items = partial.item_representations()
    targets = partial.target_representations(items)
    assert torch.equal(targets[0], items[0]) and not torch.allclose(targets[1], items[1])


def test_output_map_starts_as_the_tied_model_and_learns(tiny):
    tied = build(tiny, TPAD, transition_score=False).eval()
    mapped = build(tiny, TPAD, transition_score=False, output_map=True).eval()
    batch = tiny[3]
    with torch.no_grad():
        assert torch.allclose(mapped.full_sort_predict(batch), tied.full_sort_predict(batch), atol=1e-5)  # W_v = I
    mapped.train()
    mapped.calculate_loss(tiny[2])[0].backward()
    assert mapped.output_maps.grad is not None and mapped.output_maps.grad.abs().sum() > 0
    with torch.no_grad():
        mapped.output_maps[0].mul_(-1.0)  # the ID view's map: its scores flip sign, the sessions stay as they were
    mapped.eval()
    with torch.no_grad():
        items = mapped.item_representations()
        assert torch.allclose(mapped.target_representations(items)[0], -items[0]) and torch.equal(
            mapped.target_representations(items)[1], items[1])


def test_neighbour_views_add_the_scaled_cosine_with_the_last_item(tiny):
    views, image_mask = random_views(tiny[1].item_num)
    plain = build(tiny, TPAD, views=["id"], transition_score=False, with_views_of=(views, image_mask))
    model = build(tiny, TPAD, views=["id"], neighbour_views=["text"], neighbour_scale=3.0, transition_score=False,
                  with_views_of=(views, image_mask))
    config = load_config("TPAD", "tiny", config_dict={**tiny[0], "views": ["id"], "neighbour_views": ["text"],
                                                      "transition_score": False})
    assert TPAD.required_views(config) == ("text",)
    model.eval(), plain.eval()
    batch = tiny[3]
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    last = item_seq[torch.arange(len(batch)), item_seq_len - 1]
    unit = torch.nn.functional.normalize(torch.as_tensor(views["text"]), dim=1)
    unit[0] = 0  # the padding item
    with torch.no_grad():
        added = model.full_sort_predict(batch) - plain.full_sort_predict(batch)
        assert torch.allclose(added, 3.0 * unit[last] @ unit.T, atol=1e-5)
        targets = batch[model.ITEM_ID]
        assert torch.allclose(model.predict(batch), model.full_sort_predict(batch)[torch.arange(len(batch)), targets], atol=1e-5)
    model.train()
    model.calculate_loss(tiny[2])[0].backward()
    assert model.neighbour_log_scale.grad.abs().sum() > 0  # the scale learns; the cosines stay frozen


def test_session_item_bias_offsets_the_session_items_and_learns_to_push_them_down(tiny):
    views, image_mask = random_views(tiny[1].item_num)
    plain = build(tiny, TPAD, views=["id"], transition_score=False, with_views_of=(views, image_mask))
    model = build(tiny, TPAD, views=["id"], transition_score=False, session_item_bias=True,
                  with_views_of=(views, image_mask))
    assert float(model.session_item_bias) == 0.0  # starts as the model without it
    with torch.no_grad():
        model.session_item_bias.fill_(-2.0 / SESSION_ITEM_BIAS_RATE)
    assert float(model.session_item_offset()) == pytest.approx(-2.0)
    model.eval(), plain.eval()
    batch = tiny[3]
    item_seq = batch[model.ITEM_SEQ]
    member = torch.zeros(len(batch), model.n_items)
    for row, items in enumerate(item_seq.tolist()):
        member[row, [i for i in items if i > 0]] = 1.0
    with torch.no_grad():
        added = model.full_sort_predict(batch) - plain.full_sort_predict(batch)
        assert torch.allclose(added, -2.0 * member, atol=1e-5)
        repeated = torch.tensor([[3, 3, 5, 0, 0]])  # an item twice gets the offset once; padding none
        expected = torch.zeros(1, model.n_items)
        expected[0, [3, 5]] = -2.0
        assert torch.equal(model.extra_logits(repeated, torch.tensor([3])), expected)
        targets = batch[model.ITEM_ID]
        assert torch.allclose(model.predict(batch), model.full_sort_predict(batch)[torch.arange(len(batch)), targets], atol=1e-5)
    model.train()
    with torch.no_grad():
        model.session_item_bias.zero_()
    loss = model.calculate_loss(tiny[2])[0]
    loss.backward()
    train_seq, train_targets = tiny[2][model.ITEM_SEQ], tiny[2][model.POS_ITEM_ID]
    assert not (train_seq == train_targets[:, None]).any()  # no target repeats an item of its session...
    assert model.session_item_bias.grad > 0  # ...so gradient descent pushes the session's items down


def test_transition_score_adds_the_scaled_successor_cosine_where_stage_2_runs(tiny):
    views, image_mask = random_views(tiny[1].item_num)
    plain = build(tiny, TPAD, views=["id"], transition_score=False, with_views_of=(views, image_mask))
    model = build(tiny, TPAD, views=["id"], transition_fusion="joint", transition_scale=2.0, with_views_of=(views, image_mask))
    config = load_config("TPAD", "tiny", config_dict={**tiny[0], "views": ["id"]})
    assert TPAD.required_views(config) == SUCCESSOR_VIEWS
    no_stage2 = load_config("TPAD", "tiny", config_dict={**tiny[0], "views": ["id"], "stage_distillation": False})
    assert TPAD.required_views(no_stage2) == ()  # no Transfer-MLLM, no successor views
    model.eval(), plain.eval()
    batch = tiny[3]
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    last = item_seq[torch.arange(len(batch)), item_seq_len - 1]
    source, target = (torch.as_tensor(views[name]) for name in SUCCESSOR_VIEWS)
    with torch.no_grad():
        added = model.full_sort_predict(batch) - plain.full_sort_predict(batch)
        assert torch.allclose(added, 2.0 * source[last] @ target.T, atol=1e-5)  # successor of the last item, not its cosine
        targets = batch[model.ITEM_ID]
        assert torch.allclose(model.predict(batch), model.full_sort_predict(batch)[torch.arange(len(batch)), targets], atol=1e-5)
    model.train()
    model.calculate_loss(tiny[2])[0].backward()
    assert model.transition_log_scale.grad.abs().sum() > 0


def test_transition_score_picked_on_validation_is_off_until_the_scale_is_set(tiny):
    views, image_mask = random_views(tiny[1].item_num)
    plain = build(tiny, TPAD, views=["id"], transition_score=False, with_views_of=(views, image_mask))
    model = build(tiny, TPAD, views=["id"], with_views_of=(views, image_mask))  # transition_fusion: validation
    assert model.picks_transition_scale and not plain.picks_transition_scale
    batch = tiny[3]
    with torch.no_grad():
        # training and the per-epoch validation see the model without the score
        losses = [torch.manual_seed(0) and m.calculate_loss(tiny[2])[0] for m in (model, plain)]  # same dropout
        assert torch.equal(*losses)
        model.eval(), plain.eval()
        assert torch.equal(model.full_sort_predict(batch), plain.full_sort_predict(batch))
        model.set_transition_scale(0.0)  # picked 0: still the plain model
        assert torch.equal(model.full_sort_predict(batch), plain.full_sort_predict(batch))
        model.set_transition_scale(3.0)
        last = batch[model.ITEM_SEQ][torch.arange(len(batch)), batch[model.ITEM_SEQ_LEN] - 1]
        source, target = (torch.as_tensor(views[name]) for name in SUCCESSOR_VIEWS)
        added = model.full_sort_predict(batch) - plain.full_sort_predict(batch)
        assert torch.allclose(added, 3.0 * source[last] @ target.T, atol=1e-5)
    state = model.state_dict()  # the picked scale travels with the weights
    assert bool(state["transition_ready"]) and state["transition_log_scale"].exp().item() == pytest.approx(3.0)


def test_stamp_encoder_is_recboles_stamp_on_the_same_weights(tiny):
    from recbole.model.sequential_recommender.stamp import STAMP

    from recbole_tpad.model.session_encoders import STAMPEncoder

    config_dict, dataset, batch, _ = tiny
    torch.manual_seed(0)
    stamp = STAMP(load_config("STAMP", "tiny", config_dict=dict(config_dict, embedding_size=16)), dataset)
    stamp.item_embedding.weight.data.normal_()  # away from STAMP's near-zero init, padding row kept at 0
    stamp.item_embedding.weight.data[0] = 0
    encoder = STAMPEncoder(None, 16)
    encoder.load_state_dict({k: v for k, v in stamp.state_dict().items() if not k.startswith("item_embedding")})
    item_seq, item_seq_len = batch["item_id_list"], batch["item_length"]
    ids, context = encoder.prepare(item_seq)
    ours = encoder(context, item_seq_len, stamp.item_embedding(ids).unsqueeze(0))[0]
    torch.testing.assert_close(ours, stamp.forward(item_seq, item_seq_len))
    # a padding row that is not zero (an adapted view's) changes nothing: padding is masked
    shifted = stamp.item_embedding(ids) + (item_seq == 0).unsqueeze(-1) * 5.0
    torch.testing.assert_close(encoder(context, item_seq_len, shifted.unsqueeze(0))[0], ours)
