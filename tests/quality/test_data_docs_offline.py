"""Data Docs built by the real quality gate load their packaged assets from the site itself.

What stays on a CDN is exactly ``quality.data_docs.ONLINE_ONLY``: bootstrap-table 1.19 and its
filter-control extension, bootstrap-datepicker and the bootstrap-prefers-dark theme (no pip
package ships them), and vega / vega-lite / vega-embed (charts; no package ships the versions
GX asks for). Offline, the index's tables come from the bootstrap-table fallback script.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from core.settings import Settings
from quality.data_docs import FALLBACK_FILE, ONLINE_ONLY, localize_site
from quality.gate import run_quality_gate
from tests.quality.test_gate import (
    CLEAN_EVENTS,
    RUN_DATE,
    write_events,
    write_reconciliation,
    write_warehouse,
)

TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
URL = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    write_events(settings, CLEAN_EVENTS)
    write_reconciliation(settings)
    write_warehouse(settings)
    verdict = run_quality_gate(settings, RUN_DATE)
    assert verdict.passed, verdict.failed_critical
    return Path(verdict.data_docs_index)


def pages(index: Path) -> list[Path]:
    found = [p for p in index.parent.rglob("*.html") if "static" not in p.relative_to(index.parent).parts]
    # The index, one page per suite and one per validation result (four suites).
    assert len(found) == 9, found
    return found


def test_scripts_and_styles_are_local_except_the_listed_ones(site: Path) -> None:
    for page in pages(site):
        html = page.read_text(encoding="utf-8")
        for tag in TAG.finditer(html):
            match = URL.search(tag[0])
            if match is None:  # an inline <script>
                continue
            url = match[1]
            if url.startswith(("http://", "https://")):
                assert url.startswith(ONLINE_ONLY), f"{page.name}: {url}"
                continue
            local = (page.parent / unquote(url)).resolve()
            assert local.is_file() and local.stat().st_size > 0, f"{page.name}: {url}"
            assert "integrity=" not in tag[0] and "crossorigin" not in tag[0], tag[0]
        assert "popper" not in html
        assert "amazonaws.com" not in html  # GX's logo, from the site's own static/images
        assert html.count(FALLBACK_FILE) == 1


def test_the_copied_assets_exist(site: Path) -> None:
    offline = site.parent / "static" / "offline"
    for name in ("jquery/jquery.min.js", "bootstrap/css/bootstrap.min.css",
                 "bootstrap/js/bootstrap.bundle.min.js", "font-awesome/css/all.min.css",
                 "font-awesome/webfonts/fa-solid-900.woff2", FALLBACK_FILE):
        assert (offline / name).stat().st_size > 0, name
    # Font Awesome's CSS finds its fonts relative to itself.
    assert "../webfonts/fa-solid-900.woff2" in (offline / "font-awesome/css/all.min.css").read_text()
    assert (site.parent / "static" / "images" / "logo-long.png").is_file()


def test_index_links_local_assets_from_the_site_root(site: Path) -> None:
    html = site.read_text(encoding="utf-8")
    assert 'src="static/offline/jquery/jquery.min.js"' in html
    assert "code.jquery.com" not in html and "bootstrapcdn.com" not in html
    assert "cdnjs.cloudflare.com/ajax/libs/font-awesome" not in html
    # The fallback comes after bootstrap-table's scripts, so it sees whether they loaded.
    assert html.index("bootstrap-table-filter-control.min.js") < html.index(FALLBACK_FILE)


def test_localizing_again_changes_nothing(site: Path) -> None:
    before = {p: p.read_text(encoding="utf-8") for p in pages(site)}
    assert localize_site(site) == 0
    assert {p: p.read_text(encoding="utf-8") for p in pages(site)} == before


def test_a_missing_site_is_left_alone(tmp_path: Path) -> None:
    assert localize_site(tmp_path / "nowhere" / "index.html") == 0
