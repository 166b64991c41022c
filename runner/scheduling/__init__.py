"""Launching a sweep: the sweep loop that claims runnable runs and hands them to a launcher
(``scheduler``), launching or resuming a frozen sweep (``launch``) and running one run again
(``rerun``). The backends live in ``runner.launchers``."""
