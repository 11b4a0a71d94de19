"""The tiny causal LLM (``tiny-llama``) and the byte-level tokenizer every tiny build shares.

Seeded: the same weights on every machine.
"""

import torch

HIDDEN = 64
# Special tokens every tiny tokenizer carries (the union of what the MLLM processors expect).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|pad|>", "<image>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
    "<fake_token_around_image>", "<global-img>", "<end_of_utterance>",
] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]


def tiny_tokenizer():
    """Byte-level BPE without merges (one token per byte) plus the special tokens above."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: i for i, char in enumerate(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|pad|>", bos_token="<|endoftext|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[2:]})
    return tokenizer


def tiny_text_config(tokenizer):
    from transformers import LlamaConfig

    vocab_size = len(tokenizer)
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )


def build_tiny_llama(folder):
    from transformers import LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_text_config(tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
