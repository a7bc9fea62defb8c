"""The input gate: is this an adult frontal chest radiograph? Checked before every COVID-19 answer.

Two checks, cheapest first. A DICOM header that names something else (another Modality, ViewPosition or
BodyPartExamined, a child's PatientAge) refuses without the network; a header that says nothing known, or the
chest, leaves it to the image. Otherwise the gate reads features the forward pass already computes
(`gate_features` in model/serving/gradcam.py: the Grad-CAM layer's map averaged on a 4 x 4 grid, and the head's
input) and applies, in numpy, a multinomial logistic regression over KINDS (refuse
when the in-scope probability is under `threshold`) and a Mahalanobis distance to the in-scope films (refuse
when it is over `novelty_threshold`: an input like nothing the gate was trained on). The gate is a file of
its artifact (GATE_FILE), trained by model/training/gate_fit.py and recorded in the model card's `gate` field.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

GATE_FILE = "gate.npz"
IN_SCOPE = "in_scope"
ANSWERED = "answered"
OUT_OF_SCOPE = "out_of_scope"
UNREADABLE = "unreadable"
STATUSES = (ANSWERED, OUT_OF_SCOPE, UNREADABLE)
MADE_FOR = "the model reads frontal chest films of adults."


@dataclass(frozen=True)
class Kind:
    """One kind of input the gate learns to refuse: its name (in gate.npz and an out-of-scope MANIFEST.csv), what a
    refusal says it looks like, its short name in the page's limitations, and where the shipped gate's training
    images of it come from (FOLDER: rows of the out-of-scope folder's MANIFEST.csv, split by patient; RENDERED: also
    made by model/training/outofscope.py). A new kind is one row here plus its images."""

    name: str
    looks_like: str
    short: str
    made: str


FOLDER, RENDERED = "folder", "rendered"
OUT_OF_SCOPE_KINDS = (
    Kind("pediatric", "a child's chest film", "a child's film", FOLDER),
    Kind("lateral", "a lateral view", "a lateral view", FOLDER),
    Kind("ct", "a CT slice", "a CT slice", FOLDER),
    Kind("photo", "a photo, not an X-ray", "a photo", RENDERED),
    Kind("document", "a document, screenshot or drawing, not an X-ray", "a document", RENDERED),
)
KINDS = (IN_SCOPE, *(kind.name for kind in OUT_OF_SCOPE_KINDS))
LOOKS_LIKE = {kind.name: kind.looks_like for kind in OUT_OF_SCOPE_KINDS}
UNLIKE = f"This does not look like a frontal chest X-ray; {MADE_FOR}"
UNLIKE_KIND = "unlike"
NO_GATE = "no input check for this model"
ADULT_AGE = 18
# The header refuses only on evidence: a value naming something else. Words are matched on the value's letters and
# digits (accents dropped, upper case), so unknown, foreign, blank or odd values fall through to the image check.
OTHER_MODALITIES = {
    "CT": "a CT image", "MR": "an MR image", "US": "an ultrasound image", "NM": "a nuclear medicine image",
    "PT": "a PET image", "MG": "a mammogram", "XA": "an angiogram", "RF": "a fluoroscopy image",
    "IO": "an intra-oral (dental) X-ray", "PX": "a panoramic dental X-ray", "BMD": "a bone densitometry scan",
    "OP": "a photograph of the eye", "OPT": "an eye OCT scan", "OCT": "an OCT scan", "ES": "an endoscopy image",
    "XC": "a camera photograph", "GM": "a microscopy image", "SM": "a slide microscopy image",
    "IVUS": "an intravascular ultrasound image", "IVOCT": "an intravascular OCT image", "TG": "a thermogram",
    "DG": "a diaphanography image", "RTIMAGE": "a radiotherapy image", "SEG": "a segmentation", "SR": "a report",
    "DOC": "a document", "ECG": "an ECG",
}
"""DICOM Modality defined terms (PS3.3 C.7.3.1.1.1) that are not a projection radiograph; CR, DX, RG and others
fall through."""
CHEST_STEMS = ("CHEST", "THORA", "TORAC", "TORAX", "TORAK", "BRUST", "POITRIN", "PECHO", "PETTO", "BORST", "BRYST",
               "BROST", "LUNG", "PULMO", "PULMA", "POLMO", "MEDIASTIN", "CXR")
"""Parts of words that name the chest (CHEST, THORAX, LUNG and Annex L's NECKCHEST, CHESTABDOMEN; TORACE, TORAX,
TÓRAX, TORAKS, BRUST, POITRINE, PECHO, PETTO, BORST, BRYST, BRÖST, LUNGE, PULMÃO, POLMONE; CXR, CHEST_PA)."""
SPINE_STEMS = ("SPINE", "WIRBEL", "VERTEBR", "LUMBA", "RACHI", "COLUMNA", "COLONNA", "SACRAL")
"""Parts of words that name the spine, which refuse even beside a chest word (THORACIC SPINE, BRUSTWIRBELSÄULE)."""
SPINE_WORDS = {"BWS", "HWS", "LWS"}
OTHER_PARTS = {
    "ABDOMEN", "ABDOMENPELVIS", "ABDOMINAL", "ACJOINT", "ADRENAL", "ANKLE", "AORTA", "ARM", "AXILLA", "BACK",
    "BLADDER", "BRAIN", "BREAST", "BUTTOCK", "CALCANEUS", "CALF", "CAROTID", "CEREBELLUM", "CERVIX", "CHEEK",
    "CLAVICLE", "COCCYX", "COLON", "CORNEA", "DUODENUM", "EAR", "ELBOW", "ESOPHAGUS", "EXTREMITY", "EYE", "EYELID",
    "FACE", "FEMUR", "FIBULA", "FINGER", "FOOT", "FEET", "FOREARM", "GALLBLADDER", "HAND", "HEAD", "HEADNECK",
    "HEEL", "HIP", "HUMERUS", "IAC", "ILEUM", "ILIUM", "JAW", "JEJUNUM", "KIDNEY", "KNEE", "KUB", "LARYNX", "LEG",
    "LIVER", "MANDIBLE", "MAXILLA", "MOUTH", "NECK", "NOSE", "ORBIT", "OVARY", "PANCREAS", "PAROTID", "PATELLA",
    "PELVIS", "PENIS", "PHARYNX", "PROSTATE", "RADIUS", "RECTUM", "RIB", "SACRUM", "SCALP", "SCAPULA", "SCLERA",
    "SCROTUM", "SHOULDER", "SINUS", "SKULL", "SPLEEN", "STERNUM", "STOMACH", "SUBMANDIBULAR", "TEETH", "TESTIS",
    "THIGH", "THUMB", "THYMUS", "THYROID", "TIBIA", "TMJ", "TOE", "TONGUE", "TOOTH", "TRACHEA", "ULNA", "URETER",
    "URETHRA", "UTERUS", "VAGINA", "VULVA", "WRIST", "ZYGOMA", "KNIE", "SCHADEL", "GENOU", "RODILLA", "GINOCCHIO",
    "CRANE", "CRANEO", "CRANIO", "BECKEN", "BASSIN",
}
"""Body parts that are not the chest: DICOM's BodyPartExamined defined terms (PS3.16 Annex L, CID 4031; the spine's
CSPINE, TSPINE, LSPINE are SPINE_STEMS) and common others; a plural (KNEES, RIBS) counts as the word."""
FRONTAL_WORDS = {"PA", "AP", "APS", "PAS", "FRONTAL", "FRONT"}
OTHER_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LATERALE", "SEITLICH", "PROFIL", "PERFIL", "LLO", "RLO", "LAO", "RAO",
               "LPO", "RPO", "OBL", "OBLIQUE", "OBLIQUA", "OBLIQUO", "MLO", "ML", "LM", "LMO", "CC", "XCC"}
"""ViewPosition words for a lateral, an oblique or a mammography view; any of them without a frontal word refuses
(decubitus LLD, RLD and words like ERECT or PORTABLE fall through)."""


def looks_like(kind: str) -> str:
    """The reason given for refusing an input the gate takes for `kind`."""
    return f"This looks like {LOOKS_LIKE[kind]}; {MADE_FOR}"


@dataclass(frozen=True)
class Scope:
    """The gate's verdict on one input: status answered or out_of_scope, the reason in words, the in-scope
    probability (None where the header decided or the model has no gate) and, for an image the gate refused, what it
    took it for: a kind of OUT_OF_SCOPE_KINDS, or UNLIKE_KIND (like nothing it was trained on)."""

    status: str
    reason: str = ""
    score: float | None = None
    looks_like: str = ""

    @property
    def answered(self) -> bool:
        return self.status == ANSWERED


UNCHECKED = Scope(ANSWERED, NO_GATE)


@dataclass(frozen=True)
class Gate:
    """Standardization, logistic regression over `kinds` and the in-scope Mahalanobis model, with thresholds.

    `components` (k x d) and `variances` (k) are the in-scope films' principal axes in standardized space; the
    distance is the sum of squared projections over variances, divided by k (about 1 for an in-scope film).
    """

    kinds: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    threshold: float
    novelty_threshold: float

    def scores(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(in-scope probability, class probabilities (n, kinds), novelty distance) of gate features (n, d)."""
        z = (np.asarray(features, dtype="float64") - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        novelty = ((z @ self.components.T) ** 2 / self.variances).mean(axis=1)
        return probs[:, self.kinds.index(IN_SCOPE)], probs, novelty

    def check(self, features: np.ndarray) -> list[Scope]:
        """One Scope per row of gate features."""
        in_scope, probs, novelty = self.scores(features)
        return [self._scope(float(p), row, float(d)) for p, row, d in zip(in_scope, probs, novelty)]

    def near_threshold(self, features: np.ndarray, margin: float) -> np.ndarray:
        """Which rows score within `margin` of either threshold (relative, for the distance), to recompute exactly."""
        in_scope, _, novelty = self.scores(features)
        return (np.abs(in_scope - self.threshold) < margin) | (np.abs(novelty / self.novelty_threshold - 1) < margin)

    def _scope(self, in_scope: float, probs: np.ndarray, novelty: float) -> Scope:
        if novelty > self.novelty_threshold:
            return Scope(OUT_OF_SCOPE, UNLIKE, in_scope, UNLIKE_KIND)
        if in_scope < self.threshold:
            others = [i for i, kind in enumerate(self.kinds) if kind != IN_SCOPE]
            likeliest = self.kinds[max(others, key=lambda i: probs[i])]
            return Scope(OUT_OF_SCOPE, looks_like(likeliest), in_scope, likeliest)
        return Scope(ANSWERED, "", in_scope)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays = {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}
        np.savez(buffer, **arrays)
        return buffer.getvalue()


def gate_version(data: bytes) -> str:
    """A gate file's version: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(data).hexdigest()[:12]


def save_gate(gate: Gate, folder: Path) -> str:
    """Write folder/GATE_FILE; returns its version."""
    data = gate.to_bytes()
    (Path(folder) / GATE_FILE).write_bytes(data)
    return gate_version(data)


def load_gate(folder: Path) -> Gate:
    """The gate of an artifact folder; ValueError for a file that is not one (unreadable, cut short, not a zip of
    arrays, or arrays that do not fit together)."""
    path = Path(folder) / GATE_FILE
    try:
        with np.load(path, allow_pickle=False) as stored:
            values = {f.name: stored[f.name] for f in fields(Gate)}
        values["kinds"] = tuple(str(k) for k in values["kinds"])
        for name in ("threshold", "novelty_threshold"):
            values[name] = float(values[name])
        gate = Gate(**values)
        problem = _shape_problem(gate)
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a usable input gate ({type(error).__name__}: {error})") from None
    if problem:
        raise ValueError(f"{path} is not a usable input gate ({problem})")
    return gate


def _shape_problem(gate: Gate) -> str:
    """What does not fit together in a gate's arrays ("" when they do): k kinds with in_scope among them, d features,
    m principal axes, positive scales and variances, finite values."""
    k, d, m = len(gate.kinds), np.shape(gate.mean), np.shape(gate.variances)
    if IN_SCOPE not in gate.kinds or len(d) != 1 or len(m) != 1:
        return f"kinds {list(gate.kinds)} must hold {IN_SCOPE!r}, mean and variances must be vectors"
    expected = {"mean": d, "scale": d, "coef": (k, *d), "intercept": (k,), "components": (*m, *d), "variances": m}
    wrong = [f"{name} has shape {np.shape(getattr(gate, name))}, not {shape}" for name, shape in expected.items()
             if np.shape(getattr(gate, name)) != shape]
    if wrong:
        return "; ".join(wrong)
    numbers = {name: np.asarray(getattr(gate, name), dtype="float64") for name in expected}
    thresholds = np.array([gate.threshold, gate.novelty_threshold])
    if not all(np.isfinite(x).all() for x in [*numbers.values(), thresholds]):
        return "it holds values that are not finite"
    if not (numbers["scale"] > 0).all() or not (numbers["variances"] > 0).all():
        return "its scales and variances must be positive"
    return ""


def _words(text: str) -> list[str]:
    """The runs of letters and digits of a header value, accents dropped, in upper case."""
    folded = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return re.findall(r"[A-Z0-9]+", folded.upper())


def _names(words: list[str], vocabulary: set[str]) -> bool:
    """Whether a word, or its singular (KNEES, RIBS), is in the vocabulary."""
    return any(word in vocabulary or (word.endswith("S") and word[:-1] in vocabulary) for word in words)


def _has_stem(words: list[str], stems: tuple[str, ...]) -> bool:
    return any(stem in word for word in words for stem in stems)


def other_body_part(text: str) -> bool:
    """Whether BodyPartExamined names a body part other than the chest: the spine (even THORACIC SPINE), or a known
    other part without a word for the chest (CHESTABDOMEN and NECKCHEST name the chest too)."""
    words = _words(text)
    if _has_stem(words, SPINE_STEMS) or _names(words, SPINE_WORDS):
        return True
    return not _has_stem(words, CHEST_STEMS) and _names(words, OTHER_PARTS)


def other_view(text: str) -> bool:
    """Whether ViewPosition names a lateral, oblique or mammography view and no frontal one (AP PORTABLE, PA ERECT
    and unknown words fall through)."""
    words = _words(text)
    return _names(words, OTHER_VIEWS) and not _names(words, FRONTAL_WORDS)


def _age_years(text: str) -> float | None:
    """A DICOM age string (nnnD/W/M/Y) in years; None for an odd one or a zero (`000Y` is written for unknown)."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY]?)\s*", (text or "").upper())
    if not match or int(match.group(1)) == 0:
        return None
    per_year = {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0, "": 1.0}[match.group(2)]
    return int(match.group(1)) / per_year


