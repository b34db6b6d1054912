"""The training core: the frozen front run once (``front``, ``front_cache``), one fine-tuning loop (``loop``)."""
