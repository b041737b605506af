"""The run layer every workflow shares: settings in and exit codes out (``entry``), the
host's scripts and loaders (``host``), a work folder of host runs (``runs``), markdown
tables (``tables``) and the fluency of generated answers (``fluency``)."""
