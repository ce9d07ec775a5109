"""The transport-agnostic lifting core: what the REST routes (and the gRPC servicer) call.

Inputs are plain Python/numpy values, outputs are dataclasses and numpy arrays, failures are `service.errors`
exceptions with messages that say exactly what is wrong and locations that say where (in the REST bodies'
field names: `keypoints[t][j]` of a clip, `frames[i].keypoints[j]` of a session batch). Every limit is
checked here (`service.limits`), so REST and gRPC refuse the same requests alike. Windowing and
normalisation are the core's (`poselift.inputs.prepare_keypoints`, `poselift.windows.causal_windows`), so
a clip lifted here, through a session in any batching, or offline with `Lifter.lift` gives the same poses.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from poselift import Lifter
from poselift.geometry import camera_in_normalised_units
from poselift.inputs import prepare_keypoints
from poselift.sequence import (
    BoneState,
    SequenceOutput,
    causal_inputs,
    clip_inputs,
    finish,
    frame_step,
    history_length,
)
from poselift.skeleton import NUM_JOINTS
from service.config import Settings
from service.engine import Engine, load_model
from service.errors import (
    InvalidInput,
    Location,
    PayloadTooLarge,
    SeqConflict,
    SessionBusy,
    SessionIncompatible,
    SessionNotFound,
    StoreUnavailable,
    Unauthenticated,
    Unavailable,
)
from service.limits import (
    MAX_SESSION_HISTORY,
    as_array,
    check_camera,
    check_mode,
    check_seq,
    check_values,
)
from service.metrics import Metrics
from service.session_cache import SessionCache
from service.sessions import Camera, SessionState, SessionStore, build_store

SESSION_ID_BYTES = 24  # 192 random bits
OFF_LOOP_FRAMES = 256  # a clip this long has its numpy work done in a worker thread (`LiftingCore.lift`)
_T = TypeVar("_T")
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class FrameInput:
    """One frame of a session push: its seq, (17, 2) pixel keypoints, optional (17,) scores."""

    seq: int
    keypoints_px: Any
    scores: Any = None


@dataclass(frozen=True)
class FrameOutput:
    """One session frame's answer: its seq, (17, 3) pose mm, (3,) pelvis mm (None: no root head), and
    the visible fraction of its window."""

    seq: int
    pose_mm: np.ndarray
    root_mm: np.ndarray | None
    visible: float


@dataclass(frozen=True)
class SessionInfo:
    """What a client may know about its session."""

    session_id: str
    last_seq: int  # -1: no frame yet
    frames_seen: int
    expires_in_s: float
    window: int
    camera: Camera


def owner_id(api_key: str | None) -> str:
    """The owner recorded in a session: a hash of the caller's API key ("" with auth off), never the key."""
    return "" if not api_key else hashlib.sha256(api_key.encode()).hexdigest()[:32]


