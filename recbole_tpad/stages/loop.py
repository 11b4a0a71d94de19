"""The training loop every TPAD stage shares (adapters are saved by ``Backbone.save_adapter``).

A stage object provides ``title``, ``number``, ``schedule()`` (a list of ``(epoch, rows)`` batches,
fixed by the seed), ``parameters_to_train()``, ``training_loss(rows, step) -> (loss, parts)`` (it
may back-propagate independent terms itself and report their value as ``parts[SEPARATE]``),
``trainable_state()`` /
``load_trainable_state(state)``, ``save(folder)`` and optionally ``evaluate() -> dict`` (held-out
figures, logged and kept in the manifest); :func:`train_stage` runs it with AdamW,
gradient clipping, a resumable checkpoint every ``checkpoint_steps`` steps, a progress bar per
epoch and a per-epoch loss breakdown in the log, then commits the result atomically.

In a distributed run the loop is data-parallel: every rank starts from rank 0's weights and
computes the loss of its :func:`~recbole_tpad.distributed.shard` of every batch; the gradients are
averaged over the ranks before clipping and the step, as DDP does, so every rank holds the same
weights; rank 0 alone writes checkpoints, the held-out figures and the result. The logged losses
are the ranks' mean.

Gradient convention of a distributed step: ``all_reduce_gradients`` **averages**, so a stage whose
losses are of the whole global batch (a token mean over all the batch's answer tokens, InfoNCE
with every rank's rows as negatives) has each rank back-propagate ``world_size`` times the
gradient of the batch's loss through its own rows: ``distributed.batch_mean`` (a sum over the
rank's elements, divided by the batch's count, times ``world_size``) and
``distributed.gather_batch`` (every rank's rows in the batch's order; the gradient back to the
local rows, times ``world_size``) do so. The averaged gradients are then those of one process on
the whole batch, and the stage trains like one process within float tolerance (stage 1a, stage 1
and stage 2: ``tests/distributed``). Such a stage sets ``batch_global = True``: its ``training_loss``
takes part in collectives, so every rank calls it at every step, also with no rows (a batch smaller
than the world). A stage without it computes the mean loss of its own shard, and a rank with no rows
skips the step's loss; the average of the shards' gradients is then not the batch's gradient where
the loss is not a per-row mean over equal shards. Every TPAD stage now sets it.
"""

import time
from collections import defaultdict
from logging import getLogger

import torch
from tqdm import tqdm

from recbole.utils import set_color

from recbole_tpad.distributed import (
    all_reduce_gradients,
    broadcast_parameters,
    is_main_process,
    mean_over_ranks,
    shard,
    write_once,
)

SEPARATE = "separately_backpropagated"  # parts key: loss already back-propagated inside training_loss


def save_safetensors(module_state, path):
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in module_state.items()}, str(path))


def load_safetensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


# ---- trainable state for checkpoints -------------------------------------------------------------
class TrainableStateMixin:
    """``trainable_state`` / ``load_trainable_state`` for a stage with ``_named_trainable()`` and ``title``."""

    def trainable_state(self):
        return named_state(self._named_trainable())

    def load_trainable_state(self, state):
        load_named_state(self._named_trainable(), state, self.title)


def named_state(named_parameters):
    """``{name: tensor}`` copies of trainable tensors, for checkpoints."""
    return {name: p.detach().cpu().clone() for name, p in named_parameters}


def load_named_state(named_parameters, state, what):
    params = dict(named_parameters)
    if set(params) != set(state):
        raise ValueError(f"checkpoint of {what} does not match: {sorted(set(params) ^ set(state))[:3]}")
    for name, value in state.items():  # validate everything before copying anything
        if params[name].shape != value.shape:
            raise ValueError(f"checkpoint of {what}: {name} has shape {tuple(value.shape)}, "
                             f"expected {tuple(params[name].shape)}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


# ---- the loop ---------------------------------------------------------------------------------------
def check_finite(loss, stage, step):
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{stage.title}: loss is {loss.item()} at step {step}; lower the learning rate "
                                 f"(stage{stage.number}_learning_rate) or the loss weights")


