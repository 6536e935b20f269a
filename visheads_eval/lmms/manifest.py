"""Registration of ``llava_visheads`` with lmms-eval (entry-point group ``lmms_eval.models``)."""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest


def manifests() -> list[ModelManifest]:
    """The payload lmms-eval loads from this package's entry point."""
    return [
        ModelManifest(
            model_id="llava_visheads",
            simple_class_path="visheads_eval.lmms.model.LlavaVisheads",
            chat_class_path="visheads_eval.lmms.model.LlavaVisheadsChat",
        )
    ]
