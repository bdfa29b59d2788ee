"""The committed baseline: its file format (store), the comparison (compare), whole suite
or subset (selection) and the gate the plugin calls (gate). No pytest import."""
