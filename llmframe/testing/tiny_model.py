"""A tiny chat model made offline in well under a second: real weights and tokenizer files, random answers.

    from llmframe.testing.tiny_model import build_tiny_model
    path = build_tiny_model("/tmp/tiny")   # then model="transformers:/tmp/tiny" or "vllm:/tmp/tiny"

It needs the `transformers` extra (torch, transformers, tokenizers). The tokenizer is a byte-level
BPE trained on a few KB of text, with bos/eos/pad and a Jinja chat template; the model is a
2-layer Llama (hidden size 64, head_dim 32, as vLLM's CPU backend needs) with seeded random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

VOCAB_SIZE = 512
SEED = 1234
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_CORPUS_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Sentiment of this review, one word: positive, negative or neutral.",
    "Summarise the following text in one sentence.",
    "Answer with a JSON object: {\"name\": \"Ada\", \"age\": 36, \"ok\": true, \"score\": 0.5}",
    "The film was wonderful, the acting superb and the music moving.",
    "Terrible service, cold food, and a long wait. Never again.",
    "It was fine. Nothing special, nothing bad either.",
    "Classify the topic: sports, politics, science, business.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000",
    "[ ] { } , : \" true false null - + . e E",
]


def corpus() -> list[str]:
    """A few KB of training text: enough merges for words, digits and JSON punctuation."""
    return [f"{line} {i}" for i in range(12) for line in _CORPUS_LINES]


def build_tiny_model(path: str | Path, *, chat_template: bool = True) -> Path:
    """Train the tokenizer, build the model and save both with save_pretrained under path; returns path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[PAD, BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                        padding_side="left")
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    model.generation_config.do_sample = False  # a tiny random model: greedy answers keep tests repeatable
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "llmframe_tiny_model.json").write_text(json.dumps({"seed": SEED, "vocab_size": len(tokenizer)}))
    return path


VLM_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<image>{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
IMAGE_TOKEN = "<image>"


def build_tiny_vlm(path: str | Path) -> Path:
    """A tiny random vision-language model: Llava (a 1-layer CLIP vision tower on 32-pixel images, 16 patches, and
    the tiny Llama above), with its processor and a chat template for text and image parts; saved under path."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)

    path = Path(path)
    build_tiny_model(path / "text")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path / "text")
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.padding_side = "left"
    text = json.loads((path / "text" / "config.json").read_text())
    from transformers import LlamaConfig

    text_config = LlamaConfig(**{k: v for k, v in text.items() if k not in ("architectures", "transformers_version")})
    text_config.vocab_size = len(tokenizer)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=text_config,
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(SEED)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", chat_template=VLM_CHAT_TEMPLATE,
                               image_token=IMAGE_TOKEN, num_additional_image_tokens=1)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / "llmframe_tiny_model.json").write_text(json.dumps({"seed": SEED, "vocab_size": len(tokenizer),
                                                                "vision": True}))
    return path


IDEFICS3_TOKENS = ["<fake_token_around_image>", IMAGE_TOKEN, "<end_of_utterance>", "<global-img>",
                   *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))]


def build_tiny_idefics3(path: str | Path) -> Path:
    """A tiny random Idefics3 (a 1-layer SigLIP-like vision tower on 32-pixel images, 4 image tokens after its
    pixel shuffle, and the tiny Llama), with its processor (no image splitting) and the chat template above.

    vLLM runs it on CPU without torchvision (its Llava and PaliGemma paths import transformers' Pixtral image
    processor, which needs torchvision); transformers runs it too."""
    import torch
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor,
                              Idefics3VisionConfig, LlamaConfig, PreTrainedTokenizerFast)

    try:  # the Pillow backend by name (transformers 5): the default one would want torchvision
        from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil as Images
    except ImportError:
        from transformers import Idefics3ImageProcessor as Images

    path = Path(path)
    build_tiny_model(path / "text")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path / "text")
    tokenizer.add_special_tokens({"additional_special_tokens": IDEFICS3_TOKENS})
    tokenizer.padding_side = "left"
    text = json.loads((path / "text" / "config.json").read_text())
    text_config = LlamaConfig(**{k: v for k, v in text.items() if k not in ("architectures", "transformers_version")})
    text_config.vocab_size = len(tokenizer)
    vision = Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                  image_size=32, patch_size=8)
    config = Idefics3Config(vision_config=vision, text_config=text_config, scale_factor=2,
                            image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                            pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(SEED)
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    images = Images(size={"longest_edge": 32}, max_image_size={"longest_edge": 32}, do_image_splitting=False)
    processor = Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=VLM_CHAT_TEMPLATE)  # (32 / 8)^2 patches / 2^2
    model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / "llmframe_tiny_model.json").write_text(json.dumps({"seed": SEED, "vocab_size": len(tokenizer),
                                                                "vision": True}))
    return path


def build_tiny_encoder(path: str | Path, *, pooling: str | None = None) -> Path:
    """A tiny random BERT encoder (hidden size 32) with the tiny model's tokenizer, for embeddings; its path.

    pooling: None (a bare model: llmframe mean-pools it), or "cls" / "mean" / "max" / "lasttoken" to ship a
    sentence-transformers config (modules.json, 1_Pooling/config.json, 2_Normalize) that asks for it.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = Path(path)
    build_tiny_model(path / "tokenizer-source", chat_template=False)
    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer-source")
    tokenizer.padding_side = "right"
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(SEED)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    if pooling is not None:
        (path / "1_Pooling").mkdir()
        modes = {f"pooling_mode_{m}": m.split("_")[0] == pooling for m in ("cls_token", "mean_tokens",
                                                                            "max_tokens", "lasttoken")}
        (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
        (path / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]))
    return path
