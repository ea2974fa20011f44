"""The streaming worker: the Faust app (`app`), its service state, the partition engines (`engines`),
the sequencer, snapshots, dead letters and observability."""
