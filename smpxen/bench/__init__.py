"""`smpxen bench`: measured, never asserted. Each benchmark compares against a
baseline taken in the same run (raw Unicorn running the same guest code), because
these machines are noisy. Every function returns a dict of JSON-ready keys."""
