"""Error messages echo at most a few characters of what the user gave."""

from netzip_mlflow.errors import ECHO_LIMIT, short_repr


def test_short_repr_caps_long_and_deep_values():
    assert short_repr("half") == "'half'"
    assert len(short_repr("x" * 10_000)) <= ECHO_LIMIT
    level = [1] * 9
    for _ in range(8):  # 9**9 = 387 million leaves if expanded
        level = [level] * 9
    text = short_repr(level)  # plain repr would build a string of gigabytes
    assert len(text) <= ECHO_LIMIT and text.startswith("[[[") and "..." in text
