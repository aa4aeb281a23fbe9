"""A quiet console: TensorFlow 2.21 prints INFO lines through absl while it is imported, before its log level
applies (TF_CPP_MIN_LOG_LEVEL no longer silences them): "oneDNN custom operations are on", "Could not find
cuda drivers", and absl's notice about InitializeLog. The first `import tensorflow` in a ganstudy process
runs with its stderr caught; afterwards every caught line but those is written out, so real warnings and
errors still show."""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

_NOISE = re.compile(r"^(I\d{4} \S+ +\d+ \S+\] |WARNING: All log messages before absl::InitializeLog\(\) is called)")


@contextlib.contextmanager
def _stderr_without_info_lines():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(keepends=True)
                    if not _NOISE.match(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _stderr_without_info_lines():
            self.loader.exec_module(module)

    def __getattr__(self, name):  # resource readers and the like: the real loader's
        return getattr(self.loader, name)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: only the first import loads TensorFlow's libraries
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_import() -> None:
    """Catch the first `import tensorflow` of this process (nothing happens if it was imported already)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())
