"""recbole-tpad: LLM-enhanced multimodal session-based recommendation (TPAD, KDSR) for RecBole."""

from recbole_tpad import compat as _compat

_compat.apply()

__version__ = "0.1.0"
