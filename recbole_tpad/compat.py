"""Compatibility shims for RecBole 1.2.1 on today's numpy, pandas and torch.

Every shim RecBole needs lives here and nowhere else, and none is applied on import: the entry
points call :func:`apply` (``quick_start.load_config``, where every run starts; the trainers;
the bench scripts; the tests' conftest). Each shim says which breakage it answers.
"""

import functools
import os
import types
import zipfile

import numpy as np
import torch


def _restore_numpy_aliases():
    # numpy 2 removed these aliases; RecBole's Config.compatibility_settings() reads
    # np.float_ / np.complex_ / np.unicode_ (AttributeError on numpy 2) and its evaluator
    # uses np.float. Put back the exact types numpy 1.x had.
    aliases = {
        "float_": np.float64,
        "complex_": np.complex128,
        "unicode_": np.str_,
        "bool8": np.bool_,
        "float": float,
        "int": int,
    }
    for name, value in aliases.items():
        if name not in np.__dict__:
            setattr(np, name, value)


class _TorchForRecBoleTrainer(types.ModuleType):
    """``torch`` as seen by ``recbole.trainer.trainer`` (its checkpoint ``save`` and ``load``) and by
    S3Rec, which loads the trainer's pretraining checkpoint."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(f, *args, **kwargs):
        kwargs.setdefault("weights_only", False)
        try:
            return torch.load(f, *args, **kwargs)
        except Exception as error:
            if isinstance(f, (str, os.PathLike)) and not _is_complete_zip(f):
                from recbole_tpad.errors import DataError

                raise DataError(
                    f"Checkpoint '{f}' is missing, truncated or damaged ({type(error).__name__}: {error}). "
                    "Delete it and train again, or point to another checkpoint file."
                ) from error
            raise

    @staticmethod
    def save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return torch.save(obj, f, *args, **kwargs)
        from recbole_tpad.atomic import atomic_path

        with atomic_path(f) as tmp:
            torch.save(obj, tmp, *args, **kwargs)


def _is_complete_zip(path):
    # torch.save writes a zip archive; a truncated or torn one fails here with its CRCs or directory.
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def _guard_recbole_checkpoints():
    # RecBole's Trainer saves and reloads its best checkpoint (a pickle with the Config inside):
    # - torch >= 2.6 defaults torch.load to weights_only=True and fails on it. Only the trainer
    #   module sees the relaxed load: it reads checkpoints this process wrote itself.
    # - torch.save writes the final file in place, so a run killed mid-save leaves a torn
    #   checkpoint. Write a temporary beside it and os.replace it (recbole_tpad.atomic).
    # - A torn or truncated checkpoint fails deep in torch's zip reader; name the file and what
    #   to do instead.
    import recbole.trainer.trainer as recbole_trainer

    if not isinstance(recbole_trainer.torch, _TorchForRecBoleTrainer):
        recbole_trainer.torch = _TorchForRecBoleTrainer("torch")


def _load_s3rec_pretraining_checkpoints():
    # S3Rec's finetune stage reads the pretraining checkpoint its trainer wrote (the same pickle,
    # Config inside) with torch.load, which torch >= 2.6 refuses by default: give it the trainer's load.
    import recbole.model.sequential_recommender.s3rec as s3rec

    if not isinstance(s3rec.torch, _TorchForRecBoleTrainer):
        s3rec.torch = _TorchForRecBoleTrainer("torch")


def _import_sequential_models_without_anomaly_mode():
    # recbole/model/sequential_recommender/sine.py calls torch.autograd.set_detect_anomaly(True)
    # at import time, for the whole process (training 2.3x slower). Import the package once
    # here, then switch anomaly detection back off.
    import recbole.model.sequential_recommender  # noqa: F401

    torch.autograd.set_detect_anomaly(False)


class _PandasReadingWithReplacement(types.ModuleType):
    """``pandas`` as seen by ``recbole.data.dataset.dataset``."""

    def __getattr__(self, name):
        import pandas

        return getattr(pandas, name)

    @staticmethod
    def read_csv(*args, **kwargs):
        import pandas

        kwargs.setdefault("encoding_errors", "replace")
        return pandas.read_csv(*args, **kwargs)


def _read_atomic_files_with_replacement():
    # RecBole reads atomic files with pandas in strict UTF-8: one invalid byte in a title kills
    # the run. Read them with replacement characters instead; recbole_tpad.data.atomic_check
    # counts such lines and the runner logs the count.
    # It also opens each file once to read the header: that text read gets replacement too.
    import recbole.data.dataset.dataset as recbole_dataset

    if not isinstance(recbole_dataset.pd, _PandasReadingWithReplacement):
        recbole_dataset.pd = _PandasReadingWithReplacement("pandas")
        recbole_dataset.open = functools.partial(open, errors="replace")


def _refuse_dataset_downloads():
    # RecBole downloads a dataset whose folder is missing (after asking on stdin). This plugin
    # never fetches data: runs are offline and have no stdin. The runner checks the folder
    # first; this guard keeps any other path from reaching the network.
    from recbole.data.dataset import Dataset

    def _download(self):
        from recbole_tpad.errors import DataError

        raise DataError(
            f"Dataset folder '{self.dataset_path}' does not exist; recbole-tpad never downloads "
            "datasets. Set data_path to the folder that holds '<dataset>/'."
        )

    Dataset._download = _download


def _open_process_groups_by_device():
    # RecBole 1.2.1's Config._init_device starts a distributed run (local_rank in the config) with
    # NCCL on cuda:local_rank whatever the machine (a CPU run fails), a bare assert for gpu_id, and
    # init_process_group again for every Config it builds. recbole_tpad.distributed.init_device
    # picks NCCL or gloo by device, names gpu_id and port in its errors, and joins the group once.
    from recbole.config import Config

    from recbole_tpad import distributed

    original = Config._init_device

    def _init_device(self):
        if "local_rank" not in self.final_config_dict:
            return original(self)
        return distributed.init_device(self.final_config_dict)

    Config._init_device = _init_device


def _wrap_cpu_models_for_ddp():
    # RecBole's trainer wraps the model in DistributedDataParallel(model, device_ids=[local_rank]);
    # DDP refuses device_ids for a model on the CPU. Pass them for a GPU model only.
    import recbole.trainer.trainer as recbole_trainer
    from torch.nn.parallel import DistributedDataParallel

    def _ddp(module, device_ids=None, **kwargs):
        on_gpu = any(p.is_cuda for p in module.parameters())
        return DistributedDataParallel(module, device_ids=device_ids if on_gpu else None, **kwargs)

    recbole_trainer.DistributedDataParallel = _ddp


class _GatheringCollector:
    """RecBole's evaluation ``Collector`` whose per-session results hold every rank's sessions once."""

    ROW_KEYS = ("rec.items", "rec.topk", "rec.meanrank", "rec.score", "data.label")  # the ones it resets per evaluation

    def __init__(self, collector, sampler):
        self._collector = collector
        self._sampler = sampler

    def __getattr__(self, name):
        return getattr(self._collector, name)

    def get_data_struct(self):
        from recbole_tpad.distributed import gather_eval_rows

        struct = self._collector.get_data_struct()
        for key in self.ROW_KEYS:
            if key in struct:
                struct.set(key, gather_eval_rows(struct.get(key), self._sampler))
        return struct


def _evaluate_distributed_runs_exactly():
    # RecBole 1.2.1 evaluates a distributed run on each rank's share of the sessions, which its
    # DistributedSampler pads with repeated sessions, and averages the per-rank metrics (_map_reduce,
    # weighted by a count of batch tuples, not sessions): not the metrics of the model. Gather the
    # per-session results instead, padding dropped (recbole_tpad.distributed.gather_eval_rows), and let
    # RecBole's evaluator compute every metric once on every rank. The ranks also wait for rank 0 to
    # finish writing the best checkpoint before they load it.
    from recbole.trainer import Trainer

    from recbole_tpad import distributed

    original = Trainer.evaluate

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if self.config["single_spec"] or not eval_data:
            return original(self, eval_data, load_best_model, model_file, show_progress)
        if load_best_model:
            distributed.barrier()
        collector = self.eval_collector
        self.eval_collector = _GatheringCollector(collector, eval_data.sampler)
        try:
            return original(self, eval_data, load_best_model, model_file, show_progress)
        finally:
            self.eval_collector = collector

    Trainer.evaluate = evaluate
    Trainer._map_reduce = lambda self, result, num_sample: result  # already the metrics of every session


def _save_checkpoints_for_one_process():
    # RecBole's _save_checkpoint pickles the distributed run's config (local_rank, world_size,
    # single_spec False) into the checkpoint, so load_data_and_model builds distributed data loaders
    # without a process group and fails. Rank 0 saves the config as one process has it.
    from recbole.trainer import Trainer

    from recbole_tpad import distributed

    original = Trainer._save_checkpoint

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if self.config["single_spec"]:
            return original(self, epoch, verbose=verbose, **kwargs)
        if not distributed.is_main_process():
            return None
        config, self.config = self.config, distributed.single_process_config(self.config)
        try:
            return original(self, epoch, verbose=verbose, **kwargs)
        finally:
            self.config = config

    Trainer._save_checkpoint = _save_checkpoint


def _make_directories_race_free():
    # RecBole's ensure_dir checks for a folder, then makes it: two ranks of a distributed run (or two
    # runs sharing a checkpoint_dir) can both see it missing, and the second makedirs raises
    # FileExistsError. Every module that imported it by name gets the race-free one.
    import recbole.data.dataset.dataset as recbole_dataset
    import recbole.data.utils as recbole_data_utils
    import recbole.trainer.trainer as recbole_trainer
    import recbole.utils as recbole_utils
    import recbole.utils.logger as recbole_logger
    import recbole.utils.utils as recbole_utils_utils

    def ensure_dir(dir_path):
        os.makedirs(dir_path, exist_ok=True)

    for module in (recbole_utils_utils, recbole_utils, recbole_trainer, recbole_dataset, recbole_data_utils, recbole_logger):
        module.ensure_dir = ensure_dir


class _NoTensorboard:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _tensorboard_on_rank_zero():
    # RecBole's Trainer opens a tensorboard writer (a log_tensorboard/ folder) on every rank of a
    # distributed run; only rank 0 writes, as it alone logs.
    import recbole.trainer.trainer as recbole_trainer
    from recbole.utils import get_tensorboard

    from recbole_tpad import distributed

    recbole_trainer.get_tensorboard = lambda logger: get_tensorboard(logger) if distributed.is_main_process() else _NoTensorboard()


_applied = False


def apply():
    """Apply every shim, once per process (later calls do nothing).

    Two more breakages are handled without code here:
    - pandas 3 crashes on token_seq fields and silently skips ``fillna``: setup.py pins pandas<3.
    - ``recbole.quick_start`` imports ray at import time: this plugin never imports it; its own
      runner (``recbole_tpad.quick_start``) builds config, data, model and trainer directly.
    """
    global _applied
    if _applied:  # a second call must not switch off anomaly detection that a user turned on since
        return
    _restore_numpy_aliases()
    _guard_recbole_checkpoints()
    _refuse_dataset_downloads()
    _read_atomic_files_with_replacement()
    _import_sequential_models_without_anomaly_mode()
    _load_s3rec_pretraining_checkpoints()
    _open_process_groups_by_device()
    _wrap_cpu_models_for_ddp()
    _evaluate_distributed_runs_exactly()
    _save_checkpoints_for_one_process()
    _tensorboard_on_rank_zero()
    _make_directories_race_free()
    _applied = True
