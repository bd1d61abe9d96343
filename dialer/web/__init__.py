"""The status page: a read-only view of the campaigns for the people who run them.

    app.py       the ASGI app: routes, the login, rendering, the CSV of who needs a person
    pages.py     what each page shows, read from the store (every read a seek or a range)
    source.py    StatusSource: the database, and what only the serving daemon knows
    words.py     states, outcomes, reasons and holds in plain words
    charts.py    the charts' geometry, drawn by the templates as inline SVG
    security.py  the login token, the session cookie, the security headers
    templates/   Jinja2 (autoescaped); static/: the stylesheet and the refresh script

`dialer run` serves it when the config has ``[web]`` (see dialer.daemon).
"""

from dialer.web.app import status_app
from dialer.web.source import DaemonFacts, KeyHold, StatusSource

__all__ = ["DaemonFacts", "KeyHold", "StatusSource", "status_app"]
