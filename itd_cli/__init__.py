"""The ``itd`` command line: the engine's commands (:mod:`itd_cli.main`) and the feature index's
(:mod:`itd_cli.index_commands`), on top of both packages."""
