"""Data flows down only: no package of s3proxy imports one above it.

The layers, top to bottom. A module may import its own package and any package in a lower layer,
never one in a higher layer (the import graph is the one tests/test_import_cycles.py reads, late
imports and TYPE_CHECKING ones included). The front door (http) builds a Call and dispatches to
the operations (ops), which open bodies and pass typed values down to the object store (store),
which resolves encryption modes (modes) that ask the KMS (kms) for keys, and streams bytes through
the at-rest format (streams, format) to and from a backend (backends).
"""

from __future__ import annotations

import pytest

from tests.test_import_cycles import import_graph

LAYERS: list[tuple[str, ...]] = [
    ("__main__",),  # python -m s3proxy
    ("cli",),  # the command line
    ("workers",),  # serve --workers N: the supervisor that forks one composed proxy per worker
    ("app",),  # the composition root: the only place that names concrete classes
    ("banner",),  # what serve tells the operator at start and at shutdown
    ("tls",),  # the listener's certificate: the operator's, or a self-signed one made in the data dir
    ("settings",),  # one validated settings tree (it checks a keystore URL with the KMS's own parser)
    ("tools",),  # operator tooling (s3proxy rewrap, encrypt-existing, ...)
    ("http",),  # the front door: pipeline, middleware, sending replies
    ("ops",),  # one coroutine per S3 operation; S3's wire vocabulary (xml, headers)
    ("store",),  # the client's plaintext view over a ciphertext backend
    ("internal",),  # the proxy's records in the backend
    ("modes",),  # SSE-S3 | SSE-C | SSE-KMS: sealing and unsealing data keys
    ("cse", "streams"),  # client-side formats; async adapters of the at-rest format
    ("backends",),  # S3 over HTTP (signing its requests with auth's SigV4 primitives), the local filesystem
    ("auth",),  # signatures and request bodies
    ("errors",),  # the S3 error tree and the one table mapping lower-layer errors onto it
    ("kms",),  # the key service (knows nothing of HTTP or S3)
    ("format", "policy"),  # pure: the at-rest format; the policy language and its evaluation
    ("buffers", "private", "redact"),  # leaves
]
_LAYER_OF = {package: depth for depth, names in enumerate(LAYERS) for package in names}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_layer():
    packages = {_package(m) for m in import_graph("s3proxy")} - {"s3proxy"}
    assert packages <= set(_LAYER_OF), f"give these a layer: {sorted(packages - set(_LAYER_OF))}"


def _upward_imports() -> list[str]:
    found = []
    for module, imported in sorted(import_graph("s3proxy").items()):
        src = _package(module)
        for target in sorted(imported):
            dst = _package(target)
            if src != dst and src in _LAYER_OF and dst in _LAYER_OF and _LAYER_OF[dst] <= _LAYER_OF[src]:
                found.append(f"{module} imports {target} ({dst} is not below {src})")
    return found


def test_no_package_imports_one_above_it():
    assert _upward_imports() == []


@pytest.mark.parametrize("forbidden", ["aiohttp.web", "s3proxy.http"])
def test_the_operations_and_the_store_never_see_the_http_server(forbidden):
    """ops and store take and return plain values; only the front door speaks aiohttp's server."""
    graph = import_graph("s3proxy")
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    offenders = []
    for module in graph:
        if _package(module) not in ("ops", "store"):
            continue
        path = root.joinpath(*module.split(".")).with_suffix(".py")
        if not path.exists():
            path = root.joinpath(*module.split("."), "__init__.py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(n == forbidden or n.startswith(forbidden + ".") for n in names):
                offenders.append(module)
    assert offenders == []
