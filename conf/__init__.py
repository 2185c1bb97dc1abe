# Hydra reads this folder as the package `actstudy.conf` (see pyproject.toml): YAML files only.
