"""Running one run: the worker process that calls the task (``worker``), what the task sees
(``context``: ``runner.log``, ``runner.current_run``), several ranks of one run (``ranks``), task
references (``tasks``), seeding (``seeding``), trackers (``trackers``) and tracebacks read back
from another process (``tracebacks``)."""
