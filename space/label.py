"""The probability box: Gradio's Label, whose `label` can be the model's decision rather than the likelier class."""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.components.label import LabelData


def decision_label(label: str) -> gr.Label:
    """gr.Label that also takes a value of its own output's shape, {"label": ..., "confidences": [{"label": ...,
    "confidence": ...}, ...]} (space.presentation.label_scores), and sends it as given.

    Gradio's Label names the class of highest confidence as its `label`; below a threshold of 0.5 that is "negative"
    for an image the model calls positive, so API clients read the opposite of the decision. As in space/upload.py,
    the one method is replaced on this instance (a Component subclass makes Gradio write a .pyi stub at import).
    """
    box = gr.Label(label=label, show_heading=False)
    stock = box.postprocess

    def postprocess(value: Any) -> LabelData | dict | None:
        if isinstance(value, dict) and isinstance(value.get("confidences"), list):
            return LabelData(**value)
        return stock(value)

    box.postprocess = postprocess
    return box
