"""Specification of ``roger_actors.key_set`` (Roger's ``Roger.KeySet``).

Most tests run on simpleSystemBase: every actor runs inside the test's own
call, so when a handle method returns, the actors have handled everything
it caused. The doctests of ``Roger.KeySet`` are transcribed one test each
(``test_doctest_*``); Elixir's ``:ok`` is a normal return (None) and ``{:ok, state}``
is the bytes themselves. The last test runs two KeySet actors in separate
processes on multiprocTCPBase.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from thespian.actors import ActorAddress

from roger_actors.errors import RogerError
from roger_actors.key_set import (
    STATE_VERSION,
    Add,
    AddMany,
    Contains,
    Difference,
    GetState,
    KeySet,
    KeySetRequestError,
    KeySetServer,
    KeySetStateError,
    PutState,
    Remove,
    Union,
    default_supervisor,
)
from supervision import (
    Application,
    CallTimeout,
    ChildSpec,
    DynamicSupervisor,
    From,
    NoProc,
    Server,
    SupervisionError,
    Supervisor,
    SupervisorSpec,
    UnknownRequest,
    call,
    cast,
    count_children,
    current_system,
    start_child,
    use_system,
    which_children,
)
from tests.procs import free_port


def simple_app() -> Application:
    """An Application on simpleSystemBase whose root is a DynamicSupervisor."""
    return Application(
        ChildSpec("root", DynamicSupervisor), base="simpleSystemBase", log_level=logging.CRITICAL
    )


@pytest.fixture
def app() -> Iterator[Application]:
    application = simple_app()
    application.start()
    try:
        yield application
    finally:
        application.stop()


def state_of(*keys: str, version: Any = STATE_VERSION) -> bytes:
    """A state written by hand: the documented CBOR map."""
    return cbor2.dumps({"v": version, "keys": list(keys)})


def gone(ks: KeySet) -> bool:
    """True when the actor of ``ks`` no longer answers (NoProc or no reply)."""
    try:
        ks.contains("x", timeout=0.2)
    except (NoProc, CallTimeout):
        return True
    return False


# ---------------------------------------------------------------- doctests of Roger.KeySet


def test_doctest_add_and_contains(app: Application) -> None:
    ks = KeySet.start()

    ks.add("bla")  # Elixir: :ok
    assert ks.contains("bla") is True
    assert ks.contains("beh") is False


def test_doctest_remove(app: Application) -> None:
    ks = KeySet.start()
    ks.add("bla")

    ks.remove("bla")  # Elixir: :ok
    assert ks.contains("bla") is False


def test_doctest_state_loaded_into_a_new_keyset(app: Application) -> None:
    ks = KeySet.start()
    ks.add("existing")
    state = ks.get_state()

    ks2 = KeySet.start(state=state)

    assert ks2 != ks
    assert ks2.contains("existing") is True


def test_doctest_add_many(app: Application) -> None:
    ks = KeySet.start()

    ks.add_many("a b c".split())  # Elixir: :ok
    assert ks.contains("a") is True
    assert ks.contains("b") is True
    assert ks.contains("c") is True


def test_doctest_union_and_difference_apply_to_the_first_keyset_only(app: Application) -> None:
    a = KeySet.start()
    a.add_many("a1 a2 a3".split())
    b = KeySet.start()
    b.add_many("b1 b2".split())

    a.union(b)  # Elixir: :ok
    assert a.contains("b1") is True
    assert b.contains("a1") is False

    a.difference(b)  # Elixir: :ok
    assert a.contains("b1") is False


# ---------------------------------------------------------------- each method


def test_add_is_idempotent_and_remove_of_an_absent_key_is_not_an_error(app: Application) -> None:
    ks = KeySet.start()
    ks.add("k")
    ks.add("k")
    ks.remove("k")

    assert ks.contains("k") is False
    ks.remove("never there")  # no error
    assert ks.get_state() == KeySet.start().get_state()


def test_any_string_is_a_key(app: Application) -> None:
    keys = ["", " ", "émoji 🎉", "a\x00b", "x" * 10_000, "ключ"]
    ks = KeySet.start()
    ks.add_many(keys)

    assert all(ks.contains(key) for key in keys)
    assert not ks.contains("a")
    assert all(KeySet.start(ks.get_state()).contains(key) for key in keys)


def test_add_many_takes_any_iterable_of_str_and_an_empty_one(app: Application) -> None:
    ks = KeySet.start()
    ks.add_many(("t1", "t2"))
    ks.add_many({"s1"})
    ks.add_many(key for key in ["g1"])
    ks.add_many([])

    assert all(ks.contains(k) for k in ("t1", "t2", "s1", "g1"))


def test_get_state_is_bytes_and_the_same_for_the_same_keys(app: Application) -> None:
    a, b = KeySet.start(), KeySet.start()
    a.add_many(["x", "y", "z"])
    for key in ["z", "x", "y", "w"]:
        b.add(key)
    b.remove("w")

    state = a.get_state()

    assert isinstance(state, bytes)
    assert state == b.get_state()
    assert KeySet.start().get_state() != state


def test_state_from_get_state_round_trips_through_start(app: Application) -> None:
    a = KeySet.start()
    a.add_many(["one", "two", "three"])

    b = KeySet.start(a.get_state())

    assert b.get_state() == a.get_state()
    b.add("four")  # a separate actor: a is unchanged
    assert not a.contains("four")
    assert KeySet.start(KeySet.start().get_state()).get_state() == KeySet.start().get_state()


def test_put_state_replaces_every_key(app: Application) -> None:
    a, b = KeySet.start(), KeySet.start()
    a.add_many(["old1", "old2"])
    b.add_many(["new"])

    a.put_state(b.get_state())

    assert a.contains("new") and not a.contains("old1") and not a.contains("old2")
    a.put_state(bytearray(KeySet.start().get_state()))  # type: ignore[arg-type]
    assert not a.contains("new")


def test_state_made_by_hand_with_the_documented_format_is_accepted(app: Application) -> None:
    ks = KeySet.start(state_of("a", "b", "a"))

    assert ks.contains("a") and ks.contains("b")
    assert ks.get_state() == state_of("a", "b")


# ---------------------------------------------------------------- union, difference


def test_union_adds_the_other_keys_and_leaves_the_other_untouched(app: Application) -> None:
    a, b = KeySet.start(), KeySet.start()
    a.add_many(["shared", "a-only"])
    b.add_many(["shared", "b-only"])
    b_state = b.get_state()

    a.union(b)

    assert a.get_state() == state_of("a-only", "b-only", "shared")
    assert b.get_state() == b_state


def test_difference_removes_the_other_keys_and_leaves_the_other_untouched(
    app: Application,
) -> None:
    a, b = KeySet.start(), KeySet.start()
    a.add_many(["shared", "a-only"])
    b.add_many(["shared", "b-only"])
    b_state = b.get_state()

    a.difference(b)

    assert a.get_state() == state_of("a-only")
    assert b.get_state() == b_state


def test_union_and_difference_with_itself_and_with_an_empty_set(app: Application) -> None:
    a, empty = KeySet.start(), KeySet.start()
    a.add_many(["k1", "k2"])

    a.union(a)
    assert a.get_state() == state_of("k1", "k2")
    a.union(empty)
    a.difference(empty)
    assert a.get_state() == state_of("k1", "k2")
    assert empty.get_state() == state_of()

    a.difference(a)
    assert a.get_state() == state_of()


def test_union_with_a_stopped_keyset_raises_and_changes_nothing(app: Application) -> None:
    a, b = KeySet.start(), KeySet.start()
    a.add("mine")
    b.add("theirs")
    b.stop()

    # Messages to a reaped actor are dropped (on both bases): the actor's own
    # wait for the other's state, half the call's timeout, ends the operation.
    with pytest.raises((CallTimeout, NoProc)):
        a.union(b, timeout=0.2)
    with pytest.raises((CallTimeout, NoProc)):
        a.difference(b, timeout=0.2)

    assert a.get_state() == state_of("mine")


def test_union_with_an_actor_that_is_no_keyset_reports_its_error(app: Application) -> None:
    a = KeySet.start()
    a.add("mine")

    with pytest.raises(UnknownRequest):
        a.union(KeySet(app.root))

    assert a.get_state() == state_of("mine")


class Liar(Server):
    """Answers every call with bytes that are no key set state."""

    def handle_call(self, request: Any, from_: From) -> Any:
        return b"\xa1av\x02"


def test_an_operand_answering_something_else_than_a_state_is_an_error(
    app: Application,
) -> None:
    a = KeySet.start()
    a.add("mine")
    liar = KeySet(start_child(app.root, ChildSpec("liar", Liar)))

    with pytest.raises(KeySetStateError, match=r"union operand .* version 2"):
        a.union(liar)
    with pytest.raises(KeySetStateError, match="difference operand"):
        a.difference(liar)

    assert a.get_state() == state_of("mine")


def test_union_requests_with_a_bad_operand_or_timeout_are_refused(app: Application) -> None:
    a = KeySet.start()
    a.add("mine")
    other = KeySet.start()

    with pytest.raises(KeySetRequestError, match=r"Union\.other"):
        call(a.address, Union("not an address"))
    with pytest.raises(KeySetRequestError, match=r"Difference\.other"):
        call(a.address, Difference(42))
    with pytest.raises(KeySetRequestError, match=r"Union\.timeout"):
        call(a.address, Union(other.address, timeout=-1))
    with pytest.raises(KeySetRequestError, match=r"Difference\.timeout"):
        call(a.address, Difference(other.address, timeout=float("nan")))
    with pytest.raises(CallTimeout):  # a forged address: nobody answers
        call(a.address, Union(ActorAddress("forged"), timeout=0.05))

    assert a.get_state() == state_of("mine")


# ---------------------------------------------------------------- stop, where it runs


def test_start_without_supervisor_uses_one_keyset_supervisor_per_actor_system(
    app: Application,
) -> None:
    a, b = KeySet.start(), KeySet.start()
    sup = default_supervisor()

    assert [info.address for info in which_children(sup)] == [a.address, b.address]
    assert [info.modules for info in which_children(sup)] == [(KeySetServer,)] * 2
    assert count_children(app.root)["active"] == 0
    assert default_supervisor() == sup

    b.stop()

    assert [info.address for info in which_children(sup)] == [a.address]
    assert gone(b)
    assert a.contains("x") is False


def test_start_under_a_given_supervisor_as_a_temporary_child(app: Application) -> None:
    ks = KeySet.start(supervisor=app.root)
    ks.add("k")

    assert [info.address for info in which_children(app.root)] == [ks.address]

    ks.stop()

    assert count_children(app.root)["active"] == 0
    assert gone(ks)


def test_start_under_a_supervisor_with_child_ids(app: Application) -> None:
    tree = Application(ChildSpec("tree", (Supervisor, (SupervisorSpec([]),))), system=app.system)
    root = tree.start()
    ks1 = KeySet.start(supervisor=root)
    ks2 = KeySet.start(supervisor=root)
    ks1.add("one")

    # a Supervisor lists its children newest first (as OTP)
    assert [info.address for info in which_children(root)] == [ks2.address, ks1.address]
    assert not ks2.contains("one")
    ks1.stop()
    assert [info.address for info in which_children(root)] == [ks2.address]


def test_child_spec_puts_a_keyset_in_a_tree_of_ones_own(app: Application) -> None:
    source = KeySet.start()
    source.add("preloaded")
    spec = KeySet.child_spec("cache", source.get_state())
    tree = Application(
        ChildSpec("tree", (Supervisor, (SupervisorSpec([spec]),))), system=app.system
    )
    root = tree.start()

    (info,) = which_children(root)
    ks = KeySet(info.address)

    assert info.id == "cache" and spec.restart == "temporary"
    assert ks.contains("preloaded")


def test_an_explicit_system_gets_its_own_supervisor_and_keeps_the_default_system(
    app: Application,
) -> None:
    second = simple_app()
    second.start()  # now the default actor system of call()
    try:
        ks = KeySet.start(system=app.system)
        ks.add("k")

        assert current_system() is second.system
        assert ks.contains("k")
        # the two simpleSystemBase systems name their actors alike: ask each
        first_sup = default_supervisor(app.system)
        assert [i.address for i in which_children(first_sup, system=app.system)] == [ks.address]
        in_second = KeySet.start()
        assert not in_second.contains("k")
        assert KeySet(in_second.address).contains("k") is False
    finally:
        second.stop()


def test_operations_on_a_stopped_keyset_raise(app: Application) -> None:
    ks = KeySet.start()
    ks.stop()

    for operation in (
        lambda: ks.add("k", timeout=0.2),
        lambda: ks.contains("k", timeout=0.2),
        lambda: ks.get_state(timeout=0.2),
        lambda: ks.stop(timeout=0.2),
    ):
        with pytest.raises((NoProc, CallTimeout)):
            operation()


def test_start_without_an_actor_system_raises() -> None:
    try:
        previous = current_system()
    except SupervisionError:
        previous = None
    use_system(None)
    try:
        with pytest.raises(SupervisionError, match="no actor system"):
            KeySet.start()
    finally:
        use_system(previous)


# ---------------------------------------------------------------- the handle


def test_handles_compare_by_address_and_pickle_without_their_system(app: Application) -> None:
    ks = KeySet.start(system=app.system)
    same = KeySet(ks.address)

    assert ks == same and hash(ks) == hash(same)
    assert ks != KeySet.start() and ks != ks.address
    assert str(ks.address) in repr(ks)
    revived = pickle.loads(pickle.dumps(ks))
    assert revived == ks
    revived.add("via the copy")
    assert ks.contains("via the copy")


def test_a_handle_needs_an_actor_address() -> None:
    with pytest.raises(TypeError, match="address"):
        KeySet("ActorAddr-/A~a~a")


# ---------------------------------------------------------------- bad input, in the caller


@pytest.mark.parametrize(
    ("operation", "name"),
    [
        (lambda ks: ks.add(5), "key"),
        (lambda ks: ks.add(None), "key"),
        (lambda ks: ks.add(b"bytes"), "key"),
        (lambda ks: ks.contains(1.5), "key"),
        (lambda ks: ks.remove(["a"]), "key"),
        (lambda ks: ks.add_many("abc"), "keys"),
        (lambda ks: ks.add_many(b"abc"), "keys"),
        (lambda ks: ks.add_many(7), "keys"),
        (lambda ks: ks.add_many(["fine", 7]), r"keys\[1\]"),
        (lambda ks: ks.put_state("not bytes"), "state"),
        (lambda ks: ks.put_state(None), "state"),
        (lambda ks: ks.union("other"), "other"),
        (lambda ks: ks.difference(None), "other"),
        (lambda ks: KeySet.start(state="text"), "state"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_raise_type_error_naming_them_before_sending(
    app: Application, operation: Any, name: str
) -> None:
    ks = KeySet.start()
    ks.add("before")
    before = count_children(default_supervisor())

    with pytest.raises(TypeError, match=name):
        operation(ks)

    assert ks.get_state() == state_of("before")
    assert count_children(default_supervisor()) == before


@pytest.mark.parametrize("timeout", [0, -1, "5", True])
def test_a_bad_timeout_raises_value_error(app: Application, timeout: Any) -> None:
    ks = KeySet.start()

    with pytest.raises((ValueError, TypeError), match="timeout"):
        ks.add("k", timeout=timeout)
    with pytest.raises((ValueError, TypeError), match="timeout"):
        ks.union(ks, timeout=timeout)
    assert not ks.contains("k")


# ---------------------------------------------------------------- bad states


BAD_STATES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "not valid CBOR"),
    "garbage": (b"\xff\x00garbage", "not valid CBOR"),
    "text garbage": (b"garbage", "not valid CBOR"),
    "truncated": (state_of("abc")[:-1], "not valid CBOR"),
    "trailing bytes": (state_of("a") + b"\x00", "trailing bytes"),
    "next version": (state_of("a", version=STATE_VERSION + 1), "version 2"),
    "version 0": (state_of("a", version=0), "version 0"),
    "version true": (state_of("a", version=True), "version True"),
    "version text": (state_of("a", version="1"), "version '1'"),
    "no version": (cbor2.dumps({"keys": ["a"]}), "versioned map"),
    "a bare list": (cbor2.dumps(["a", "b"]), "versioned map"),
    "extra field": (cbor2.dumps({"v": 1, "keys": [], "x": 1}), "exactly"),
    "no keys": (cbor2.dumps({"v": 1}), "exactly"),
    "keys not an array": (cbor2.dumps({"v": 1, "keys": "abc"}), "array"),
    "keys as a map": (cbor2.dumps({"v": 1, "keys": {"a": 1}}), "array"),
    "a non-string key": (cbor2.dumps({"v": 1, "keys": ["a", 1]}), r"keys\[1\]"),
    "a bytes key": (cbor2.dumps({"v": 1, "keys": [b"a"]}), r"keys\[0\]"),
    "a nested key": (cbor2.dumps({"v": 1, "keys": [["a"]]}), r"keys\[0\]"),
    "too deep": (cbor2.dumps({"v": 1, "keys": [[["a"]]]}), "not valid CBOR"),
    "a tagged key": (
        cbor2.dumps({"v": 1, "keys": [datetime(2020, 1, 1, tzinfo=UTC)]}),
        "not valid CBOR",
    ),
    "a cbor set": (cbor2.dumps({"v": 1, "keys": frozenset({"a"})}), "not valid CBOR"),
    "an unknown tag": (cbor2.dumps(cbor2.CBORTag(4000, {"v": 1})), "not valid CBOR"),
    "pickle": (pickle.dumps({"a", "b"}), "trailing bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_STATES))
def test_a_bad_state_is_refused_and_the_actor_lives_on(app: Application, case: str) -> None:
    blob, message = BAD_STATES[case]
    ks = KeySet.start()
    ks.add("kept")

    with pytest.raises(KeySetStateError, match=message):
        ks.put_state(blob)
    with pytest.raises(KeySetStateError, match=message):
        call(ks.address, PutState(blob))  # straight to the actor, no handle

    assert ks.get_state() == state_of("kept")


@pytest.mark.parametrize("case", sorted(BAD_STATES))
def test_start_with_a_bad_state_raises_and_starts_nothing(app: Application, case: str) -> None:
    blob, message = BAD_STATES[case]
    before = count_children(default_supervisor())

    with pytest.raises(KeySetStateError, match=message):
        KeySet.start(blob)

    assert count_children(default_supervisor()) == before


def test_state_errors_are_roger_errors_and_value_errors() -> None:
    assert issubclass(KeySetStateError, RogerError) and issubclass(KeySetStateError, ValueError)
    assert issubclass(KeySetRequestError, RogerError)
    assert issubclass(KeySetRequestError, TypeError)


# ---------------------------------------------------------------- bad requests, in the actor


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (Add(5), KeySetRequestError, r"Add\.key"),  # type: ignore[arg-type]
        (Remove(None), KeySetRequestError, r"Remove\.key"),  # type: ignore[arg-type]
        (Contains(b"k"), KeySetRequestError, r"Contains\.key"),  # type: ignore[arg-type]
        (AddMany(["a"]), KeySetRequestError, r"AddMany\.keys must be a tuple"),  # type: ignore[arg-type]
        (AddMany(("a", 2)), KeySetRequestError, r"AddMany\.keys\[1\]"),  # type: ignore[arg-type]
        (PutState("text"), KeySetStateError, "must be bytes"),  # type: ignore[arg-type]
        ("add", UnknownRequest, "KeySetServer"),
        (("add", "k"), UnknownRequest, "KeySetServer"),
        (GetState, UnknownRequest, "KeySetServer"),
    ],
)
def test_a_malformed_request_is_answered_with_an_error_and_the_actor_lives_on(
    app: Application, request_: Any, error: type[Exception], message: str
) -> None:
    ks = KeySet.start()
    ks.add("kept")

    with pytest.raises(error, match=message):
        call(ks.address, request_)

    assert ks.get_state() == state_of("kept")


def test_unknown_casts_and_messages_are_ignored(app: Application) -> None:
    ks = KeySet.start()
    ks.add("kept")

    cast(ks.address, Add("via cast"))
    assert app.system is not None
    app.system.tell(ks.address, "raw message")

    assert ks.get_state() == state_of("kept")


# ---------------------------------------------------------------- multiprocTCPBase


def free_admin_port() -> int:
    """A free TCP port in 23000-23999 not used before in this test session."""
    return free_port(23000, 23999)


def forked_pids() -> set[int]:
    """Pids of the live processes forked from this test process (the actor
    system's: they run this process's command line)."""
    me = os.getpid()
    cmdline = Path("/proc/self/cmdline").read_bytes()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            same = Path(f"/proc/{name}/cmdline").read_bytes() == cmdline
        except OSError:
            continue
        if same and stat[stat.rindex(")") + 2] not in "ZX":
            found.add(int(name))
    return found


@pytest.fixture
def multiproc_app() -> Iterator[Application]:
    application = Application(
        ChildSpec("root", DynamicSupervisor),
        base="multiprocTCPBase",
        admin_port=free_admin_port(),
        log_level=logging.ERROR,
    )
    try:
        application.start()
        yield application
    finally:
        application.stop()


@pytest.mark.timeout(60)
def test_two_keysets_in_separate_processes_do_union_and_difference(
    multiproc_app: Application,
) -> None:
    before = forked_pids()
    a = KeySet.start(supervisor=multiproc_app.root)
    after_a = forked_pids()
    b = KeySet.start(supervisor=multiproc_app.root)
    after_b = forked_pids()
    (pid_a,) = after_a - before
    (pid_b,) = after_b - after_a
    assert len({os.getpid(), pid_a, pid_b}) == 3

    a.add_many(["a1", "a2", "a3"])
    b.add_many(["b1", "b2", "a1"])
    a.union(b)
    assert [a.contains(k) for k in ("a1", "a2", "a3", "b1", "b2")] == [True] * 5
    assert b.contains("a2") is False
    a.difference(b)
    assert a.get_state() == state_of("a2", "a3")
    assert b.get_state() == state_of("a1", "b1", "b2")

    # the state travels between processes, and a third actor starts from it
    c = KeySet.start(b.get_state())  # under the system's KeySetSupervisor
    assert c.contains("b1") and default_supervisor() != multiproc_app.root

    b.stop()
    deadline = time.monotonic() + 15
    while pid_b in forked_pids():
        assert time.monotonic() < deadline, f"KeySet process {pid_b} did not exit"
        time.sleep(0.05)
    with pytest.raises((CallTimeout, NoProc)):
        a.union(b, timeout=1.0)
    assert a.get_state() == state_of("a2", "a3")
    assert pid_a in forked_pids()
    assert [info.address for info in which_children(multiproc_app.root)] == [a.address]
    assert [info.address for info in which_children(default_supervisor())] == [c.address]
