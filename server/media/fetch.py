"""Fetching media bytes behind a URL: data:, http(s):// (SSRF-checked) and file:// (one directory).

The security review surface of the media path, on its own:

- data: base64 (missing padding, whitespace, URL-safe alphabet tolerated) or percent-encoded, at
  most `max_media_bytes`.
- http(s): the host is resolved and every address checked before any connection (`HostPolicy`:
  public addresses plus what the operator allowed); the connection then goes to the checked
  address (the Host header and TLS SNI keep the name), so a second DNS answer cannot redirect it;
  redirects are re-checked per hop, at most MAX_REDIRECTS; the body is streamed with a byte limit
  and the whole fetch bounded by `fetch_timeout_seconds`; environment proxies are ignored.
- file: only below `allowed_media_dir` (resolved, symlinks followed); refused when it is unset.

Every refusal or failure raises `MediaError` naming the URL (data: URLs truncated).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

import httpx

from server.media.base import MediaError, MediaLimits, shown_url

__all__ = ["MAX_REDIRECTS", "Fetcher", "HostPolicy", "decode_data_url", "read_file_url"]

MAX_REDIRECTS = 3
_USER_AGENT = "llava-interleave-serve media fetcher"
_INLINE_DATA_URL_CHARS = 2**16  # shorter data: URLs are decoded on the event loop


def decode_data_url(url: str, limits: MediaLimits) -> bytes:
    """Bytes of a data: URL (base64 with or without padding / whitespace, or percent-encoded)."""
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise MediaError(f"the data URL {shown_url(url)} has no ',' before its data")
    if len(payload) > limits.max_media_bytes * 4 // 3 + 16:
        raise MediaError(f"the data URL is larger than the limit of {limits.max_media_bytes} bytes")
    if header.lower().endswith(";base64"):
        compact = "".join(payload.split())
        if "%" in compact:
            compact = urllib.parse.unquote(compact)
        compact = compact.rstrip("=")
        altchars = b"-_" if ("-" in compact or "_" in compact) else None
        try:
            data = base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            raise MediaError(f"the data URL {shown_url(url)} is not valid base64") from None
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > limits.max_media_bytes:
        raise MediaError(f"the data URL is larger than the limit of {limits.max_media_bytes} bytes")
    return data


def read_file_url(url: str, limits: MediaLimits) -> bytes:
    """Bytes of a file:// URL that lies below limits.allowed_media_dir (blocking I/O)."""
    if limits.allowed_media_dir is None:
        raise MediaError(f"file URLs are not allowed on this server: {shown_url(url)}")
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise MediaError(f"file URL {shown_url(url)} names a remote host")
    root = Path(os.path.realpath(limits.allowed_media_dir))
    path = Path(os.path.realpath(urllib.parse.unquote(parts.path)))
    if not path.is_relative_to(root):
        raise MediaError(f"file URL {shown_url(url)} is outside the allowed media directory")
    if not path.is_file():
        raise MediaError(f"file URL {shown_url(url)}: no such file")
    try:
        with open(path, "rb") as fh:
            data = fh.read(limits.max_media_bytes + 1)
    except OSError as exc:
        raise MediaError(f"file URL {shown_url(url)} cannot be read ({exc.strerror})") from None
    if len(data) > limits.max_media_bytes:
        raise MediaError(
            f"file URL {shown_url(url)} is larger than the limit of {limits.max_media_bytes} bytes"
        )
    return data


_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _is_public(ip: _IPAddress) -> bool:
    """False for loopback, private, link-local, multicast, reserved, unspecified, shared, ..."""
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None and not _is_public(embedded):
                return False
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_unspecified
    )


class HostPolicy:
    """Which hosts may be fetched: public addresses, plus what the operator allowed.

    allowed: host names (exact, case-insensitive, trailing dot ignored) or IP addresses / CIDRs.
    """

    def __init__(self, allowed: Sequence[str]):
        self.names: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allowed:
            entry = entry.strip()
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.names.add(entry.lower().rstrip("."))

    def allows(self, host: str, ip: _IPAddress) -> bool:
        """True if `ip` (one address `host` resolved to) may be contacted."""
        if host.lower().rstrip(".") in self.names:
            return True
        if any(ip in net for net in self.networks):
            return True
        return _is_public(ip)


