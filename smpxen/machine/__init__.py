"""The machine (coordinator) process: builds machine RAM and the domains, spawns
and supervises the PCPU processes, collects console output and the report."""
