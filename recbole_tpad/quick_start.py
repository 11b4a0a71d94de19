"""Run any model, stock RecBole or ours, on an atomic dataset; compare several in one table.

RecBole's own ``run_recbole`` looks models up inside RecBole only and its module imports ray,
so this runner builds config, data, model and trainer itself with the plugin's lookups.
"""

import logging
import os
import sys
import time
import uuid
from contextlib import contextmanager
from logging import getLogger

from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_local_time, init_logger, init_seed, set_color

from recbole_tpad import compat, distributed
from recbole_tpad.data.atomic_check import check_dataset_files
from recbole_tpad.data.tie_order import apply_tie_order
from recbole_tpad.errors import ConfigError
from recbole_tpad.model_defaults import build_model, model_defaults, user_settings
from recbole_tpad.model.item_views import prepare_item_views
from recbole_tpad.precision import fit_amp_to_hardware
from recbole_tpad.recommend.sidecar import write_sidecar
from recbole_tpad.settings import warn_unread_keys
from recbole_tpad.trainer.train_state import TrainState
from recbole_tpad.utils import PROPERTIES_DIR, get_model, get_trainer, resolve_data_path


def plugin_config_files(model_class, dataset):
    """The plugin's YAML files for this run, lowest precedence first.

    The overall and features files, and the model's own file for a model of ours, must exist: a
    run without them would silently train with RecBole's defaults.
    """
    required = [PROPERTIES_DIR / "overall.yaml", PROPERTIES_DIR / "features.yaml"]
    if model_class.__module__.startswith("recbole_tpad."):
        required.append(PROPERTIES_DIR / "model" / f"{model_class.__name__}.yaml")
    for path in required:
        if not path.is_file():
            raise ConfigError(
                f"{path} is missing: recbole-tpad's defaults are not where the package expects them. "
                "Reinstall it from the repository (pip install .), or restore the file there."
            )
    dataset_file = PROPERTIES_DIR / "dataset" / f"{dataset}.yaml"  # after the model's, as RecBole orders them
    return [str(path) for path in required + [dataset_file] if path.is_file()]


@contextmanager
def _without_command_line():
    # RecBole's Config also parses sys.argv; the runner already turned the command line into
    # config_dict, and in-process callers (tests, --compare) must not inherit stray flags.
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = saved


def load_config(model, dataset, config_file_list=None, config_dict=None):
    """Build a RecBole ``Config`` with the plugin's properties layered under the user's.

    Precedence, lowest first: RecBole's defaults, the plugin's overall / features / model /
    dataset YAML, the user's ``config_file_list`` in order, then ``config_dict``. Where the
    plugin's shared settings cannot apply to the model, RecBole's own hold for the keys the user
    did not set (``recbole_tpad.model_defaults``).
    """
    compat.apply()  # RecBole 1.2.1 on today's numpy, pandas and torch: every run starts here
    config_dict = dict(config_dict or {})
    model_class = get_model(model) if isinstance(model, str) else model
    files = plugin_config_files(model_class, dataset) + list(config_file_list or [])
    user = user_settings(config_file_list, config_dict)
    config_dict["data_path"] = resolve_data_path(dataset, user.get("data_path"))
    with _without_command_line():
        config = Config(model=model_class, dataset=dataset, config_file_list=files, config_dict=config_dict)
        overrides = model_defaults(config, set(user))
        if overrides:  # built again, so that RecBole derives its dependent settings from them
            config = Config(model=model_class, dataset=dataset, config_file_list=files, config_dict={**config_dict, **overrides})
    return config


_RUN_LOG_HANDLERS = []


def _init_logging(config):
    # init_logger relies on logging.basicConfig, which does nothing while the root logger has
    # handlers. Close the previous run's handlers (each run of a comparison gets its own log
    # file) and set aside any other handlers (pytest's, an application's) while it runs.
    # In a distributed run only rank 0 writes a log file; the other ranks print their errors.
    root = logging.getLogger()
    for handler in _RUN_LOG_HANDLERS:
        root.removeHandler(handler)
        handler.close()
    others = list(root.handlers)
    for handler in others:
        root.removeHandler(handler)
    if distributed.is_main_process():
        init_logger(config)
    else:
        logging.basicConfig(level=logging.ERROR, handlers=[logging.StreamHandler()])
    _RUN_LOG_HANDLERS[:] = root.handlers
    for handler in others:
        root.addHandler(handler)


class _EpochTimer:
    """Wall time of each training epoch, measured around the trainer's ``_train_epoch``."""

    def __init__(self, trainer):
        self.seconds = []
        self._train_epoch = trainer._train_epoch
        trainer._train_epoch = self

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        result = self._train_epoch(*args, **kwargs)
        self.seconds.append(time.perf_counter() - start)
        return result


