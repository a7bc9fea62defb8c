"""The corrections handoff: the one format in which feedback/ (the store's export) and model/ (training's data
folders) meet, so neither room writes the other's words. It imports nothing of the project; both rooms import it.

An exported corrections folder is an ordinary labelled folder: the image files under one folder per label and a
MANIFEST_NAME whose IDENTITY_COLUMN names each picture by its one identity (`identity`).
"""

from __future__ import annotations

MANIFEST_NAME = "MANIFEST.csv"
DIAGNOSES = ("positive", "negative", "uncertain")
"""A reader's verdict on what the image shows (the model's question)."""
INPUT_VERDICTS = ("in_scope", "out_of_scope")
"""A reader's verdict on the input itself, for the input check: an adult frontal chest film the model should answer,
or not one (refusing it is right)."""
DIAGNOSIS_FOLDERS = {"positive": "covid", "negative": "not_covid"}
"""The label folder of each decided diagnosis; training reads the positive one as COVID-19 (model.config's
DEFAULT_POSITIVE_FOLDERS) and every other folder as negative. An uncertain verdict is written nowhere."""
INPUT_FOLDERS = {verdict: verdict for verdict in INPUT_VERDICTS}
FEEDBACK_SOURCE = "feedback"
"""The `source` a corrections folder's images are reported under."""
IDENTITY_COLUMN = "pixel_sha256"
READERS_COLUMN = "readers"
MANIFEST_COLUMNS = ("file", "label", "patient_id", "source", "sha256", IDENTITY_COLUMN, READERS_COLUMN,
                    "n_corrections")
INPUT_MANIFEST_COLUMNS = ("file", "label", "model_said", "sha256", IDENTITY_COLUMN, READERS_COLUMN, "n_corrections")


def identity(pixel_sha256: str | None, file_sha256: str) -> str:
    """A picture's one identity, wherever it is counted (the store's review, its export, training's merge): the
    SHA-256 of its decoded pixels (model.images.pixel_sha256) where known, else its file's bytes' hash (records made
    before pixels were hashed)."""
    return pixel_sha256 or file_sha256
