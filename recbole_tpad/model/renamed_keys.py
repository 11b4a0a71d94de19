"""Config keys of our models that were renamed: the old names keep working, with a deprecation warning.

| old name | new name | model |
|---|---|---|
| ``backbone`` | ``session_encoder`` | TPAD, KDSR |
| ``adapter_type`` | ``view_adapter`` | TPAD |
| ``adapter_dropout`` | ``view_adapter_dropout`` | TPAD |
| ``modalities`` | ``views`` (``modalities: [text]`` reads as ``views: [id, text]``) | KDSR |
"""

from logging import getLogger

OLD_NAMES = ("backbone", "adapter_type", "adapter_dropout", "modalities")  # still read: see the table
_warned = set()


def renamed_key(config, key, old_key, convert=None):
    r"""``config[key]``, or ``convert(config[old_key])`` where a config still sets the old name.

    The plugin's YAML files set new names only, so an old name in the config is the user's: it wins,
    and RecBole's logger warns once per process.
    """
    value = config[old_key]
    if value is None:
        return config[key]
    value = convert(value) if convert else value
    if old_key not in _warned:
        _warned.add(old_key)
        getLogger().warning(f"`{old_key}` is a deprecated name of `{key}`: read as {key}={value!r}; rename it in your config.")
    return value
