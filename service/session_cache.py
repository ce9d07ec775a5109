"""The states this replica last saw, so a push needs one store round trip (the commit) instead of two.

Only a hint: a commit still compares the stored revision, so a stale entry (another replica wrote since)
costs one refused commit, which hands back the stored state; it can never make a push use a wrong history.
Bounded (least recently used out first) so a replica's memory does not grow with the sessions it has seen.
"""

from __future__ import annotations

from collections import OrderedDict

from service.sessions import SessionState


class SessionCache:
    """Least-recently-used map from session id to the newest `SessionState` this replica has seen."""

    def __init__(self, capacity: int):
        """`capacity`: sessions remembered at most; 0 turns the cache off (every push reads the store)."""
        self.capacity = capacity
        self._states: OrderedDict[str, SessionState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def get(self, session_id: str) -> SessionState | None:
        state = self._states.get(session_id)
        if state is not None:
            self._states.move_to_end(session_id)
        return state

    def put(self, state: SessionState) -> None:
        """Remember `state`: what this replica just wrote, or what the store just returned.

        Always the latest word, even when it holds fewer frames than the state remembered: after a store
        lost writes (a restart from an older snapshot) its state is the truth, and a remembered "newer" one
        would make every later push compute twice. Two concurrent pushes of one session finishing out of
        order can leave the older state here: that costs one refused commit, never a wrong pose.
        """
        if not self.capacity:
            return
        self._states[state.session_id] = state
        self._states.move_to_end(state.session_id)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def drop(self, session_id: str) -> None:
        self._states.pop(session_id, None)
