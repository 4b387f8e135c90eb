"""A classifier folder as a transformers sequence-classification model (the exported model loads where users
load models).

EmoForge's classifier pools the encoder's tokens (mean by default, the setting bench.goemotions measured) before
its linear sigmoid head. No native transformers class pools by the mean (BertForSequenceClassification uses the
[CLS] pooler with a tanh layer), so the export carries a 40-line model class of its own, `modeling_emoforge.py`,
named in `config.json`'s `auto_map`:

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
    pipeline("text-classification", model=folder, trust_remote_code=True, top_k=None)

give EmoForge's probabilities (problem_type multi_label_classification: the pipeline applies a sigmoid;
id2label names the columns; the decision threshold is in the config). The weights file stores the encoder
under its usual prefix ("bert." for BERT-like encoders) and the head as "classifier.", the layout of any
*ForSequenceClassification checkpoint, so AutoModel and sentence-transformers still read the encoder from
the same folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODELING_FILE = "modeling_emoforge.py"
CLASS_NAME = "EmoForgeForSequenceClassification"

_MODELING = '''"""EmoForge multi-label emotion classifier: an encoder, {pooling} pooling over its tokens, a linear head.
Probabilities are the sigmoid of the logits (config.problem_type = multi_label_classification)."""

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.auto.configuration_auto import CONFIG_MAPPING


class {class_name}(PreTrainedModel):
    config_class = CONFIG_MAPPING[{model_type!r}]
    base_model_prefix = {prefix!r}

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, AutoModel.from_config(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if module.bias is not None:
                module.bias.data.zero_()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        encoder = getattr(self, self.base_model_prefix)
        inputs = {{"input_ids": input_ids, "attention_mask": attention_mask}}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = encoder(**inputs).last_hidden_state
        if getattr(self.config, "emoforge_pooling", "mean") == "cls":
            pooled = hidden[:, 0]
        else:
            if attention_mask is None:
                attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return SequenceClassifierOutput(loss=loss, logits=logits)
'''


def base_model_prefix(folder: Path) -> tuple[str, str]:
    """(model_type, the attribute name the encoder's own *ForSequenceClassification classes keep it under)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    config = AutoConfig.from_pretrained(str(folder))
    return config.model_type, MODEL_MAPPING[type(config)].base_model_prefix


def write_sequence_classification(folder: str | Path, labels: list[str], thresholds: dict[str, Any],
                                  pooling: str, max_length: int) -> None:
    """Rewrite a copied classifier folder (encoder weights at the root, head in 2_Dense/) so that transformers
    loads it as a sequence-classification model with the same probabilities."""
    from safetensors.numpy import load_file, save_file

    folder = Path(folder)
    model_type, prefix = base_model_prefix(folder)
    encoder = load_file(str(folder / "model.safetensors"))
    head = load_file(str(folder / "2_Dense" / "model.safetensors"))
    weights = {(k if k.startswith(prefix + ".") else f"{prefix}.{k}"): v for k, v in encoder.items()}
    weights["classifier.weight"] = head["linear.weight"]
    weights["classifier.bias"] = head["linear.bias"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / MODELING_FILE).write_text(_MODELING.format(pooling=pooling, class_name=CLASS_NAME,
                                                         model_type=model_type, prefix=prefix))
    config = json.loads((folder / "config.json").read_text())
    config.update({
        "architectures": [CLASS_NAME],
        "auto_map": {"AutoModelForSequenceClassification": f"{MODELING_FILE[:-3]}.{CLASS_NAME}"},
        "problem_type": "multi_label_classification",
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
        "emoforge_pooling": pooling,
        "threshold": float(thresholds.get("global", 0.5)),
        "per_label_thresholds": thresholds.get("per_label") or None,
    })
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    # pipeline(..., truncation=True) then cuts texts where EmoForge does.
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.exists():
        data = json.loads(tokenizer_config.read_text())
        data["model_max_length"] = int(max_length)
        tokenizer_config.write_text(json.dumps(data, indent=2))
