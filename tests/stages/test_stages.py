"""TPAD's stages on a tiny random backbone: losses fall, caching skips and rebuilds, resume after a crash."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recbole_tpad.errors import ConfigError
from recbole_tpad.features.config import FeaturesConfig
from recbole_tpad.settings import yaml_loader
from recbole_tpad.stages import item_states as item_states_module
from recbole_tpad.stages import loop, transition_distillation
from recbole_tpad.stages.config import _KEYS, StageConfig
from recbole_tpad.stages.pipeline import StagePipeline

TRAIN_STAGE = loop.train_stage
ENCODE_ITEM_VIEWS = item_states_module.encode_item_views
from tests.stages.stage_keys import STAGE_KEYS


def _setup(tiny_dataset, tmp_path, **overrides):
    from recbole.data import create_dataset, data_preparation

    from recbole_tpad.quick_start import load_config

    _, config_dict = tiny_dataset
    config_dict = dict(config_dict, feature_cache_dir=str(tmp_path / "cache"), **STAGE_KEYS)
    config_dict.update(overrides)
    config = load_config("GRU4Rec", "tiny", config_dict=config_dict)
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    return config, dataset, train._dataset


def _pipeline(tiny_dataset, tmp_path, **overrides):
    config, dataset, train = _setup(tiny_dataset, tmp_path, **overrides)
    return StagePipeline(config, dataset, train, show_progress=False)


# ---- config ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [k for k, (_, kind) in _KEYS.items() if kind == "weight"])
def test_negative_weights_are_rejected_naming_the_key(key):
    with pytest.raises(ConfigError, match=key):
        StageConfig.from_config({key: -0.5})


@pytest.mark.parametrize("key,value", [("stage1_batch_size", 0), ("stage_temperature", 0.0),
                                       ("stage_amie", "yes"), ("stage2_epochs", 1.5)])
def test_bad_values_are_rejected_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        StageConfig.from_config({key: value})


def test_yaml_block_documents_every_key_and_holds_its_default():
    path = Path(__file__).resolve().parents[2] / "properties" / "model" / "TPAD.yaml"
    text = path.read_text()
    block = text[text.index("# ---- BEGIN TPAD stages"):text.index("# ---- END TPAD stages")]
    values = yaml.load(block, Loader=yaml_loader())
    assert set(values) == set(_KEYS)
    default = StageConfig.from_config({})  # every value from the YAML
    for key, (name, _) in _KEYS.items():
        assert values[key] == getattr(default, name), key
    for line in block.splitlines():
        if line and not line.startswith("#"):
            assert "# (" in line, f"undocumented key: {line}"


def test_ablation_switches_zero_their_terms():
    s = StageConfig.from_config({"stage_generation_task": False, "stage_amie": False, "stage_hmie": False,
                                 "stage_distillation": False})
    assert (s.stage1_gen, s.gen_t, s.gen_k, s.amie_weight, s.hmie_weight, s.run_stage2) == (0, 0, 0, 0, 0, False)


# ---- one stage step lowers its loss -----------------------------------------------------------------
def _repeat_batch(stage, rows, steps=6, lr=5e-3):
    params = [p for p in stage.parameters_to_train() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss, parts = stage.training_loss(rows, 0)
        loss.backward()
        optimizer.step()
        losses.append(loss.item() + parts.get(loop.SEPARATE, 0.0))
    return losses


def _stages_on_states(tiny_dataset, tmp_path, **overrides):
    from recbole_tpad.features import build_backbone, load_items
    from recbole_tpad.stages.item_states import compute_item_states

    config, dataset, train = _setup(tiny_dataset, tmp_path, **overrides)
    backbone = build_backbone(config)
    items = load_items(config, dataset, FeaturesConfig.from_config(config))
    settings = StageConfig.from_config(config)
    states = compute_item_states(backbone, items, settings.lora_layers or backbone.num_layers, settings, 8, False)
    return backbone, items, states, settings, train


def test_stage_steps_lower_their_losses_on_a_tiny_batch(tiny_dataset, tmp_path):
    from recbole_tpad.stages.knowledge_acquisition import KnowledgeAcquisition
    from recbole_tpad.stages.session_prompts import training_sessions
    from recbole_tpad.stages.transition_distillation import TransitionDistillation

    torch.manual_seed(0)
    backbone, items, states, settings, train = _stages_on_states(tiny_dataset, tmp_path, feature_lora_dropout=0.0)
    stage1 = KnowledgeAcquisition(backbone, states, settings, heldout=[])
    losses = _repeat_batch(stage1, stage1.pool[:8])
    assert losses[-1] < losses[0] - 0.1, losses
    stage2 = TransitionDistillation(backbone, states, training_sessions(train), settings, heldout=[])
    losses = _repeat_batch(stage2, list(range(8)))
    assert losses[-1] < losses[0] - 0.1, losses


def test_top_layers_on_cached_states_equal_the_whole_model(tiny_dataset, tmp_path):
    from recbole_tpad.stages.item_states import item_inputs

    backbone, items, states, settings, _ = _stages_on_states(tiny_dataset, tmp_path, feature_dtype="fp32")
    rows = [1, 2, 3]
    whole = backbone(item_inputs(backbone, items, rows, settings))
    inputs = states.batch(rows, backbone.device)
    top = backbone.upper(inputs["states"], inputs["attention_mask"], inputs["position_ids"], states.top_layers)
    summary = top[torch.arange(len(rows)), inputs["summary_index"]]
    assert torch.allclose(summary, whole.summary, atol=1e-5)


def test_item_states_stopped_halfway_resume_from_their_checkpoint_to_the_same_tensors(tiny_dataset, tmp_path, monkeypatch):
    from recbole_tpad.features import build_backbone, load_items
    from recbole_tpad.stages.item_states import compute_item_states
    from recbole_tpad.store import CacheEntry

    config, dataset, _ = _setup(tiny_dataset, tmp_path, feature_dtype="fp32")
    backbone = build_backbone(config)
    items = load_items(config, dataset, FeaturesConfig.from_config(config))
    settings = StageConfig.from_config(config)
    top = settings.lora_layers or backbone.num_layers
    clean = compute_item_states(backbone, items, top, settings, 4, False)  # 8 batches of 30 items

    entry = CacheEntry(tmp_path / "stages", "states", {"test": 1})
    monkeypatch.setattr(CacheEntry, "checkpoint_every_s", 0)  # a checkpoint after every batch
    lower_states, calls = backbone.lower_states, []

    def stops_in_fourth_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return lower_states(*args, **kwargs)

    monkeypatch.setattr(backbone, "lower_states", stops_in_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        compute_item_states(backbone, items, top, settings, 4, False, checkpoint=entry)
    assert entry.load_checkpoint(8)[0] == 3
    calls.clear()
    monkeypatch.setattr(backbone, "lower_states", lambda *a, **k: calls.append(1) or lower_states(*a, **k))
    resumed = compute_item_states(backbone, items, top, settings, 4, False, checkpoint=entry)
    assert len(calls) == 8 - 3  # only the batches after the checkpoint
    assert resumed.tensors.keys() == clean.tensors.keys()
    for name, tensor in clean.tensors.items():
        assert torch.equal(resumed.tensors[name], tensor), name


# ---- caching -------------------------------------------------------------------------------------------
def _no_training(*args, **kwargs):
    raise AssertionError("a cached stage was trained again")


def test_pipeline_caches_and_rebuilds_only_what_changed(tiny_dataset, tmp_path, monkeypatch):
    views = _pipeline(tiny_dataset, tmp_path).run()
    assert set(views.views) == {"text", "image", "fused", "successor", "successor_target"}
    assert views.views["fused"].shape == (31, 64)
    successor = {name: views.views[name] for name in ("successor", "successor_target")}
    for view in successor.values():  # T's transition head's unit rows, the padding item zero
        norms = np.linalg.norm(view, axis=1)
        assert view.shape == (31, 64) and norms[0] == 0 and np.allclose(norms[1:], 1, atol=1e-5)
    assert views.manifest["adapter"] == "K"
    first = _pipeline(tiny_dataset, tmp_path)
    assert first.store1.is_complete() and first.store2.is_complete()
    # each stage reports held-out figures on data it did not train on
    heldout1 = first.store1.manifest()["heldout"]
    assert heldout1["heldout_items"] > 0 and heldout1["heldout_answer_ce_trained"] > 0
    heldout2 = first.store2.manifest()["heldout"]
    assert heldout2["heldout_pairs"] > 0
    for name in ("untrained", "trained", "popularity"):
        assert 0 <= heldout2[f"heldout_recall@10_{name}"] <= 1 and 0 < heldout2[f"heldout_mrr_{name}"] <= 1
    assert views.manifest["cache_tag"] == first.final_hash
    # a cached stage still reports the seconds its training took, from its manifest
    figures = first.stage_figures()
    for number, store in ((1, first.store1), (2, first.store2)):
        assert figures[f"stage{number}_train_s"] == store.manifest()["seconds"] > 0
    assert figures["stage2_heldout_pairs"] == heldout2["heldout_pairs"]
    # valid caches: nothing trains, nothing is encoded again
    monkeypatch.setattr(loop, "train_stage", _no_training)
    again = first.run()
    assert again.folder == views.folder and again.successor_file is not None
    assert all(np.array_equal(again.views[name], view) for name, view in successor.items())
    # the views' pointer gone: the stages still load from their caches, only encoding reruns, and the
    # successor targets come from stage 2's bank (the frozen base's features), not from a pass of their own
    encoded = []

    def recording(backbone, item_states, adapter, *args, **kwargs):
        encoded.append(adapter)
        return ENCODE_ITEM_VIEWS(backbone, item_states, adapter, *args, **kwargs)

    monkeypatch.setattr(item_states_module, "encode_item_views", recording)
    shutil.rmtree(next(Path(first.root).glob("representation-*")))
    remade = _pipeline(tiny_dataset, tmp_path).run()
    assert remade.folder == views.folder and "T" in encoded and None not in encoded
    assert all(np.allclose(remade.views[name], view, atol=1e-5) for name, view in successor.items())
    # without the bank they are encoded from the frozen base, and the same
    encoded.clear()
    monkeypatch.setattr(transition_distillation, "cached_head_fit", lambda head_store: None)
    shutil.rmtree(next(Path(first.root).glob("representation-*")))
    encoded_again = _pipeline(tiny_dataset, tmp_path).run()
    assert None in encoded
    assert all(np.allclose(encoded_again.views[name], view, atol=1e-5) for name, view in successor.items())
    # a stage-2 key changes: stage 1 is reused, stage 2 retrains, new views
    calls = []

    def counting(stage, *args, **kwargs):
        calls.append(stage.number)
        return TRAIN_STAGE(stage, *args, **kwargs)

    monkeypatch.setattr(loop, "train_stage", counting)
    changed = _pipeline(tiny_dataset, tmp_path, stage2_amie_weight=0.25)
    assert changed.store1.key == first.store1.key and changed.store2.key != first.store2.key
    new_views = changed.run()
    assert calls == [2]
    assert new_views.folder != views.folder
    # a damaged result is not used
    adapter = changed.store2.folder / "adapter_K" / "adapter_model.safetensors"
    data = bytearray(adapter.read_bytes())
    data[-4:] = bytes(b ^ 0xFF for b in data[-4:])
    adapter.write_bytes(bytes(data))
    assert not changed.store2.is_complete()


def test_a_shuffle_of_same_day_items_gets_its_own_stage_two(tiny_dataset, tmp_path):
    # stage 2 trains on the training split, which the shuffle changes (a file-order training pair can be a
    # shuffled run's test target); stage 1 and the item states do not read the split
    file_order = _pipeline(tiny_dataset, tmp_path, tie_order="file")
    shuffles = [_pipeline(tiny_dataset, tmp_path, tie_order="shuffle", tie_seed=seed) for seed in (0, 1)]
    assert file_order.store2.key == _pipeline(tiny_dataset, tmp_path).store2.key
    assert len({file_order.store2.key} | {pipeline.store2.key for pipeline in shuffles}) == 3
    assert {pipeline.store1.key for pipeline in shuffles} == {file_order.store1.key}


def test_interrupted_stage_leaves_no_result_and_resumes_to_the_same_adapters(tiny_dataset, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from recbole_tpad.stages.transition_distillation import TransitionDistillation

    keys = dict(stage2_sessions_per_epoch=32, stage_checkpoint_steps=1)
    reference = _pipeline(tiny_dataset, tmp_path / "ref", **keys)
    reference.run()
    crashing = _pipeline(tiny_dataset, tmp_path / "crash", **keys)
    original = TransitionDistillation.training_loss
    seen, crashed = [], []

    def crash_at_step_2(self, rows, step):
        seen.append(step)
        if step == 2 and not crashed:
            crashed.append(step)
            raise RuntimeError("injected crash")
        return original(self, rows, step)

    monkeypatch.setattr(TransitionDistillation, "training_loss", crash_at_step_2)
    with pytest.raises(RuntimeError, match="injected crash"):
        crashing.run()
    assert crashing.store1.is_complete()
    assert not crashing.store2.folder.exists() and not crashing.store2.is_complete()
    step, _ = crashing.store2.load_checkpoint(total_steps=4)
    assert step == 2
    seen.clear()
    _pipeline(tiny_dataset, tmp_path / "crash", **keys).run()
    assert seen == [2, 3]  # resumed, not restarted
    assert not crashing.store2.partial.exists()
    heldout = [pipeline.store2.manifest()["heldout"] for pipeline in (reference, crashing)]
    head = [{k: v for k, v in figures.items() if k.endswith("_head")} for figures in heldout]
    assert head[0] and head[0] == head[1]  # the head's figures of before the crash, from its entry
    for adapter in ("adapter_K", "adapter_T"):
        a = load_file(str(reference.store2.folder / adapter / "adapter_model.safetensors"))
        b = load_file(str(crashing.store2.folder / adapter / "adapter_model.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_stage_twos_that_differ_in_t_steps_share_one_fit_of_the_head(tiny_dataset, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from recbole_tpad.stages.transition_distillation import HEADS_FILE
    from recbole_tpad.stages.transition_head import TransitionHead

    first = _pipeline(tiny_dataset, tmp_path)
    first.run()
    assert first.store_head.is_complete()
    fits = []
    real_fit = TransitionHead.fit
    monkeypatch.setattr(TransitionHead, "fit", lambda self, *args: fits.append(1) or real_fit(self, *args))
    more = dict(stage2_sessions_per_epoch=32, stage2_amie_weight=0.25)  # another point of the learning curve
    reused = _pipeline(tiny_dataset, tmp_path, **more)
    assert reused.store_head.key == first.store_head.key and reused.store2.key != first.store2.key
    reused.run()
    assert fits == []  # the bank and the fitted head came from the entry
    names = ("adapter_K/adapter_model.safetensors", "adapter_T/adapter_model.safetensors", HEADS_FILE)
    kept = {name: load_file(str(reused.store2.folder / name)) for name in names}
    heldout = reused.store2.manifest()["heldout"]
    # the same stage 2 again without the entry (stage 1 cached in both): it fits the head, to the same result
    for folder in (reused.store2.folder, reused.store_head.folder, *Path(reused.root).glob("representation-*")):
        shutil.rmtree(folder)
    fresh = _pipeline(tiny_dataset, tmp_path, **more)
    fresh.run()
    assert fits == [1] and fresh.store_head.is_complete()
    for name in names:
        a, b = kept[name], load_file(str(fresh.store2.folder / name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert fresh.store2.manifest()["heldout"] == heldout
    # what the fit depends on changes its key; stage 1's settings do not
    assert _pipeline(tiny_dataset, tmp_path, stage2_head_epochs=2).store_head.key != first.store_head.key
    assert _pipeline(tiny_dataset, tmp_path, seed=7).store_head.key != first.store_head.key
    assert _pipeline(tiny_dataset, tmp_path, stage1_epochs=2).store_head.key == first.store_head.key


def test_stage_two_trains_alike_whether_stage_one_ran_in_this_process_or_was_loaded(tiny_dataset, tmp_path):
    from safetensors.torch import load_file

    together = _pipeline(tiny_dataset, tmp_path / "together")
    together.run()
    _pipeline(tiny_dataset, tmp_path / "apart", stage_distillation=False).run()  # stage 1 alone, cached
    apart = _pipeline(tiny_dataset, tmp_path / "apart")
    assert apart.store1.is_complete() and not apart.store2.is_complete()
    apart.run()
    for name in ("adapter_K/adapter_model.safetensors", "adapter_T/adapter_model.safetensors",
                 "alignment_heads.safetensors"):
        a, b = (load_file(str(pipeline.store2.folder / name)) for pipeline in (together, apart))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_a_checkpoint_of_another_schedule_or_a_torn_file_is_ignored(tmp_path):
    from recbole_tpad.stages.stage_cache import StageStore

    store = StageStore(tmp_path, "knowledge", {"a": 1})
    store.save_checkpoint(3, 10, {"x": torch.ones(2)})
    assert store.load_checkpoint(10)[0] == 3
    assert store.load_checkpoint(12) is None  # another schedule
    assert StageStore(tmp_path, "knowledge", {"a": 2}).load_checkpoint(10) is None  # another key
    (store.partial / "checkpoint.pt").write_bytes(b"torn")
    assert store.load_checkpoint(10) is None
    store.commit(lambda folder: (folder / "w.bin").write_bytes(b"1234"))
    assert store.is_complete() and not store.partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [store.folder.name]  # no temp folders left


def test_stage_two_without_the_training_split_fails_clearly(tiny_dataset, tmp_path):
    config, dataset, _ = _setup(tiny_dataset, tmp_path)
    with pytest.raises(ConfigError, match="training split"):
        StagePipeline(config, dataset, train_dataset=None, show_progress=False).run()


def test_saved_adapters_are_standard_peft_folders(tiny_dataset, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from recbole_tpad.features import build_backbone
    from recbole_tpad.testing import tiny_folder

    config, _, _ = _setup(tiny_dataset, tmp_path)
    backbone = build_backbone(config)
    backbone.add_adapter("K")
    with torch.no_grad():
        for p in backbone.adapter_parameters("K"):
            p.normal_()
    backbone.save_adapter("K", tmp_path / "adapter_K")
    assert sorted(p.name for p in (tmp_path / "adapter_K").iterdir()) == ["adapter_config.json",
                                                                         "adapter_model.safetensors"]
    # peft itself loads it onto a fresh copy of the base model, with the same weights
    base = AutoModelForCausalLM.from_pretrained(tiny_folder("tiny-llama", Path(config["feature_cache_dir"])))
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "adapter_K"), adapter_name="K")
    ours = {n.split("lora_")[-1] + n.split(".lora_")[0].split("model.")[-1]: p
            for n, p in backbone.adapter_named_parameters("K")}
    theirs = {n.split("lora_")[-1] + n.split(".lora_")[0].split("model.")[-1]: p
              for n, p in peft_model.named_parameters() if ".K." in n}
    assert ours.keys() == theirs.keys() and len(ours) > 0
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key])
    # and our loader restores it into another backbone
    other = build_backbone(config)
    other.load_adapter("K", tmp_path / "adapter_K")
    for a, b in zip(backbone.adapter_parameters("K"), other.adapter_parameters("K")):
        torch.testing.assert_close(a, b)


def test_lora_on_the_top_layers_only(tiny_dataset, tmp_path):
    from recbole_tpad.features import build_backbone
    from recbole_tpad.stages.knowledge_acquisition import ensure_adapter

    config, _, _ = _setup(tiny_dataset, tmp_path)
    backbone = build_backbone(config)
    assert backbone.lora_config(0).layers_to_transform is None  # every layer
    assert backbone.lora_config(1).layers_to_transform == [1]  # tiny-llama has layers 0 and 1
    ensure_adapter(backbone, "K", top_layers=1)
    ensure_adapter(backbone, "T", top_layers=0)
    top = [n for n, _ in backbone.adapter_named_parameters("K")]
    every = [n for n, _ in backbone.adapter_named_parameters("T")]
    assert top and all(".layers.1." in n and ".lora_" in n for n in top)
    assert {n.replace(".T.", ".K.") for n in every} > set(top) and any(".layers.0." in n for n in every)


@pytest.mark.parametrize("switches,stores", [
    ({"stage_distillation": False}, ["knowledge", "projector", "states"]),
    ({"stage_generation_task": False, "stage_amie": False, "stage_hmie": False},
     ["distillation", "knowledge", "projector", "states", "transition_head"]),
])
def test_ablation_switches_run_the_remaining_pipeline(tiny_dataset, tmp_path, switches, stores):
    pipeline = _pipeline(tiny_dataset, tmp_path, **switches)
    views = pipeline.run()
    assert views.manifest["cache_tag"] == pipeline.final_hash
    assert ("successor" in views.views) == switches.get("stage_distillation", True)  # T's views where stage 2 ran
    made = sorted(p.name.split("-")[0] for p in pipeline.root.iterdir() if not p.name.startswith("representation"))
    assert made == stores
    losses = json.loads((pipeline.store1.folder / "manifest.json").read_text())["epoch_losses"]
    if not switches.get("stage_generation_task", True):
        assert set(losses["0"]) == {"itc", "loss"}  # stage 1 keeps only the image-text term
        losses = json.loads((pipeline.store2.folder / "manifest.json").read_text())["epoch_losses"]
        assert set(losses["0"]) == {"next", "loss"}


@pytest.mark.parametrize("kind", ["tiny-llama", "tiny-qwen2-vl"])
def test_session_prompt_holds_the_last_items_whole_prompt_in_its_own_layout(tiny_dataset, tmp_path, kind):
    from recbole_tpad.stages.session_prompts import training_sessions
    from recbole_tpad.stages.transition_distillation import TransitionDistillation

    backbone, items, states, settings, train = _stages_on_states(tiny_dataset, tmp_path, feature_backbone=kind,
                                                                 feature_dtype="fp32")
    stage = TransitionDistillation(backbone, states, training_sessions(train), settings, heldout=[])
    sessions = stage.sessions
    row = int(np.flatnonzero(sessions.item_len.numpy() >= 2)[0])
    prefix = sessions.prefix(row, settings.session_items)
    inputs = stage.session_inputs([row], with_answers=True)
    last_states, last_positions = states.item_tokens(prefix[-1])
    start = stage.header.size(0) + len(prefix) - 1
    stop = start + last_states.size(0)
    assert int(inputs["state_index"][0]) == stop - 1  # t_s: the last item's summary position
    assert torch.equal(inputs["states"][0, start:stop], last_states.to(inputs["states"].dtype))
    positions = inputs["position_ids"] if inputs["position_ids"].dim() == 3 else inputs["position_ids"].unsqueeze(0)
    assert torch.equal(positions[:, 0, start:stop], last_positions + start)  # its own layout, shifted
    assert (positions[:, 0, stop] == positions[:, 0, start:stop].max() + 1).all()  # the footer follows
    title = inputs["labels"][0] != -100
    assert int(title.sum()) == int(states.title_states(int(sessions.target[row]))[1].numel())
    assert set(inputs["exclude"][:, 1].tolist()) == set(prefix) - {int(sessions.target[row])}
    loss, parts = stage.training_loss([row, row + 1], 0)
    assert torch.isfinite(loss) and "next" in parts