def quoted(text: str) -> str:
    """Header text as Markdown inline code on one line: shown as typed, never as a link, emphasis or HTML. The fence
    is one backtick longer than the longest run of backticks inside, padded with spaces when the text touches one."""
    text = " ".join(str(text).split())
    fence = "`" * (max(map(len, re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _years(age: float) -> str:
    return "under a year old" if age < 1 else f"{int(age)} year{'s' if age >= 2 else ''} old"


def header_scope(facts: dict[str, str]) -> Scope | None:
    """An out-of-scope verdict where a DICOM header names something else (another modality, body part or view, or a
    child's age); None where it does not say, or says something unknown. Facts are model.images.image_facts' plain
    text; the reason quotes them as inline code, so a value never renders as Markdown or HTML."""
    said = "The DICOM header says"
    modality = facts.get("Modality", "").strip().upper()
    if modality in OTHER_MODALITIES:
        return Scope(OUT_OF_SCOPE, f"{said} this is {OTHER_MODALITIES[modality]} (Modality {modality}); {MADE_FOR}")
    part = facts.get("BodyPartExamined", "")
    if other_body_part(part):
        return Scope(OUT_OF_SCOPE, f"{said} the body part is {quoted(part)}, not the chest; {MADE_FOR}")
    view = facts.get("ViewPosition", "")
    if other_view(view):
        return Scope(OUT_OF_SCOPE, f"{said} the view is {quoted(view)}, not frontal (PA or AP); {MADE_FOR}")
    age = _age_years(facts.get("PatientAge", ""))
    if age is not None and age < ADULT_AGE:
        return Scope(OUT_OF_SCOPE, f"{said} the patient is {_years(age)} (PatientAge "
                                   f"{quoted(facts['PatientAge'])}); {MADE_FOR}")
    return None
