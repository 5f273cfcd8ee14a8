"""Property-based tests (hypothesis) over everything upstream sends: project pages (JSON and HTML), root listings
(JSON and HTML), XML-RPC answers and changelog rows, and project names.

Random hostile input never escapes as anything but InvalidInput (or the client's UpstreamError), never yields a
storage key outside packages/, never a name that is not a normalised ASCII name, and never costs more memory than
the bound the parser checks it against. The budget is bounded: FUZZ_EXAMPLES examples a property, no example
database written.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tracemalloc
import xmlrpc.client
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sync.feed import changelog_events
from sync.models import InvalidInput, normalize_project_name
from sync.pages import http_locator, parse_html_page, parse_json_page
from sync.root_listing import listing_from_html, listing_from_json, normalized_names
from sync.safe_parse import json_cost, load_json, load_xmlrpc

FUZZ_EXAMPLES = 150
fuzz = settings(max_examples=FUZZ_EXAMPLES, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])
PAGE_URL = "https://pypi.example/simple/demo/"
HOSTS = frozenset({"pypi.example", "files.example"})
NORMALIZED = re.compile(r"\A[a-z0-9]+(-[a-z0-9]+)*\Z")
SAFE_KEY = re.compile(r"\Apackages/(?:[^/\\\x00-\x1f\x7f]+/)+[^/\\\x00-\x1f\x7f]+\Z")
SHA = "ab" * 32

# Text that reaches for the parsers' edges: separators, dots, escapes, control and non-ASCII characters.
EDGE_CHARACTERS = [*"aZ09-_.~/\\%#?=&:;<>\"' \t\n\x00\x1b\x7f", "\u017f", "\u0131", "\u212a", "\U0001f600", "\ud800"]
tricky_text = st.text(alphabet=st.sampled_from(EDGE_CHARACTERS) | st.characters(), max_size=40)
json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | tricky_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=20,
)
file_urls = (
    st.sampled_from(
        [
            "https://files.example/packages/ab/cd/demo-1.0.tar.gz",
            "https://files.example:8443/packages/demo-1.0.tar.gz",
            "http://169.254.169.254/latest/meta-data/demo-1.0.tar.gz",
            "https://evil.example/demo-1.0.tar.gz",
            "../../../.pypi-cdn/state.json",
            "/packages/%2e%2e/%2e%2e/demo-1.0.tar.gz",
            "javascript:alert(1)",
            "demo-1.0.tar.gz",
        ]
    )
    | tricky_text
)
file_entries = st.fixed_dictionaries(
    {},
    optional={
        "filename": st.sampled_from(["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl", "..", ".x"]) | tricky_text,
        "url": file_urls,
        "hashes": st.fixed_dictionaries({"sha256": st.sampled_from([SHA, SHA.upper(), "zz"]) | tricky_text})
        | json_values,
        "size": json_scalars,
        "upload-time": st.sampled_from(["2024-01-01T00:00:00Z"]) | json_scalars,
        "yanked": json_scalars,
        "requires-python": json_scalars,
        "core-metadata": st.booleans() | st.fixed_dictionaries({"sha256": st.just(SHA)}) | json_values,
    },
)
json_pages = st.fixed_dictionaries(
    {
        "meta": st.fixed_dictionaries(
            {"api-version": st.sampled_from(["1.0", "1.1", "2.0"]) | json_scalars},
            optional={"_last-serial": st.integers(min_value=-1, max_value=2**64) | json_scalars},
        )
        | json_values,
        "name": st.sampled_from(["demo", "Demo", "other"]) | tricky_text,
        "files": st.lists(file_entries | json_values, max_size=6) | json_values,
    },
    optional={"versions": st.lists(tricky_text, max_size=3) | json_values},
)


def check_page(page: Any) -> None:
    assert NORMALIZED.match(page.normalized)
    for dist in page.files:
        assert SAFE_KEY.match(dist.key), dist.key
        assert ".." not in dist.key.split("/")
        assert dist.url.startswith(("https://pypi.example/", "https://files.example/", "http://pypi.example/"))


@fuzz
@given(json_pages | json_values)
def test_random_json_pages_parse_or_are_refused(document: object) -> None:
    try:
        page = parse_json_page(document, project="demo", locate=http_locator(PAGE_URL, "demo", HOSTS), strict=False)
    except InvalidInput:
        return
    check_page(page)


@fuzz
@given(
    st.lists(st.binary(max_size=30) | st.sampled_from([b"{", b"[", b'"', b"\\u", b"]", b"}", b",", b":"]), max_size=60)
)
def test_random_bytes_load_as_json_or_are_refused_within_their_bound(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    tracemalloc.start()
    try:
        load_json(bytearray(body), "page")
    except InvalidInput:
        return
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= json_cost(body) + 4096  # the bound load_json checks, plus the decoder's fixed overhead


@fuzz
@given(json_values)
def test_json_documents_cost_no_more_than_their_bound(document: object) -> None:
    body = json.dumps(document).encode()
    tracemalloc.start()
    try:
        load_json(bytearray(body), "page")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= json_cost(body) + 4096


html_fragments = st.lists(
    st.sampled_from(
        [
            "<html>",
            "<body>",
            "</body>",
            "</html>",
            "<a ",
            "href=",
            f'"https://files.example/packages/demo-1.0.tar.gz#sha256={SHA}"',
            '"http://169.254.169.254/demo-1.0.tar.gz#sha256=' + SHA + '"',
            "data-yanked",
            '="x"',
            "data-core-metadata=sha256=",
            SHA,
            ">",
            "demo-1.0.tar.gz",
            "</a>",
            "<!--",
            "-->",
            "<base href='https://evil.example/'>",
            '<meta name="pypi:repository-version" content="2.0">',
            "&amp;",
            "&#0;",
            "<![CDATA[",
            "<script>",
        ]
    )
    | tricky_text,
    max_size=40,
)


@fuzz
@given(html_fragments)
def test_random_html_pages_parse_or_are_refused(fragments: list[str]) -> None:
    text = "".join(fragments)
    try:
        page = parse_html_page(text, project="demo", page_url=PAGE_URL, locate=http_locator(PAGE_URL, "demo", HOSTS))
    except InvalidInput:
        return
    check_page(page)


def names_and_serials(entries: Any) -> list[tuple[str, int | None]]:
    return list(normalized_names(entries, "https://pypi.example/simple/"))


@fuzz
@given(
    st.lists(st.binary(max_size=20) | st.sampled_from([b"[", b"{", b'"projects"', b":", b",", b"}", b"]"]), max_size=40)
)
def test_random_bytes_as_a_json_root_listing_parse_or_are_refused(pieces: list[bytes]) -> None:
    try:
        listed = names_and_serials(listing_from_json(io.BytesIO(b"".join(pieces))))  # type: ignore[arg-type]
    except InvalidInput:
        return
    assert all(NORMALIZED.match(name) for name, _ in listed)


listing_documents = st.fixed_dictionaries(
    {
        "meta": st.fixed_dictionaries({"api-version": st.just("1.1")}) | json_values,
        "projects": st.lists(
            st.fixed_dictionaries(
                {"name": tricky_text | json_scalars},
                optional={"_last-serial": st.integers(min_value=-5, max_value=2**65) | json_values},
            )
            | json_values,
            max_size=8,
        )
        | json_values,
    }
)


@fuzz
@given(listing_documents | json_values)
@example({"\udc00": None})  # a lone surrogate escape: ijson's C backend fails decoding it (found by this test)
def test_random_json_root_listings_give_normalized_names_and_bounded_serials(document: object) -> None:
    try:
        listed = names_and_serials(listing_from_json(io.BytesIO(json.dumps(document).encode())))  # type: ignore[arg-type]
    except InvalidInput:
        return
    for name, serial in listed:
        assert NORMALIZED.match(name)
        assert serial is None or 0 <= serial < 2**63


@fuzz
@given(html_fragments)
def test_random_html_root_listings_give_normalized_names(fragments: list[str]) -> None:
    body = io.BytesIO("".join(fragments).encode("utf-8", "surrogatepass"))
    try:
        listed = names_and_serials((name, None) for name in listing_from_html(body, "utf-8"))  # type: ignore[arg-type]
    except InvalidInput:
        return
    assert all(NORMALIZED.match(name) for name, _ in listed)


xmlrpc_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**31), max_value=2**31 - 1)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=5), inner, max_size=3
        )
    ),
    max_leaves=25,
)


@fuzz
@given(xmlrpc_values)
def test_random_xmlrpc_answers_parse_within_their_bound_and_rows_never_stop_the_feed(answer: object) -> None:
    body = xmlrpc.client.dumps((answer,), methodresponse=True, allow_none=True).encode()
    (result,) = load_xmlrpc(body, "answer")
    rows = result if isinstance(result, list) else [result]
    for event in changelog_events(rows, "https://pypi.example/pypi"):
        assert isinstance(event[0], str)
        assert 0 <= event[1] < 2**63


@fuzz
@given(
    st.lists(st.binary(max_size=20) | st.sampled_from([b"<value>", b"<array><data>", b"<!DOCTYPE", b"&"]), max_size=30)
)
def test_random_bytes_as_xmlrpc_answers_parse_or_are_refused(pieces: list[bytes]) -> None:
    with contextlib.suppress(InvalidInput, xmlrpc.client.Fault):
        load_xmlrpc(b"<?xml version='1.0'?><methodResponse><params><param>" + b"".join(pieces), "answer")


@fuzz
@given(tricky_text)
def test_names_are_ascii_and_normalized_or_refused(name: str) -> None:
    try:
        normalized = normalize_project_name(name)
    except InvalidInput:
        return
    assert normalized.isascii()
    assert NORMALIZED.match(normalized)
