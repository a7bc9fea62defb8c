"""Every environment variable the project reads: its name, default and meaning (SETTINGS), read when asked.

The one place that reads the environment (Keras Tuner's KERASTUNER_* role variables excepted: tuning/search.py
writes and reads them for the tuner). Each function reads at call time, so a test may set a variable with
monkeypatch, and takes an optional mapping in place of os.environ. It imports nothing of the project, so model/,
feedback/, space/ and app.py may all import it. The README's table of variables is checked against SETTINGS
(tests/test_settings.py).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_PATH = "model/artifacts/default"
SPACE_STORAGE = Path("/data")
SPACE_FEEDBACK_DIR = SPACE_STORAGE / "xray-covid-feedback"
LOCAL_FEEDBACK_DIR = Path("feedback_data")
CACHE_HOME = Path("~/.cache/xray-covid")
DEFAULT_PRECISION = "auto"
DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_DECODE_MEMORY_MB = 1024
DEFAULT_QUOTA_MB = 2048
DEFAULT_MAX_RECORDS = 100_000
DEFAULT_DAILY_FLAGS = 200
DEFAULT_REQUESTS_PER_CLIENT = 4
DEFAULT_HEAP_ARENAS = 2
DEFAULT_UPLOADS_PER_MINUTE = 30
DEFAULT_UPLOAD_MB_PER_MINUTE = 200
DEFAULT_UPLOAD_MB_KEPT = 1024
DEFAULT_PORT = 7860
LOCAL_SERVER_NAME = "127.0.0.1"
SPACE_SERVER_NAME = "0.0.0.0"


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, its default (in words where it depends on the place) and its meaning."""

    name: str
    default: str
    meaning: str


