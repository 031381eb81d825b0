"""The browser pages' JavaScript and CSS (Swagger UI at ``/docs``, GraphiQL at ``/graphql``), served by the
API itself: FastAPI and strawberry load them from a CDN by default, and a page that needs the internet
stays blank on a machine without it.

The files come from the npm registry's release tarballs, pinned by version and integrity hash, fetched
once at install time (``make install`` and the Docker image run ``python -m
analytics_platform.serving.api.assets``) into ``static/`` beside this module (not in git: 5 MB of
minified third-party code).
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # npm's dist.integrity of the tarball
    files: tuple[str, ...]  # paths inside the tarball's package/ folder

    @property
    def url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name}-{self.version}.tgz"


PACKAGES = (
    Package(
        "swagger-ui-dist",
        "5.35.0",  # Swagger UI 5: FastAPI's schema is OpenAPI 3.1, which Swagger UI 4 cannot render
        "sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==",
        ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"),
    ),
    Package(  # the versions strawberry's GraphiQL page asks for
        "graphiql",
        "3.8.3",
        "sha512-cuPDYtXVKV86Pu5PHBX642Odi/uVEE2y1Jxq5rGO/Qy1G2lRp7ZZ7a/T30RzxhuLSWo9zUbzq0P3U49//H0Ugw==",
        ("graphiql.min.js", "graphiql.min.css"),
    ),
    Package(
        "react",
        "18.2.0",
        "sha512-/3IjMdb2L9QbBdWiW5e3P2/npwMBaU9mHCSCUzNln0ZCYbcfTsGbTJrU/kGemdH2IWmB2ioZ+zkxtmq6g09fGQ==",
        ("umd/react.production.min.js",),
    ),
    Package(
        "react-dom",
        "18.2.0",
        "sha512-6IMTriUmvsjHUjNtEDudZfuDQUoWXVxKHhlEGSk81n4YFS+r/Kl99wXiwlVXtPBtJenozv2P+hxDsw9eA7Xo6g==",
        ("umd/react-dom.production.min.js",),
    ),
)


def asset_path(package: Package, file: str) -> Path:
    """Where a file is kept: ``static/<name>-<version>/<file name>``."""
    return STATIC_DIR / f"{package.name}-{package.version}" / Path(file).name


def url_of(name: str, file: str) -> str:
    """The URL the API serves a package's file under (``/static/...``)."""
    package = next(p for p in PACKAGES if p.name == name)
    return f"/static/{package.name}-{package.version}/{Path(file).name}"


def missing() -> list[Path]:
    return [asset_path(p, f) for p in PACKAGES for f in p.files if not asset_path(p, f).exists()]


def _verified(package: Package, data: bytes) -> bytes:
    algorithm, _, expected = package.integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise ValueError(f"{package.url}: integrity {algorithm}-{actual} is not the pinned {package.integrity}")
    return data


def install(timeout_s: float = 60.0) -> list[Path]:
    """Fetch, verify and unpack the files not there yet; returns those written."""
    written = []
    for package in PACKAGES:
        if all(asset_path(package, file).exists() for file in package.files):
            continue
        with urllib.request.urlopen(package.url, timeout=timeout_s) as response:
            data = _verified(package, response.read())
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for file in package.files:
                member = archive.extractfile(f"package/{file}")
                if member is None:
                    raise ValueError(f"{package.url} has no file package/{file}")
                target = asset_path(package, file)
                target.parent.mkdir(parents=True, exist_ok=True)
                staging = target.with_suffix(target.suffix + ".part")
                staging.write_bytes(member.read())
                staging.replace(target)
                written.append(target)
    return written


if __name__ == "__main__":
    try:
        fetched = install()
    except (OSError, ValueError) as error:
        sys.exit(f"error: could not fetch the API pages' assets from {REGISTRY}: {error}")
    print(
        f"API page assets: {len(fetched)} file(s) fetched into {STATIC_DIR}" if fetched else "API page assets: present"
    )
