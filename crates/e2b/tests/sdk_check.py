"""Runs E2B's official Python SDK against the E2B given by the E2B_* variables (the mock, in
the tests) and prints what it saw as JSON. Any protocol mismatch raises inside the SDK."""

import json
import sys

from e2b import CommandExitException, Sandbox, SandboxQuery, TimeoutException

seen = {}
sandbox = Sandbox.create(template="static", timeout=120, metadata={"projectId": "sdk-check"})
seen["id"] = sandbox.sandbox_id

streamed = []
result = sandbox.commands.run(
    "echo hello; echo oops >&2; printf 'h\\xc3\\xa9!'",
    on_stdout=lambda data: streamed.append(data),
)
seen["stdout"] = result.stdout
seen["stderr"] = result.stderr
seen["exit_code"] = result.exit_code
seen["streamed"] = "".join(streamed)

try:
    sandbox.commands.run("exit 3")
except CommandExitException as error:
    seen["failed_exit_code"] = error.exit_code

try:
    sandbox.commands.run("sleep 20", timeout=1)
    seen["timeout"] = "none"
except TimeoutException:
    seen["timeout"] = "raised"

info = sandbox.files.write("/home/user/project/sdk/hello.txt", "written by the SDK")
seen["written_path"] = info.path
seen["read"] = sandbox.files.read("/home/user/project/sdk/hello.txt")
seen["listed"] = sorted(entry.name for entry in sandbox.files.list("/home/user/project/sdk"))
seen["exists"] = sandbox.files.exists("/home/user/project/sdk/hello.txt")
seen["host"] = sandbox.get_host(3000)

listed = Sandbox.list(query=SandboxQuery(metadata={"projectId": "sdk-check"})).next_items()
seen["listed_ids"] = [s.sandbox_id for s in listed]
sandbox.set_timeout(60)
seen["killed"] = Sandbox.kill(sandbox.sandbox_id)
seen["killed_again"] = Sandbox.kill(sandbox.sandbox_id)

json.dump(seen, sys.stdout)
