"""A KeySet behaves as a Python ``set[str]``, checked step by step.

The machine holds a few KeySet actors on simpleSystemBase, each paired with
a Python set (the model), and applies any sequence of ``add``,
``add_many``, ``remove``, ``contains``, ``put_state(other.get_state())``,
``union`` and ``difference`` (operands may be the same KeySet), plus
``start(get_state())`` of a fresh actor. After every step each KeySet must
answer ``contains`` exactly as its model for every key of the small
alphabet the keys are drawn from, and its state must equal the state of a
KeySet started from scratch with the model's keys (so ``get_state`` is a
function of the keys alone and round-trips through ``start``).

Examples default to 120 (about 10 s); raise them with
``KEYSET_PROPERTY_EXAMPLES``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from roger_actors.key_set import KeySet
from supervision import Application, ChildSpec, DynamicSupervisor

EXAMPLES = int(os.environ.get("KEYSET_PROPERTY_EXAMPLES", "120"))

#: Few distinct keys, so that adds, removes and set operations collide often.
ALPHABET = ("", "a", "b", "ab", "é", "key 1", "key 2")
KEYS = st.sampled_from(ALPHABET)
#: Which of the machine's KeySets a step acts on.
SETS = 3
INDEX = st.integers(0, SETS - 1)


class KeySetMachine(RuleBasedStateMachine):
    """KeySet actors against Python sets."""

    def __init__(self) -> None:
        super().__init__()
        self.app: Application | None = None
        self.sets: list[KeySet] = []
        self.models: list[set[str]] = []

    @initialize()
    def start(self) -> None:
        self.app = Application(
            ChildSpec("root", DynamicSupervisor),
            base="simpleSystemBase",
            log_level=logging.CRITICAL,
        )
        self.app.start()
        self.sets = [KeySet.start() for _ in range(SETS)]
        self.models = [set() for _ in range(SETS)]

    def teardown(self) -> None:
        if self.app is not None:
            self.app.stop()

    # ------------------------------------------------------------ steps

    @rule(i=INDEX, key=KEYS)
    def add(self, i: int, key: str) -> None:
        self.sets[i].add(key)
        self.models[i].add(key)

    @rule(i=INDEX, keys=st.lists(KEYS, max_size=5))
    def add_many(self, i: int, keys: list[str]) -> None:
        self.sets[i].add_many(keys)
        self.models[i].update(keys)

    @rule(i=INDEX, key=KEYS)
    def remove(self, i: int, key: str) -> None:
        self.sets[i].remove(key)
        self.models[i].discard(key)

    @rule(i=INDEX, key=KEYS)
    def contains(self, i: int, key: str) -> None:
        assert self.sets[i].contains(key) is (key in self.models[i])

    @rule(i=INDEX, j=INDEX)
    def put_state_of_another(self, i: int, j: int) -> None:
        self.sets[i].put_state(self.sets[j].get_state())
        self.models[i] = set(self.models[j])

    @rule(i=INDEX, j=INDEX)
    def union(self, i: int, j: int) -> None:
        self.sets[i].union(self.sets[j])
        self.models[i] |= self.models[j]

    @rule(i=INDEX, j=INDEX)
    def difference(self, i: int, j: int) -> None:
        self.sets[i].difference(self.sets[j])
        self.models[i] -= self.models[j]

    @rule(i=INDEX)
    def restart_from_state(self, i: int) -> None:
        """Replace KeySet ``i`` by a new actor started from its state."""
        old = self.sets[i]
        self.sets[i] = KeySet.start(old.get_state())
        old.stop()

    # ------------------------------------------------------------ checks

    @invariant()
    def behaves_as_its_model(self) -> None:
        if self.app is None:
            return
        for keyset, model in zip(self.sets, self.models, strict=True):
            seen = {key for key in ALPHABET if keyset.contains(key)}
            assert seen == model, f"{keyset}: has {sorted(seen)}, model {sorted(model)}"
            fresh = KeySet.start()
            fresh.add_many(model)
            assert keyset.get_state() == fresh.get_state()
            fresh.stop()


KeySetMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
test_key_set_behaves_as_a_python_set: Any = KeySetMachine.TestCase
