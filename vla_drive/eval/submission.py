"""The leaderboard's ``submission.pkl`` for ``vla-drive submit``: the format is navsim_eval's.

``navsim_eval.submission`` writes and reads the official v1 / v2 two-stage layout without torch or navsim; this
module only names what the model-facing command uses, so ``vla-drive submit`` and ``navsim-eval submit`` (teams
with their own planner) write the same files.
"""

from __future__ import annotations

from navsim_eval.submission import Submission, SubmissionError, TeamInfo, read_submission, write_submission

__all__ = ["Submission", "SubmissionError", "TeamInfo", "read_submission", "write_submission"]
