"""The CloudFront viewer-request function, run under node: PEP 691 negotiation, PEP 503 URLs, the path fence, limits.

One node process (devstack.edge.ViewerRequestFunction) serves every case of a module.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from bench.edge_cost import SHAPES, measure
from devstack.edge import ViewerRequestFunction, viewer_request_event
from infra.edge import VIEWER_REQUEST_JS

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (apt-get install nodejs)")

CLOUDFRONT_FUNCTION_MAX_BYTES = 10 * 1024
JSON = "index.v1_json"
HTML = "index.html"
TYPES = ("application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.v1+html", "text/html")

# The Accept headers real clients send for an index page (from their sources), and what each must get.
PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
UV = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)
CLIENTS = {
    "pip": (PIP, JSON),
    "pip-tools (pip's finder)": (PIP, JSON),
    "uv": (UV, JSON),
    "pdm (unearth)": (PIP, JSON),
    "poetry (requests default, parses HTML)": ("*/*", HTML),
    "firefox": (FIREFOX, HTML),
    "chrome": (CHROME, HTML),
    "curl": ("*/*", HTML),
    "no Accept header": (None, HTML),
    "empty Accept header": ("", HTML),
}

NEGOTIATION = {
    "v1 json": ("application/vnd.pypi.simple.v1+json", JSON),
    "v1 html": ("application/vnd.pypi.simple.v1+html", HTML),
    "text/html": ("text/html", HTML),
    "latest json alias": ("application/vnd.pypi.simple.latest+json", JSON),
    "latest html alias": ("application/vnd.pypi.simple.latest+html", HTML),
    "application/* ties go to HTML": ("application/*", HTML),
    "text/*": ("text/*", HTML),
    "most specific range wins": ("application/*;q=0.5, application/vnd.pypi.simple.v1+html;q=0.1", JSON),
    "order does not matter": (
        "text/html;q=0.01, application/vnd.pypi.simple.v1+html;q=0.1, application/vnd.pypi.simple.v1+json",
        JSON,
    ),
    "higher q wins over position": ("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.6", JSON),
    "equal q is the server's choice: HTML": ("application/vnd.pypi.simple.v1+json, text/html", HTML),
    "q=0 refuses a type": ("application/vnd.pypi.simple.v1+json;q=0, */*", HTML),
    "q=0 on HTML leaves JSON": ("*/*, text/html;q=0, application/vnd.pypi.simple.v1+html;q=0", JSON),
    "case-insensitive": ("Application/VND.PyPI.Simple.V1+JSON", JSON),
    "spaces around parameters": ("application/vnd.pypi.simple.v1+json ; q = 0.5 , text/html ; q=0.4", JSON),
    "malformed q drops the range": ("application/vnd.pypi.simple.v1+json;q=abc, text/html;q=0.1", HTML),
    "other parameters ignored": ("application/vnd.pypi.simple.v1+json; charset=utf-8", JSON),
}

NOT_ACCEPTABLE = {
    "application/json": "application/json",
    "an image": "image/png",
    "everything refused": "*/*, application/vnd.pypi.simple.v1+json;q=0, application/vnd.pypi.simple.v1+html;q=0, "
    "text/html;q=0",
    "only garbage": "garbage",
}

REDIRECTS = {
    "/simple": "/simple/",
    "/simple?a=1": "/simple/?a=1",
    "/simple/six": "/simple/six/",
    "/simple/Six/": "/simple/six/",
    "/simple/Six": "/simple/six/",
    "/simple/Foo_Bar.baz": "/simple/foo-bar-baz/",
    "/simple/foo--bar/": "/simple/foo-bar/",
    "/simple/Foo%5FBar/": "/simple/foo-bar/",
    "/simple/zope.interface/": "/simple/zope-interface/",
    "/simple/Six/?a=1&b=%20x&a=2&flag": "/simple/six/?a=1&a=2&b=%20x&flag",
}

NOT_FOUND = [
    "/",
    "/index.html",
    "/robots.txt",
    "/.pypi-cdn/state.json",
    "/status.json/",
    "/status.jsonx",
    "/packages/../status.json",
    "/simplex/",
    "/simple-six/",
    "/simple//",
    "/simple/six/extra/",
    "/simple/six/index.html",
    "/simple/six/index.v1_json",
    "/simple/-bad-/",
    "/simple/bad%20name/",
    "/simple/" + "a" * 201 + "/",
    "/packages",
    "/packages/",
    "/packages/../.pypi-cdn/state.json",
    "/packages/ab/../../simple/index.html",
    "/packages/%2e%2e/.pypi-cdn/state.json",
    "/packages/%2E%2E/x",
    "/packages/.%2e/x",
    "/simple/%2e%2e/",
    "/packages/a\\b",
    "/packages/a%5cb",
    "/packages/a%5Cb",
    "/packages/a%00b",
    "/packages/a%0ab",
    "/packages/%zz",
    "/packages/%c3%28",
]


@pytest.fixture(scope="module")
def edge_function() -> Iterator[ViewerRequestFunction]:
    with ViewerRequestFunction() as function:
        yield function


def run(function: ViewerRequestFunction, target: str, accept: str | None = "*/*") -> dict[str, Any]:
    headers = [] if accept is None else [("Accept", accept)]
    return function(viewer_request_event("GET", target, headers))


def assert_cloudfront_response(result: dict[str, Any], status: int) -> None:
    """A response CloudFront accepts: int status, description, {name: {value}} headers, a text body."""
    assert result["statusCode"] == status
    assert isinstance(result["statusDescription"], str)
    assert result["statusDescription"]
    for name, header in result["headers"].items():
        assert name == name.lower()
        assert isinstance(header["value"], str)
    assert result["body"]["encoding"] == "text"
    assert isinstance(result["body"]["data"], str)


@pytest.mark.parametrize(("accept", "key"), CLIENTS.values(), ids=CLIENTS.keys())
def test_real_clients_get_their_format(edge_function: ViewerRequestFunction, accept: str | None, key: str) -> None:
    assert run(edge_function, "/simple/six/", accept)["uri"] == f"/simple/six/{key}"
    assert run(edge_function, "/simple/", accept)["uri"] == f"/simple/{key}"


@pytest.mark.parametrize(("accept", "key"), NEGOTIATION.values(), ids=NEGOTIATION.keys())
def test_negotiation(edge_function: ViewerRequestFunction, accept: str, key: str) -> None:
    assert run(edge_function, "/simple/six/", accept)["uri"] == f"/simple/six/{key}"


def test_repeated_accept_headers_are_one_list(edge_function: ViewerRequestFunction) -> None:
    headers = [("Accept", "text/html;q=0.1"), ("Accept", "application/vnd.pypi.simple.v1+json")]
    assert edge_function(viewer_request_event("GET", "/simple/six/", headers))["uri"] == "/simple/six/index.v1_json"


@pytest.mark.parametrize("accept", NOT_ACCEPTABLE.values(), ids=NOT_ACCEPTABLE.keys())
def test_nothing_acceptable_is_406_naming_the_types(edge_function: ViewerRequestFunction, accept: str) -> None:
    result = run(edge_function, "/simple/six/", accept)
    assert_cloudfront_response(result, 406)
    assert all(media_type in result["body"]["data"] for media_type in TYPES)
    assert len(result["body"]["data"]) < 200
    assert result["headers"]["vary"]["value"] == "Accept"


@pytest.mark.parametrize(
    ("query", "accept", "key"),
    [
        ("format=application/vnd.pypi.simple.v1+json", FIREFOX, JSON),
        ("format=application/vnd.pypi.simple.latest%2Bjson", None, JSON),
        ("format=text/html", PIP, HTML),
        ("x=1&format=application/vnd.pypi.simple.v1%2Bhtml", PIP, HTML),
    ],
)
def test_format_parameter_overrides_accept(
    edge_function: ViewerRequestFunction, query: str, accept: str | None, key: str
) -> None:
    result = run(edge_function, f"/simple/six/?{query}", accept)
    assert result["uri"] == f"/simple/six/{key}"


@pytest.mark.parametrize("query", ["format=application/json", "format=", "format=%zz"])
def test_unservable_format_is_406(edge_function: ViewerRequestFunction, query: str) -> None:
    assert_cloudfront_response(run(edge_function, f"/simple/six/?{query}", PIP), 406)


@pytest.mark.parametrize(("target", "location"), REDIRECTS.items())
def test_redirects_to_the_normalized_slash_url_keeping_the_query(
    edge_function: ViewerRequestFunction, target: str, location: str
) -> None:
    result = run(edge_function, target, PIP)
    assert_cloudfront_response(result, 301)
    assert result["headers"]["location"]["value"] == location
    # The target of a redirect is final: it is served, not redirected again.
    assert "uri" in run(edge_function, location, PIP)


@pytest.mark.parametrize("target", NOT_FOUND)
def test_paths_outside_the_index_never_reach_the_origin(edge_function: ViewerRequestFunction, target: str) -> None:
    result = run(edge_function, target, PIP)
    assert_cloudfront_response(result, 404)


@pytest.mark.parametrize(
    "target",
    [
        "/packages/ab/cd/0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab/six-1.17.0-py2.py3-none-any.whl",
        "/packages/ab/cd/ef/torch-2.0.0%2Bcpu-cp311-cp311-linux_x86_64.whl",
        "/packages/ab/cd/ef/six-1.17.0-py2.py3-none-any.whl.metadata",
        "/packages/ab/cd/ef/six-1.17.0.tar.gz?versionId=3",
        "/packages/ab/cd/ef/six-1.17.0-py2.py3-none-any.whl.provenance",  # PEP 740, served as stored
        "/status.json",
        "/status.json?t=1",
    ],
)
@pytest.mark.parametrize("accept", ["*/*", "application/vnd.pypi.integrity.v1+json"])
def test_packages_and_the_status_pass_through_unchanged(
    edge_function: ViewerRequestFunction, target: str, accept: str
) -> None:
    event = viewer_request_event("GET", target, [("Accept", accept)])
    assert edge_function(event) == event["request"]


def test_the_rewrite_keeps_method_headers_and_query(edge_function: ViewerRequestFunction) -> None:
    event = viewer_request_event("HEAD", "/simple/six/?x=1", [("Accept", PIP), ("User-Agent", "pip/26.3")])
    result = edge_function(event)
    assert result == {**event["request"], "uri": "/simple/six/index.v1_json"}


def test_fits_cloudfront_function_size_limit() -> None:
    size = len(VIEWER_REQUEST_JS.read_bytes())
    assert size <= CLOUDFRONT_FUNCTION_MAX_BYTES, f"{VIEWER_REQUEST_JS} is {size} bytes; CloudFront allows 10 KB"


def test_uses_only_the_runtime_2_subset() -> None:
    """CloudFront runs `handler(event)` with no module system, network, timers or promises."""
    source = VIEWER_REQUEST_JS.read_text()
    assert re.search(r"^function handler\(event\) \{$", source, re.MULTILINE)
    forbidden = r"\b(require|module|exports|import|export|class|async|await|fetch|setTimeout|Promise|process)\b"
    code = "\n".join(line.split("//")[0] for line in source.splitlines())
    assert re.findall(forbidden, code) == []


# ------------------------------------------------------------------------------------------- bounded work
@pytest.mark.hostile_class(10)
def test_only_the_first_kilobyte_of_accept_is_read(edge_function: ViewerRequestFunction) -> None:
    filler = "x/y;q=0.5," * 110  # 1,100 characters of ranges that match no offer
    assert run(edge_function, "/simple/six/", TYPES[0] + "," + filler)["uri"] == f"/simple/six/{JSON}"
    assert run(edge_function, "/simple/six/", filler + TYPES[0])["statusCode"] == 406  # past the bound: unread
    many = [("Accept", "x/y")] * 300 + [("Accept", TYPES[0])]
    assert edge_function(viewer_request_event("GET", "/simple/six/", many))["statusCode"] == 406


@pytest.mark.hostile_class(10)
def test_a_call_costs_the_same_whatever_the_accept_header() -> None:
    figures = measure({label: SHAPES[label] for label in SHAPES if "Accept" in label}, iterations=300)
    # Unbounded, the 16 KB headers took 1.1 to 7.9 ms a call (bench/README.md); bounded, tens of microseconds.
    assert {label: median for label, (median, _) in figures.items() if median > 500} == {}
