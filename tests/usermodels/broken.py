"""A user's model module that fails to import, for the `python:` source's error message."""

import a_package_that_is_not_installed  # noqa: F401


def build():  # never reached
    raise AssertionError
