"""A downstream fit that outlives its process: the trainer's state after every validation, and the resume from it.

RecBole's ``Trainer`` keeps only the best epoch's checkpoint, and its ``resume_checkpoint`` restarts
from that epoch: the epochs trained since, the random generators and the best valid result are lost.
A fit of hours (GRU4Rec or SASRec on amazon-beauty on a CPU without native bf16) then cannot cross
the end of a session. With ``train_state_file`` set, :class:`TrainState` writes to that file, after
every validation (RecBole's ``callback_fn``), what the rest of the fit depends on: the epoch, the
early-stopping counters, the best valid result, the model's and the optimizer's state, the best
epoch's weights, the random generators (torch, numpy, random and the training loader's) and the
seconds spent so far. A run started with the same file and the same settings resumes after the last
validation the file holds and ends as the uninterrupted run would
(tests/robustness/test_train_state.py). The file is written atomically (``recbole_tpad.atomic``). In a
distributed run rank 0 writes it, with every rank's random generators, and each rank resumes its own;
the number of processes is one of the settings.

The settings are every key of the run's config except where things live and how they are shown
and ``epochs`` (``NOT_SETTINGS``), plus the hashes of the dataset's atomic files. The epoch limit may
change: a fit that ended at its limit (not by early stopping) goes on to a higher one, as if that had
been the limit from the start; a fit that early stopping ended stays ended. A state of other settings stops
the run with an error that names the keys (keys a state holds that are no longer settings, such as
``epochs`` in a state written before the limit could change, are not compared); an unreadable state is
logged and the fit starts over.
The plugin's code is not part of the settings: resuming across a code change is the user's call. So is a
key the code has gained since the state was written (a new switch, such as TPAD's ``output_map``): it is
not compared, and the resume logs it with its value now.
"""

import json
import random
import time
from logging import getLogger
from pathlib import Path

import numpy as np
import torch
from recbole.utils import set_color

from recbole_tpad import distributed
from recbole_tpad.atomic import atomic_path
from recbole_tpad.errors import ConfigError
from recbole_tpad.settings import DISPLAY_KEYS

FORMAT = 1
STATE_KEYS = {"settings", "epoch", "cur_step", "best_valid_score", "best_valid_result", "train_loss_dict",
              "state_dict", "other_parameter", "optimizer", "best", "rng", "epoch_seconds", "seconds"}
# not settings: how the run is shown, where its files live (the data files are hashed), which device it
# runs on, and the epoch limit (a fit ended at its limit goes on to a higher one)
NOT_SETTINGS = DISPLAY_KEYS | {
    "checkpoint_dir", "data_path", "config_files", "feature_cache_dir", "log_wandb", "wandb_project", "device",
    "gpu_id", "use_gpu", "epochs",
}


def run_settings(config):
    """``{key: canonical JSON of its value}`` of the config keys that decide what a fit computes (the epoch
    limit aside: a fit ended at its limit goes on to a higher one)."""
    from recbole_tpad.features.cache import data_fingerprint

    settings = {key: json.dumps(value, sort_keys=True, default=str)
                for key, value in config.final_config_dict.items() if key not in NOT_SETTINGS}
    settings["dataset files"] = json.dumps(data_fingerprint(config["data_path"], config["dataset"]), sort_keys=True)
    return settings


def _other_parameter(other):
    """A model's ``other_parameter`` without its modules. A module's weights are in the state_dict already
    (FDSA keeps its feature embedding layer among both, with the dataset's feature tables: 100 MB a copy on
    amazon-beauty), and loading a saved copy in its place would leave the optimizer training the replaced one."""
    return {key: value for key, value in (other or {}).items() if not isinstance(value, torch.nn.Module)}


def _rng_state(train_data):
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "train_loader": train_data.generator.get_state()}


def _set_rng_state(state, train_data):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    train_data.generator.set_state(state["train_loader"])


