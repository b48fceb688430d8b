"""The SSRF address policy for every URL a client gives us: webhook endpoints and portals.

A URL is refused unless it is http(s), carries no credentials, and every address its host
resolves to is public: not loopback, private, link-local, multicast, reserved or unspecified,
IPv4 or IPv6, including IPv4 embedded in IPv6 (mapped, 6to4, Teredo, NAT64). Operators allow
private addresses for local development and tests.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from urllib3.util import parse_url


class UrlRefused(ValueError):
    """A URL that the SSRF rules do not allow; the message says why."""


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

# NAT64 (RFC 6052) carries an IPv4 address in its last 32 bits; judge that address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IpAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IpAddress) -> str | None:
    """Why ``ip`` may not be reached, or None if it may (a public unicast address)."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        reason = address_refusal(embedded)
        return f"{ip} embeds {embedded}: {reason}" if reason else None
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    )
    for attribute, label in checks:
        if getattr(ip, attribute):
            return f"{ip} is a {label} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the host resolves to, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlRefused(f"the host {host!r} does not resolve") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def split_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of a URL, or :class:`UrlRefused` if it is not usable."""
    try:
        parts = urlsplit(url)
        port = parts.port
        # The dispatcher's HTTP client must read it too: urlsplit lets "http://[::1]x/" through.
        parse_url(url)
    except ValueError as exc:  # LocationParseError is one
        raise UrlRefused(f"the URL is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("the URL must start with http:// or https://")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("credentials in the URL are not supported")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve_checked(
    host: str, port: int, *, allow_private: bool, resolver: Resolver = system_resolver
) -> str:
    """The address to connect to. Every address the host resolves to must pass the policy, so a
    name that resolves to a public and a private address is refused as a whole."""
    try:
        literal: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal is not None else resolver(host, port)
    if not addresses:
        raise UrlRefused(f"the host {host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            # A scoped IPv6 address ("fe80::1%eth0") is link-local whatever its scope.
            reason = address_refusal(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason:
                raise UrlRefused(f"{host} resolves to a forbidden address: {reason}")
    return addresses[0]


def check_portal_url(
    url: str, allow_private: bool, *, resolver: Resolver = system_resolver
) -> None:
    """Raise :class:`UrlRefused` unless the agent may browse ``url``.

    With private addresses allowed, the host is not resolved: a portal may live on a network
    this process cannot see yet."""
    if allow_private:
        split_url(url)
    else:
        check_url(url, allow_private=False, resolver=resolver)


def check_url(url: str, allow_private: bool, *, resolver: Resolver = system_resolver) -> None:
    """Raise :class:`UrlRefused` unless ``url`` may be reached now."""
    _scheme, host, port = split_url(url)
    resolve_checked(host, port, allow_private=allow_private, resolver=resolver)


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of an http(s) URL, the default port left out, the host
    lower-cased; :class:`UrlRefused` if it is not a usable http(s) URL."""
    scheme, host, port = split_url(url)
    default = {"http": 80, "https": 443}[scheme]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown.lower()}" + ("" if port == default else f":{port}")


def origin_of(url: str) -> str:
    """The origin that ``url`` is, or :class:`UrlRefused` if it is more than an origin (a path,
    a query, a fragment)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed "[" of an IPv6 host
        raise UrlRefused(f"the URL is malformed: {exc}") from exc
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UrlRefused("an origin is scheme://host[:port], with no path, query or fragment")
    return url_origin(url)
