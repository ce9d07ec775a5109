import numpy as np

from poselift.windows import causal_window_indices, causal_windows


def test_causal_windows_edge_pad_the_start():
    idx = causal_window_indices(4, 3)
    assert idx.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3]]


def test_causal_windows_from_a_later_frame_match_the_full_set():
    frames = np.arange(10)[:, None] * 1.0
    assert (causal_windows(frames, 5, first=6) == causal_windows(frames, 5)[6:]).all()
