"""Offline training and evaluation of poselift lifters on motion capture seen through virtual cameras."""
