"""Configuration: composing runner's and the user's YAML with Hydra (``compose``), the schemas
of runner's own sections (``schema``), run configs on disk (``configfile``), secrets kept out of
every config (``secrets``) and the trust check for files that name code (``trust``)."""
