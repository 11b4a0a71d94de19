# -*- coding: utf-8 -*-
r"""
Data-parallel runs on several processes, GPUs and nodes
########################################################

RecBole 1.2.1 trains data-parallel when its config holds ``local_rank`` (with ``nproc``,
``world_size``, ``ip``, ``port``, ``offset``): DDP around the model, a ``DistributedSampler`` in
every data loader, rank 0 saving checkpoints. That engine is reused as it is; this module adds what
it lacks:

- :func:`launch` starts ``nproc`` processes on this machine (``--nproc``, as RecBole's
  ``run(nproc=...)`` does); :func:`torchrun_keys` reads the ranks torchrun gives a process.
- :func:`init_device` opens the process group by device, NCCL on GPUs and gloo on CPUs, with a
  bounded timeout (``distributed_timeout``), once per process (``compat`` routes RecBole's
  ``Config._init_device`` here).
- :func:`gather_eval_rows` makes evaluation exact: every rank's per-session results are gathered, the
  sampler's padding dropped and the rows put back in the dataset's order, so RecBole's evaluator
  computes the metrics once, on every session once.
- :func:`main_process_first` and :func:`write_once` (one writer of a cache, the others read it),
  :func:`shard` and :func:`gather_item_rows` (items split across ranks, results gathered),
  :func:`broadcast_parameters` and :func:`all_reduce_gradients` (TPAD's stages, data-parallel outside DDP).
- :func:`batch_mean` and :func:`gather_batch`: a stage loss of the whole global batch computed by
  ranks that each hold a :func:`shard` of it (a token mean over the batch's tokens, in-batch
  negatives from every rank), so that the averaged gradients are those of one process.

Outside a distributed run every helper is the identity: rank 0 of a world of one.
"""

import datetime
import os
import socket
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist

from recbole_tpad.errors import ConfigError, PluginError

# RecBole's distributed keys (recbole.quick_start.run); a checkpoint's config is saved without them
DIST_KEYS = ("local_rank", "nproc", "world_size", "ip", "port", "offset")
DEFAULT_TIMEOUT_S = 1800  # torch's own default for gloo; `distributed_timeout` overrides it


class DistributedError(PluginError):
    """A rank of a distributed run failed, or the run could not start."""


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_distributed() else 0


def get_world_size():
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    return get_rank() == 0


def barrier():
    if is_distributed():
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj):
    """Every rank's ``obj``, in rank order."""
    if not is_distributed():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


@contextmanager
def main_process_first():
    """Rank 0 runs the block first (and writes what it caches); the other ranks run it after, and read."""
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


def write_once(write, *args, **kwargs):
    """Run ``write`` on rank 0 alone (the one writer of a file or cache); every rank returns once it is
    written. Rank 0 gets ``write``'s result, the others ``None``.

    Rank 0 writes only when every rank has arrived, so no rank can find the result on disk while
    deciding whether to make it (and skip the collective steps the others are in).
    """
    barrier()
    result = write(*args, **kwargs) if is_main_process() else None
    barrier()
    return result


def shard(rows):
    """This rank's share of ``rows``: every ``world_size``-th one, starting at its rank."""
    return rows[get_rank()::get_world_size()]


def gather_item_rows(arrays, rows):
    """Fill ``arrays`` (name -> array ``[N, ...]``, indexed by item row) with the ``rows`` every rank
    computed, this rank having filled its own; returns ``arrays``."""
    if not is_distributed():
        return arrays
    rows = np.asarray(rows, dtype=np.int64)
    for their_rows, values in all_gather_object((rows, {name: array[rows] for name, array in arrays.items()})):
        for name, array in arrays.items():
            array[their_rows] = values[name]
    return arrays


def broadcast_parameters(parameters):
    """Rank 0's values of ``parameters`` on every rank, as DDP does when it wraps a model: a stage's
    adapter created on each rank after unequal shares of random draws would start apart."""
    if is_distributed():
        with torch.no_grad():
            for p in parameters:
                dist.broadcast(p.data, src=0)