class Fetcher:
    """Fetches the raw bytes behind a media URL under fixed limits (see the module doc).

    executor: where blocking work runs (file reads, decoding a large data: URL).
    http_client: used as is when given (the caller closes it); it is asked never to follow
        redirects itself. Otherwise the fetcher owns one (no environment proxies); `aclose()`
        closes it.
    """

    def __init__(
        self, limits: MediaLimits, *, executor: Executor, http_client: httpx.AsyncClient | None = None
    ):
        self.limits = limits
        self._executor = executor
        self._policy = HostPolicy(limits.allowed_remote_hosts)
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: we connect to the checked address
            timeout=httpx.Timeout(limits.fetch_timeout_seconds),
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this fetcher owns it."""
        if self._owns_client:
            await self._client.aclose()

    async def fetch(self, url: str) -> bytes:
        """The raw bytes behind a data:, http(s):// or file:// URL. Raises MediaError."""
        if not isinstance(url, str) or not url:
            raise MediaError("the media URL is empty")
        scheme = url.split(":", 1)[0].lower()
        loop = asyncio.get_running_loop()
        if scheme == "data":
            if len(url) < _INLINE_DATA_URL_CHARS:
                return decode_data_url(url, self.limits)
            # keep the loop free
            return await loop.run_in_executor(self._executor, decode_data_url, url, self.limits)
        if scheme == "file":
            return await loop.run_in_executor(self._executor, read_file_url, url, self.limits)
        if scheme in ("http", "https"):
            try:
                async with asyncio.timeout(self.limits.fetch_timeout_seconds):
                    return await self._fetch_http(url)
            except (TimeoutError, httpx.TimeoutException):
                raise MediaError(
                    f"fetching {shown_url(url)} did not finish within {self.limits.fetch_timeout_seconds:g} s"
                ) from None
        raise MediaError(f"unsupported URL scheme in {shown_url(url)}: use data:, http(s):// or file://")

    async def _checked_address(self, url: httpx.URL) -> str:
        """Resolve the URL's host; return an address to connect to, or raise if refused."""
        host = url.host
        if not host:
            raise MediaError(f"the URL {shown_url(str(url))} has no host")
        try:
            ips = [ipaddress.ip_address(host)]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(
                    host,
                    url.port or (443 if url.scheme == "https" else 80),
                    type=socket.SOCK_STREAM,
                )
            except (socket.gaierror, UnicodeError, OSError):
                raise MediaError(f"the host of {shown_url(str(url))} cannot be resolved") from None
            ips = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not ips:
            raise MediaError(f"the host of {shown_url(str(url))} cannot be resolved")
        refused = [ip for ip in ips if not self._policy.allows(host, ip)]
        if refused:
            raise MediaError(
                f"fetching {shown_url(str(url))} is not allowed: {refused[0]} is a loopback, "
                "private, link-local or otherwise non-public address"
            )
        return str(ips[0])

    async def _fetch_http(self, url: str) -> bytes:
        limit = self.limits.max_media_bytes
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, ValueError):
            raise MediaError(f"the URL {shown_url(url)} is not valid") from None
        for _hop in range(MAX_REDIRECTS + 1):
            if current.scheme not in ("http", "https"):
                raise MediaError(f"a redirect to {shown_url(str(current))} is not allowed")
            address = await self._checked_address(current)
            headers = {
                "Host": current.netloc.decode("ascii"),
                "Accept-Encoding": "identity",
                "User-Agent": _USER_AGENT,
            }
            extensions = {"sni_hostname": current.host} if current.scheme == "https" else {}
            request = self._client.build_request(
                "GET",
                current.copy_with(host=address),
                headers=headers,
                extensions=extensions,
                timeout=httpx.Timeout(self.limits.fetch_timeout_seconds),
            )
            shown = shown_url(str(current))
            try:
                response = await self._client.send(request, stream=True, follow_redirects=False)
            except httpx.TimeoutException:
                raise
            except httpx.HTTPError as exc:
                raise MediaError(f"fetching {shown} failed: {type(exc).__name__} {exc}".rstrip()) from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise MediaError(f"{shown} redirects without a location")
                    current = current.join(location)
                    continue
                if response.status_code != 200:
                    raise MediaError(
                        f"fetching {shown} failed: HTTP {response.status_code} "
                        f"{response.reason_phrase}".rstrip()
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise MediaError(f"{shown} is {declared} bytes, more than the limit of {limit}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise MediaError(f"{shown} is larger than the limit of {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
            except httpx.TimeoutException:
                raise
            except httpx.HTTPError as exc:
                raise MediaError(f"fetching {shown} failed: {type(exc).__name__} {exc}") from None
            finally:
                await response.aclose()
        raise MediaError(f"{shown_url(url)} redirects more than {MAX_REDIRECTS} times")
