from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Layout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LAYOUT_UNSPECIFIED: _ClassVar[Layout]
    LAYOUT_H36M17: _ClassVar[Layout]
    LAYOUT_COCO17: _ClassVar[Layout]

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_CAUSAL: _ClassVar[Mode]
    MODE_OFFLINE: _ClassVar[Mode]
LAYOUT_UNSPECIFIED: Layout
LAYOUT_H36M17: Layout
LAYOUT_COCO17: Layout
MODE_CAUSAL: Mode
MODE_OFFLINE: Mode

class Camera(_message.Message):
    __slots__ = ("width", "height", "fps", "layout", "focal_px", "cx", "cy")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    FOCAL_PX_FIELD_NUMBER: _ClassVar[int]
    CX_FIELD_NUMBER: _ClassVar[int]
    CY_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    fps: float
    layout: Layout
    focal_px: float
    cx: float
    cy: float
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[float] = ..., layout: _Optional[_Union[Layout, str]] = ..., focal_px: _Optional[float] = ..., cx: _Optional[float] = ..., cy: _Optional[float] = ...) -> None: ...

class LiftRequest(_message.Message):
    __slots__ = ("camera", "num_frames", "keypoints", "scores", "mode")
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    camera: Camera
    num_frames: int
    keypoints: _containers.RepeatedScalarFieldContainer[float]
    scores: _containers.RepeatedScalarFieldContainer[float]
    mode: Mode
    def __init__(self, camera: _Optional[_Union[Camera, _Mapping]] = ..., num_frames: _Optional[int] = ..., keypoints: _Optional[_Iterable[float]] = ..., scores: _Optional[_Iterable[float]] = ..., mode: _Optional[_Union[Mode, str]] = ...) -> None: ...

class LiftResponse(_message.Message):
    __slots__ = ("num_frames", "poses", "trajectory", "visible")
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    POSES_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_FIELD_NUMBER: _ClassVar[int]
    num_frames: int
    poses: _containers.RepeatedScalarFieldContainer[float]
    trajectory: _containers.RepeatedScalarFieldContainer[float]
    visible: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, num_frames: _Optional[int] = ..., poses: _Optional[_Iterable[float]] = ..., trajectory: _Optional[_Iterable[float]] = ..., visible: _Optional[_Iterable[float]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("seq", "keypoints", "scores")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    keypoints: _containers.RepeatedScalarFieldContainer[float]
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, seq: _Optional[int] = ..., keypoints: _Optional[_Iterable[float]] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class StreamLiftRequest(_message.Message):
    __slots__ = ("open", "resume_session_id", "frame")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    RESUME_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    open: Camera
    resume_session_id: str
    frame: Frame
    def __init__(self, open: _Optional[_Union[Camera, _Mapping]] = ..., resume_session_id: _Optional[str] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "last_seq", "window")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    last_seq: int
    window: int
    def __init__(self, session_id: _Optional[str] = ..., last_seq: _Optional[int] = ..., window: _Optional[int] = ...) -> None: ...

class Pose(_message.Message):
    __slots__ = ("seq", "joints", "root", "visible")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    JOINTS_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    joints: _containers.RepeatedScalarFieldContainer[float]
    root: _containers.RepeatedScalarFieldContainer[float]
    visible: float
    def __init__(self, seq: _Optional[int] = ..., joints: _Optional[_Iterable[float]] = ..., root: _Optional[_Iterable[float]] = ..., visible: _Optional[float] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("seq", "code", "message", "location")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    seq: int
    code: str
    message: str
    location: str
    def __init__(self, seq: _Optional[int] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., location: _Optional[str] = ...) -> None: ...

class StreamLiftResponse(_message.Message):
    __slots__ = ("session", "pose", "error")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    POSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    session: SessionInfo
    pose: Pose
    error: FrameError
    def __init__(self, session: _Optional[_Union[SessionInfo, _Mapping]] = ..., pose: _Optional[_Union[Pose, _Mapping]] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ...) -> None: ...
