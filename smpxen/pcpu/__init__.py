"""A physical CPU: one OS process running one Unicorn core over machine RAM."""
