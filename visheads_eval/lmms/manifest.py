"""Registration of ``llava_visheads`` and ``visheads`` with lmms-eval (entry-point group ``lmms_eval.models``).

The one entry point (``llava_visheads`` in pyproject.toml) loads :func:`manifests`, which returns both models'
manifests: lmms-eval registers a manifest by its ``model_id``, whatever the entry point is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmms_eval.models.registry_v2 import ModelManifest


def manifests() -> list[ModelManifest]:
    """The payload lmms-eval loads from this package's entry point. lmms-eval is imported here, not at the
    top: importing ``lmms_eval.models`` loads the entry points, and this module must be complete by then
    (imported first, it would otherwise register nothing)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [
        ModelManifest(
            model_id="llava_visheads",
            simple_class_path="visheads_eval.lmms.model.LlavaVisheads",
            chat_class_path="visheads_eval.lmms.model.LlavaVisheadsChat",
        ),
        # Chat only (is_simple = False): lmms-eval resolves --force_simple to the chat class when a manifest has
        # no simple one, and builds chat requests (doc_to_messages) from every generate_until task.
        ModelManifest(model_id="visheads", chat_class_path="visheads_eval.lmms.visheads.Visheads"),
    ]
