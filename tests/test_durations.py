import pytest

from agentledger.domain.durations import InvalidDuration, format_duration, parse_duration

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("45", 45),
     ("1.5s", 1.5), ("1d", 86400), (" 2M ", 120), ("1m30s250ms", 90.25)],
)
def test_parses_the_forms_people_write(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["banana", "", "10x", "1h 30m", "-5s", "0", "0s", "s", "1.s", "ms5"])
def test_refuses_anything_else(text):
    with pytest.raises(InvalidDuration):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (0.9996, "1s"), (1.5, "1.5s"), (30, "30s"), (90, "1m30s"), (5400, "1h30m"), (90061, "1d1h1m"), (3600, "1h")],
)
def test_formats_compactly(seconds, text):
    assert format_duration(seconds) == text


def test_formatted_durations_parse_back():
    for seconds in (0.25, 1.5, 30, 90, 5400, 86400):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_a_count_has_its_noun_in_the_right_number() -> None:
    from agentledger.entrypoints.render import counted

    assert [counted(n, "session") for n in (0, 1, 2)] == ["0 sessions", "1 session", "2 sessions"]
    assert counted(1, "pass", "passes") == "1 pass" and counted(3, "pass", "passes") == "3 passes"
