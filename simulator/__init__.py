"""The provider simulator: a real HTTP server imitating kie.ai and sunoapi.org."""

from .config import KNOBS, SimConfig
from .server import SimServer

__all__ = ["KNOBS", "SimConfig", "SimServer"]