SETTINGS: tuple[Setting, ...] = (
    Setting("MODEL_PATH", f"`{DEFAULT_MODEL_PATH}`", "the app's model: an artifact folder or a `.keras` file"),
    Setting("XRAY_FEEDBACK_DIR", f"`{SPACE_FEEDBACK_DIR}` when `{SPACE_STORAGE}` is writable (a Space with "
            f"persistent storage), else `./{LOCAL_FEEDBACK_DIR}`",
            "where corrections are stored (the app, and `python -m feedback` without `--root`)"),
    Setting("XRAY_STORE_URL", "`XRAY_FEEDBACK_DIR`'s folder",
            "the corrections store the app and `python -m feedback` use: a folder or `sqlite:///FOLDER` (SQLite, one "
            "machine), or `postgresql://user:password@host:port/dbname` (PostgreSQL, shared by every replica; copy "
            "an SQLite store there with `python -m feedback migrate --to URL`)"),
    Setting("XRAY_READERS", "none (open mode)",
            "reader accounts, comma-separated `name:password` (or `name:pbkdf2_sha256$...` from `python -m feedback "
            "hash-password`); when set, flagging needs a valid account while predicting stays public"),
    Setting("XRAY_READERS_FILE", "none", "a file of reader accounts, one `name:password` a line (instead of "
            "`XRAY_READERS`; set only one)"),
    Setting("XRAY_PRECISION", f"`{DEFAULT_PRECISION}`",
            "the network's precision, `auto`, `float32` or `bfloat16`, for the app and every `--precision`; `auto` "
            "in the app: at start-up the loaded model is timed in both precisions at batch 1 and "
            "`XRAY_MAX_BATCH_SIZE` on the example films, and bfloat16 is kept only where it is 1.15x faster at both "
            "and gives every example the same answer (the figures and the choice are logged and cached); each "
            "decision says which precision computed it; `auto` in the commands: the frozen base is timed in both "
            "before it extracts features (the card records the precision its threshold was chosen in)"),
    Setting("XRAY_PRECISION_CACHE", f"`{CACHE_HOME}/precision.json`",
            "the cached measured choices (precision and batch size), per CPU model, model and gate version, requested precision and batch size"),
    Setting("XRAY_MAX_BATCH_SIZE", f"measured (1 or {DEFAULT_MAX_BATCH_SIZE})",
            "up to this many concurrent predictions go through the network together (1 runs them one at a time); "
            f"unset, it is measured at start-up with the precision: batch {DEFAULT_MAX_BATCH_SIZE} where it is 1.15x "
            "faster per image than batch 1, else 1 (cached with the precision)"),
    Setting("XRAY_DECODE_MEMORY_MB", str(DEFAULT_DECODE_MEMORY_MB), "memory that decodes may reserve together"),
    Setting("XRAY_FEATURE_CACHE", f"`{CACHE_HOME}/features`",
            "the frozen base's cached features (`--cache`'s default)"),
    Setting("XRAY_FEEDBACK_QUOTA_MB", str(DEFAULT_QUOTA_MB), "megabytes of stored images the store may hold"),
    Setting("XRAY_FEEDBACK_MAX_RECORDS", str(DEFAULT_MAX_RECORDS), "corrections the store may hold"),
    Setting("XRAY_FEEDBACK_DAILY_FLAGS", str(DEFAULT_DAILY_FLAGS), "flags per reader name per UTC day"),
    Setting("XRAY_FEEDBACK_DAILY_FLAGS_PER_CLIENT", str(DEFAULT_DAILY_FLAGS),
            "flags per client (the store keeps a 16-digit hash of its address) per UTC day"),
    Setting("XRAY_TRUSTED_PROXIES", "1 on a Space, else 0",
            "proxies in front of the app that append to `X-Forwarded-For`; the app reads every line of the header "
            "and turns off uvicorn's own rewriting (`FORWARDED_ALLOW_IPS` is set empty), so a loopback peer cannot "
            "name itself"),
    Setting("XRAY_REQUESTS_PER_CLIENT", str(DEFAULT_REQUESTS_PER_CLIENT),
            "requests one client (as for `XRAY_TRUSTED_PROXIES`) may have waiting or running at once, the page's own "
            "included; its next ones are refused at the queue's door with HTTP 429 until one ends (0: no limit)"),
    Setting("XRAY_HEAP_ARENAS", str(DEFAULT_HEAP_ARENAS),
            "C heap arenas the server keeps (glibc), so memory a flood's threads freed goes back to the system once it "
            "settles (0: leave the C library's own rule, e.g. MALLOC_ARENA_MAX)"),
    Setting("XRAY_UPLOADS_PER_MINUTE", str(DEFAULT_UPLOADS_PER_MINUTE),
            "uploads one client may make in a minute (0: no limit)"),
    Setting("XRAY_UPLOAD_MB_PER_MINUTE", str(DEFAULT_UPLOAD_MB_PER_MINUTE),
            "megabytes one client may upload in a minute (0: no limit)"),
    Setting("XRAY_UPLOAD_MB_KEPT", str(DEFAULT_UPLOAD_MB_KEPT),
            "megabytes of one client's uploads the app keeps at once (an upload is kept until the cache's hourly "
            "clean-up; 0: no limit)"),
    Setting("SPACE_ID", "unset", "set by Hugging Face on a Space: the app then listens on every interface and "
            "trusts one proxy"),
    Setting("PORT", str(DEFAULT_PORT), "the port the app listens on"),
    Setting("GRADIO_SERVER_PORT", str(DEFAULT_PORT), "the port, where `PORT` is unset"),
    Setting("GRADIO_SERVER_NAME", f"{LOCAL_SERVER_NAME} (this machine only), {SPACE_SERVER_NAME} on a Space",
            "the address the app listens on"),
    Setting("GRADIO_DEFAULT_CONCURRENCY_LIMIT", "1",
            "predictions that miss the batcher (a flag's own prediction) run at most this many at once"),
    Setting("GRADIO_BLOCKED_PATHS", "none",
            "comma-separated paths Gradio must never serve (the store is always added)"),
    Setting("GRADIO_TEMP_DIR", "the system's temporary folder's `gradio/`",
            "Gradio's cache (uploads, served files); each running app keeps its files in a folder of its own inside "
            "it and, at start, removes the folders of instances no longer running (a killed one's uploads)"),
    Setting("KERAS_HOME", "`~/.keras`", "Keras' folder, where the ImageNet VGG-16 weights are looked for"),
    Setting("HF_TOKEN", "none", "the Hugging Face token `python -m space.deploy` uploads with"),
)
NAMES = frozenset(s.name for s in SETTINGS)


