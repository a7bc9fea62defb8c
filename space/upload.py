"""The upload box: Gradio's File component without the empty temporary file its preprocessing leaves per upload."""

from __future__ import annotations

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import NamedString


def upload_box(label: str) -> gr.File:
    """gr.File(type="filepath") that hands over the uploaded file's own path.

    Gradio 6's File preprocessing opens a NamedTemporaryFile it never writes, closes or deletes: one zero-byte file
    in the cache per upload. This box returns the same path without creating it. (A gr.File subclass would do the
    same, but Gradio writes a .pyi stub beside the module of every Component subclass at import, which fails on a
    read-only Space; so the one method is replaced on this instance.)
    """
    box = gr.File(label=label, type="filepath")

    def uploaded_path(f: FileData) -> NamedString:
        return NamedString(f.path)

    box._process_single_file = uploaded_path
    return box
