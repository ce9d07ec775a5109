"""`poselift video`: a video in, one 3D poses file per tracked person out (docs/video.md).

The 2D detector (`posedetect`: person boxes, tracks, BlazePose on a crop following each person) runs in its
own environment, `.venv-video`, as a subprocess that writes JSON lines; this package reads them, lifts each
track as its own session (in-process, or over gRPC StreamLift against a running `poselift serve`), and
writes the poses files, a summary, and optionally a render and a BVH per track.
"""
