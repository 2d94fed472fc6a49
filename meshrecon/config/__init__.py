"""Configs: ``get_cfg()`` returns every default; YAML files and KEY VALUE lists override them."""

from meshrecon.config.config import CfgNode, closest_keys, configurable, get_cfg

__all__ = ["CfgNode", "closest_keys", "configurable", "get_cfg"]
