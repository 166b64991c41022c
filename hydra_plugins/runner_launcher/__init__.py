"""runner's Hydra launcher (``hydra/launcher=runner``); its code is in ``runner.hydra_plugin``."""
