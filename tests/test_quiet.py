import os
import subprocess
import sys

import pytest

from ganstudy.quiet import _stderr_without_info_lines


def test_info_lines_go_and_everything_else_stays(capfd):
    with _stderr_without_info_lines():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796141249.471749   10316 port.cc:153] oneDNN custom operations are on.\n"
                    b"E0000 00:00:1796141277.153000   10316 cuda_platform.cc:52] failed call to cuInit\n"
                    b"Traceback (most recent call last): a real problem\n")
    err = capfd.readouterr().err
    assert err == ("E0000 00:00:1796141277.153000   10316 cuda_platform.cc:52] failed call to cuInit\n"
                   "Traceback (most recent call last): a real problem\n")


@pytest.mark.slow  # imports TensorFlow
def test_importing_tensorflow_through_ganstudy_prints_nothing():
    done = subprocess.run([sys.executable, "-c", "import ganstudy, tensorflow, warnings; warnings.warn('shown')"],
                          capture_output=True, text=True, timeout=300, env={k: v for k, v in os.environ.items()
                                                                            if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.strip().splitlines() == ["<string>:1: UserWarning: shown"], done.stderr
