"""Adaptive search: ``+sweep=optuna``. Optuna proposes each trial the moment a slot frees, and
its pruners stop trials early from inside the running task; runner's run store stays the only
truth: every trial is an ordinary run directory frozen before it starts, and the study is
rebuilt from FLAG files and recorded decisions every time it is needed (never read back from an
optuna database that a kill could leave torn).

* ``config``:  the ``sweep.*`` settings of a study, samplers and pruners (optuna imported lazily)
* ``space``:   the search space, in the grammar ``random.yaml`` uses, as optuna distributions
* ``history``: an in-memory optuna study rebuilt from the run store
* ``source``:  proposes and freezes the next trial for the sweep loop (the loop's one door)
* ``pruning``: judges a running trial's reports inside the task (``runner.TrialPruned``)
* ``plan``:    ``python -m runner +sweep=optuna ...``: the plan a study is frozen from
"""