def text(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The variable's value without surrounding spaces, "" when unset; KeyError for a variable SETTINGS lacks."""
    if name not in NAMES:
        raise KeyError(f"{name} is not a documented setting: add it to settings.SETTINGS")
    return (os.environ if environ is None else environ).get(name, "").strip()


def _whole(name: str, default: int, environ: Mapping[str, str] | None) -> int:
    """A whole number (0 or more), or the default when unset or blank; ValueError naming the variable otherwise."""
    value = text(name, environ)
    if not value:
        return default
    if not re.fullmatch(r"[0-9]+", value):
        raise ValueError(f"{name} must be a whole number (0 or more), got {value!r}")
    return int(value)


def _positive_or_default(name: str, default: int, environ: Mapping[str, str] | None) -> int:
    """A positive whole number; the default when unset or anything else."""
    value = text(name, environ)
    return int(value) if value.isdigit() and int(value) > 0 else default


def on_space(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the app runs on a Hugging Face Space (SPACE_ID set)."""
    return bool(text("SPACE_ID", environ))


def model_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The app's model, $MODEL_PATH; None when unset (the app then serves model.artifact.DEFAULT_ARTIFACT)."""
    chosen = text("MODEL_PATH", environ)
    return Path(chosen) if chosen else None


def feedback_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$XRAY_FEEDBACK_DIR, else Hugging Face persistent storage (/data) when writable, else ./feedback_data."""
    chosen = text("XRAY_FEEDBACK_DIR", environ)
    if chosen:
        return Path(chosen)
    if SPACE_STORAGE.is_dir() and os.access(SPACE_STORAGE, os.W_OK):
        return SPACE_FEEDBACK_DIR
    return LOCAL_FEEDBACK_DIR


def store_url(environ: Mapping[str, str] | None = None) -> str:
    """$XRAY_STORE_URL (a folder, sqlite:///... or postgresql://...), else the folder of feedback_dir()."""
    return text("XRAY_STORE_URL", environ) or str(feedback_dir(environ))


def reader_accounts(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """($XRAY_READERS, $XRAY_READERS_FILE), each "" when unset."""
    return text("XRAY_READERS", environ), text("XRAY_READERS_FILE", environ)


def precision(environ: Mapping[str, str] | None = None) -> str:
    """$XRAY_PRECISION in lower case, else auto (checked against the known names by model.precision)."""
    return (text("XRAY_PRECISION", environ) or DEFAULT_PRECISION).lower()


def precision_cache(environ: Mapping[str, str] | None = None) -> Path:
    """The file of cached `auto` precision choices."""
    return Path(text("XRAY_PRECISION_CACHE", environ) or CACHE_HOME.expanduser() / "precision.json")


def feature_cache(environ: Mapping[str, str] | None = None) -> Path:
    """The folder of cached features."""
    return Path(text("XRAY_FEATURE_CACHE", environ) or CACHE_HOME.expanduser() / "features")


def keras_home(environ: Mapping[str, str] | None = None) -> Path:
    """Keras' own folder ($KERAS_HOME, else ~/.keras)."""
    return Path(text("KERAS_HOME", environ) or Path("~/.keras").expanduser())


def max_batch_size(environ: Mapping[str, str] | None = None) -> int | None:
    """The forced batch of concurrent predictions (at least 1), or None when unset: serving measures it (up to
    DEFAULT_MAX_BATCH_SIZE); ValueError when not a whole number."""
    if not text("XRAY_MAX_BATCH_SIZE", environ):
        return None
    return max(1, _whole("XRAY_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE, environ))


def decode_memory_bytes(environ: Mapping[str, str] | None = None) -> int:
    """Bytes that decodes may reserve together (a value that is not a positive whole number reads as the default)."""
    return _positive_or_default("XRAY_DECODE_MEMORY_MB", DEFAULT_DECODE_MEMORY_MB, environ) * 2**20


def store_quota_bytes(environ: Mapping[str, str] | None = None) -> int:
    """Bytes of stored images the corrections store may hold."""
    return _whole("XRAY_FEEDBACK_QUOTA_MB", DEFAULT_QUOTA_MB, environ) * 2**20


def store_max_records(environ: Mapping[str, str] | None = None) -> int:
    """Corrections the store may hold."""
    return _whole("XRAY_FEEDBACK_MAX_RECORDS", DEFAULT_MAX_RECORDS, environ)


def daily_flags(environ: Mapping[str, str] | None = None) -> int:
    """Flags per reader per UTC day."""
    return _whole("XRAY_FEEDBACK_DAILY_FLAGS", DEFAULT_DAILY_FLAGS, environ)


def daily_flags_per_client(environ: Mapping[str, str] | None = None) -> int:
    """Flags per client per UTC day."""
    return _whole("XRAY_FEEDBACK_DAILY_FLAGS_PER_CLIENT", DEFAULT_DAILY_FLAGS, environ)


def trusted_proxies(environ: Mapping[str, str] | None = None) -> int:
    """Proxies in front of the app that append to X-Forwarded-For: $XRAY_TRUSTED_PROXIES, else 1 on a Hugging
    Face Space, else 0 (the header is then ignored: a client could write anything in it)."""
    value = text("XRAY_TRUSTED_PROXIES", environ)
    if value.isdigit():
        return int(value)
    return 1 if on_space(environ) else 0


def requests_per_client(environ: Mapping[str, str] | None = None) -> int:
    """Requests one client may have waiting or running at once (0: no limit)."""
    return _whole("XRAY_REQUESTS_PER_CLIENT", DEFAULT_REQUESTS_PER_CLIENT, environ)


def heap_arenas(environ: Mapping[str, str] | None = None) -> int:
    """C heap arenas a server keeps (0: the C library's own rule)."""
    return _whole("XRAY_HEAP_ARENAS", DEFAULT_HEAP_ARENAS, environ)


def upload_limits(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """Per client: uploads per minute, bytes per minute, bytes kept at once (each 0: no limit)."""
    return (_whole("XRAY_UPLOADS_PER_MINUTE", DEFAULT_UPLOADS_PER_MINUTE, environ),
            _whole("XRAY_UPLOAD_MB_PER_MINUTE", DEFAULT_UPLOAD_MB_PER_MINUTE, environ) * 2**20,
            _whole("XRAY_UPLOAD_MB_KEPT", DEFAULT_UPLOAD_MB_KEPT, environ) * 2**20)


def gradio_cache(environ: Mapping[str, str] | None = None) -> Path:
    """Gradio's cache folder: $GRADIO_TEMP_DIR, else the system's temporary folder's gradio/ (as Gradio's own
    default)."""
    return Path(text("GRADIO_TEMP_DIR", environ) or (Path(tempfile.gettempdir()) / "gradio").resolve())


def use_gradio_cache(folder: Path) -> None:
    """Make `folder` Gradio's cache for this process (Gradio reads GRADIO_TEMP_DIR when it makes components and
    files, so before the demo is built)."""
    os.environ["GRADIO_TEMP_DIR"] = str(folder)


def server_name(environ: Mapping[str, str] | None = None) -> str:
    """The address to listen on: $GRADIO_SERVER_NAME, else every interface on a Hugging Face Space, else 127.0.0.1
    (this machine only)."""
    return text("GRADIO_SERVER_NAME", environ) or (SPACE_SERVER_NAME if on_space(environ) else LOCAL_SERVER_NAME)


def server_port(environ: Mapping[str, str] | None = None) -> int:
    """$PORT, else $GRADIO_SERVER_PORT, else 7860; ValueError when not a number."""
    value = text("PORT", environ) or text("GRADIO_SERVER_PORT", environ)
    if value and not value.isdigit():
        raise ValueError(f"PORT and GRADIO_SERVER_PORT must be a port number, got {value!r}")
    return int(value or DEFAULT_PORT)


def network_slots(environ: Mapping[str, str] | None = None) -> int:
    """How many predictions may run at once for all events together: Gradio's default concurrency limit (1)."""
    return _positive_or_default("GRADIO_DEFAULT_CONCURRENCY_LIMIT", 1, environ)


def blocked_paths(environ: Mapping[str, str] | None = None) -> list[str]:
    """The paths $GRADIO_BLOCKED_PATHS names (comma-separated)."""
    return [p for p in text("GRADIO_BLOCKED_PATHS", environ).split(",") if p.strip()]


def hf_token(environ: Mapping[str, str] | None = None) -> str:
    """$HF_TOKEN, "" when unset."""
    return text("HF_TOKEN", environ)


def quiet_tensorflow() -> None:
    """Ask TensorFlow's C++ side, which reads TF_CPP_MIN_LOG_LEVEL as it starts, for errors only (not its start-up
    notices), unless the environment already sets a level: for the command lines without --verbose."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def distrust_forwarded_headers() -> None:
    """Tell uvicorn (which reads FORWARDED_ALLOW_IPS) to trust no proxy's forwarded headers: the app reads
    X-Forwarded-For itself (trusted_proxies), so a loopback peer cannot name itself."""
    os.environ["FORWARDED_ALLOW_IPS"] = ""
