"""A trained model, loaded from its checkpoint and sidecar, recommending for new sessions.

    from recbole_tpad.recommend import load_recommender

    recommender = load_recommender("saved/TPAD-Dec-02-2026_07-40-00-1a2b3c4d.pth")
    recommender.recommend([["B00A", "B00B"], ["B00C"]], topk=20)   # -> [Recommendation, ...]
    recommender.add_items("new.item")                                # TPAD, KDSR: items added after training

Unlike RecBole's ``load_data_and_model`` (which reads and splits the whole dataset again and finds
models in ``recbole.model`` only), the model is built from the checkpoint's config and the
sidecar's dataset without interactions (:mod:`recbole_tpad.recommend.sidecar`), and scores
sessions given as item tokens with its own ``full_sort_predict``.
"""

from dataclasses import dataclass, field
from logging import getLogger
from pathlib import Path

import torch
from recbole.data.interaction import Interaction

from recbole_tpad import compat
from recbole_tpad.errors import ConfigError, DataError
from recbole_tpad.recommend.sidecar import read_sidecar


@dataclass
class Recommendation:
    """Top-k items of one session: tokens best first, their scores, and the session's unknown tokens."""

    items: list
    scores: list
    unknown: list = field(default_factory=list)
    note: str = ""  # why there are no items (a session without a known item)


def load_recommender(model_file, device=None):
    """Load ``model_file`` (a checkpoint that ``run_recbole_tpad`` saved) into a :class:`SessionRecommender`."""
    return SessionRecommender(model_file, device)