class TrainState:
    r"""The state of one fit in ``config['train_state_file']``: :meth:`resume` before ``trainer.fit``,
    :meth:`save` as its ``callback_fn``.

    Args:
        config (Config): the run's config.
        trainer (Trainer): the run's trainer, built, before its fit.
        train_data (DataLoader): the fit's training data (its loader's random generator is saved).
        epoch_seconds (list of float): the run's seconds per training epoch; a resume puts the earlier
            epochs' in front.
    """

    def __init__(self, config, trainer, train_data, epoch_seconds):
        self.path = config["train_state_file"]
        self.trainer = trainer
        self.train_data = train_data
        self.epoch_seconds = epoch_seconds
        self.settings = run_settings(config)
        self.best = None  # the best epoch: (epoch, its state_dict, its other_parameter)
        self.earlier_seconds = 0.0  # fit seconds of the processes before this one, up to their last save
        self.resumed_epoch = None  # the last epoch the resumed state held
        self._started = time.perf_counter()
        self.logger = getLogger()

    def resume(self):
        """Load the file when it exists: restore the trainer (its ``start_epoch``: the fit's ``epochs`` when
        it has ended), model, optimizer and random generators, and write the best epoch's weights as
        RecBole's checkpoint."""
        try:
            # on the CPU: the random generators' states are CPU tensors; load_state_dict moves the rest
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except FileNotFoundError:
            return
        except Exception as error:  # noqa: BLE001 - a damaged state is replaced, never read
            self.logger.warning(f"train_state_file {self.path}: unreadable ({type(error).__name__}: {error}); "
                                "the fit starts from its first epoch and overwrites it")
            return
        if not isinstance(state, dict) or state.get("format") != FORMAT or not STATE_KEYS <= set(state):
            self.logger.warning(f"train_state_file {self.path}: not a train state of this plugin's format; "
                                "the fit starts from its first epoch and overwrites it")
            return
        # a key that is no longer a setting (a state written before it became one of NOT_SETTINGS) is not compared
        then = {key: value for key, value in state["settings"].items() if key not in NOT_SETTINGS}
        # a key the state does not hold came with a code change after it was written: the user's call, logged
        added = sorted(set(self.settings) - set(then))
        if added:
            self.logger.warning(f"train_state_file {self.path} was written before these settings existed: "
                                + ", ".join(f"{key} ({self.settings[key]} now)" for key in added)
                                + "; the fit resumes with them. Delete the file to train from the start instead.")
        differ = sorted(key for key in then if then[key] != self.settings.get(key))
        if differ:
            shown = "; ".join(f"{key}: {then[key]} then, {self.settings.get(key, '(unset)')} now"
                              for key in differ[:5])
            raise ConfigError(f"train_state_file {self.path} holds a fit with other settings ({shown}"
                              f"{'; ...' if len(differ) > 5 else ''}). Run with the settings it was made with, "
                              "or delete the file (or point train_state_file elsewhere) to train from the start.")
        trainer, model = self.trainer, self.trainer.model
        # ended: stopped early, or no epoch left under this run's limit
        ended = stopped_early(state["cur_step"], trainer.stopping_step) or state["epoch"] + 1 >= trainer.epochs
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.cur_step, trainer.best_valid_score = state["cur_step"], state["best_valid_score"]
        trainer.best_valid_result = state["best_valid_result"]
        self.best = state["best"]
        if self.best is not None:  # RecBole's checkpoint of the best epoch, which its test loads
            model.load_state_dict(self.best[1])
            model.load_other_parameter(_other_parameter(self.best[2]))
            trainer._save_checkpoint(self.best[0], verbose=False)
        if not ended:  # go on from the last epoch's weights; an ended fit keeps the best ones
            model.load_state_dict(state["state_dict"])
            model.load_other_parameter(_other_parameter(state["other_parameter"]))
        trainer.train_loss_dict = state["train_loss_dict"]
        trainer.start_epoch = trainer.epochs if ended else state["epoch"] + 1
        _set_rng_state(state["rng"][distributed.get_rank()], self.train_data)  # each rank its own generators
        self.epoch_seconds[:0] = state["epoch_seconds"]
        self.earlier_seconds = state["seconds"]
        self.resumed_epoch = state["epoch"]
        self.logger.info(set_color("train state", "yellow") + f": resuming the fit of {self.path} after epoch "
                         f"{state['epoch']} (best valid score {state['best_valid_score']:.4f}"
                         + (f" at epoch {self.best[0]}" if self.best is not None else "")
                         + ("; it has ended" if ended else "") + ")")

    def save(self, epoch_idx, valid_score):
        """RecBole's ``callback_fn``: called after each validation, once the best result is updated."""
        trainer, model = self.trainer, self.trainer.model
        if trainer.cur_step == 0:  # this epoch is the new best (RecBole's early_stopping resets the count)
            weights = {name: value.detach().clone() for name, value in model.state_dict().items()}
            self.best = (epoch_idx, weights, _other_parameter(model.other_parameter()))
        state = {
            "format": FORMAT,
            "settings": self.settings,
            "epoch": epoch_idx,
            "cur_step": trainer.cur_step,
            "best_valid_score": trainer.best_valid_score,
            "best_valid_result": trainer.best_valid_result,
            "train_loss_dict": trainer.train_loss_dict,
            "state_dict": model.state_dict(),
            "other_parameter": _other_parameter(model.other_parameter()),
            "optimizer": trainer.optimizer.state_dict(),
            "best": self.best,
            "rng": distributed.all_gather_object(_rng_state(self.train_data)),  # every rank's, in rank order
            "epoch_seconds": list(self.epoch_seconds),
            "seconds": self.fit_seconds(),
        }
        distributed.write_once(self._write, state)  # rank 0 writes; every rank goes on once it is written

    def _write(self, state):
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp, pickle_protocol=4)

    def fit_seconds(self):
        """Seconds this fit has run, the earlier processes' (up to their last save) included."""
        return self.earlier_seconds + time.perf_counter() - self._started


def stopped_early(cur_step, stopping_step):
    """Whether early stopping ended a fit, rather than its epoch limit: RecBole stops once its count of
    evaluations without a better score (``trainer.cur_step``) passes ``stopping_step``."""
    return cur_step > stopping_step
