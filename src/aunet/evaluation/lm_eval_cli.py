"""lm-eval's own command line with the ``aunet`` model registered, for installs without ``aunet-lm-eval.pth``.

    python -m aunet.evaluation.lm_eval_cli run --model aunet --model_args checkpoint=RUN_DIR --tasks hellaswag

Arguments are lm-eval's, unchanged.
"""

from __future__ import annotations

from aunet.evaluation.plugin import register


def main() -> None:
    register()
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
