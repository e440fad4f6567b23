"""The data part of a training / evaluation config (`config.data`).

The defaults live in ``configs/data_defaults.py`` (config files import nothing from this package);
this module re-exports them for library code.
"""

from configs.data_defaults import default_data_config

__all__ = ["default_data_config"]
