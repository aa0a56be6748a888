"""Webhook payloads shaped like the providers' documented examples (field names,
nesting and types from docs.github.com "Webhook events and payloads" and
docs.gitlab.com "Webhook events"), trimmed of fields nobody reads only where they
are long lists of URLs, and helpers that sign and deliver them like the providers do."""

import hashlib
import hmac
import json
import uuid
from urllib.parse import urlencode

SHA_BEFORE = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
SHA_AFTER = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
SHA_BASE = "9049f1265b7d61be4a8904a9a27120d2064dab3b"
ZEROS = "0" * 40


def github_user(login: str = "Codertocat", user_id: int = 21031067) -> dict:
    return {
        "login": login,
        "id": user_id,
        "node_id": "MDQ6VXNlcjIxMDMxMDY3",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "url": f"https://api.github.com/users/{login}",
        "html_url": f"https://github.com/{login}",
        "type": "User",
        "site_admin": False,
    }


def github_repository(repo_id: int, full_name: str = "acme/site", *, fork: bool = False) -> dict:
    owner, name = full_name.split("/")
    return {
        "id": repo_id,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMzU0OTMyMzM=",
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": github_user(owner, 6752317),
        "html_url": f"https://github.com/{full_name}",
        "description": None,
        "fork": fork,
        "url": f"https://api.github.com/repos/{full_name}",
        "created_at": 1527711484,
        "updated_at": "2026-01-02T10:00:00Z",
        "pushed_at": 1767348000,
        "git_url": f"git://github.com/{full_name}.git",
        "ssh_url": f"git@github.com:{full_name}.git",
        "clone_url": f"https://github.com/{full_name}.git",
        "default_branch": "main",
        "master_branch": "main",
    }


def github_commit(
    sha: str = SHA_AFTER,
    message: str = "Update README.md",
    *,
    added: list[str] | None = None,
    modified: list[str] | None = None,
    removed: list[str] | None = None,
) -> dict:
    person = {"name": "Monalisa Octocat", "email": "mona@github.com", "username": "octocat"}
    return {
        "id": sha,
        "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
        "distinct": True,
        "message": message,
        "timestamp": "2026-01-02T10:00:00+01:00",
        "url": f"https://github.com/acme/site/commit/{sha}",
        "author": person,
        "committer": person,
        "added": added or [],
        "removed": removed or [],
        "modified": modified if modified is not None else ["README.md"],
    }


def github_push(
    repo_id: int,
    *,
    ref: str = "refs/heads/main",
    after: str = SHA_AFTER,
    commits: list[dict] | None = None,
    deleted: bool = False,
) -> dict:
    commits = [github_commit(after)] if commits is None else commits
    return {
        "ref": ref,
        "before": SHA_BEFORE,
        "after": after,
        "repository": github_repository(repo_id),
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "sender": github_user(),
        "created": False,
        "deleted": deleted,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/acme/site/compare/{SHA_BEFORE[:12]}...{after[:12]}",
        "commits": commits,
        "head_commit": commits[-1] if commits else None,
    }


def github_tag_push(repo_id: int, tag: str = "v1.0.0") -> dict:
    return {**github_push(repo_id, ref=f"refs/tags/{tag}", commits=[]), "before": ZEROS, "created": True}


def github_branch_deletion(repo_id: int, branch: str = "feature/old") -> dict:
    return {**github_push(repo_id, ref=f"refs/heads/{branch}", after=ZEROS, commits=[], deleted=True)}


def github_pull_request(
    repo_id: int,
    *,
    action: str = "opened",
    number: int = 42,
    head_ref: str = "feature/login",
    head_sha: str = SHA_AFTER,
    title: str = "Add a login page",
    fork: bool = False,
) -> dict:
    base_repo = github_repository(repo_id)
    head_repo = github_repository(repo_id + 7, "mallory/site", fork=True) if fork else base_repo
    payload = {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"https://api.github.com/repos/acme/site/pulls/{number}",
            "id": 279147437,
            "node_id": "MDExOlB1bGxSZXF1ZXN0Mjc5MTQ3NDM3",
            "html_url": f"https://github.com/acme/site/pull/{number}",
            "diff_url": f"https://github.com/acme/site/pull/{number}.diff",
            "number": number,
            "state": "open",
            "locked": False,
            "title": title,
            "user": github_user(),
            "body": "This is a pretty simple change that we need to pull into main.",
            "created_at": "2026-01-02T10:00:00Z",
            "updated_at": "2026-01-02T10:00:00Z",
            "closed_at": None,
            "merged_at": None,
            "merge_commit_sha": None,
            "draft": False,
            "head": {
                "label": f"{head_repo['owner']['login']}:{head_ref}",
                "ref": head_ref,
                "sha": head_sha,
                "user": head_repo["owner"],
                "repo": head_repo,
            },
            "base": {
                "label": "acme:main",
                "ref": "main",
                "sha": SHA_BASE,
                "user": base_repo["owner"],
                "repo": base_repo,
            },
            "author_association": "OWNER",
            "merged": False,
            "mergeable": None,
            "comments": 0,
            "commits": 3,
            "additions": 12,
            "deletions": 2,
            "changed_files": 2,
        },
        "repository": base_repo,
        "sender": github_user(),
    }
    if action == "synchronize":
        payload.update(before=SHA_BEFORE, after=head_sha)
    return payload


