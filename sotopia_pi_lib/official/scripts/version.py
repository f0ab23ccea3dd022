"""Print the installed sotopia version and check that the modules the project drives import."""

import json
import sys
from importlib import metadata

import sotopia.agents  # noqa: F401
import sotopia.envs.evaluators  # noqa: F401
import sotopia.envs.parallel  # noqa: F401
import sotopia.generation_utils.generate  # noqa: F401
import sotopia.renderers  # noqa: F401

json.dump({"sotopia": metadata.version("sotopia"), "python": sys.version.split()[0]}, sys.stdout)
