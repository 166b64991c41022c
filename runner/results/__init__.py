"""Reading results back: metric series, one number per run and groups across seeds
(``aggregate``), ``report``/``compare``/``retrain-best`` (``report``), figures (``plots``),
pandas frames (``frames``), importances (``importances``), questions over many sweeps
(``queries``), ``status`` and ``show``."""