def github_ping(repo_id: int) -> dict:
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": 30,
        "hook": {
            "type": "Repository",
            "id": 30,
            "name": "web",
            "active": True,
            "events": ["push", "pull_request"],
            "config": {"content_type": "json", "insecure_ssl": "0", "url": "https://builds.example.com/webhooks/x"},
            "updated_at": "2026-01-02T10:00:00Z",
            "created_at": "2026-01-02T10:00:00Z",
        },
        "repository": github_repository(repo_id),
        "sender": github_user(),
    }


def gitlab_project(project_id: int, path: str = "acme/site") -> dict:
    return {
        "id": project_id,
        "name": path.split("/")[1],
        "description": "",
        "web_url": f"https://gitlab.example.com/{path}",
        "avatar_url": None,
        "git_ssh_url": f"git@gitlab.example.com:{path}.git",
        "git_http_url": f"https://gitlab.example.com/{path}.git",
        "namespace": path.split("/")[0],
        "visibility_level": 0,
        "path_with_namespace": path,
        "default_branch": "main",
        "ci_config_path": None,
        "homepage": f"https://gitlab.example.com/{path}",
        "url": f"git@gitlab.example.com:{path}.git",
        "ssh_url": f"git@gitlab.example.com:{path}.git",
        "http_url": f"https://gitlab.example.com/{path}.git",
    }


def gitlab_repository(path: str = "acme/site") -> dict:
    return {
        "name": path.split("/")[1],
        "url": f"git@gitlab.example.com:{path}.git",
        "description": "",
        "homepage": f"https://gitlab.example.com/{path}",
        "git_http_url": f"https://gitlab.example.com/{path}.git",
        "git_ssh_url": f"git@gitlab.example.com:{path}.git",
        "visibility_level": 0,
    }


def gitlab_commit(
    sha: str = SHA_AFTER,
    message: str = "fixed readme",
    *,
    added: list[str] | None = None,
    modified: list[str] | None = None,
    removed: list[str] | None = None,
) -> dict:
    return {
        "id": sha,
        "message": message,
        "title": message.splitlines()[0] if message else "",
        "timestamp": "2026-01-02T10:00:00+00:00",
        "url": f"https://gitlab.example.com/acme/site/-/commit/{sha}",
        "author": {"name": "GitLab dev user", "email": "gitlabdev@example.com"},
        "added": added or [],
        "modified": modified if modified is not None else ["README.md"],
        "removed": removed or [],
    }


def gitlab_push(
    project_id: int,
    *,
    ref: str = "refs/heads/main",
    after: str = SHA_AFTER,
    commits: list[dict] | None = None,
    total_commits_count: int | None = None,
    object_kind: str = "push",
) -> dict:
    # Listed oldest first, as GitLab does; the last one is the new head.
    commits = (
        [gitlab_commit(SHA_BEFORE, "Update Catalan translation"), gitlab_commit(after)] if commits is None else commits
    )
    return {
        "object_kind": object_kind,
        "event_name": object_kind,
        "before": SHA_BEFORE,
        "after": after,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": None if after == ZEROS else after,
        "message": None,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "user_email": "john@example.com",
        "user_avatar": "https://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=8://s.gravatar.com/avatar",
        "project_id": project_id,
        "project": gitlab_project(project_id),
        "commits": commits,
        "total_commits_count": len(commits) if total_commits_count is None else total_commits_count,
        "push_options": {},
        "repository": gitlab_repository(),
    }


def gitlab_tag_push(project_id: int, tag: str = "v1.0.0") -> dict:
    payload = gitlab_push(project_id, ref=f"refs/tags/{tag}", commits=[], object_kind="tag_push")
    return {**payload, "before": ZEROS, "message": "Tag message"}