@contextmanager
def _kept_topk(trainer):
    """Keep the per-session ranking result RecBole's evaluator reads during the evaluation inside:
    ``rec.topk``, one row per evaluated session in the data loader's order, ``[sessions, max(topk) + 1]``
    (1 where the item at that position of the top-k list is the session's target, then the number of
    targets), as ``Collector.eval_batch_collect`` writes it. Absent for a metric set without top-k metrics."""
    kept = {}
    evaluate = trainer.evaluator.evaluate

    def keeping(struct):
        if "rec.topk" in struct:
            kept["rec.topk"] = struct.get("rec.topk").clone()
        return evaluate(struct)

    trainer.evaluator.evaluate = keeping
    try:
        yield kept
    finally:
        trainer.evaluator.evaluate = evaluate


def evaluate_with_topk(trainer, eval_data, **evaluate_kwargs):
    """RecBole's ``trainer.evaluate(eval_data, **evaluate_kwargs)`` with its per-session top-k result
    (``_kept_topk``): ``(metrics, rec.topk or None, seconds)``."""
    start = time.perf_counter()
    with _kept_topk(trainer) as kept:
        metrics = trainer.evaluate(eval_data, **evaluate_kwargs)
    return metrics, kept.get("rec.topk"), time.perf_counter() - start


def run_recbole_tpad(model, dataset, config_file_list=None, config_dict=None, saved=True):
    """Train and test one model; return its config, metrics and costs as a dict.

    ``item_views`` and ``view_info`` are what ``prepare_item_views`` gave the model (``None`` and
    ``{}`` for a model without frozen views). ``test_topk`` is RecBole's per-session top-k result of
    the test (``evaluate_with_topk``), rows in the order of ``test_data``'s sessions; ``None`` without top-k metrics.
    """
    config = load_config(model, dataset, config_file_list, config_dict)
    init_seed(config["seed"], config["reproducibility"])
    _init_logging(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)
    warn_unread_keys(config_file_list, config_dict)  # RecBole ignores a misspelt key without a word
    fit_amp_to_hardware(config)

    for note in check_dataset_files(config):
        logger.warning(note)
    recbole_dataset = create_dataset(config)
    apply_tie_order(config, recbole_dataset)
    logger.info(recbole_dataset)
    train_data, valid_data, test_data = data_preparation(config, recbole_dataset)
    item_views, view_info = prepare_item_views(config, train_data)

    init_seed(config["seed"] + distributed.get_rank(), config["reproducibility"])  # DDP starts every rank from rank 0's weights
    model_class = get_model(config["model"])
    model = build_model(model_class, config, train_data._dataset).to(config["device"])
    logger.info(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    # RecBole names checkpoints by the second; two runs started in the same second would clash.
    # Rank 0 names it (and alone writes it); every rank loads it for the test.
    trainer.saved_model_file = distributed.broadcast_object(os.path.join(
        config["checkpoint_dir"], f"{config['model']}-{get_local_time()}-{uuid.uuid4().hex[:8]}.pth"
    ))
    if saved and distributed.is_main_process():  # what recbole_tpad.recommend needs beside the checkpoint
        write_sidecar(trainer.saved_model_file, config, train_data._dataset, item_views,
                      item_views.knowledge_mllm if item_views is not None and hasattr(model, "add_items") else None)
    epoch_timer = _EpochTimer(trainer)
    # train_state_file: the fit resumes after the last validation an earlier run of it saved
    train_state = TrainState(config, trainer, train_data, epoch_timer.seconds) if config["train_state_file"] else None
    if train_state is not None:
        train_state.resume()

    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"],
        callback_fn=train_state.save if train_state is not None else None,
    )
    test_result, test_topk, eval_seconds = evaluate_with_topk(
        trainer, test_data, load_best_model=saved, show_progress=config["show_progress"]
    )

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "config": config,
        "model": model,
        "trainer": trainer,
        "train_data": train_data,
        "test_data": test_data,
        "test_sessions": len(test_data._dataset),
        "item_views": item_views,
        "view_info": view_info,
        "best_valid_score": best_valid_score,
        "valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result),
        "test_topk": test_topk,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "epoch_seconds": epoch_timer.seconds,
        "eval_seconds": eval_seconds,
        # with train_state_file: the fit's seconds in the processes before this one, and where it resumed
        "earlier_fit_seconds": train_state.earlier_seconds if train_state is not None else 0.0,
        "resumed_after_epoch": train_state.resumed_epoch if train_state is not None else None,
    }
