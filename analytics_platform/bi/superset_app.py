"""Run by Superset's own venv (``<venv>/bin/python superset_app.py ...``), never imported by the platform.

- ``prepare BUNDLE.zip USER``: create the admin ``USER`` (or reset its password) from
  ``SUPERSET_ADMIN_PASSWORD``, then import the bundle with ``ImportAssetsCommand``, which upserts the
  database, datasets, charts and dashboards by UUID. ``superset import-dashboards`` is not enough: it
  overwrites the dashboard but keeps the charts and datasets it finds, so an edited chart would not change.
- ``export OUT.zip USER``: every dashboard with its charts, datasets and database, as Superset exports them.

One app boot (~7 s) does both steps of ``prepare``, where the ``superset`` CLI would boot once per step.
"""

from __future__ import annotations

import os
import sys
from zipfile import ZipFile


def prepare(bundle_path: str, username: str) -> None:
    from superset import db, security_manager
    from superset.commands.importers.v1.assets import ImportAssetsCommand
    from superset.commands.importers.v1.utils import get_contents_from_bundle
    from superset.utils.core import override_user

    password = os.environ["SUPERSET_ADMIN_PASSWORD"]
    user = security_manager.find_user(username=username)
    if user is None:
        role = security_manager.find_role("Admin")
        user = security_manager.add_user(username, "Admin", "User", f"{username}@localhost", role, password=password)
        if not user:
            sys.exit(f"could not create the Superset user {username!r}")
    else:
        security_manager.reset_password(user.id, password)
    db.session.commit()

    with ZipFile(bundle_path) as bundle:
        contents = get_contents_from_bundle(bundle)
    with override_user(user):
        try:
            ImportAssetsCommand(contents).run()
        except Exception as error:  # CommandInvalidError carries a message per file
            messages = getattr(error, "normalized_messages", lambda: None)()
            sys.exit(f"import of {bundle_path} failed: {error} {messages or ''}")
    print(f"imported {len(contents)} files from {bundle_path}")


def export(out_path: str, username: str) -> None:
    from superset import db, security_manager
    from superset.commands.dashboard.export import ExportDashboardsCommand
    from superset.models.dashboard import Dashboard
    from superset.utils.core import override_user

    ids = [id_ for (id_,) in db.session.query(Dashboard.id).all()]
    with override_user(security_manager.find_user(username=username)), ZipFile(out_path, "w") as bundle:
        for name, content in ExportDashboardsCommand(ids).run():
            bundle.writestr(f"export/{name}", content())
    print(f"exported {len(ids)} dashboards to {out_path}")


def main() -> None:
    from superset.app import create_app

    command, path, username = sys.argv[1:4]
    with create_app().app_context():
        {"prepare": prepare, "export": export}[command](path, username)


if __name__ == "__main__":
    main()
