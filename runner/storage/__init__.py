"""The run store on disk: a frozen sweep and its runs (``store``), one run's FLAG-file states
(``state``), file names (``paths``), crash-safe writes (``atomic``), recovery of dead leases
(``recovery``), classes of failure (``failures``), code provenance (``provenance``) and per-step
metrics (``metrics``)."""
