"""Subject models: loading (hub, local, offline default) and hookpoints that define units."""

from .hookpoints import Encoder, HookSpec, decoder_layers
from .offline import DEFAULT_MODEL, OfflineModel, offline_names, resolve_offline
from .subject import Subject, default_device, load_subject, parse_dtype

__all__ = ["DEFAULT_MODEL", "Encoder", "HookSpec", "OfflineModel", "Subject", "decoder_layers",
           "default_device", "load_subject", "offline_names", "parse_dtype", "resolve_offline"]
