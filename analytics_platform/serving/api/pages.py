"""The API's browser pages, ``/docs`` (Swagger UI) and ``/graphql`` (GraphiQL), on locally served assets
(:mod:`analytics_platform.serving.api.assets`) so they work without the internet."""

from __future__ import annotations

import html
import json

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from strawberry.fastapi import GraphQLRouter

from analytics_platform.serving.api import assets

MISSING = """<!doctype html><html><head><title>{title}</title></head><body style="font-family: sans-serif">
<h1>{title}</h1><p>This page's JavaScript and CSS are not installed on this machine. Run <code>make install</code>
(or <code>python -m analytics_platform.serving.api.assets</code>) where the API runs, then reload.</p>
<p>Missing: {missing}</p><p>The API itself works: <a href="/openapi.json">/openapi.json</a> is its schema.</p>
</body></html>"""

GRAPHIQL = """<!doctype html>
<html>
  <head>
    <title>analytics-platform GraphiQL</title>
    <style>body {{ margin: 0; }} #graphiql {{ height: 100vh; }}</style>
    <link rel="stylesheet" href="{css}" />
    <script src="{react}"></script>
    <script src="{react_dom}"></script>
    <script src="{graphiql}"></script>
  </head>
  <body>
    <div id="graphiql">Loading...</div>
    <script>
      const fetcher = GraphiQL.createFetcher({{ url: window.location.pathname }});
      ReactDOM.createRoot(document.getElementById("graphiql")).render(
        React.createElement(GraphiQL, {{
          fetcher,
          defaultQuery: {query},
          defaultHeaders: {headers},
          defaultEditorToolsVisibility: "headers",
          shouldPersistHeaders: true,
        }}),
      );
    </script>
  </body>
</html>"""

EXAMPLE_QUERY = """# Metrics of the analytics lakehouse.
# Put your API key in Headers (below), then run: Ctrl-Enter.
{
  metrics { name filters }
  metric(name: "daily_active_users", limit: 5) {
    rows
    nextCursor
    freshnessSeconds
    asOf { build raw { table snapshotId newestEventAt } }
  }
}
"""


def _missing_page(title: str) -> HTMLResponse:
    missing = ", ".join(html.escape(str(path.relative_to(assets.STATIC_DIR.parent))) for path in assets.missing())
    return HTMLResponse(MISSING.format(title=title, missing=missing), status_code=503)


def add_docs_page(app: FastAPI) -> None:
    """``/docs``: Swagger UI on the local assets (create the app with ``docs_url=None``)."""
    assets.STATIC_DIR.mkdir(parents=True, exist_ok=True)
    app.mount("/static", StaticFiles(directory=assets.STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if assets.missing():
            return _missing_page("API docs")
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=assets.url_of("swagger-ui-dist", "swagger-ui-bundle.js"),
            swagger_css_url=assets.url_of("swagger-ui-dist", "swagger-ui.css"),
            swagger_favicon_url=assets.url_of("swagger-ui-dist", "favicon-32x32.png"),
        )


class LocalGraphiQLRouter(GraphQLRouter):
    """strawberry's router, with a GraphiQL page on the local assets and an example that authenticates."""

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        if assets.missing():
            return _missing_page("GraphiQL")
        page = GRAPHIQL.format(
            css=assets.url_of("graphiql", "graphiql.min.css"),
            react=assets.url_of("react", "umd/react.production.min.js"),
            react_dom=assets.url_of("react-dom", "umd/react-dom.production.min.js"),
            graphiql=assets.url_of("graphiql", "graphiql.min.js"),
            query=json.dumps(EXAMPLE_QUERY),
            headers=json.dumps(json.dumps({"Authorization": "Bearer <your API key>"})),
        )
        return HTMLResponse(page)
