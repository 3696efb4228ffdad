"""HTML pages of the HTTP server: one Jinja environment, one look, one set of headers.

Every page (subscribe, confirm, manage, unsubscribe, messages) is rendered from
``templates/web/`` with autoescaping and answered with :data:`PAGE_HEADERS`: not cached,
no referrer (links carry tokens), no framing, and a Content-Security-Policy that allows
no script and no external asset.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aiohttp import hdrs, web
from jinja2 import Environment, PackageLoader, Template, select_autoescape
from multidict import MultiDict, MultiDictProxy

PAGE_HEADERS = {
    hdrs.CACHE_CONTROL: "no-store",
    # Links carry tokens: never leak them to another site.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("syndicator", "templates"),
        autoescape=select_autoescape(["html"]),
        keep_trailing_newline=True,
    )
    env.filters["sentence"] = lambda text: str(text)[:1].upper() + str(text)[1:]
    return env


def template(name: str) -> Template:
    return environment().get_template(f"web/{name}")


def render_page(
    name: str,
    *,
    site_title: str,
    heading: str,
    language: str = "en",
    base_path: str = "/",
    status: int = 200,
    **context: Any,
) -> web.Response:
    """The page ``templates/web/<name>`` as a response with :data:`PAGE_HEADERS`."""
    body = template(name).render(
        {
            "site_title": site_title,
            "heading": heading,
            "language": language,
            "base_path": base_path,
            **context,
        }
    )
    return web.Response(
        status=status, text=body, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


async def read_form(request: web.Request) -> MultiDictProxy[Any] | None:
    """The posted form, or None when its body cannot be read as one (not UTF-8, say):
    the caller answers 400 as it does for any bad form."""
    try:
        return await request.post()
    except (UnicodeDecodeError, ValueError):
        return None


EMPTY_FORM: MultiDictProxy[Any] = MultiDictProxy(MultiDict())
