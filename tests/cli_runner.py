"""`python tests/cli_runner.py judge ...` = `python -m rlaif judge ...` with one extra provider,
`testoai/<model>`: the thin AsyncOpenAI backend in openai_server.py (TEST_OAI_BASE_URL). Used by the
resume test until rlaif/backends/openai.py lands; then `openai/<model>` with OPENAI_BASE_URL works the same."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import rlaif.backends as backends  # noqa: E402

backends.PROVIDERS["testoai"] = "openai_server:ThinOpenAIBackend"

from rlaif.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
