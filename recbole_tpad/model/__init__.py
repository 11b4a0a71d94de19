"""Models of the plugin; a class X lives in x.py (the file name is the registry)."""
