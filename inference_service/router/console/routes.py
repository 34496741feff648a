"""Serve the dashboard: ``/ui`` is the page, ``/ui/<file>`` its assets from ``static/``.

The page and assets are public (they carry no data); everything they show comes from the
authenticated API, with the key the page asks for when the service answers 401.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from inference_service.router.serving.errors import not_found
from inference_service.router.tenancy.scopes import requires

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).parent / "static"
_MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
#: Only files shipped in static/ are served: the name is looked up, never joined onto a path.
_ASSETS = {path.name: path for path in STATIC_DIR.iterdir() if path.suffix in _MEDIA_TYPES}
_NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate: an upgraded service serves its own dashboard


@router.get("/ui")
@requires()  # static files, no data: what they show comes from the scoped API
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_NO_CACHE)


@router.get("/ui/{name}")
@requires()
async def asset(name: str) -> FileResponse:
    path = _ASSETS.get(name)
    if path is None:
        raise not_found(f"no dashboard asset {name!r}", code="not_found", param=None)
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_NO_CACHE)