def train_stage(stage, store, learning_rate, grad_clip, checkpoint_steps, show_progress=True):
    """Train ``stage`` and commit its result to ``store``; resume from a valid checkpoint.

    Returns:
        dict: the committed manifest (with ``epoch_losses`` and ``seconds``); ``None`` on the ranks
        other than 0 of a distributed run.
    """
    logger = getLogger()
    schedule = stage.schedule()
    total = len(schedule)
    parameters = list(stage.parameters_to_train())
    for parameter in parameters:  # adapters loaded or added while another was active may come back frozen
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    start, sums, counts, elapsed = 0, defaultdict(float), defaultdict(int), 0.0
    resumed = store.load_checkpoint(total)
    if resumed is not None:
        start, state = resumed
        try:
            stage.load_trainable_state(state["trainable"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            sums.update(state["sums"])
            counts.update(state["counts"])
            elapsed = float(state["elapsed"])
            logger.info(set_color(f"{stage.title}: resuming at step {start}/{total}", "yellow"))
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            logger.warning(f"{stage.title}: checkpoint does not fit ({e}); the stage restarts")
            start, sums, counts, elapsed = 0, defaultdict(float), defaultdict(int), 0.0
            optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    epoch_losses = dict(state.get("epoch_losses", {})) if resumed is not None and start > 0 else {}
    broadcast_parameters(parameters)  # every rank starts from rank 0's weights
    batch_global = getattr(stage, "batch_global", False)
    epochs = sorted({epoch for epoch, _ in schedule})
    clock = time.perf_counter()
    stage.train()
    for epoch in epochs:
        steps = [s for s in range(total) if schedule[s][0] == epoch]
        todo = [s for s in steps if s >= start]
        if not todo:
            continue
        bar = tqdm(todo, total=len(steps), initial=len(steps) - len(todo), ncols=100, disable=not show_progress,
                   desc=set_color(f"{stage.title} {epoch:>3}", "pink"))
        for step in bar:
            optimizer.zero_grad(set_to_none=True)
            rows = shard(schedule[step][1])  # the whole batch outside a distributed run
            if len(rows) or batch_global:
                loss, parts = stage.training_loss(rows, step)
            else:
                loss, parts = torch.zeros(()), {}
            check_finite(loss, stage, step)
            if loss.requires_grad:
                loss.backward()
            all_reduce_gradients(parameters)  # every rank steps with the mean of the ranks' gradients
            separate = parts.pop(SEPARATE, 0.0)
            parts = mean_over_ranks(dict(parts, loss=loss.item() + separate))  # the batch's loss for batch_global
            total_loss = parts.pop("loss")
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
            optimizer.step()
            for key, value in dict(parts, loss=total_loss).items():
                sums[f"{epoch}/{key}"] += float(value)
                counts[f"{epoch}/{key}"] += 1
            if show_progress:
                bar.set_postfix(loss=f"{total_loss:.4f}")
            done = step + 1
            if checkpoint_steps and done % checkpoint_steps == 0 and done < total and is_main_process():
                store.save_checkpoint(done, total, {
                    "trainable": stage.trainable_state(), "optimizer": optimizer.state_dict(),
                    "rng": torch.get_rng_state(), "sums": dict(sums), "counts": dict(counts),
                    "elapsed": elapsed + time.perf_counter() - clock, "epoch_losses": epoch_losses,
                })
        breakdown = {k.split("/", 1)[1]: sums[k] / counts[k] for k in sums if k.startswith(f"{epoch}/")}
        epoch_losses[str(epoch)] = breakdown
        text = ", ".join(f"{k}: {v:.4f}" for k, v in sorted(breakdown.items()))
        logger.info(set_color(f"{stage.title} epoch {epoch}", "green") + f" [{text}]")
    stage.eval()
    seconds = elapsed + time.perf_counter() - clock
    info = {"epoch_losses": epoch_losses, "seconds": round(seconds, 2), "steps": total}
    evaluate = getattr(stage, "evaluate", None) if is_main_process() else None
    if evaluate is not None:  # held-out figures, on data the stage did not train on
        clock = time.perf_counter()
        info["heldout"] = evaluate()
        info["heldout_seconds"] = round(time.perf_counter() - clock, 2)
        text = ", ".join(f"{k}: {v}" for k, v in info["heldout"].items())
        logger.info(set_color(f"{stage.title} held-out", "green") + f" [{text}]")
    manifest = write_once(store.commit, stage.save, info=info)
    logger.info(set_color(f"{stage.title} done", "green") + f" in {seconds:.1f} s, saved to {store.folder}")
    return manifest

