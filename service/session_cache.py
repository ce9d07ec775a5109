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
        """Remember `state` unless a newer one (more frames seen) is already remembered.

        Concurrent pushes on one replica finish in any order; keeping the furthest state means a late
        finisher never puts an older one back (which would only cost a refused commit, but needlessly).
        """
        if not self.capacity:
            return
        known = self._states.get(state.session_id)
        if known is not None and known.frames_seen > state.frames_seen:
            return
        self._states[state.session_id] = state
        self._states.move_to_end(state.session_id)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def drop(self, session_id: str) -> None:
        self._states.pop(session_id, None)