def new_session_id() -> str:
    """An unguessable session id: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def _is_empty(values: Any) -> bool:
    """`values` is a list or array of no frames (an empty list has no shape to check)."""
    try:
        return len(values) == 0
    except TypeError:  # not a list at all: its shape is what is wrong
        return False


async def _run(off_loop: bool, work: Callable[..., _T], *args: Any) -> _T:
    """`work(*args)`, in a worker thread if `off_loop`, else here on the loop (a thread hop costs more
    than the numpy work of a short clip)."""
    return await asyncio.to_thread(work, *args) if off_loop else work(*args)


@functools.lru_cache(maxsize=1024)  # a session's camera never changes: once per camera, not per frame
def _camera_norm(camera: Camera) -> tuple[float, np.ndarray]:
    focal, principal = camera_in_normalised_units(
        camera.width, camera.height, camera.focal_px, camera.principal_px
    )
    principal.setflags(write=False)  # one array shared by every frame of every session with this camera
    return focal, principal


class LiftingCore:
    """The service's operations over one engine and one session store, shared by REST and gRPC."""

    def __init__(self, settings: Settings, engine: Engine, store: SessionStore, metrics: Metrics):
        self.settings = settings
        self.engine = engine
        self.store = store
        self.metrics = metrics
        self.live_streams = 0  # StreamLift streams open on this worker now (the servicer counts them)
        self.pushes_in_flight = 0  # session pushes begun on this worker and not yet answered
        self._last_pushed = ""  # the session of the push begun last on this worker
        # Saves the read before each commit, where reading is a round trip (memory: one session state each).
        self.sessions_seen = SessionCache(settings.session_cache if store.remote else 0)
        self.draining = False  # set at shutdown: readiness fails first, so balancers stop sending work

    def bulk_pause_s(self) -> float:
        """How long a long clip's work on the event loop (its JSON read and written in slices) leaves the
        loop free between slices: `bulk_pause_ms` while live streams are open, else one turn (0).

        asyncio has no priorities, and a streamed frame takes several turns of the loop (read, model,
        commit, reply): with only a turn between a clip's slices, the frame waits behind a slice at each
        of them (traced: a 30 fps stream's p99 rose from ~5 to ~20 ms under 4096-frame clips;
        docs/performance.md).
        """
        return self.settings.bulk_pause_ms / 1000.0 if self.live_streams else 0.0

    @property
    def window(self) -> int:
        return self.engine.window

    def authenticate(self, api_key: str | None) -> str:
        """The caller's owner id: "" with auth off, else a hash of its key; raises Unauthenticated.

        Args:
            api_key: the Bearer token the caller presented (HTTP header or gRPC metadata), None if none.
        """
        keys = self.settings.api_keys
        if not keys:
            return ""
        if api_key is None:
            raise Unauthenticated(
                "this server needs an API key: send 'Authorization: Bearer <key>' "
                "(an HTTP header, or gRPC metadata)"
            )
        given = api_key.encode()
        if not any(hmac.compare_digest(given, key.encode()) for key in keys):
            raise Unauthenticated("unknown API key")
        return owner_id(api_key)

    async def check_ready(self) -> None:
        """Raise Unavailable saying why unless the model is loaded, the store answers and no drain began."""
        if self.draining:
            raise Unavailable("not ready: the server is shutting down")
        if not self.engine.ready:
            raise Unavailable("not ready: the model is not loaded")
        try:
            await self.store.ping()
        except StoreUnavailable as error:
            raise Unavailable(f"not ready: {error.message}") from error

    def _check_frame_count(self, count: int, location: Location) -> None:
        """None, one, or more frames than a request may hold, in the list at `location`."""
        if count == 0:
            raise InvalidInput("no frames given", location)
        if count > self.settings.max_frames_per_request:
            raise PayloadTooLarge(
                f"{count} frames in one request; the limit is {self.settings.max_frames_per_request} "
                "(POSELIFT_MAX_FRAMES_PER_REQUEST): split the sequence into several requests or a session",
                location,
            )

    @staticmethod
    def _prepare(
        camera: Camera, keypoints_px: np.ndarray, scores: np.ndarray | None, batch: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Validate and normalise (T, 17, 2) pixels; an error is at the first bad value: `keypoints[t][j]`
        (or `scores`), or `frames[t].keypoints[j]` for a session `batch`."""
        try:
            return prepare_keypoints(keypoints_px, camera.width, camera.height, scores, camera.layout)
        except ValueError as error:  # only once the whole failed: find the first bad value
            found = check_values(keypoints_px, scores)
            if found is None:
                raise InvalidInput(str(error)) from error
            if batch:
                field, t, j = found.location
                raise found.relocated(("frames", t, field, j)) from error
            raise found from error

    def check_lift(self, camera: Camera, mode: str) -> None:
        """The checks of a lift's camera and mode, which come before its keypoints' (`lift` makes them; a
        transport that must decode the keypoints first calls this first, so its errors come in that order)."""
        check_camera(camera)
        check_mode(mode, self.engine.lifter.offline_capable, self.engine.lifter.kind)

    async def lift(
        self, camera: Camera, keypoints_px: Any, scores: Any = None, mode: str = "causal"
    ) -> SequenceOutput:
        """Lift a whole sequence.

        Args:
            camera: layout, image size, fps and (optionally) intrinsics of the video.
            keypoints_px: (T, 17, 2) pixels; scores: (T, 17) in [0, 1] or None.
            mode: "causal" (pose t uses frames <= t only, as a session would give) or "offline" (each pose
                also sees the frames after it).

        Returns:
            poses (T, 17, 3) float32 mm root-relative, the pelvis (T, 3) mm (None without a root head),
            the visible fraction of each pose's window (T,).
        """
        self.check_lift(camera, mode)
        lifter = self.engine.lifter
        if _is_empty(keypoints_px):
            raise InvalidInput("no frames given", ("keypoints",))
        kp = as_array(keypoints_px, ("keypoints",), (-1, NUM_JOINTS, 2))
        self._check_frame_count(len(kp), ("keypoints",))
        sc = None if scores is None else as_array(scores, ("scores",), (len(kp), NUM_JOINTS))
        step = frame_step(camera.fps, lifter.model_fps)
        offline = mode == "offline"
        # The whole-clip numpy work (normalisation and windows before the model, the finish after it) runs in
        # a worker thread for a long clip: numpy releases the GIL in its large operations, so the loop keeps
        # serving live streams meanwhile (4096 frames: ~15 ms causal, ~50 ms offline, on 2 busy cores).
        off_loop = len(kp) >= OFF_LOOP_FRAMES
        sc_norm, win_kp, win_sc = await _run(off_loop, self._clip_windows, camera, kp, sc, step, offline)
        heads = await self._run_clip(win_kp, win_sc)
        bones = BoneState.empty() if lifter.consistent_bones else None
        camera_norm = _camera_norm(camera)
        out, _ = await _run(
            off_loop, finish, heads, win_sc, sc_norm, camera_norm, bones, lifter.has_root, offline
        )
        return out

    async def _run_clip(self, win_kp: np.ndarray, win_sc: np.ndarray) -> np.ndarray:
        """The heads of a clip's windows, sent to the model in pieces, each awaited before the next is
        queued, so that live frames queued meanwhile are answered between them (first, in a pass of their
        own: `bulk`) instead of waiting behind the whole clip. A piece is `clip_chunk` windows while
        StreamLift streams are open on this worker, else `max_batch` (fewer, bigger passes); the size is
        chosen again for each piece, so a stream that opens during a clip waits for one piece at most."""
        heads, start = [], 0
        while start < len(win_kp):
            size = self.settings.clip_chunk if self.live_streams else self.settings.max_batch
            stop = start + size
            heads.append(await self.engine.run_windows(win_kp[start:stop], win_sc[start:stop], bulk=True))
            start = stop
        return np.concatenate(heads)

    def _clip_windows(
        self, camera: Camera, kp: np.ndarray, sc: np.ndarray | None, step: float, offline: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A whole clip's normalised scores and the model's windows (offline's, or causal from no history)."""
        kp_norm, sc_norm = self._prepare(camera, kp, sc, batch=False)
        win_kp, win_sc = clip_inputs(kp_norm, sc_norm, self.window, step, offline)
        return sc_norm, win_kp, win_sc

    def _history(self, camera: Camera) -> int:
        """Frames a session of `camera` keeps for its windows; InvalidInput when that is too many."""
        frames = history_length(self.window, frame_step(camera.fps, self.engine.lifter.model_fps))
        if frames > MAX_SESSION_HISTORY:
            raise InvalidInput(
                f"fps {camera.fps:g} is too high for a session: this model's window spans "
                f"{frames} frames at that rate, more than the {MAX_SESSION_HISTORY} a session keeps; "
                "send every n-th frame with its fps divided by n, or lift the clip whole (/v1/lift, Lift)",
                ("fps",),
            )
        return frames

    async def open_session(self, camera: Camera, owner: str) -> SessionInfo:
        """Start a session for one camera's view of one person."""
        check_camera(camera)
        self._history(camera)
        state = SessionState(session_id=new_session_id(), camera=camera, owner=owner, window=self.window)
        await self.store.create(state)
        self.sessions_seen.put(state)
        return self._info(state, float(self.store.ttl_s))

    async def get_session(self, session_id: str, owner: str) -> SessionInfo:
        """A session's progress and remaining lifetime."""
        state = await self._load(session_id, owner)
        return self._info(state, state.expires_in_s)

    async def close_session(self, session_id: str, owner: str) -> None:
        """End a session now (its history is dropped)."""
        await self._load(session_id, owner)
        self.sessions_seen.drop(session_id)
        if not await self.store.delete(session_id):
            raise SessionNotFound(session_id)

    async def push_frames(
        self, session_id: str, frames: Sequence[FrameInput], owner: str
    ) -> list[FrameOutput]:
        """Lift a batch of a session's frames, in increasing seq.

        A frame at or before the session's last seq returns its stored pose if still held (a retry) and
        changes nothing; if it was never processed (or is no longer held) the whole batch is refused. New
        frames are lifted against the session's history and committed only if no other writer committed in
        between (else the push is recomputed on the state the refused commit returned).

        Store round trips: one (the commit) when this replica wrote the session last, as a stream does; one
        more to read it first when it did not, or when the batch resends a frame (resends are answered from
        what the store holds, so a session closed elsewhere is never answered from memory).

        A batch holds at most the poses a session keeps (`poses_held`), so a
        batch whose reply was lost can always be resent whole; a longer one is refused (PayloadTooLarge).

        Returns:
            a `FrameOutput` for every frame, in the order given.
        """
        # One session pushing on its own (its previous push was this worker's last, and no other is under
        # way) has nothing to batch with. A push that never awaits (the in-process store, a frame run
        # inline) never overlaps another, so "the only push under way" alone would hold for every push of
        # many concurrent sessions and stop all batching; "the same session as the last push" does not.
        repeat = session_id == self._last_pushed
        self._last_pushed = session_id
        self.pushes_in_flight += 1
        try:
            return await self._push_frames(session_id, frames, owner, repeat)
        finally:
            self.pushes_in_flight -= 1

    async def _push_frames(
        self, session_id: str, frames: Sequence[FrameInput], owner: str, repeat: bool
    ) -> list[FrameOutput]:
        self._check_frame_count(len(frames), ("frames",))
        if len(frames) > (limit := self.settings.poses_held):
            raise PayloadTooLarge(
                f"{len(frames)} frames in one session batch; the limit is {limit}, the poses a session keeps "
                "for resends (POSELIFT_POSES_HELD), so that a batch can always be resent whole: split it "
                "into smaller batches",
                ("frames",),
            )
        seqs = self._check_seqs(frames)
        state = self.sessions_seen.get(session_id)
        if state is None or (seqs <= state.last_seq).any():  # resends are answered from the store's state
            state = await self._load(session_id, owner)
        else:
            state = self._check_access(state, owner)
        kp_px, scores = self._stack(frames)
        kp_all, sc_all = self._prepare(state.camera, kp_px, scores, batch=True)  # (n, 17, 2), (n, 17)
        lifter = self.engine.lifter
        history = self._history(state.camera)
        step = frame_step(state.camera.fps, lifter.model_fps)
        for _attempt in range(self.settings.push_retries):
            resent = seqs <= state.last_seq
            held = [self._held_output(state, int(seqs[i]), int(i)) for i in np.flatnonzero(resent)]
            if resent.all():
                return held
            new = ~resent
            kp_norm, sc_norm = kp_all[new], sc_all[new]  # normalisation is per frame, so slicing is exact
            win_kp, win_sc = causal_inputs(
                state.history_kp, state.history_scores, kp_norm, sc_norm, self.window, step
            )
            # A lone session's push: nothing could share its pass, so it may skip the hand-off.
            alone = repeat and self.pushes_in_flight == 1
            heads = await self.engine.run_windows(win_kp, win_sc, alone=alone)
            bones = state.bones if lifter.consistent_bones else None
            out, bones = finish(heads, win_sc, sc_norm, _camera_norm(state.camera), bones, lifter.has_root)
            updated = state.advance(
                seqs[new], kp_norm, sc_norm, out, self.settings.poses_held, history, bones
            )
            try:
                # The only push under way has no commit to share a pipeline with.
                written, state = await self.store.commit(
                    updated, expected_revision=state.revision, alone=self.pushes_in_flight == 1
                )
            except SessionNotFound:
                self.sessions_seen.drop(session_id)
                raise
            self.sessions_seen.put(state)
            if written:
                fresh = [
                    FrameOutput(
                        int(seq),
                        out.poses_mm[i],
                        None if out.root_mm is None else out.root_mm[i],
                        float(out.visible[i]),
                    )
                    for i, seq in enumerate(seqs[new].tolist())
                ]
                return [*held, *fresh]
            self.metrics.push_conflicts.inc()
            await asyncio.sleep(0)
        raise SessionBusy(
            f"session {session_id!r} kept changing under {self.settings.push_retries} attempts by concurrent "
            "writers; retry the batch"
        )

    @staticmethod
    def _check_seqs(frames: Sequence[FrameInput]) -> np.ndarray:
        seqs: list[int] = []
        for index, frame in enumerate(frames):
            seq = check_seq(frame.seq, ("frames", index, "seq"))
            if index and seq <= seqs[-1]:
                raise InvalidInput(
                    f"seq {seq} is not greater than seq {seqs[-1]} of the frame before it: a batch's frames "
                    "must be in strictly increasing seq",
                    ("frames", index, "seq"),
                )
            seqs.append(seq)
        return np.asarray(seqs, dtype=np.int64)

    @staticmethod
    def _stack(frames: Sequence[FrameInput]) -> tuple[np.ndarray, np.ndarray | None]:
        kp = np.stack(
            [
                as_array(f.keypoints_px, ("frames", i, "keypoints"), (NUM_JOINTS, 2))
                for i, f in enumerate(frames)
            ]
        )
        given = [f.scores is not None for f in frames]
        if not any(given):
            return kp, None
        scores = [
            np.ones(NUM_JOINTS)
            if f.scores is None
            else as_array(f.scores, ("frames", i, "scores"), (NUM_JOINTS,))
            for i, f in enumerate(frames)
        ]
        return kp, np.stack(scores)

    def _held_output(self, state: SessionState, seq: int, frame: int) -> FrameOutput:
        """The stored pose of a resent `seq` (frame `frame` of the batch), or SeqConflict."""
        index = state.held_index(seq)
        if index is None:
            oldest = int(state.pose_seqs[0]) if len(state.pose_seqs) else None
            why = (
                "was never processed"
                if oldest is not None and seq > oldest
                else f"is older than the poses this session keeps (from seq {oldest})"
            )
            raise SeqConflict(
                f"seq {seq} {why}; the session's last seq is {state.last_seq}: send frames with seq > "
                f"{state.last_seq}",
                ("frames", frame, "seq"),
            )
        root = state.roots[index] if self.engine.lifter.has_root else None
        return FrameOutput(seq, state.poses[index], root, float(state.visible[index]))

    async def _load(self, session_id: str, owner: str) -> SessionState:
        """The session as stored now (and remembered), if `owner` may see it."""
        if not _SESSION_ID.match(session_id):
            raise SessionNotFound(session_id)
        try:
            state = await self.store.load(session_id)
        except SessionNotFound:
            self.sessions_seen.drop(session_id)
            raise
        self.sessions_seen.put(state)
        return self._check_access(state, owner)

    def _check_access(self, state: SessionState, owner: str) -> SessionState:
        """`state` if `owner` may push to it on this replica's model; owner and window never change."""
        session_id = state.session_id
        if state.owner != owner:  # another key's session looks exactly like a missing one
            raise SessionNotFound(session_id)
        if state.window != self.window:  # replicas disagree on the model (a rolling upgrade)
            raise SessionIncompatible(
                f"session {session_id!r} was opened on a model with window {state.window}; this replica "
                f"serves window {self.window}: retry on a replica with the session's model, or open a new one"
            )
        return state

    @staticmethod
    def _info(state: SessionState, expires_in_s: float) -> SessionInfo:
        return SessionInfo(
            session_id=state.session_id,
            last_seq=state.last_seq,
            frames_seen=state.frames_seen,
            expires_in_s=round(expires_in_s, 3),
            window=state.window,
            camera=state.camera,
        )


@asynccontextmanager
async def serving_core(
    settings: Settings, lifter: Lifter | None = None, metrics: Metrics | None = None
) -> AsyncIterator[LiftingCore]:
    """The core with its resources running: batching worker started, store client open; both closed after.

    Args:
        lifter: an already loaded model (else `settings.checkpoint` is loaded here).
        metrics: the registry to count into (else a new one).
    """
    metrics = metrics or Metrics()
    engine = Engine(
        lifter or load_model(settings),
        settings.max_batch,
        settings.batch_wait_ms,
        metrics,
        settings.inline_when_idle,
    )
    engine.start()
    store = build_store(
        settings.redis_url,
        settings.session_ttl_s,
        settings.store_timeout_s,
        settings.max_sessions,
        on_error=lambda operation: metrics.store_errors.labels(operation).inc(),
        redis_connections=settings.redis_connections,
        pipeline_commits=settings.redis_pipeline,
    )
    try:
        yield LiftingCore(settings, engine, store, metrics)
    finally:
        await engine.aclose()  # drains the queued requests off the loop, which keeps delivering their replies
        await store.close()
