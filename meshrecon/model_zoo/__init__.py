"""The model zoo: configs shipped inside the package, and the weights released for them."""

from meshrecon.model_zoo.model_zoo import (
    get,
    get_checkpoint_url,
    get_config,
    get_config_file,
    list_configs,
)

__all__ = ["get", "get_checkpoint_url", "get_config", "get_config_file", "list_configs"]
