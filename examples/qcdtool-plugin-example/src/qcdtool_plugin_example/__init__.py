"""An example qcdtool plugin package: the ``polar`` jet imager."""
