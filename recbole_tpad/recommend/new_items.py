"""Items added to the ``.item`` file after training, encoded by TPAD's Knowledge-MLLM.

TPAD scores an item through its frozen views (text, image, fused), which the distilled
Knowledge-MLLM (LoRA adapter ``K`` on the frozen backbone, with the stage-1a projector) makes from
the item's text and photo. An item that had no interaction at training time only needs those
views: :func:`encode_new_items` loads the adapter the checkpoint's views came from and encodes the
new rows with :meth:`recbole_tpad.features.Backbone.encode_items`; the model then extends its item
table (``TPAD.add_items``). Models that score items by trained per-item tables only cannot.
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


def encode_new_items(config, knowledge_mllm, item_file, tokens, progress=False):
    """Views of items ``tokens`` of ``item_file`` under the Knowledge-MLLM: ``{view: [n, H]}, image_mask [n]``."""
    from recbole_tpad.features import FeaturesConfig, build_backbone, load_items
    from recbole_tpad.stages.knowledge_acquisition import KNOWLEDGE, load_projector

    adapter = Path(knowledge_mllm["adapter"])
    if not (adapter / "adapter_config.json").is_file():
        raise DataError(f"{adapter}: the Knowledge-MLLM adapter of this checkpoint is gone from the stages' cache; "
                        "rerun its training command to make it again.")
    item_file = Path(item_file)
    settings = FeaturesConfig.from_config(config)
    items = load_items(_ItemFileConfig(config, item_file), _Tokens(config["ITEM_ID_FIELD"], tokens), settings)
    with torch.random.fork_rng():  # building a backbone draws from torch's RNG
        backbone = build_backbone(settings)
    if backbone.projector is not None and knowledge_mllm.get("projector"):
        load_projector(backbone, Path(knowledge_mllm["projector"]).parent)
    backbone.load_adapter(KNOWLEDGE, adapter)
    arrays = backbone.encode_items(items, adapter=KNOWLEDGE, progress=progress)
    return {name: value[1:] for name, value in arrays.items() if name != "image_mask"}, arrays["image_mask"][1:]
