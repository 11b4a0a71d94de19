"""Items added to the ``.item`` file after training, encoded as the training items were.

A model that scores items through frozen item views (TPAD, KDSR) can score an item that had no
interaction at training time: it only needs the item's views, made by the same encoder that made
the training items' views, and the model appends them (``TPAD.add_items``, ``KDSR.add_items``):

- TPAD (its sidecar names a Knowledge-MLLM): the stages' own path. The item's lower-layer states
  are computed by the frozen backbone with the stages' projector
  (:func:`recbole_tpad.stages.item_states.compute_item_states`), then the top layers run under the
  distilled adapter ``K`` (:func:`recbole_tpad.stages.item_states.encode_item_views`), exactly as
  stage 3 encoded the catalogue; with ``transition_score``, also their successor views under the
  Transfer-MLLM ``T`` and its transition head (:func:`recbole_tpad.stages.representation.successor_views`).
- KDSR (views from the frozen base backbone's feature cache): the base backbone, no adapter,
  through :meth:`recbole_tpad.features.Backbone.encode_items`, as ``get_item_views`` encoded the
  catalogue.

Either way the adapter and its weights are checked against those the training views' cache
recorded, so new views never come from another projector or adapter than the catalogue's.
"""

from pathlib import Path

import torch

from recbole_tpad.data.atomic_file import AtomicFile
from recbole_tpad.errors import DataError


class _ItemFileConfig(dict):
    """The run's config with ``data_path`` / ``dataset`` pointing at another ``.item`` file."""

    def __init__(self, config, item_file):
        super().__init__(data_path=str(item_file.parent), dataset=item_file.name[: -len(".item")])
        self.config = config

    def __missing__(self, key):
        return self.config[key]


class _Tokens:
    """The two attributes of a RecBole dataset that :func:`recbole_tpad.features.load_items` reads."""

    def __init__(self, iid_field, tokens):
        self.iid_field = iid_field
        self.field2id_token = {iid_field: ["[PAD]", *tokens]}


def new_item_tokens(config, item_file, known):
    """Tokens of ``item_file``'s rows that are not in ``known``, in file order."""
    item_file = Path(item_file)
    if not item_file.is_file() or not item_file.name.endswith(".item"):
        raise DataError(f"--item_file {item_file}: no such file, or not an atomic '<name>.item' file.")
    reader = AtomicFile(item_file, config["field_separator"], config["seq_separator"], config["encoding"] or "utf-8")
    if reader.columns[0] != config["ITEM_ID_FIELD"]:
        raise DataError(f"{item_file}: first column is '{reader.columns[0]}', expected the item id "
                        f"'{config['ITEM_ID_FIELD']}' of dataset '{config['dataset']}'. Is it another dataset's file?")
    return list(dict.fromkeys(fields[0] for _, fields in reader.rows() if fields[0] not in known))


def encode_new_items(config, views_manifest, knowledge_mllm, item_file, tokens, progress=False):
    r"""Views of items ``tokens`` of ``item_file``, made as the catalogue's were.

    Args:
        config: the checkpoint's config.
        views_manifest (dict): the manifest of the training items' cached views (its ``weights``
            fingerprint is checked against the encoder built here).
        knowledge_mllm (dict or None): TPAD's ``{"adapter": folder, "projector": file}``; None: the
            frozen base backbone (KDSR's views).

    Returns:
        tuple: ``{view: [n, H]}`` float32 arrays and ``image_mask`` ``[n]`` (rows follow ``tokens``).
    """
    from recbole_tpad.features import FeaturesConfig, build_backbone, load_items
    from recbole_tpad.features.cache import weights_fingerprint

    settings = FeaturesConfig.from_config(config)
    item_file = Path(item_file)
    items = load_items(_ItemFileConfig(config, item_file), _Tokens(config["ITEM_ID_FIELD"], tokens), settings)
    with torch.random.fork_rng():  # building a backbone draws from torch's RNG
        backbone = build_backbone(settings)
    adapter = _load_knowledge_mllm(backbone, knowledge_mllm) if knowledge_mllm else None
    # the base backbone's views record "untrained": the settings alone rebuild it (its projector is seeded)
    weights = weights_fingerprint(backbone, adapter) if adapter else "untrained"
    if (adapter, weights) != (views_manifest.get("adapter"), views_manifest.get("weights")):
        raise DataError(
            f"the encoder rebuilt for new items (adapter {adapter}) does not have the weights that made the "
            f"checkpoint's item views ({views_manifest.get('adapter')}, fingerprint {views_manifest.get('weights')}): "
            "its stage folders were changed after training; retrain to make them again."
        )
    if knowledge_mllm:
        arrays = _knowledge_views(config, backbone, items, settings, progress, knowledge_mllm.get("distillation"))
    else:
        arrays = backbone.encode_items(items, adapter=None, progress=progress)
    return {name: value[1:] for name, value in arrays.items() if name != "image_mask"}, arrays["image_mask"][1:]


def _load_knowledge_mllm(backbone, knowledge_mllm):
    """Load the stages' projector and adapter ``K`` into ``backbone``; return the adapter's name."""
    from recbole_tpad.stages.knowledge_acquisition import KNOWLEDGE, load_projector

    adapter = Path(knowledge_mllm["adapter"])
    if not (adapter / "adapter_config.json").is_file():
        raise DataError(f"{adapter}: the Knowledge-MLLM adapter of this checkpoint is gone from the stages' cache; "
                        "rerun its training command to make it again.")
    if backbone.projector is not None and knowledge_mllm.get("projector"):
        load_projector(backbone, Path(knowledge_mllm["projector"]).parent)
    backbone.load_adapter(KNOWLEDGE, adapter)
    return KNOWLEDGE


def _knowledge_views(config, backbone, items, settings, progress, distillation=None):
    """Stage 3's encoding of ``items``: lower-layer item states, then the top layers under ``K`` (and,
    with ``distillation``, stage 2's folder, their successor views under ``T`` and its head)."""
    from recbole_tpad.stages.config import StageConfig
    from recbole_tpad.stages.item_states import compute_item_states, encode_item_views
    from recbole_tpad.stages.knowledge_acquisition import KNOWLEDGE

    stages = StageConfig.from_config(config)
    top_layers = stages.lora_layers or backbone.num_layers  # as StagePipeline._item_states
    states = compute_item_states(backbone, items, top_layers, stages, settings.batch_size, progress)
    views = encode_item_views(backbone, states, KNOWLEDGE, settings.batch_size, progress)
    if distillation and config["transition_score"]:  # stage 3's successor views, from stage 2's T and head
        from recbole_tpad.stages.representation import successor_views

        if not Path(distillation).is_dir():
            raise DataError(f"{distillation}: the Transfer-MLLM of this checkpoint is gone from the stages' cache; "
                            "rerun its training command to make it again.")
        views.update(successor_views(backbone, states, distillation, settings.batch_size, progress))
    return views
