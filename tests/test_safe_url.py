"""``safe_url``: every way a URL or DSN carries a credential is masked; it never raises."""

from __future__ import annotations

from typing import Any

import pytest

from thodare_jupyter.errors import BackendUnavailable
from thodare_jupyter.redaction import safe_url

CASES = [
    # (given, shown)
    ("postgresql://ada:s3cret@db.example/runs", "postgresql://ada:***@db.example/runs"),
    ("postgresql+psycopg://ada:s3cret@db:5432/runs?sslmode=require",
     "postgresql+psycopg://ada:***@db:5432/runs?sslmode=require"),
    ("postgresql://:s3cret@db/runs", "postgresql://:***@db/runs"),
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    # URL-encoded '@' and ':' in the password
    ("postgresql://ada:p%40ss%3Aw0rd@db/runs", "postgresql://ada:***@db/runs"),
    # not encoded (a mistake, but it must not leak): '@', '/', '?', '#' in the password
    ("postgresql://ada:p@ss@db/runs", "postgresql://ada:***@db/runs"),
    ("postgresql://ada:p/ss?w#d@db/runs", "postgresql://ada:***@db/runs"),
    ("postgresql://ada:abc=@db/runs", "postgresql://ada:***@db/runs"),
    # a password in the query, with or without a user
    ("postgresql://ada@db/runs?password=s3cret", "postgresql://ada@db/runs?password=***"),
    ("postgresql://db/runs?sslmode=require&password=s3cret&x=1",
     "postgresql://db/runs?sslmode=require&password=***&x=1"),
    ("postgresql://db/runs?PASSWORD=s3cret", "postgresql://db/runs?PASSWORD=***"),
    ("postgresql://db/runs?passwd=a&pwd=b&secret=c&token=d&key=e",
     "postgresql://db/runs?passwd=***&pwd=***&secret=***&token=***&key=***"),
    ("https://api.example/v1?api_key=a&Access_Token=b&client_secret=c&sslkey=d&sslpassword=e",
     "https://api.example/v1?api_key=***&Access_Token=***&client_secret=***&sslkey=***"
     "&sslpassword=***"),
    ("postgresql://db/runs?pass%77ord=s3cret", "postgresql://db/runs?pass%77ord=***"),
    ("https://h/x?token=a#frag", "https://h/x?token=***#frag"),
    # an '@' in a query value is not a user
    ("postgresql://db/runs?password=s3cret&email=a@b", "postgresql://db/runs?password=***&email=a@b"),
    ("postgresql://db/runs?email=a@b.io&password=s3cret",
     "postgresql://db/runs?email=a@b.io&password=***"),
    # both at once
    ("postgresql://ada:one@db/runs?password=two", "postgresql://ada:***@db/runs?password=***"),
    # libpq keyword DSNs
    ("host=db user=ada password=s3cret dbname=runs", "host=db user=ada password=*** dbname=runs"),
    ("host=db password='s3 cret' dbname=runs", "host=db password=*** dbname=runs"),
    # nothing to hide: unchanged
    ("sqlite:///home/ada/runs.db", "sqlite:///home/ada/runs.db"),
    ("/home/ada/runs.db", "/home/ada/runs.db"),
    ("postgresql://ada@db/runs?sslmode=require", "postgresql://ada@db/runs?sslmode=require"),
    ("", ""),
]  # fmt: skip


@pytest.mark.parametrize(("given", "shown"), CASES)
def test_credentials_are_masked(given: str, shown: str) -> None:
    assert safe_url(given) == shown
    for secret in ("s3cret", "p@ss", "p%40ss", "one", "two", "s3 cret"):
        assert secret not in shown or secret in "postgresql"


@pytest.mark.parametrize(
    "odd", ["://", "@", ":@", "a://b@", "x://[::1", "%zz://a:b@c", "a://:@", "\x00://u:p@h", "?="]
)
def test_odd_strings_never_raise(odd: str) -> None:
    out = safe_url(odd)
    assert isinstance(out, str)


def test_non_strings_never_raise() -> None:
    weird: Any = None
    assert safe_url(weird) == "None"


def test_backend_unavailable_shows_the_masked_url() -> None:
    err = BackendUnavailable("postgresql://db/runs?password=s3cret", "refused")
    assert "s3cret" not in str(err) and "password=***" in str(err)
