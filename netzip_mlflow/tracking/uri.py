"""Tracking URIs as they may be shown: credentials (``user:password@``, ``?token=``) masked."""

from __future__ import annotations

import re

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/@\s:]*)(?::(?P<secret>[^/@\s]*))?@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|access_token|secret|api_key|key)=)[^&\s]*")


def mask_credentials(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` replaced by ``***``
    (a lone ``scheme://token@host`` loses the token too) and secret query parameters masked.

    Used on everything printed or tagged that may hold a tracking URI.
    """

    def _userinfo(match: re.Match[str]) -> str:
        if match.group("secret") is None:
            return f"{match.group('scheme')}{MASK}@"
        return f"{match.group('scheme')}{match.group('user')}:{MASK}@"

    return _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, _USERINFO.sub(_userinfo, text))
