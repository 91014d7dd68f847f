"""Packaging hook only; all metadata lives in pyproject.toml.

It adds one file to the installed package set: ``aunet-lm-eval.pth`` at the root of site-packages, whose single
line Python runs at start-up to install aunet's lm-eval import hook (``aunet.evaluation.plugin``). That hook gives
lm-eval 0.4.13, which has no entry-point discovery of models, the ``lm_eval.models`` entry points declared in
pyproject.toml, so ``lm_eval --model aunet`` works. The line never raises: if aunet cannot be imported it does
nothing.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "aunet-lm-eval.pth"
# One line, as .pth files require; exec'd by site.py because it starts with "import".
PTH_LINE = (
    "import sys; exec('try:\\n import aunet.evaluation.plugin as _aunet_plugin\\n _aunet_plugin.install()\\n"
    "except Exception:\\n pass')\n"
)


class BuildPyWithPth(build_py):
    """build_py that also writes the .pth file at the root of what gets installed."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            # Editable wheels (PEP 660) are assembled from the install command's target folder, not build_lib.
            root = Path(self.get_finalized_command("install").install_lib)
        else:
            root = Path(self.build_lib)
        root.mkdir(parents=True, exist_ok=True)
        (root / PTH_NAME).write_text(PTH_LINE, encoding="utf-8")

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(str(Path(self.build_lib) / PTH_NAME))
        return outputs


setup(cmdclass={"build_py": BuildPyWithPth})