def all_reduce_gradients(parameters):
    """Average the gradients of ``parameters`` over the ranks, as DDP does. A parameter without a
    gradient on some rank counts as zero there; one without a gradient on every rank keeps none (the
    optimizer skips it, as in one process)."""
    if not is_distributed():
        return
    parameters = [p for p in parameters if p.requires_grad]
    if not parameters:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in parameters]
                     + [torch.tensor([float(p.grad is not None) for p in parameters], device=parameters[0].device)])
    dist.all_reduce(flat)
    flat /= get_world_size()
    offset, has_grad = 0, flat[-len(parameters):]
    for k, p in enumerate(parameters):
        n = p.numel()
        p.grad = flat[offset: offset + n].view_as(p).to(p.dtype).clone() if has_grad[k] > 0 else None
        offset += n



# ---- losses of the whole global batch ---------------------------------------------------------------
# The convention (TPAD's stage loop, ``recbole_tpad.stages.loop``): the ranks hold ``shard(batch)``;
# ``all_reduce_gradients`` averages, as DDP does; so every rank back-propagates a term whose gradient is
# ``world_size`` times the gradient of the batch's loss through its own rows. The ranks' gradients then
# average to the batch's gradient, that of one process on the whole batch. Both helpers keep to it.
def batch_mean(local_sum, local_count):
    r"""The mean over the whole global batch of a quantity summed over this rank's share.

    Args:
        local_sum (torch.Tensor): scalar, the sum over this rank's elements (e.g. the answer tokens'
            cross-entropy summed); may be a constant zero where the rank has none.
        local_count (int): how many elements the sum holds.

    Returns:
        tuple: ``(term, value)``: ``term`` to add to this rank's loss (``local_sum * world_size /
        batch_count``; on one process the mean itself) and ``value``, the batch's mean as a float for
        the log, equal on every rank; ``(None, None)`` when the whole batch has no element.
    """
    local_sum = torch.as_tensor(local_sum, dtype=torch.float32)
    if not is_distributed():
        return (None, None) if local_count == 0 else (local_sum / local_count, float(local_sum.detach()) / local_count)
    totals = torch.tensor([float(local_sum.detach()), float(local_count)], dtype=torch.float64,
                          device=local_sum.device)
    dist.all_reduce(totals)
    batch_sum, batch_count = totals.tolist()
    if batch_count == 0:
        return None, None
    return local_sum * (get_world_size() / batch_count), batch_sum / batch_count


