"""The web view (``python -m runner serve``): a read-only server over the run store
(``server``), the data it shows (``data``) and its page (``static/``)."""
