"""dlkit's built-in algorithms, installed as ``dlkit.plugins`` and registered through the same
``dlkit.algorithms`` entry points a third-party plugin uses (see pyproject.toml)."""
