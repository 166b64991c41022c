"""runner as a Hydra plugin: ``hydra/launcher=runner`` and ``hydra/sweeper=runner``."""
