"""What each rank of the distributed tests runs (importable by the processes torch spawns)."""

import os
import signal

from recbole_tpad.distributed import get_rank


def train_and_test(model, dataset, config_dict):
    """One rank of ``run_recbole_tpad``; rank 0 returns what the test compares."""
    from recbole_tpad.quick_start import run_recbole_tpad

    run = run_recbole_tpad(model, dataset, config_dict=config_dict)
    return {"test_result": dict(run["test_result"]), "valid_result": dict(run["valid_result"]),
            "saved_model_file": run["trainer"].saved_model_file}


def train_with_fault(fault, model, dataset, config_dict):
    """``train_and_test`` where rank 1 is killed (``fault='kill'``) or raises (``'raise'``) in its second epoch."""
    from recbole.trainer import Trainer

    train_epoch = Trainer._train_epoch

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        if get_rank() == 1 and epoch_idx == 1:
            if fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected fault in epoch 1")
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    Trainer._train_epoch = _train_epoch
    return train_and_test(model, dataset, config_dict)


def wait_for(pattern, root, timeout_s=60):
    """Wait (at most ``timeout_s``) until a file matching ``pattern`` exists under ``root``."""
    import time
    from pathlib import Path

    deadline = time.monotonic() + timeout_s
    while not list(Path(root).rglob(pattern)) and time.monotonic() < deadline:
        time.sleep(0.1)


def train_tpad_killed_in_stage2(kill_step, model, dataset, config_dict):
    """``train_and_test`` where rank 1 is SIGKILLed at stage-2 step ``kill_step`` (``None``: never), once
    rank 0 has written the checkpoint before that step; rank 0 also returns the stage-2 steps it trained."""
    from recbole_tpad.stages.transition_distillation import TransitionDistillation

    training_loss, steps = TransitionDistillation.training_loss, []

    def _training_loss(self, rows, step):
        if get_rank() == 1 and step == kill_step:
            # rank 0 writes it after the previous step's all-reduce, while this rank goes on: a kill before it
            # is written would leave nothing to resume (the launcher stops rank 0 at once)
            wait_for("distillation-*.partial/checkpoint.pt", config_dict["feature_cache_dir"])
            os.kill(os.getpid(), signal.SIGKILL)
        steps.append(step)
        return training_loss(self, rows, step)

    TransitionDistillation.training_loss = _training_loss
    return dict(train_and_test(model, dataset, config_dict), stage2_steps=steps)


def train_linear_on_shards(config_dict, steps=3):
    """A linear model trained ``steps`` AdamW steps on the same batch of 8 rows, each rank on its
    share (``shard``), gradients all-reduced as TPAD's stage loop does; returns the weights."""
    import torch

    from recbole_tpad import distributed

    if "local_rank" in config_dict:
        distributed.init_device(dict(config_dict, gpu_id=""))
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x, y = torch.randn(8, 4), torch.randn(8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    rows = distributed.shard(torch.arange(8))
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x[rows]).squeeze(1), y[rows]).backward()
        distributed.all_reduce_gradients(model.parameters())
        optimizer.step()
    return [p.detach().flatten().tolist() for p in model.parameters()]  # no tensors through the result queue


def train_stage1(config_dict):
    """TPAD's stage 1a (projector) and stage 1 (adapter ``K``) as the pipeline runs them, on this rank's
    shares of every batch; rank 0 returns the stages' manifests (their logged losses)."""
    import torch
    from recbole.data import create_dataset

    from recbole_tpad.quick_start import load_config
    from recbole_tpad.stages.pipeline import StagePipeline

    config = load_config("GRU4Rec", "tiny", config_dict=config_dict)  # opens the process group of a rank
    pipeline = StagePipeline(config, create_dataset(config), show_progress=False)
    with torch.random.fork_rng():
        torch.manual_seed(pipeline.seed)
        backbone, items = pipeline._backbone_and_items()
        pipeline._projector(backbone, items)
        pipeline._stage1(backbone, pipeline._item_states(backbone, items))
    return {"projector": pipeline.store_projector.manifest(), "knowledge": pipeline.store1.manifest()}


def train_stage2(config_dict):
    """TPAD's stage 2 as the pipeline runs it, on this rank's shares of every batch; the earlier stages
    (projector, item states, adapter ``K``) are loaded from the cache, so that stage 2 starts from the
    same weights and random state in every run. Rank 0 returns the stage's manifest (its logged losses)."""
    import torch
    from recbole.data import create_dataset, data_preparation

    from recbole_tpad.quick_start import load_config
    from recbole_tpad.stages.pipeline import StagePipeline

    config = load_config("GRU4Rec", "tiny", config_dict=config_dict)  # opens the process group of a rank
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    pipeline = StagePipeline(config, dataset, train._dataset, show_progress=False)
    assert pipeline.store_states.is_complete() and pipeline.store1.is_complete(), "train the earlier stages first"
    with torch.random.fork_rng():
        torch.manual_seed(pipeline.seed)
        backbone, items = pipeline._backbone_and_items()
        pipeline._projector(backbone, items)
        states = pipeline._item_states(backbone, items)
        pipeline._stage1(backbone, states)
        pipeline._stage2(backbone, states)
    return {"distillation": pipeline.store2.manifest()}


def batch_global_gradients(config_dict):
    """The gradients of a toy loss of the whole batch computed from this rank's ``shard`` with
    ``batch_mean`` and ``gather_batch``, all-reduced as TPAD's stage loop does, and the loss terms' values;
    for a batch of 5 rows and one of 1 row."""
    import torch

    from recbole_tpad import distributed
    from recbole_tpad.stages.mi_estimators import info_nce

    if "local_rank" in config_dict:
        distributed.init_device(dict(config_dict, gpu_id=""))
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, mask, keep = torch.randn(5, 6, 4), torch.rand(5, 6) > 0.4, torch.tensor([True, False, True, True, True])
    mask[1] = False  # a row without tokens
    out = []
    for batch in (5, 1):
        model.zero_grad()
        rows = distributed.shard(torch.arange(batch))
        hidden = model(x[rows])  # [b, 6, 3]
        token_mask = mask[rows]
        term, mean = distributed.batch_mean(hidden[token_mask].pow(2).sum(), int(token_mask.sum()))
        tokens = distributed.gather_batch(hidden[token_mask], token_mask.sum(1))
        pick = torch.randperm(tokens.size(0), generator=torch.Generator().manual_seed(7))[:4]
        sampled = tokens[pick].pow(3).mean()
        kept = keep[rows].long().tolist()
        anchor = distributed.gather_batch(hidden.mean(1)[keep[rows]], kept)
        positive = distributed.gather_batch(hidden[:, 0][keep[rows]], kept)
        nce = info_nce(anchor, positive, 0.5) if anchor.size(0) >= 2 else torch.zeros(())
        loss = term + sampled + nce
        if loss.requires_grad:
            loss.backward()
        distributed.all_reduce_gradients(model.parameters())
        out += [p.grad.flatten().tolist() if p.grad is not None else [0.0] * p.numel() for p in model.parameters()]
        out.append([mean, sampled.item(), nce.item()])
    return out
