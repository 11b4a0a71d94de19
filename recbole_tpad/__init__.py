"""recbole-tpad: LLM-enhanced multimodal session-based recommendation (TPAD, KDSR) for RecBole.

Importing the package changes nothing in RecBole: the entry points (the runner's ``load_config``,
the trainers, the bench scripts) apply the compatibility shims with ``compat.apply()``.
"""

__version__ = "0.1.0"
