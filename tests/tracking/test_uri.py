"""Credentials in tracking URIs are masked wherever a URI is shown."""

import pytest

from netzip_mlflow.tracking.uri import mask_credentials


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://alice:s3cret@host:5000", "http://alice:***@host:5000"),
        ("https://tok3n@host/path", "https://***@host/path"),
        ("postgresql://u:p%40ss@db:5432/mlflow?sslmode=require&password=x", "postgresql://u:***@db:5432/mlflow?sslmode=require&password=***"),
        ("cannot reach http://a:b@h1 nor http://c:d@h2", "cannot reach http://a:***@h1 nor http://c:***@h2"),
        ("http://host:5000/?token=abc&x=1", "http://host:5000/?token=***&x=1"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        ("no uri here: user@example.org", "no uri here: user@example.org"),
    ],
)
def test_mask_credentials(text, shown):
    assert mask_credentials(text) == shown
