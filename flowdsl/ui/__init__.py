"""The dashboard: ``flowdsl ui --store URL`` (``pip install 'flowdsl[ui]'``).

A small Starlette application over one store: the runs (filtered, paged,
updated live), each run's page (the run viewer's page), and the actions
cancel, resume, retry and send event, also as a JSON API. See `create_app`.
"""

from ._app import DEFAULT_PORT, create_app, serve

__all__ = ["DEFAULT_PORT", "create_app", "serve"]