class SessionRecommender:
    r"""Top-k recommendations of a trained model (stock RecBole or ours) for sessions of item tokens.

    Args:
        model_file (str | Path): ``saved/<model>-<time>-<id>.pth``, with its ``.sidecar.pth`` beside it.
        device (str | torch.device, optional): default the GPU if there is one, else the CPU.
    """

    def __init__(self, model_file, device=None):
        from recbole_tpad.model_defaults import build_model
        from recbole_tpad.utils import get_model

        compat.apply()
        model_file = Path(model_file)
        if not model_file.is_file():
            raise DataError(f"{model_file}: no such checkpoint. Pass a file saved under saved/ by run_recbole_tpad.")
        sidecar = read_sidecar(model_file)
        try:
            checkpoint = torch.load(model_file, map_location="cpu", weights_only=False)
            config, state_dict = checkpoint["config"], checkpoint["state_dict"]
        except Exception as error:
            raise DataError(f"{model_file} is not a readable RecBole checkpoint ({type(error).__name__}: {error}).") from error
        if (config["model"], config["dataset"]) != (sidecar["model"], sidecar["dataset_name"]):
            raise DataError(
                f"{model_file} holds {config['model']} on dataset '{config['dataset']}', but its sidecar was written for "
                f"{sidecar['model']} on '{sidecar['dataset_name']}': the two files come from different runs."
            )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        config["device"] = self.device
        self.config, self.model_file, self.sidecar = config, model_file, sidecar
        self.dataset = sidecar["dataset"]
        self.iid_field = self.dataset.iid_field
        self.tokens = [str(t) for t in self.dataset.field2id_token[self.iid_field]]
        self.token_ids = {token: i for i, token in enumerate(self.tokens)}
        self.views_manifest = None  # of the frozen item views the model reads (TPAD, KDSR)
        if sidecar["item_views"] is not None:
            from recbole_tpad.model.item_views import attach_item_views

            views = self._cached_views(sidecar["item_views"])
            self.views_manifest = views.manifest
            attach_item_views(self.dataset, views)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            model = build_model(get_model(config["model"]), config, self.dataset)
        self.dataset.__dict__.pop("item_views", None)  # the model holds what it needs
        try:
            model.load_state_dict(state_dict)
            model.load_other_parameter(checkpoint.get("other_parameter"))
        except RuntimeError as error:
            raise DataError(f"{model_file} does not fit the {config['model']} built from its sidecar "
                            f"(dataset '{config['dataset']}'): {str(error)[:300]}") from error
        self.model = model.to(self.device).eval()
        self.max_length = config["MAX_ITEM_LIST_LENGTH"]
        self.logger = getLogger()

    def _cached_views(self, where):
        from recbole_tpad.features import read_cache
        from recbole_tpad.stages.representation import add_successor_views

        if where["folder"] is None:
            raise DataError(
                f"{self.model_file}: its item views were made in memory, not read from the feature cache, so its "
                "sidecar cannot point at them; train with views from recbole_tpad.features or TPAD's stages."
            )
        views = read_cache(where["folder"], where["key"])
        if views is None:
            raise DataError(
                f"{where['folder']}: the item views {self.sidecar['model']} was trained with are gone from the feature "
                "cache (or damaged). Rerun the training command with the same settings: the cache is rebuilt."
            )
        if [str(t) for t in views.manifest["item_ids"]] != self.tokens:
            raise DataError(f"{where['folder']}: its items are not those of checkpoint {self.model_file}'s dataset.")
        if where.get("successor_file") and add_successor_views(views, where["successor_file"]) is None:
            raise DataError(
                f"{where['successor_file']}: the successor views {self.sidecar['model']} was trained with are gone from "
                "the stages' cache. Rerun the training command with the same settings: the cache is rebuilt."
            )
        return views

    # ------------------------------------------------------------------ sessions
    @property
    def n_items(self):
        return len(self.tokens)

    def session_item_ids(self, sessions):
        """Internal ids of each session's known items, and its unknown tokens."""
        ids, unknown = [], []
        for session in sessions:
            ids.append([self.token_ids[t] for t in session if t in self.token_ids and self.token_ids[t] != 0])
            unknown.append([t for t in session if t not in self.token_ids or self.token_ids[t] == 0])
        return ids, unknown

    def _interaction(self, ids):
        model = self.model
        ids = [items[-self.max_length:] for items in ids]  # the most recent items, as in training
        seq = torch.tensor([items + [0] * (self.max_length - len(items)) for items in ids], dtype=torch.long)
        fields = {model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: torch.tensor([len(i) for i in ids]),
                  model.ITEM_ID: torch.zeros(len(ids), dtype=torch.long)}
        uid = self.config["USER_ID_FIELD"]
        if uid:  # models that read a user id (FPMC, Caser, HGN, ...) get the padding user: a new session has none
            fields[uid] = torch.zeros(len(ids), dtype=torch.long)
        if hasattr(model, "NEG_ITEM_SEQ"):  # DIEN reads the sampled negatives of training sessions; scoring ignores them
            fields[model.NEG_ITEM_SEQ] = torch.zeros_like(seq)
        return self.dataset.join(Interaction(fields))

    @torch.no_grad()
    def scores(self, ids):
        """``[B, n_items]`` scores of every item for sessions of internal ids (each non-empty; the last
        ``MAX_ITEM_LIST_LENGTH`` count), the padding item at ``-inf``."""
        interaction = self._interaction(ids).to(self.device)
        try:
            scores = self.model.full_sort_predict(interaction)
        except NotImplementedError:  # models that score one candidate at a time (DIN, DIEN): all items, as RecBole's evaluator does
            batch = len(ids)
            interaction = interaction.repeat_interleave(self.n_items)
            interaction.update(self.dataset.join(Interaction(
                {self.iid_field: torch.arange(self.n_items).repeat(batch)})).to(self.device))
            scores = self.model.predict(interaction)
        scores = scores.view(len(ids), -1).float()
        scores[:, 0] = float("-inf")  # the padding item
        return scores

    def recommend(self, sessions, topk=20, exclude_seen=False, batch_size=256):
        r"""Top-``topk`` items for each session, a list of item tokens oldest first.

        Unknown tokens are skipped (listed in ``Recommendation.unknown`` and counted in one warning);
        a session without a known item gets no items and a ``note``. ``exclude_seen`` drops the
        session's own items from its list.

        Returns:
            list[Recommendation]: one per session, in order.
        """
        if topk < 1:
            raise ConfigError(f"topk={topk}: give a positive number of items.")
        sessions = [[str(t) for t in session] for session in sessions]
        ids, unknown = self.session_item_ids(sessions)
        results = [Recommendation([], [], u, "no item of this session is known to the model") for u in unknown]
        rows = [r for r, session_ids in enumerate(ids) if session_ids]
        k = min(topk, self.n_items - 1)
        for start in range(0, len(rows), batch_size):
            batch = rows[start: start + batch_size]
            scores = self.scores([ids[r] for r in batch])
            if exclude_seen:
                for b, r in enumerate(batch):
                    scores[b, ids[r]] = float("-inf")
            top_scores, top_ids = scores.topk(k, dim=1)
            for r, row_scores, row_ids in zip(batch, top_scores.tolist(), top_ids.tolist()):
                keep = [j for j, score in enumerate(row_scores) if score != float("-inf")]
                results[r] = Recommendation([self.tokens[row_ids[j]] for j in keep], [row_scores[j] for j in keep], unknown[r])
        skipped = sum(len(u) for u in unknown)
        if skipped:
            self.logger.warning(f"Skipped {skipped} unknown item tokens in {sum(1 for u in unknown if u)} of "
                                f"{len(sessions)} sessions (not items of dataset '{self.config['dataset']}').")
        empty = len(sessions) - len(rows)
        if empty:
            self.logger.warning(f"{empty} of {len(sessions)} sessions have no known item: no recommendation for them.")
        return results

    # ------------------------------------------------------------------ new items
    def add_items(self, item_file, progress=False):
        r"""Add the items of ``item_file`` (an atomic ``.item`` file) the model was not trained with.

        A model that scores items through frozen item views (TPAD, KDSR) gets the new items' views
        from the encoder that made its catalogue's (:mod:`recbole_tpad.recommend.new_items`) and
        scores them like any other; a model that scores items by trained per-item tables only raises
        ``ConfigError``. Returns the new tokens.
        """
        from recbole_tpad.recommend.new_items import encode_new_items, new_item_tokens

        name = self.config["model"]
        if not hasattr(self.model, "add_items") or self.views_manifest is None:
            raise ConfigError(
                f"{name} scores items by trained per-item tables (an ID embedding); it cannot score items that were not "
                "in its training data. TPAD and KDSR can (they score items through frozen MLLM item views)."
            )
        tokens = new_item_tokens(self.config, item_file, self.token_ids)
        if not tokens:
            self.logger.warning(f"{item_file}: every item is already known to the model; nothing added.")
            return []
        views, image_mask = encode_new_items(self.config, self.views_manifest, self.sidecar.get("knowledge_mllm"),
                                             item_file, tokens, progress)
        self.model.add_items(views, torch.as_tensor(image_mask))
        for token in tokens:
            self.token_ids[token] = len(self.tokens)
            self.tokens.append(token)
        self.logger.info(f"Added {len(tokens)} new items from {item_file} ({int(image_mask.sum())} with a photo).")
        return tokens
