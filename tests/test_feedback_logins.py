"""Sign-in resists guessing: lockouts per reader and per client, equal cost for unknown readers, safe logging."""

from __future__ import annotations

import hashlib
import logging
import threading

import pytest

import feedback.readers
from feedback import (
    Login,
    LoginFailed,
    LoginGuard,
    TooManyAttempts,
    check_login,
    check_reader,
    hash_password,
    load_readers,
)

READERS = {"alice": hash_password("right", iterations=1000), "bob": "plain-pw"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(clock) -> LoginGuard:
    return LoginGuard(clock=clock)


def fail(guard: LoginGuard, name: str, times: int, client: str | None = "10.0.0.1") -> None:
    for _ in range(times):
        with pytest.raises(LoginFailed, match="wrong password"):
            check_login(READERS, guard, name, "wrong", client)


def test_right_password_is_a_verified_login(guard):
    assert check_login(READERS, guard, " alice ", "right", "10.0.0.1") == Login("alice", verified=True)
    assert check_login(READERS, guard, "bob", "plain-pw") == Login("bob", verified=True)


def test_open_mode_is_an_unverified_login_for_any_valid_name(guard):
    assert check_login({}, guard, " dr who ", None) == Login("dr who", verified=False)
    with pytest.raises(LoginFailed, match="only letters"):
        check_login({}, guard, "<b>x</b>", "")


def test_five_failures_lock_the_reader_against_the_failing_client_even_with_the_right_password(guard, clock):
    fail(guard, "alice", 5)
    clock.now += 60
    with pytest.raises(TooManyAttempts, match="(?i)too many attempts for reader 'alice'.*try again in 14 minutes") as e:
        check_login(READERS, guard, "alice", "right", "10.0.0.1")
    assert isinstance(e.value, ValueError) and e.value.retry_after_s == pytest.approx(14 * 60)
    with pytest.raises(TooManyAttempts):
        check_login(READERS, guard, "alice", "right")
    assert check_login(READERS, guard, "bob", "plain-pw", "10.0.0.1").verified


def test_an_outsider_cannot_lock_a_reader_out_of_a_client_with_no_failures(guard, clock):
    for attacker in range(10):
        fail(guard, "alice", 5 if attacker == 0 else 1, client=f"203.0.113.{attacker}")
        with pytest.raises(TooManyAttempts):
            check_login(READERS, guard, "alice", "wrong", f"203.0.113.{attacker}")
        assert check_login(READERS, guard, "alice", "right", "10.0.0.2") == Login("alice", verified=True)
        clock.now += 60
    with pytest.raises(LoginFailed, match="wrong password"):
        check_login(READERS, guard, "alice", "typo", "10.0.0.2")
    with pytest.raises(TooManyAttempts, match="'alice'"):
        check_login(READERS, guard, "alice", "right", "10.0.0.2")


def test_a_fresh_client_gets_one_guess_against_a_locked_reader(guard):
    fail(guard, "alice", 5, client="203.0.113.1")
    fail(guard, "alice", 1, client="198.51.100.1")
    with pytest.raises(TooManyAttempts):
        check_login(READERS, guard, "alice", "right", "198.51.100.1")


def test_lockout_ends_after_fifteen_minutes(guard, clock):
    fail(guard, "alice", 5)
    clock.now += 15 * 60 - 1
    with pytest.raises(TooManyAttempts):
        check_login(READERS, guard, "alice", "right")
    clock.now += 1
    assert check_login(READERS, guard, "alice", "right") == Login("alice", verified=True)


def test_failures_older_than_the_window_do_not_count(guard, clock):
    fail(guard, "alice", 4)
    clock.now += 15 * 60
    fail(guard, "alice", 4)
    assert check_login(READERS, guard, "alice", "right").verified


def test_a_success_forgets_the_readers_earlier_failures(guard):
    fail(guard, "alice", 4)
    check_login(READERS, guard, "alice", "right")
    fail(guard, "alice", 4)
    assert check_login(READERS, guard, "alice", "right").verified


def test_unknown_names_lock_out_like_known_ones(guard):
    fail(guard, "mallory", 5)
    with pytest.raises(TooManyAttempts, match="'mallory'"):
        check_login(READERS, guard, "mallory", "x")


def test_per_client_limit_across_reader_names(guard, clock):
    for i in range(20):
        fail(guard, f"guess-{i}", 1, client="203.0.113.9")
    with pytest.raises(TooManyAttempts, match="this client"):
        check_login(READERS, guard, "alice", "right", "203.0.113.9")
    assert check_login(READERS, guard, "alice", "right", "198.51.100.7").verified
    clock.now += 15 * 60
    assert check_login(READERS, guard, "alice", "right", "203.0.113.9").verified


def test_invalid_names_count_against_the_client(guard):
    for _ in range(20):
        with pytest.raises(LoginFailed):
            check_login(READERS, guard, "<script>", "x", "203.0.113.9")
    with pytest.raises(TooManyAttempts, match="this client"):
        check_login(READERS, guard, "alice", "right", "203.0.113.9")


def test_the_guard_is_thread_safe(guard):
    outcomes: list[BaseException | Login] = []

    def attempt():
        for _ in range(10):
            try:
                outcomes.append(check_login(READERS, guard, "alice", "wrong", None))
            except BaseException as error:  # every outcome is kept, so none can pass unnoticed
                outcomes.append(error)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 80
    unexpected = [o for o in outcomes if not isinstance(o, LoginFailed)]
    assert unexpected == []
    assert sum(not isinstance(o, TooManyAttempts) for o in outcomes) >= guard.per_reader
    assert any(isinstance(o, TooManyAttempts) for o in outcomes)
    with pytest.raises(TooManyAttempts):
        check_login(READERS, guard, "alice", "right")


def test_unknown_reader_costs_one_pbkdf2_like_a_wrong_password(monkeypatch):
    calls = []
    real = hashlib.pbkdf2_hmac

    def counting(name, password, salt, iterations):
        calls.append(iterations)
        return real(name, password, salt, iterations)

    monkeypatch.setattr(feedback.readers.hashlib, "pbkdf2_hmac", counting)
    assert not check_reader(READERS, "mallory", "right")
    assert calls == [1000]
    assert not check_reader(READERS, "alice", "wrong")
    assert calls == [1000, 1000]
    assert not check_reader(READERS, "bob", "wrong")
    assert calls == [1000, 1000, 1000]
    calls.clear()
    assert not check_reader({"carol": "plain"}, "mallory", "x")
    assert calls == [200_000]


def test_one_warning_per_failure_without_the_password(guard, caplog):
    caplog.set_level(logging.WARNING, logger="feedback.logins")
    fail(guard, "alice", 5)
    with pytest.raises(TooManyAttempts):
        check_login(READERS, guard, "alice", "hunter2-secret")
    with pytest.raises(LoginFailed):
        check_login(READERS, guard, "eve\nforged line", "hunter2-secret")
    records = [r for r in caplog.records if r.name == "feedback.logins"]
    assert len(records) == 7 and all(r.levelno == logging.WARNING and r.exc_info is None for r in records)
    text = "\n".join(r.getMessage() for r in records)
    assert "hunter2" not in text and "wrong" not in text
    assert "'alice'" in text and "'eve\\nforged line'" in text and len(text.splitlines()) == 7


@pytest.mark.parametrize("reader, right, typed", [
    ("alice", "right", "right\x00"), ("alice", "right", "\x00right"), ("alice", "right", "ri\x00ght"),
    ("alice", "right", "right\x1b"), ("alice", "right", "right\n"), ("alice", "right", "right\x7f"),
    ("bob", "plain-pw", "plain-pw\x00"),
], ids=ascii)
def test_a_password_with_a_control_character_is_refused_and_counts_as_a_failure(guard, reader, right, typed):
    with pytest.raises(LoginFailed, match="may not contain control characters"):
        check_login(READERS, guard, reader, typed, "10.0.0.1")
    assert guard._failures["client:10.0.0.1"] and guard._failures[f"reader:{reader}"]
    assert check_login(READERS, guard, reader, right, "10.0.0.1") == Login(reader, verified=True)


def test_no_account_can_be_given_a_password_with_a_control_character(tmp_path):
    with pytest.raises(ValueError, match="control characters"):
        hash_password("pw\x00", iterations=1000)
    accounts = tmp_path / "readers.txt"
    accounts.write_text("alice:fine\nbob:bad\x1b[2Jpw\n")
    with pytest.raises(ValueError, match="line 2.*control characters"):
        load_readers({"XRAY_READERS_FILE": str(accounts)})


@pytest.mark.parametrize("reader, right, wrong_by_a_letter, wrong_throughout", [
    ("alice", "right", "righT", "xxxxx"), ("bob", "plain-pw", "plain-pX", "zzzzzzzz"),
])
def test_every_password_is_compared_by_hmac_compare_digest_which_alone_decides(
        monkeypatch, guard, reader, right, wrong_by_a_letter, wrong_throughout):
    """Constant time is a property of the comparison function, not of a timing: each check of a hashed or a plain
    account is exactly one hmac.compare_digest call, for a password right, wrong in its last letter only, or wrong
    throughout, and its answer is the sign-in's (a comparison that says yes signs a wrong password in)."""
    real = feedback.readers.hmac.compare_digest
    calls = []

    def recording(a, b):
        calls.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(feedback.readers.hmac, "compare_digest", recording)
    answers = [check_reader(READERS, reader, typed) for typed in (right, wrong_by_a_letter, wrong_throughout)]
    assert answers == [True, False, False] and calls == [(bytes, bytes)] * 3
    for typed in (wrong_by_a_letter, wrong_throughout):
        with pytest.raises(LoginFailed, match="^Unknown reader or wrong password.$"):
            check_login(READERS, guard, reader, typed, "10.0.0.1")
    assert len(calls) == 5
    monkeypatch.setattr(feedback.readers.hmac, "compare_digest", lambda a, b: True)
    assert check_login(READERS, guard, reader, wrong_throughout, "10.0.0.1") == Login(reader, verified=True)


def test_a_sign_in_forgets_the_failures_of_its_own_name_and_client_only(guard):
    """alice fails once from each of two clients, then signs in from the first: the second's failure for her still
    counts, so once an outsider locks her name the second client is refused while the first signs in."""
    fail(guard, "alice", 1, client="10.0.0.4")
    fail(guard, "alice", 1, client="10.0.0.3")
    assert check_login(READERS, guard, "alice", "right", "10.0.0.3").verified
    for _ in range(5):
        with pytest.raises(LoginFailed):
            check_login(READERS, guard, "alice", "guess", "203.0.113.5")
    with pytest.raises(TooManyAttempts, match="'alice'"):
        check_login(READERS, guard, "alice", "right", "10.0.0.4")
    assert check_login(READERS, guard, "alice", "right", "10.0.0.3").verified


def test_a_sign_in_keeps_the_clients_failures_for_other_names_and_other_names_failures(guard):
    """From one client: bob fails 4 times and 15 other names once (19 of the client's 20), then alice signs in. bob's
    fifth failure, from elsewhere, still locks him against this client, and the client's 20th failure still locks
    it out of every name."""
    fail(guard, "bob", 4, client="10.0.0.3")
    for i in range(15):
        fail(guard, f"guess-{i}", 1, client="10.0.0.3")
    assert check_login(READERS, guard, "alice", "right", "10.0.0.3").verified
    fail(guard, "bob", 1, client="198.51.100.2")
    with pytest.raises(TooManyAttempts, match="'bob'"):
        check_login(READERS, guard, "bob", "plain-pw", "10.0.0.3")
    fail(guard, "guess-99", 1, client="10.0.0.3")
    with pytest.raises(TooManyAttempts, match="this client"):
        check_login(READERS, guard, "alice", "right", "10.0.0.3")
