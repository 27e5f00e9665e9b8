"""How Lava's runtime runs here: actors as threads joined by in-process channels (``threads``,
``channel``), and the memory settings for networks of hundreds of processes (``memory``)."""
