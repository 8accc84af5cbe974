"""Wheel I/O: the validated archive reader, the writer, the zip format shared by both, deflate splicing
and atomic output."""
