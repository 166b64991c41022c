"""runner's Hydra sweeper (``hydra/sweeper=runner``); its code is in ``runner.hydra_plugin``."""
