"""Maps the top-level ``plugins/`` folder to the import name ``kong_py_plugins``.

pyproject.toml cannot rename a discovered package tree, so the package list is
computed here; everything else lives in pyproject.toml.
"""
from setuptools import find_packages, setup

plugin_packages = ["kong_py_plugins"] + [
    f"kong_py_plugins.{name}" for name in find_packages("plugins")
]

setup(
    packages=find_packages(include=["kong_py", "kong_py.*"]) + plugin_packages,
    package_dir={"kong_py_plugins": "plugins"},
    package_data={"kong_py": ["py.typed"]},
)
