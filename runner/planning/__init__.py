"""Planning a sweep: command-line overrides and ``conf/sweep/*.yaml`` expanded into an ordered
list of runs (``sweep``, the door for other sweep kinds: ``sweep.PLANNERS``), each with a stable
id (``run_id``), and run filters (``filters``)."""