class _GatherBatch(torch.autograd.Function):
    """Every rank's rows in the global batch's order; backward: this rank's rows' gradient, times world_size."""

    @staticmethod
    def forward(ctx, local, sizes):
        world, rank = get_world_size(), get_rank()
        all_sizes = all_gather_object(sizes)  # how many rows each batch row holds, on every rank
        batch = sum(len(s) for s in all_sizes)
        owner = [(b % world, b // world) for b in range(batch)]  # shard(): rank b % world has batch row b
        if any(len(s) != len(range(r, batch, world)) for r, s in enumerate(all_sizes)):
            raise ValueError(f"gather_batch: the ranks hold {[len(s) for s in all_sizes]} batch rows, not the "
                             f"shares shard() gives of {batch}; pass sizes per batch row (0 for a row left out)")
        padded = local.new_zeros((max(sum(s) for s in all_sizes), *local.shape[1:]))
        padded[: local.size(0)] = local
        parts = [torch.empty_like(padded) for _ in range(world)]
        if padded.numel():  # every rank has the same sizes, so all skip it together
            dist.all_gather(parts, padded)
        starts = [np.cumsum([0, *s]) for s in all_sizes]
        pieces = [parts[r][starts[r][k]: starts[r][k + 1]] for r, k in owner]
        ends = np.cumsum([0, *(all_sizes[r][k] for r, k in owner)])
        mine = [np.arange(ends[b], ends[b + 1]) for b in range(rank, batch, world)]  # this rank's rows, gathered
        ctx.mine = torch.as_tensor(np.concatenate([np.zeros(0, dtype=np.int64), *mine]), device=local.device)
        ctx.world = world
        return torch.cat(pieces) if pieces else padded[:0].clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.index_select(0, ctx.mine) * ctx.world, None


def gather_batch(local, sizes=None):
    r"""The rows of the whole global batch, from every rank's rows of its :func:`shard`, in the batch's order.

    A loss of the gathered rows (InfoNCE with in-batch negatives, token rows sampled by a generator
    seeded per step) is then the loss one process computes on the whole batch, on every rank. Its
    gradient flows back to this rank's rows only, times ``world_size``: no collective in backward
    (a rank with no rows needs no backward), and the averaged gradients are the batch's gradient.

    Args:
        local (torch.Tensor): ``[n, ...]``, this rank's rows, the same trailing shape and dtype on every
            rank (``[0, ...]`` where a rank has none).
        sizes (Sequence[int], optional): how many of ``local``'s rows come from each of this rank's batch
            rows, in order (e.g. a mask's count per row: ``hidden[mask]`` gives ``mask.sum(1)``; a row
            filter: ``keep.long()``); one each by default.

    Returns:
        torch.Tensor: ``[N, ...]``, the batch's rows; ``local`` itself outside a distributed run.
    """
    if not is_distributed():
        return local
    sizes = [1] * local.size(0) if sizes is None else [int(n) for n in sizes]
    if sum(sizes) != local.size(0):
        raise ValueError(f"gather_batch: sizes add up to {sum(sizes)}, but there are {local.size(0)} local rows")
    return _GatherBatch.apply(local, sizes)


def mean_over_ranks(values):
    """``{name: float}`` averaged over the ranks that report each name (the logged stage losses)."""
    if not is_distributed():
        return dict(values)
    reports = all_gather_object({k: float(v) for k, v in values.items()})
    names = dict.fromkeys(k for report in reports for k in report)
    return {k: float(np.mean([report[k] for report in reports if k in report])) for k in names}


# ---- exact evaluation -------------------------------------------------------------------------------
def gather_eval_rows(tensor, sampler):
    r"""Every rank's result rows of one evaluation, in the dataset's order, the sampler's padding dropped.

    Args:
        tensor (torch.Tensor): this rank's rows, in the order its ``DistributedSampler`` (unshuffled)
            gave the samples; each sample holds the same number of rows.
        sampler (torch.utils.data.DistributedSampler): the evaluation loader's sampler.
    """
    parts = all_gather_object(tensor.cpu())
    world, per_rank, total = sampler.num_replicas, sampler.num_samples, len(sampler.dataset)
    if any(p.size(0) != parts[0].size(0) for p in parts) or parts[0].size(0) % per_rank:
        raise DistributedError(
            f"exact distributed evaluation needs the same number of result rows per sample; the ranks gave "
            f"{[p.size(0) for p in parts]} rows for {per_rank} samples each. Evaluate this model with --nproc=1."
        )
    stacked = torch.stack(parts)  # [W, m * t, ...]: rank r's k-th sample is the dataset's sample r + k * W
    per_sample = stacked.size(1) // per_rank
    stacked = stacked.reshape(world, per_rank, per_sample, *stacked.shape[2:]).transpose(0, 1)
    return stacked.reshape(world * per_rank * per_sample, *stacked.shape[3:])[: total * per_sample]


# ---- starting and joining ranks ---------------------------------------------------------------------
def torchrun_keys():
    """RecBole's distributed keys of a process started by torchrun (``None`` otherwise)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ and "LOCAL_WORLD_SIZE" not in os.environ:
        return None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    return {"local_rank": local_rank, "offset": rank - local_rank, "nproc": int(os.environ["LOCAL_WORLD_SIZE"]),
            "world_size": int(os.environ["WORLD_SIZE"]), "ip": os.environ["MASTER_ADDR"],
            "port": int(os.environ["MASTER_PORT"])}


def free_port(ip="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def check_port(ip, port):
    """A clear error when rank 0's rendezvous port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, int(port)))
        except OSError as error:
            raise ConfigError(f"port={port} on {ip} is busy ({error.strerror}): pass a free --port=N "
                              "(or leave port unset on one machine: a free one is chosen).") from error


def launch_keys(nproc, settings):
    """The distributed keys shared by the ``nproc`` processes :func:`launch` starts, from the user's ``settings``."""
    world_size = int(settings.get("world_size") or nproc)
    offset = int(settings.get("offset") or 0)
    ip = str(settings.get("ip") or "127.0.0.1")
    port = settings.get("port")
    if port is None and world_size == nproc:  # all ranks on this machine: any free port will do
        port = free_port(ip)
    elif port is None:
        raise ConfigError(f"world_size={world_size} spans several machines: set --ip and --port of rank 0's machine.")
    if offset == 0:  # rank 0 lives here and listens on the port
        check_port(ip, port)
    return {"nproc": nproc, "world_size": world_size, "ip": ip, "port": int(port), "offset": offset}


def close_process_group():
    """Close the process group once every rank is done with it: a rank that exits while another still
    holds connections to it can abort in gloo's threads (``terminate called without an active exception``)."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def _run_rank(local_rank, function, args, config_dict, queue):
    result = function(*args, dict(config_dict, local_rank=local_rank))
    close_process_group()
    if local_rank + int(config_dict.get("offset", 0)) == 0:
        queue.put(result)


def launch(function, args, config_dict, nproc):
    r"""Run ``function(*args, config_dict)`` in ``nproc`` processes and return rank 0's result (pickled
    through a queue: no tensors, which would be shared with a process that has ended).

    Each process gets ``config_dict`` with RecBole's distributed keys (:func:`launch_keys`) and its
    ``local_rank``. A rank that raises or dies ends the others (torch's ``spawn`` terminates them)
    and the run fails with a :class:`DistributedError` naming the rank.
    """
    import torch.multiprocessing as mp

    offset = int(config_dict.get("offset", 0))
    queue = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(_run_rank, args=(function, args, config_dict, queue), nprocs=nproc, join=True)
    except mp.ProcessRaisedException as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise DistributedError(f"rank {error.error_index + offset} failed: {lines[-1].strip()} "
                               f"(the other ranks were stopped)\n{error}") from None
    except mp.ProcessExitedException as error:
        how = f"signal {error.signal_name}" if error.signal_name else f"exit code {error.exit_code}"
        raise DistributedError(f"rank {error.error_index + offset} died ({how}); the other ranks were stopped") from None
    return None if queue.empty() else queue.get()


def init_device(config):
    r"""Open the process group of a distributed run and set ``device`` and the rank's display keys.

    ``config`` is RecBole's ``final_config_dict`` with ``local_rank`` set. NCCL and ``cuda:<local_rank>``
    where ``gpu_id`` names GPUs and CUDA is available, gloo and the CPU otherwise. Idempotent: a run
    builds several configs (a comparison, one per model) in one process group.
    """
    gpu_id = config["gpu_id"]
    gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
    config["gpu_id"] = gpu_id
    local_rank = int(config["local_rank"])
    nproc = int(config.get("nproc") or 1)
    use_gpu = bool(gpu_id) and config.get("use_gpu", True) is not False and torch.cuda.is_available()
    if use_gpu:
        gpus = [g for g in gpu_id.split(",") if g.strip()]
        if len(gpus) < nproc:
            raise ConfigError(f"gpu_id='{gpu_id}' names {len(gpus)} GPU(s) for nproc={nproc} processes on this "
                              f"machine: list one GPU per process (e.g. --gpu_id={','.join(map(str, range(nproc)))}) "
                              "or lower nproc.")
        if "LOCAL_RANK" not in os.environ:  # torchrun users pick GPUs with CUDA_VISIBLE_DEVICES themselves
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not is_distributed():
        timeout = datetime.timedelta(seconds=float(config.get("distributed_timeout") or DEFAULT_TIMEOUT_S))
        rank = local_rank + int(config.get("offset") or 0)
        world_size = int(config.get("world_size") or nproc)
        init_method = "env://" if torchrun_keys() is not None else f"tcp://{config['ip']}:{config['port']}"
        try:
            dist.init_process_group("nccl" if use_gpu else "gloo", init_method=init_method, rank=rank,
                                    world_size=world_size, timeout=timeout)
        except (RuntimeError, OSError) as error:
            text = str(error).lower()
            if "address already in use" in text or "errno 98" in text:
                raise ConfigError(f"port={config.get('port')} on {config.get('ip')} is busy: pass a free --port=N.") from error
            raise DistributedError(f"rank {rank} could not join the process group at {init_method} "
                                   f"(world_size={world_size}): {error}") from error
    config["device"] = device
    config["single_spec"] = False
    if get_rank() != 0:  # only rank 0 logs and shows progress (RecBole mutes local rank != 0)
        config["state"] = "error"
        config["show_progress"] = False
        config["verbose"] = False


def single_process_config(config):
    """A copy of a distributed run's ``config`` as one process would have it: what a checkpoint keeps,
    so that ``load_data_and_model`` and a single-process evaluation can read it back."""
    import copy

    single = copy.copy(config)
    single.final_config_dict = {k: v for k, v in config.final_config_dict.items() if k not in DIST_KEYS}
    single.final_config_dict.update(local_rank=0, single_spec=True,
                                    device=torch.device("cuda" if config["device"].type == "cuda" else "cpu"))
    return single
