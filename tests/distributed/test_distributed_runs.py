"""Data-parallel runs on 2 CPU processes (gloo over 127.0.0.1): same metrics as one process, exact
evaluation, one writer, a dead rank ends the run."""

import time

import pytest
import torch

from recbole_tpad.distributed import DistributedError, launch, launch_keys
from tests.conftest import tiny_config, write_tiny_dataset
from tests.distributed.ranks import train_and_test, train_with_fault

# 61 sessions: the samplers of 2 ranks pad the 61 valid and test sessions with a repeated one
SESSIONS = 61
# the same global batches as one process (no shuffle, even batches), no dropout: the same weights
SAME_BATCHES = {"shuffle": False, "epochs": 2, "train_batch_size": 32, "dropout_prob": 0.0,
                "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0, "distributed_timeout": 60}


@pytest.fixture
def odd_dataset(tmp_path):
    root = tmp_path / "data"
    write_tiny_dataset(str(root), n_sessions=SESSIONS)
    return tiny_config(root, tmp_path, **SAME_BATCHES)


def two_ranks(function, args, config):
    return launch(function, args, dict(config, **launch_keys(2, {})), 2)


def evaluate_checkpoint(model, path):
    """A single-process evaluation of a checkpoint: its config, RecBole's loaders, evaluator (as load_data_and_model)."""
    from recbole.data import create_dataset, data_preparation

    from recbole_tpad.model.item_views import prepare_item_views
    from recbole_tpad.utils import get_model, get_trainer

    config = torch.load(path, weights_only=False)["config"]
    assert config["single_spec"] and "world_size" not in config.final_config_dict
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    prepare_item_views(config, train_data)
    trainer = get_trainer(config["MODEL_TYPE"], model)(config, get_model(model)(config, train_data._dataset))
    return dict(trainer.evaluate(test_data, model_file=path))


def test_nproc_2_on_the_command_line_matches_one_process_and_evaluates_exactly(odd_dataset, tmp_path, capfd):
    import csv

    import yaml

    import run_recbole_tpad as cli

    (tmp_path / "run.yaml").write_text(yaml.safe_dump(odd_dataset))
    results = tmp_path / "two.csv"
    assert cli.main(["--dataset=tiny", f"--config_files={tmp_path / 'run.yaml'}", "--compare=GRU4Rec", "--nproc=2",
                     f"--results_file={results}"]) == 0
    assert capfd.readouterr().out.count("| GRU4Rec |") == 1  # rank 0 alone prints the table
    with open(results, newline="") as f:
        (row,) = list(csv.DictReader(f))
    (checkpoint,) = [p for p in (tmp_path / "saved").glob("*.pth")  # rank 1 writes none
                     if not p.name.endswith(".sidecar.pth")]
    assert len(list((tmp_path / "saved").glob("*.sidecar.pth"))) == 1
    assert len(list((tmp_path / "log").rglob("*.log"))) == 1  # nor a log
    one = train_and_test("GRU4Rec", "tiny", odd_dataset)
    for metric, value in one["test_result"].items():
        assert float(row[metric]) == pytest.approx(value, abs=1e-3), metric
    # exact: the distributed test metrics are those of one process evaluating the same checkpoint
    exact = evaluate_checkpoint("GRU4Rec", checkpoint)
    assert {metric: float(row[metric]) for metric in exact} == exact


def test_kdsr_on_two_ranks_evaluates_exactly_and_prepares_its_caches_once(odd_dataset, tmp_path):
    config = dict(odd_dataset, feature_backbone="tiny-llama", feature_cache_dir=str(tmp_path / "cache"), epochs=1)
    two = two_ranks(train_and_test, ("KDSR", "tiny"), config)
    assert two["test_result"] == evaluate_checkpoint("KDSR", two["saved_model_file"])
    # one item-view cache and one teacher per view (text, image), complete, no temporaries
    caches = sorted(p.parent.name.split("-")[0] for p in tmp_path.rglob("manifest.json")
                    if p.parent.parent.name != "models")
    assert caches == ["correlation", "correlation", "views"]
    assert len(list((tmp_path / "saved" / "correlation").glob("*/codes.npz"))) == 2
    assert not list(tmp_path.rglob(".*tmp*"))


def test_a_rank_that_raises_ends_the_run_naming_it(odd_dataset):  # a killed rank: the TPAD test below
    start = time.perf_counter()
    with pytest.raises(DistributedError, match="rank 1 failed: RuntimeError: injected fault"):
        two_ranks(train_with_fault, ("raise", "GRU4Rec", "tiny"), odd_dataset)  # 2 epochs: fails in the second
    assert time.perf_counter() - start < 300  # bounded (the hang it guards against never ends), with room for a loaded machine


def test_a_distributed_fit_cut_off_resumes_from_its_train_state_to_the_uninterrupted_metrics(odd_dataset, tmp_path):
    config = dict(odd_dataset, epochs=3, shuffle=True)  # shuffled: the loaders' generators must resume too
    clean = two_ranks(train_and_test, ("GRU4Rec", "tiny"), config)
    config = dict(config, train_state_file=str(tmp_path / "state.pth"))
    with pytest.raises(DistributedError, match="injected fault"):  # rank 1 fails as epoch 1 starts
        two_ranks(train_with_fault, ("raise", "GRU4Rec", "tiny"), config)
    state = torch.load(tmp_path / "state.pth", weights_only=False)
    assert state["epoch"] == 0 and len(state["rng"]) == 2  # after epoch 0's validation, both ranks' generators
    resumed = two_ranks(train_and_test, ("GRU4Rec", "tiny"), config)
    assert resumed["test_result"] == clean["test_result"]
    assert resumed["valid_result"] == clean["valid_result"]


def test_busy_port_and_short_gpu_list_are_clear_errors(monkeypatch):
    import socket

    from recbole_tpad import distributed
    from recbole_tpad.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port={port}"):
            launch_keys(2, {"port": port})
        with pytest.raises(ConfigError, match=f"port={port} on 127.0.0.1 is busy"):  # a rank started otherwise
            distributed.init_device({"gpu_id": "", "local_rank": 0, "nproc": 1, "world_size": 1, "ip": "127.0.0.1",
                                     "port": port, "distributed_timeout": 10})
    assert not distributed.is_distributed()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # checked before any GPU is touched
    with pytest.raises(ConfigError, match="gpu_id='0' names 1 GPU"):
        distributed.init_device({"gpu_id": "0", "local_rank": 0, "nproc": 2})


@pytest.fixture
def text_dataset(tmp_path):
    """No photos: the item states depend on the frozen backbone alone (no trained projector)."""
    from tests.stages.stage_keys import STAGE_KEYS

    root = tmp_path / "data"
    write_tiny_dataset(str(root), n_sessions=SESSIONS, with_images=False)
    return tiny_config(root, tmp_path, **SAME_BATCHES, **STAGE_KEYS, views=["id", "text"])


def test_tpad_stages_sharded_data_parallel_one_writer_and_resumed_after_a_killed_rank(text_dataset, tmp_path):
    from safetensors.torch import load_file

    from tests.distributed.ranks import train_tpad_killed_in_stage2

    config = dict(text_dataset, feature_cache_dir=str(tmp_path / "two"), stage_checkpoint_steps=1)
    start = time.perf_counter()
    with pytest.raises(DistributedError, match="rank 1 died"):
        two_ranks(train_tpad_killed_in_stage2, (1, "TPAD", "tiny"), config)
    assert time.perf_counter() - start < 90
    assert list((tmp_path / "two").rglob("distillation-*.partial/checkpoint.pt"))  # rank 0 saved step 1
    two = two_ranks(train_tpad_killed_in_stage2, (None, "TPAD", "tiny"), config)
    assert two["stage2_steps"][0] == 1  # resumed after the checkpointed step, not from 0
    stages = {run: tmp_path / run / "stages" / "tiny" for run in ("one", "two")}
    names = sorted(p.name.split("-")[0] for p in stages["two"].iterdir())
    # one result each
    assert names == ["distillation", "knowledge", "projector", "representation", "states", "transition_head"]
    assert not list((tmp_path / "two").rglob("*.partial")) and not list((tmp_path / "two").rglob(".*tmp*"))
    assert two["test_result"] == evaluate_checkpoint("TPAD", two["saved_model_file"])
    # the item states, each rank computing its share of the items, gathered: those of one process
    train_and_test("TPAD", "tiny", dict(text_dataset, feature_cache_dir=str(tmp_path / "one")))
    states = {run: load_file(str(next(stages[run].glob("states-*")) / "item_states.safetensors")) for run in stages}
    for name, tensor in states["one"].items():
        assert torch.equal(states["two"][name], tensor), name


# stage 1 (and 1a) on unequal shares: batches of 3 items give the ranks 2 and 1 of them, and the last batch
# of each epoch 1 (rank 1 none). No LoRA dropout (its masks are drawn per rank) and fp32: under bf16 autocast
# the base's rounding depends on the shard's shape (see docs/distributed.md)
STAGE1 = {"stage1_batch_size": 3, "stage1_items_per_epoch": 16, "stage1_projector_items": 8, "stage1_epochs": 2,
          "feature_lora_dropout": 0.0, "feature_dtype": "fp32", "distributed_timeout": 60}
STAGE1_TOLERANCE = 1e-5  # largest weight difference, 2 processes against 1; measured 2e-7 (weights up to 0.18)


def test_stage1_on_two_ranks_trains_the_weights_of_one_process(tmp_path):
    """The same global batches on 1 and 2 processes: the same projector (stage 1a) and adapter K (stage 1)
    within float tolerance, the same logged losses: the losses are of the whole batch (token mean over
    every answer token, InfoNCE over every rank's items), not of each rank's share."""
    from safetensors.torch import load_file

    from tests.distributed.ranks import train_stage1
    from tests.stages.stage_keys import STAGE_KEYS

    root = tmp_path / "data"
    write_tiny_dataset(str(root))  # with photos: a projector to align, and L_itc
    config = tiny_config(root, tmp_path, **dict(STAGE_KEYS, **STAGE1))
    runs = {"one": train_stage1(dict(config, feature_cache_dir=str(tmp_path / "one")))}
    runs["two"] = two_ranks(train_stage1, (), dict(config, feature_cache_dir=str(tmp_path / "two")))
    assert set(runs["one"]["knowledge"]["epoch_losses"]["0"]) == {"gen_k", "itc", "loss"}  # both terms trained
    for stage in ("projector", "knowledge"):
        for epoch, losses in runs["one"][stage]["epoch_losses"].items():
            assert runs["two"][stage]["epoch_losses"][epoch] == pytest.approx(losses, rel=1e-5), (stage, epoch)
    for pattern in ("projector-*/projector.safetensors", "knowledge-*/adapter_K/adapter_model.safetensors"):
        one, two = ({name: load_file(str(path)) for name in ("one", "two")
                     for path in (tmp_path / name / "stages" / "tiny").glob(pattern)}[name] for name in ("one", "two"))
        assert one.keys() == two.keys() and one
        difference = max(float((one[k] - two[k]).abs().max()) for k in one)
        print(f"{pattern}: largest difference {difference:.3g}, largest weight "
              f"{max(float(v.abs().max()) for v in one.values()):.3g}")
        assert difference <= STAGE1_TOLERANCE, (pattern, difference)


def test_batch_mean_and_gather_batch_give_the_gradient_of_the_whole_batch():
    """A toy loss with the three batch-level terms of TPAD's stages (a token mean, token rows sampled by a
    generator seeded per step, InfoNCE over the rows a filter keeps) from each rank's shard: the averaged
    gradients and the values are those of one process; also for a batch of one row (rank 1 holds none)."""
    from tests.distributed.ranks import batch_global_gradients

    one = batch_global_gradients({})
    two = two_ranks(batch_global_gradients, (), {"distributed_timeout": 30})
    for a, b in zip(one, two):
        assert b == pytest.approx(a, abs=1e-6)


def test_all_reduced_gradients_of_the_shards_train_like_the_whole_batch():
    from tests.distributed.ranks import train_linear_on_shards

    one = train_linear_on_shards({})
    two = two_ranks(train_linear_on_shards, (), {"distributed_timeout": 30})
    for a, b in zip(one, two):
        assert b == pytest.approx(a, abs=1e-6)


# stage 2 on unequal shares: batches of 3 training pairs give the ranks 2 and 1 of them (and 1 to 3 next items,
# shared out the same way), and the last batch of each epoch 1 (rank 1 none); fp32, no LoRA dropout (as stage 1)
STAGE2 = dict(STAGE1, stage1_items_per_epoch=8, stage1_epochs=1, stage2_batch_size=3, stage2_sessions_per_epoch=7,
              stage2_epochs=2)
STAGE2_TOLERANCE = 1e-5  # largest weight difference, 2 processes against 1; measured 2.7e-6 (weights up to 2.3),
# the former per-shard losses 5e-3


def test_stage2_on_two_ranks_trains_the_weights_of_one_process(tmp_path):
    """The same global batches on 1 and 2 processes, from the same cached stage 1: the same adapters T and K,
    transition head, AMIE and HMIE heads within float tolerance, and the same logged losses. Every loss is of
    the whole batch: token means over every rank's answer tokens (L_gen^T, L_gen^K), L_next's mean over every
    row, the next items of the whole batch (shared out for the K and T passes, their features gathered for
    AMIE's in-batch negatives and HMIE's item level) and HMIE's token samples drawn from every rank's tokens."""
    import shutil

    from safetensors.torch import load_file

    from tests.distributed.ranks import train_stage1, train_stage2
    from tests.stages.stage_keys import STAGE_KEYS

    root = tmp_path / "data"
    write_tiny_dataset(str(root))  # with photos: HMIE's token level has a visual view
    config = tiny_config(root, tmp_path, **dict(STAGE_KEYS, **STAGE2))
    train_stage1(dict(config, feature_cache_dir=str(tmp_path / "base")))  # stage 1 once, for both runs
    for name in ("one", "two"):
        shutil.copytree(tmp_path / "base", tmp_path / name)
    runs = {"one": train_stage2(dict(config, feature_cache_dir=str(tmp_path / "one")))}
    runs["two"] = two_ranks(train_stage2, (), dict(config, feature_cache_dir=str(tmp_path / "two")))
    losses = runs["one"]["distillation"]["epoch_losses"]
    assert {"gen_t", "next", "gen_k", "hmie", "amie"} <= set(losses["0"]), losses  # every term trained
    for epoch, values in losses.items():
        assert runs["two"]["distillation"]["epoch_losses"][epoch] == pytest.approx(values, rel=1e-5), epoch
    folders = {name: next((tmp_path / name / "stages" / "tiny").glob("distillation-*")) for name in ("one", "two")}
    files = ("adapter_K/adapter_model.safetensors", "adapter_T/adapter_model.safetensors",
             "alignment_heads.safetensors")
    for path in files:
        one, two = (load_file(str(folders[name] / path)) for name in ("one", "two"))
        assert one.keys() == two.keys() and one
        if path == "alignment_heads.safetensors":  # the heads of every term: transition head, AMIE, both HMIEs
            assert {k.split(".")[0] for k in one} == {"amie", "hmie", "head"}
        difference = max(float((one[k] - two[k]).abs().max()) for k in one)
        print(f"{path}: largest difference {difference:.3g}, largest weight "
              f"{max(float(v.abs().max()) for v in one.values()):.3g}")
        assert difference <= STAGE2_TOLERANCE, (path, difference)


def test_stage2_without_l_next_on_two_ranks_reports_its_heldout_figures(tmp_path):
    """Without L_next the bank and the head are first needed by the held-out figures, which rank 0 alone
    computes: it prepares them without a collective (a broadcast there waits for ranks that never come)."""
    from tests.distributed.ranks import train_stage1, train_stage2
    from tests.stages.stage_keys import STAGE_KEYS

    root = tmp_path / "data"
    write_tiny_dataset(str(root))
    config = tiny_config(root, tmp_path, **dict(STAGE_KEYS, **STAGE2, stage2_next_weight=0.0),
                         feature_cache_dir=str(tmp_path / "cache"))
    train_stage1(config)
    manifest = two_ranks(train_stage2, (), config)["distillation"]
    assert "next" not in manifest["epoch_losses"]["0"]
    assert {"heldout_mrr_untrained", "heldout_mrr_head", "amie_recall@1"} <= set(manifest["heldout"])