def gitlab_branch_deletion(project_id: int, branch: str = "feature/old") -> dict:
    return gitlab_push(project_id, ref=f"refs/heads/{branch}", after=ZEROS, commits=[])


def gitlab_merge_request(
    project_id: int,
    *,
    action: str = "open",
    iid: int = 7,
    source_branch: str = "ms-viewport",
    last_commit: str = SHA_AFTER,
    oldrev: str | None = None,
    title: str = "MS-Viewport",
    message: str = "fixed readme",
    fork: bool = False,
) -> dict:
    project = gitlab_project(project_id)
    source = gitlab_project(project_id + 7, "mallory/site") if fork else project
    attributes = {
        "id": 99,
        "iid": iid,
        "target_branch": "main",
        "source_branch": source_branch,
        "source_project_id": source["id"],
        "author_id": 51,
        "assignee_ids": [6],
        "assignee_id": 6,
        "reviewer_ids": [],
        "title": title,
        "created_at": "2026-01-02 10:00:00 UTC",
        "updated_at": "2026-01-02 10:05:00 UTC",
        "milestone_id": None,
        "state": "closed" if action == "close" else "merged" if action == "merge" else "opened",
        "blocking_discussions_resolved": True,
        "work_in_progress": False,
        "draft": False,
        "first_contribution": True,
        "merge_status": "unchecked",
        "target_project_id": project_id,
        "description": "",
        "total_time_spent": 0,
        "time_change": 0,
        "human_total_time_spent": None,
        "human_time_change": None,
        "human_time_estimate": None,
        "url": f"https://gitlab.example.com/acme/site/-/merge_requests/{iid}",
        "source": source,
        "target": project,
        "last_commit": {
            "id": last_commit,
            "message": message,
            "title": message.splitlines()[0] if message else "",
            "timestamp": "2026-01-02T10:00:00+00:00",
            "url": f"https://gitlab.example.com/acme/site/-/commit/{last_commit}",
            "author": {"name": "GitLab dev user", "email": "gitlabdev@example.com"},
        },
        "labels": [],
        "action": action,
        "detailed_merge_status": "mergeable",
    }
    if oldrev:
        attributes["oldrev"] = oldrev
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {
            "id": 1,
            "name": "Administrator",
            "username": "root",
            "avatar_url": "https://www.gravatar.com/avatar/e64c7d89f26bd1972efa854d13d7dd61?s=40&d=identicon",
            "email": "admin@example.com",
        },
        "project": project,
        "object_attributes": attributes,
        "labels": [],
        "changes": {"updated_at": {"previous": "2026-01-02 10:00:00 UTC", "current": "2026-01-02 10:05:00 UTC"}},
        "repository": gitlab_repository(),
    }


# Delivering.


def github_signature(body: bytes, secret: str = "s3cret") -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(
    client,
    connection,
    payload: dict,
    *,
    event: str | None = None,
    delivery_id: str | None = None,
    secret: str = "s3cret",
    form: bool = False,
    content_type: str | None = None,
    headers: dict | None = None,
):
    """POSTs the payload to the connection's webhook URL the way its provider does:
    GitHub signs the raw body (sending the SHA-1 signature alongside), GitLab sends
    the secret token. `headers` overrides or, with a None value, drops a header."""
    delivery_id = delivery_id or str(uuid.uuid4())
    text = json.dumps(payload)
    if connection.provider == "github":
        body = urlencode({"payload": text}).encode() if form else text.encode()
        sent = {
            "User-Agent": "GitHub-Hookshot/044aadd",
            "X-GitHub-Event": event or "push",
            "X-GitHub-Delivery": delivery_id,
            "X-GitHub-Hook-ID": "30",
            "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": github_signature(body, secret),
        }
        default_type = "application/x-www-form-urlencoded" if form else "application/json"
    else:
        body = text.encode()
        sent = {
            "User-Agent": "GitLab/18.2.0",
            "X-Gitlab-Event": event or "Push Hook",
            "X-Gitlab-Token": secret,
            "X-Gitlab-Event-UUID": delivery_id,
            "Idempotency-Key": delivery_id,
            "X-Gitlab-Webhook-UUID": "d7fbb8d5-6bd3-4b3b-9b8e-2fd7ad3e1f2e",
            "X-Gitlab-Instance": "https://gitlab.example.com",
        }
        default_type = "application/json"
    for name, value in (headers or {}).items():
        sent.pop(name, None)
        if value is not None:
            sent[name] = value
    return client.generic(
        "POST", f"/webhooks/{connection.uuid}", data=body, content_type=content_type or default_type, headers=sent
    )
