"""Great Expectations Data Docs usable without internet access.

GX (1.x) writes every page with its scripts and stylesheets on CDNs and its logo on S3, and has
no setting for local copies (``custom_views_directory`` only swaps whole templates, which
would then be ours to keep in step with each GX release). So after each build,
:func:`localize_site` copies what pip packages ship into the site's ``static/offline/`` and
points every page there with a relative link, which works from ``file://`` and any web server:

* jQuery 3.7.1 (``XStatic-jQuery``), the same version GX asks for;
* Bootstrap 4 CSS and JS (``XStatic-Bootstrap`` 4.5, GX asks for 4.3); its ``bundle`` JS
  includes Popper, so the Popper tag is dropped;
* Font Awesome 6 CSS and web fonts (``XStatic-Font-Awesome`` 6.2, GX asks for 6.6);
* GX's logo from the ``static/images/`` GX copies into the site itself (the S3 URL also
  carried the project's data context id); the favicon link of validation pages, which GX
  points one folder too shallow, is corrected on the way.

What no pip package ships stays on its CDN (:data:`ONLINE_ONLY`): bootstrap-table 1.19 and its
filter-control extension, bootstrap-datepicker (used only by that extension), the
bootstrap-prefers-dark theme, and vega / vega-lite / vega-embed (charts; none of this project's
suites draws one). The index page's two tables are filled in by bootstrap-table; when it did
not load, a small fallback (:data:`TABLE_FALLBACK_JS`) renders them as plain linked tables,
without sorting or filters. The footer and "learn more" links to greatexpectations.io remain
plain links.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

OFFLINE_DIR = "offline"  # under the site's static/
GX_ASSETS = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"

# CDN URL -> path under static/offline/ ("" drops the tag: its code is in another file).
LOCAL_COPIES: dict[str, str] = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/js/bootstrap.bundle.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "font-awesome/css/all.min.css",
}
ONLINE_ONLY: tuple[str, ...] = (
    "https://unpkg.com/bootstrap-table@",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@",
    "https://cdn.jsdelivr.net/npm/vega@",
    "https://cdn.jsdelivr.net/npm/vega-lite@",
    "https://cdn.jsdelivr.net/npm/vega-embed@",
)
# (xstatic package, files or folders under its data dir, destination under static/offline/)
PACKAGED: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("jquery", ("jquery.min.js",), "jquery"),
    ("bootstrap", ("css/bootstrap.min.css", "js/bootstrap.bundle.min.js"), "bootstrap"),
    ("font_awesome", ("css/all.min.css", "webfonts"), "font-awesome"),
)
FALLBACK_FILE = "bootstrap-table-fallback.js"
# After bootstrap-table's last script, so it sees whether bootstrap-table loaded.
FALLBACK_AFTER = "bootstrap-table-filter-control.min.js\"></script>"

TABLE_FALLBACK_JS = """\
/* Offline stand-in for bootstrap-table: plain rows from the page's data, linked as GX links them. */
(function ($) {
  if (!$ || $.fn.bootstrapTable) { return; }
  $.fn.bootstrapTable = function (options) {
    if (typeof options !== "object" || !options.data) { return this; }
    var columns = options.columns || [];
    var head = $("<tr>");
    columns.forEach(function (c) { head.append($("<th>").text(c.title || c.field)); });
    var body = $("<tbody>");
    options.data.forEach(function (row) {
      var tr = $("<tr>");
      columns.forEach(function (c) { tr.append($("<td>").html(row[c.field] || "")); });
      if (row._table_row_link_path) {
        tr.css("cursor", "pointer").on("click", function (e) {
          if (!$(e.target).closest("a").length) { window.location = row._table_row_link_path; }
        });
      }
      body.append(tr);
    });
    this.empty().append($("<thead>").append(head)).append(body);
    return this;
  };
})(window.jQuery);
"""

_TAG = re.compile(r"""<(script|link)\b[^>]*?(?:src|href)=["'](?P<url>https?://[^"']+)["'][^>]*>(?:\s*</script>)?""",
                  re.IGNORECASE)
_GX_IMAGE = re.compile(re.escape(GX_ASSETS) + r"[\w.-]+\.png(?:\?[^\"')\s]*)?")
# GX links validation pages' favicon one folder too shallow; the right depth is known here.
_FAVICON = re.compile(r'href="(?:\./|(?:\.\./)*)static/images/favicon\.ico"')


def copy_assets(site_dir: Path) -> Path:
    """Copy the packaged files into ``site_dir/static/offline`` (once; re-copied if missing)."""
    import importlib

    target = site_dir / "static" / OFFLINE_DIR
    for package, items, dest in PACKAGED:
        base = Path(importlib.import_module(f"xstatic.pkg.{package}").BASE_DIR)
        for item in items:
            source, copy = base / item, target / dest / item
            if source.is_dir():
                if not copy.is_dir():
                    shutil.copytree(source, copy)
            elif not copy.exists() or copy.stat().st_size != source.stat().st_size:
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, copy)
    (target / FALLBACK_FILE).write_text(TABLE_FALLBACK_JS)
    return target


def localize_page(html: str, offline_prefix: str, images_prefix: str) -> str:
    """``html`` with the CDN tags of :data:`LOCAL_COPIES` pointing under ``offline_prefix``
    (a relative URL ending in ``/``), GX's S3 logos and the favicon under ``images_prefix`` and
    the table fallback added; tags of :data:`ONLINE_ONLY` are left as they are."""

    def local_tag(match: re.Match) -> str:
        local = LOCAL_COPIES.get(match["url"])
        if local is None:
            return match[0]
        if not local:
            return ""
        # A new tag: the CDN's integrity hash and crossorigin (which blocks file:// loads) go.
        if local.endswith(".js"):
            return f'<script src="{offline_prefix}{local}"></script>'
        return f'<link rel="stylesheet" href="{offline_prefix}{local}"/>'

    html = _TAG.sub(local_tag, html)
    html = _GX_IMAGE.sub(f"{images_prefix}logo-long.png", html)
    html = _FAVICON.sub(f'href="{images_prefix}favicon.ico"', html)
    fallback = f'<script src="{offline_prefix}{FALLBACK_FILE}"></script>'
    if FALLBACK_AFTER in html and fallback not in html:
        html = html.replace(FALLBACK_AFTER, f"{FALLBACK_AFTER}\n{fallback}", 1)
    return html


def localize_site(index_html: Path) -> int:
    """Make the Data Docs site of ``index_html`` load its packaged assets locally; returns how
    many pages changed. Idempotent: pages already rewritten are left as they are."""
    site_dir = index_html.parent
    if not site_dir.is_dir():
        return 0
    try:
        offline_dir = copy_assets(site_dir)
    except (ImportError, OSError) as exc:
        # Docs that need the internet beat a quality gate that fails over them.
        log.warning("Data Docs keep their CDN links: cannot copy local assets: %s", exc)
        return 0
    images_dir = site_dir / "static" / "images"
    changed = 0
    for page in site_dir.rglob("*.html"):
        if offline_dir in page.parents:
            continue
        html = page.read_text(encoding="utf-8")
        if "https://" not in html:
            continue
        offline_prefix = Path(os.path.relpath(offline_dir, page.parent)).as_posix() + "/"
        images_prefix = Path(os.path.relpath(images_dir, page.parent)).as_posix() + "/"
        new = localize_page(html, offline_prefix, images_prefix)
        if new != html:
            page.write_text(new, encoding="utf-8")
            changed += 1
    return changed
