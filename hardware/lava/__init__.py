"""A network plan on Lava: instantiation, the runner, our models of library processes, our own
processes (``procs/``, the folder Lava scans) and the runtime (``runtime/``)."""
