"""The fault suite: real processes under crashes, hangs, full disks and hostile input."""
