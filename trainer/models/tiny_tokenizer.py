"""The character-level tokenizer of thinkgym's tiny default model.

Every printable ASCII character and the newline is one token, each of the four
R1-Zero tags (``<think>``, ``</think>``, ``<answer>``, ``</answer>``) is one
token, and ``<pad>``, ``<s>``, ``</s>`` and ``<unk>`` are the special tokens
(any other character encodes as ``<unk>``). Nothing is added when encoding, so
``decode(encode(text)) == text`` for any text over the alphabet, and a prompt
is tokenized the same whether it comes alone or before its completion.

It is a plain :class:`~transformers.PreTrainedTokenizerFast` built with the
``tokenizers`` library (a BPE model with no merges, i.e. one token per
character, and a decoder that joins tokens without spaces), so
``AutoTokenizer.from_pretrained`` loads it with no custom code.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
ALPHABET = "".join(chr(c) for c in range(32, 127)) + "\n"
"""The characters that are tokens: printable ASCII and the newline."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['content'] }}"
    "{% if message['role'] == 'system' %}{{ '\\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
"""Messages are joined as plain text: a system message ends with a newline, an
assistant message with EOS, and the generation prompt is empty. So a lone user
message renders to exactly its content, the text the model was trained on."""


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny model's tokenizer; ids are special tokens, then the alphabet,
    then the tags (the same on every call)."""
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *ALPHABET])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    backend.add_tokens([AddedToken(t, normalized=False, special=False) for t in TAGS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                        unk_token=UNK, clean_up_tokenization_spaces=False,
                                        model_input_names=["input_ids", "attention_mask"])  # a Llama takes no token types
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
