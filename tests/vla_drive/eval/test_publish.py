"""``vla-drive push``: the dry run lists the files and the card; a real push goes through the huggingface_hub API,
here with its HTTP transport replaced by a stand-in hub that records what it receives (no network)."""

from __future__ import annotations

import base64
import json

import pytest

from vla_drive.cli import main
from vla_drive.model.card import model_files
from vla_drive.model.head import HeadConfig
from vla_drive.model.vla import DrivingVLA, VLAConfig

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
REPO = "someone/tiny-driver"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("push") / "model"
    DrivingVLA.build(VLAConfig(head=HeadConfig(hidden_size=32, depth=1, num_heads=2))).save_pretrained(directory)
    (directory / "eval").mkdir()
    (directory / "eval" / "v1_scores.csv").write_text("not part of the model\n")
    return directory


def test_dry_run_lists_the_files_and_the_card(model_dir, capsys):
    assert main(["push", "--model", str(model_dir), "--repo-id", REPO, "--dry-run"]) == 0
    out = capsys.readouterr().out
    for path in model_files(model_dir):
        assert f"  {path.as_posix()}  (" in out
    assert "eval/v1_scores.csv" not in out.split("--- README.md")[0], "eval outputs are not uploaded"
    assert "--- README.md (model card) ---\n---\nlibrary_name: vla-drive" in out and "nothing was uploaded" in out


class StandInHub:
    """Answers the hub API calls a push makes: create the repository, pre-upload (every file inline), commit."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.committed: dict[str, bytes] = {}
        self.header: dict = {}
        self.validated = ""

    def __call__(self, request):
        import httpx2

        self.requests.append((request.method, request.url.path))
        path = request.url.path
        if path == "/api/repos/create":
            return httpx2.Response(200, json={"url": f"https://hub.test/{REPO}"})
        if path == "/api/validate-yaml":  # the hub checks the card's YAML header before a commit
            self.validated = json.loads(request.content)["content"]
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if path.endswith("/preupload/main"):
            files = json.loads(request.content)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return httpx2.Response(200, json={"files": modes})
        if path == f"/api/models/{REPO}/commit/main":
            for line in request.content.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    self.header = item["value"]
                elif item["key"] == "file":
                    self.committed[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return httpx2.Response(200, json={"commitUrl": f"https://hub.test/{REPO}/commit/abc", "commitOid": "abc"})
        return httpx2.Response(404, json={"error": f"the stand-in hub does not serve {request.method} {path}"})


def test_push_uploads_the_model_files_in_one_commit(model_dir, monkeypatch, capsys):
    import httpx2
    from huggingface_hub.utils import _http

    hub = StandInHub()
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in_token")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.test")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "https://hub.test")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True, raising=False)
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub), follow_redirects=True))
    try:
        assert main(["push", "--model", str(model_dir), "--repo-id", REPO, "--commit-message", "first model"]) == 0
    finally:
        _http.set_client_factory(_http.default_client_factory)
    assert f"pushed {model_dir} to {REPO}: https://hub.test/{REPO}/commit/abc" in capsys.readouterr().out
    expected = {path.as_posix(): (model_dir / path).read_bytes() for path in model_files(model_dir)}
    assert hub.committed == expected, "exactly the model's files, byte for byte"
    assert hub.header["summary"] == "first model"
    assert hub.validated.startswith("---\nlibrary_name: vla-drive"), "the card's header went through the hub's check"
    paths = [path for _, path in hub.requests]
    assert paths.index("/api/repos/create") < paths.index(f"/api/models/{REPO}/commit/main")


def test_push_refuses_a_corrupt_model_and_a_bad_repo_id(model_dir, tmp_path, capsys):
    import shutil

    copy = shutil.copytree(model_dir, tmp_path / "model")
    assert main(["push", "--model", str(copy), "--repo-id", "no-slash", "--dry-run"]) == 2
    assert "expected <user or organisation>/<name>" in capsys.readouterr().err
    head = copy / "head.safetensors"
    head.write_bytes(head.read_bytes()[:-8])
    assert main(["push", "--model", str(copy), "--repo-id", REPO, "--dry-run"]) == 2
    assert "head.safetensors: checksum mismatch" in capsys.readouterr().err
